"""GPU benchmark: epoch time of the 784-400-20 Bernoulli VAE at batch 128, three ways.

    python benchmarks/gpu_bench.py [--repeats 7] [--batch-size 128] [--data-dir DIR] [--out FILE]

Contenders, each training its own copy of the same initial weights on the same
minibatches, with Adam (lr 1e-3) in float32; their epochs are interleaved (one epoch
of each per repeat, in rotating order) so that anything else slowing the GPU or the
CPU slows all of them alike:

    cupy kernels   scratchvae on CuPy with the hand-written kernels (scratchvae.kernels)
    cupy           scratchvae on CuPy with plain CuPy array expressions (kernels off)
    torch          the same model in PyTorch on CUDA, eager, default Adam
    torch fused    the same, Adam(fused=True)

A step draws eps on the device and keeps the loss there: an epoch reads one number back
to the host, at its end. The report gives the median epoch time of each contender, the
ratios to PyTorch, the hand-written kernel launches per step, and each model's held-out
negative ELBO after training: the contenders did the same work only if those agree
(within about 2 nats). It prints a table and writes JSON (``--out``).

The data: MNIST (the 9000 / 1000 split of the test file, or the standard split when
the training files are present), found as ``scratchvae bench`` finds it; ``--synthetic``
uses random grey images of the same size instead (speed does not depend on the pixels).

CUDA graphs are not used: CuPy refuses cuBLAS calls while a stream is being captured
(it raises NotImplementedError), so a step made of CuPy matrix products cannot be
recorded as a graph.

It needs a CUDA GPU and CuPy (``pip install scratchvae[gpu]``); without them it says so
and exits with status 2. PyTorch with CUDA is optional: without it the PyTorch rows are
left out, and the report says why.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from scratchvae import backend, kernels
from scratchvae.experiments.bench.contenders import (TorchRun, epoch_order, import_torch, load_images,
                                                    make_model)
from scratchvae.optim import Adam
from scratchvae.training.step import train_step
from scratchvae.vae import VAE

LABELS = {"cupy_kernels": "cupy kernels", "cupy": "cupy", "torch": "torch", "torch_fused": "torch fused"}


class CupyRun:
    """scratchvae on the GPU: the step of a training loop that never waits for the device."""

    def __init__(self, model, lr, use_kernels):
        self.name = "cupy_kernels" if use_kernels else "cupy"
        self.model, self.use_kernels = model, use_kernels
        self.optimizer = Adam(model.named_parameters(), lr=lr)

    def epoch(self, x, order, batch_size):
        """Train one epoch; returns the mean loss (the epoch's one device-to-host read)."""
        cupy = backend.cupy
        loss_sum = cupy.zeros((), np.float64)
        steps = len(order) // batch_size
        with kernels.use_kernels(self.use_kernels):
            for start in range(0, steps * batch_size, batch_size):
                loss_sum += train_step(self.model, self.optimizer, x[order[start:start + batch_size]])
        return float(loss_sum) / steps

    def heldout_nelbo(self, x, eps):
        with kernels.use_kernels(self.use_kernels):
            return -float(self.model.elbo(x, eps=eps).elbo.mean())


class TorchCudaRun(TorchRun):
    """The PyTorch model of ``scratchvae bench`` (same weights, same ELBO), on CUDA."""

    def __init__(self, torch, model, lr, fused):
        super().__init__(torch, model, lr, fused=False)  # built on the CPU, then moved
        self.name = "torch_fused" if fused else "torch"
        self.encoder.cuda()
        self.decoder.cuda()
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=lr, fused=fused)

    def epoch(self, x, order, batch_size):
        torch = self.torch
        loss_sum = torch.zeros((), dtype=torch.float64, device="cuda")
        steps = len(order) // batch_size
        for start in range(0, steps * batch_size, batch_size):
            xb = x[order[start:start + batch_size]]
            eps = torch.randn(batch_size, self.z_dim, device="cuda")
            loss = -self.elbo(xb, eps).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * batch_size
        return float(loss_sum) / (steps * batch_size)

    def heldout_nelbo(self, x, eps):
        with self.torch.inference_mode():
            return -float(self.elbo(x, eps).mean())


def gpu_or_exit():
    """CuPy's module, or exit with status 2 and the reason, without a traceback."""
    if backend.cupy is None:
        why = f"CuPy is not installed: {backend.INSTALL_HINT}"
    elif not backend.gpu_available():
        why = ("CuPy finds no CUDA GPU on this machine (check the NVIDIA driver, and that "
               "CuPy matches its CUDA version)")
    else:
        return backend.cupy
    print(f"gpu_bench: this benchmark needs a CUDA GPU; {why}. Nothing was measured.",
          file=sys.stderr)
    sys.exit(2)


def torch_cuda(wanted):
    torch, why = import_torch(wanted)
    if torch is not None and not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} was built without CUDA or sees no GPU"
    return torch, why


def synchronize(cupy, torch):
    cupy.cuda.Device().synchronize()
    if torch is not None:
        torch.cuda.synchronize()


def run(args):
    cupy = gpu_or_exit()
    torch, no_torch = torch_cuda(not args.no_torch)
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        train = rng.random((args.synthetic, 784), dtype=np.float32)
        test = rng.random((1000, 784), dtype=np.float32)
        split = f"synthetic: {args.synthetic} random grey images of 784 pixels"
    else:
        train, test, split = load_images("mnist", args.data_dir)
    n, B = len(train), args.batch_size
    print(f"gpu_bench: {split}; {n // B} steps of {B} per epoch; {args.repeats} timed epochs")
    if no_torch:
        print(f"gpu_bench: no PyTorch rows: {no_torch}")

    model = make_model(train.shape[1], args.hidden, args.z_dim, args.seed)
    runs = []
    for use in (True, False):  # the same initial weights: Linear draws them on the host
        gpu_model = VAE(train.shape[1], args.z_dim, (args.hidden,), likelihood="bernoulli",
                        activation="relu", seed=args.seed, device="gpu")
        runs.append(CupyRun(gpu_model, args.lr, use))
    if torch is not None:
        runs += [TorchCudaRun(torch, model, args.lr, fused) for fused in (False, True)]
    data = {"cupy": cupy.asarray(train)}
    if torch is not None:
        data["torch"] = torch.from_numpy(train).cuda()

    def epoch(run, e):
        order = epoch_order(n, args.seed, e)
        kind = "torch" if isinstance(run, TorchCudaRun) else "cupy"
        order = torch.from_numpy(order).cuda() if kind == "torch" else cupy.asarray(order)
        synchronize(cupy, torch)
        start = time.perf_counter()
        loss = run.epoch(data[kind], order, B)       # ends with the epoch's one read-back
        return time.perf_counter() - start, loss

    times = {r.name: [] for r in runs}
    losses = {r.name: [] for r in runs}
    for r in runs:                                    # warm-up: compiles kernels, sizes pools
        losses[r.name].append(epoch(r, 0)[1])
    kernels.LAUNCHES.clear()
    for rep in range(args.repeats):
        for k in range(len(runs)):
            r = runs[(rep + k) % len(runs)]           # rotate the order of the contenders
            seconds, loss = epoch(r, rep + 1)
            times[r.name].append(seconds)
            losses[r.name].append(loss)
    launches_per_step = sum(kernels.LAUNCHES.values()) / (args.repeats * (n // B))

    heldout = {}
    eps = np.random.default_rng(args.seed + 1).standard_normal((len(test), args.z_dim), dtype=np.float32)
    for r in runs:
        if isinstance(r, TorchCudaRun):
            heldout[r.name] = r.heldout_nelbo(torch.from_numpy(test).cuda(), torch.from_numpy(eps).cuda())
        else:
            heldout[r.name] = r.heldout_nelbo(cupy.asarray(test), cupy.asarray(eps))

    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {f"{a}/{b}": medians[a] / medians[b] for a in ("cupy_kernels", "cupy")
              for b in ("cupy", "torch", "torch_fused") if a != b and a in medians and b in medians}
    spread = max(heldout.values()) - min(heldout.values())
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    report = {
        "gpu": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
        "cupy": cupy.__version__, "torch": None if torch is None else torch.__version__,
        "no_torch": no_torch, "data": split, "n_train": n, "batch_size": B,
        "steps_per_epoch": n // B, "repeats": args.repeats, "model": f"784-{args.hidden}-{args.z_dim}",
        "epoch_seconds": times, "median_epoch_seconds": medians, "ratios": ratios,
        "train_loss_per_epoch": losses, "heldout_nelbo": heldout, "heldout_spread_nats": spread,
        "kernel_launches_per_step": launches_per_step,
    }
    print(format_table(report))
    if args.out:
        write_json(args.out, report)
        print(f"gpu_bench: wrote {args.out}")
    return report


def format_table(report):
    lines = [f"GPU: {report['gpu']}   CuPy {report['cupy']}   PyTorch {report['torch'] or '-'}",
             f"{'contender':<14}{'median epoch':>14}{'per step':>12}{'held-out -ELBO':>16}"]
    steps = report["steps_per_epoch"]
    for name, median in report["median_epoch_seconds"].items():
        lines.append(f"{LABELS[name]:<14}{median:>13.4f}s{1e3 * median / steps:>10.3f}ms"
                     f"{report['heldout_nelbo'][name]:>16.2f}")
    lines.append("ratios (epoch time): " + ", ".join(
        f"{k.replace('_', ' ')} {v:.2f}x" for k, v in report["ratios"].items()))
    lines.append(f"hand-written kernel launches per step (cupy kernels): "
                 f"{report['kernel_launches_per_step']:.1f}")
    verdict = "the same work" if report["heldout_spread_nats"] <= 2.0 else "NOT the same work: void"
    lines.append(f"held-out -ELBO spread {report['heldout_spread_nats']:.2f} nats: {verdict}")
    return "\n".join(lines)


def write_json(path, report):
    """All or nothing: a temporary file in the same folder, then renamed over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7, help="timed epochs of each contender (median)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--z-dim", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="folder with the MNIST files (as scratchvae bench)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="N random images instead of MNIST")
    p.add_argument("--no-torch", action="store_true", help="leave out PyTorch")
    p.add_argument("--out", default="gpu_bench.json", help="JSON report ('' for none)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1:
        p.error("--repeats and --batch-size must be positive")
    run(args)


if __name__ == "__main__":
    main()
