"""Where the time of one scratchvae training step goes, piece by piece.

    python benchmarks/profile_step.py [--batch-size 128] [--threads 1] [--epochs 3] [--overlap] [--json PATH]

Trains the benchmark's model (784-400-20, ReLU, Bernoulli, Adam) on the benchmark's data
and times every piece of every step with ``time.perf_counter``: each Linear layer's
forward and backward (its matrix products, bias and sums), each activation, the
decoder's likelihood and its gradient, the rest of ``VAE.elbo`` and ``VAE.backward``
(reparameterization, KL, small arrays, checks), and ``Adam.step``. Prints the median
microseconds per step of each piece beside the GEMM floor of the same step, and
``--cprofile`` adds cProfile's table of the same loop.

``--overlap`` also trains a second copy of the model with the overlapped step
(:mod:`scratchvae.training.overlap`: the decoder's update on a worker thread while the
encoder's backward runs), on the same minibatches, its steps interleaved with the plain
ones, and times its pieces: the forward pass, the decoder's backward (its dx products),
the encoder's backward (beside the worker), the encoder's update, the decoder's weight
gradients and update (on the worker), and what the main thread waits for the worker at the end.
"""
import argparse
import cProfile
import functools
import json
import pstats
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratchvae.experiments.bench.contenders import GemmFloor, ScratchRun, epoch_order, load_images, make_model
from scratchvae.experiments.bench.machine import limit_threads
from scratchvae.training.overlap import DECODER


def timed(table, name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        table[name] += time.perf_counter() - start
        return out
    return wrapper


def instrument(model, optimizer, table):
    """Wrap the methods of this model's parts (instances only) so they add their time to table."""
    for net_name, net in (("encoder", model.encoder), ("decoder", model.decoder.net)):
        for i, layer in enumerate(net.layers):
            kind = "linear" if layer.params else type(layer).__name__.lower()
            for method in ("forward", "backward"):
                setattr(layer, method, timed(table, f"{net_name}.{i} {kind} {method}",
                                             getattr(layer, method)))
    dec = model.decoder
    dec.log_prob = timed(table, "decoder log_prob (Bernoulli)", dec.log_prob)
    optimizer.step = timed(table, "Adam.step", optimizer.step)


def instrument_overlap(overlap, table):
    """Wrap the pieces of an overlapped step (instances only) so they add their time to table."""
    model, opt = overlap.model, overlap.optimizer
    model.elbo = timed(table, "forward (elbo)", model.elbo)
    model.decoder.backward = timed(table, "decoder backward (dx only)", model.decoder.backward)
    model.encoder.backward = timed(table, "encoder backward (beside the worker)", model.encoder.backward)
    for layer in model.decoder.net.layers:
        if layer.params:   # backward with defer makes dx; the deferred call (no defer), dW and db
            weight_grads = timed(table, "decoder weight gradients (on the worker thread)", layer.backward)
            layer.backward = functools.partial(_deferred_timed, layer.backward, weight_grads)
    apply, decoder_part = opt._apply, opt._part((DECODER,))[1]

    def update(part):
        name = "decoder update (on the worker thread)" if part is decoder_part else "encoder update"
        return timed(table, name, apply)(part)
    opt._apply = update


def _deferred_timed(backward, weight_grads, dy, input_grad=True, defer=None):
    """A Linear layer's backward whose deferred part (called without ``defer``) is timed."""
    if defer is not None:
        return backward(dy, input_grad=input_grad, defer=defer)
    return weight_grads(dy, input_grad=input_grad)


def profile(batch_size, threads, epochs, seed=0, use_cprofile=False, overlapped=False):
    train, _, split = load_images("mnist", None)
    with limit_threads(threads):
        run = ScratchRun(make_model(train.shape[1], 400, 20, seed), lr=1e-3, overlap="off")
        floor = GemmFloor(run.model, batch_size, seed)
        run.epoch(train, epoch_order(len(train), seed, 0), batch_size)  # warm up
        other = None
        if overlapped:
            other = ScratchRun(make_model(train.shape[1], 400, 20, seed), lr=1e-3, overlap="on")
            other.epoch(train, epoch_order(len(train), seed, 0), batch_size)
            other_table, other_steps = defaultdict(float), defaultdict(list)
            instrument_overlap(other.overlap, other_table)
        table = defaultdict(float)
        instrument(run.model, run.optimizer, table)
        steps, per_step = len(train) // batch_size, defaultdict(list)
        profiler = cProfile.Profile() if use_cprofile else None
        floor_times = []
        for epoch in range(1, epochs + 1):
            order = epoch_order(len(train), seed, epoch)
            for s in range(steps):
                table.clear()
                x = train[order[s * batch_size:(s + 1) * batch_size]]
                start = time.perf_counter()
                if profiler:
                    profiler.enable()
                run.model.loss_and_grads(x, check=False)   # as Trainer.step: data checked once
                run.optimizer.step()
                if profiler:
                    profiler.disable()
                total = time.perf_counter() - start
                for k, v in table.items():
                    per_step[k].append(v)
                per_step["rest of loss_and_grads"].append(total - sum(table.values()))
                per_step["step total"].append(total)
                start = time.perf_counter()
                for a, b, out in floor.products:
                    np.matmul(a, b, out=out)
                floor_times.append(time.perf_counter() - start)
                if other is not None:
                    other_table.clear()
                    start = time.perf_counter()
                    other.overlap.step(x)
                    total = time.perf_counter() - start
                    for k, v in other_table.items():
                        other_steps[k].append(v)
                    main_thread = sum(v for k, v in other_table.items() if "worker" not in k)
                    other_steps["rest, and waiting for the worker at the end"].append(total - main_thread)
                    other_steps["step total"].append(total)
    us = {k: 1e6 * statistics.median(v) for k, v in per_step.items()}
    us["GEMM floor (same step's products)"] = 1e6 * statistics.median(floor_times)
    # An epoch costs the sum of its steps: the mean, which a slow tail lifts above the median.
    mean = 1e6 * statistics.fmean(per_step["step total"])
    result = {"batch_size": batch_size, "threads": threads, "steps": steps * epochs, "data": split,
              "median_us_per_step": us, "mean_us_per_step": mean}
    if other is not None:
        result["overlapped"] = {"median_us_per_step": {k: 1e6 * statistics.median(v)
                                                       for k, v in other_steps.items()},
                                "mean_us_per_step": 1e6 * statistics.fmean(other_steps["step total"])}
    return result, profiler


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default: 1, the library's rule)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--cprofile", action="store_true", help="also print cProfile's table")
    p.add_argument("--overlap", action="store_true",
                   help="also time the overlapped step, interleaved with the plain one, piece by piece")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    import os
    load_before = os.getloadavg()
    result, profiler = profile(args.batch_size, args.threads, args.epochs, use_cprofile=args.cprofile,
                               overlapped=args.overlap)
    result["load_before"], result["load_after"] = load_before, os.getloadavg()
    us = result["median_us_per_step"]
    total = us["step total"]
    print(f"batch {args.batch_size}, {args.threads} threads, median of {result['steps']} steps "
          f"(microseconds per step; pieces are medians, so they need not add up to the total)")
    for name, value in sorted(us.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<40} {value:8.0f}  {100 * value / total:5.1f}%")
    print(f"  {'step total, mean (what an epoch costs)':<40} {result['mean_us_per_step']:8.0f}")
    if "overlapped" in result:
        o = result["overlapped"]["median_us_per_step"]
        print("overlapped step (the decoder's weight gradients and update on a worker thread), "
              "same steps, interleaved:")
        for name, value in sorted(o.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<48} {value:8.0f}  {100 * value / o['step total']:5.1f}%")
        mean = result["overlapped"]["mean_us_per_step"]
        print(f"  {'step total, mean (what an epoch costs)':<48} {mean:8.0f}")
    print(f"load average {result['load_before'][0]:.2f} before, {result['load_after'][0]:.2f} after")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
