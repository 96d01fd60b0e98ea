"""How long one Adam update of the benchmark's model takes, walked in blocks of each size,
and whether a second thread helps.

    python benchmarks/optim_step.py [--threads 2] [--repeats 200] [--json PATH]

The model is the benchmark's 784-400-20 VAE (652,824 float32 parameters). Before each
timed update the script runs the matrix products of one training step at batch 128
(the GEMM floor of ``scratchvae bench``), as a training step does: they evict the
optimizer's arrays from the cache and leave OpenBLAS's worker threads spinning. The
variants are interleaved, one update each in turn, and the table gives medians:

    per tensor, 12 whole-tensor passes     the update before the flat buffer
    textbook                               Adam.textbook_step (temporaries, per tensor)
    blocks of N                            Adam.step with optim.BLOCK = N
    2 threads, blocks of N                 the blocks split between this thread and one more
    2 threads after BLAS sleeps            the same, with OpenBLAS limited to one thread
"""
import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratchvae import optim
from scratchvae.experiments import bench

BLOCKS = (4096, 8192, 16384, 32768, 65536, 131072, None)


def per_tensor_update(opt):
    """Adam over each whole tensor in twelve in-place passes (the form before the flat buffer)."""
    opt.t += 1
    c2 = (1 - opt.b2 ** opt.t) ** 0.5
    lr_t, eps_t = opt.lr * c2 / (1 - opt.b1 ** opt.t), opt.eps * c2
    for name, p, g in opt.named:
        m, v, buf = opt.state["m"][name], opt.state["v"][name], opt._scratch_full[name]
        m *= opt.b1
        np.multiply(g, 1 - opt.b1, out=buf)
        m += buf
        v *= opt.b2
        np.multiply(g, g, out=buf)
        buf *= 1 - opt.b2
        v += buf
        np.sqrt(v, out=buf)
        buf += eps_t
        np.divide(m, buf, out=buf)
        buf *= lr_t
        p -= buf


class Helper:
    """One extra thread that runs the second half of an optimizer's blocks on request."""

    def __init__(self):
        self.go, self.done = threading.Event(), threading.Event()
        self.work = None
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            self.go.wait()
            self.go.clear()
            self.work()
            self.done.set()

    def run_split(self, opt, blocks):
        half = len(blocks) // 2
        (p, g, m, v, _), = [(p, g, *s, b) for p, g, s, b in opt._segments]
        self.work = lambda: opt.update(p, g, m, v, blocks=blocks[half:])
        self.go.set()
        opt.update(p, g, m, v, blocks=blocks[:half])
        self.done.wait()
        self.done.clear()


def make_adam(model, block):
    old = optim.BLOCK
    optim.BLOCK = block if block is not None else 1 << 40
    try:
        opt = optim.Adam(model.named_parameters(), lr=1e-3)
    finally:
        optim.BLOCK = old
    return opt


def split_blocks(opt):
    """The blocks of the one flat run, each with its own scratch window (two threads
    must not share a scratch array)."""
    (_, _, _, blocks), = opt._segments
    out = []
    for i, (p, g, m, v, buf) in enumerate(blocks):
        out.append((p, g, m, v, np.empty_like(buf)))
    return out


def measure(threads, repeats, seed=0):
    model = bench.make_model(784, 400, 20, seed)
    floor = bench.GemmFloor(model, 128, seed)
    rng = np.random.default_rng(seed)
    for _, _, g in model.named_parameters():
        g[...] = rng.standard_normal(g.shape, dtype=np.float32) * 1e-2
    variants = {}
    ref = make_adam(model, None)
    ref._scratch_full = {name: np.empty_like(p) for name, p, _ in ref.named}
    variants["per tensor, 12 whole-tensor passes"] = lambda: per_tensor_update(ref)
    tb = make_adam(model, None)
    variants["textbook (per tensor, temporaries)"] = tb.textbook_step
    for block in BLOCKS:
        opt = make_adam(model, block)
        variants[f"blocks of {block or 'the whole buffer'}"] = opt.step
    helper = Helper()
    for block in (16384, 65536):
        opt = make_adam(model, block)
        blocks = split_blocks(opt)

        def two(opt=opt, blocks=blocks):
            t = opt.t + 1
            c2 = (1 - opt.b2 ** t) ** 0.5
            opt._lr_t, opt._eps_t, opt.t = opt.lr * c2 / (1 - opt.b1 ** t), opt.eps * c2, t
            helper.run_split(opt, blocks)
        variants[f"2 threads, blocks of {block}"] = two
    times = {k: [] for k in variants}
    with bench.limit_threads(threads):
        for _ in range(repeats):
            for name, fn in variants.items():
                for a, b, out in floor.products:
                    np.matmul(a, b, out=out)
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    # one thread of BLAS: its workers go to sleep, the second core is free for the helper
    with bench.limit_threads(1):
        name = "2 threads, blocks of 16384, BLAS on 1 thread"
        opt = make_adam(model, 16384)
        blocks = split_blocks(opt)
        times[name] = []
        for _ in range(repeats):
            for a, b, out in floor.products:
                np.matmul(a, b, out=out)
            start = time.perf_counter()
            t = opt.t + 1
            c2 = (1 - opt.b2 ** t) ** 0.5
            opt._lr_t, opt._eps_t, opt.t = opt.lr * c2 / (1 - opt.b1 ** t), opt.eps * c2, t
            helper.run_split(opt, blocks)
            times[name].append(time.perf_counter() - start)
    return {k: {"median_us": 1e6 * statistics.median(v), "min_us": 1e6 * min(v),
                "max_us": 1e6 * max(v)} for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="BLAS threads for the products")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    import os
    load_before = os.getloadavg()
    result = measure(args.threads, args.repeats)
    load_after = os.getloadavg()
    print(f"Adam update of 652,824 float32 parameters after one step's products at batch 128, "
          f"BLAS {args.threads} threads, median of {args.repeats} (load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after)")
    base = result["per tensor, 12 whole-tensor passes"]["median_us"]
    for name, r in result.items():
        print(f"  {name:<46} {r['median_us']:7.0f} us  ({r['min_us']:.0f}-{r['max_us']:.0f})  "
              f"{r['median_us'] / base:5.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_before": load_before, "load_after": load_after,
                                               "threads": args.threads, "result": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
