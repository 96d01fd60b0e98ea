"""How long the optimizer's update takes: walked in blocks of each size, on one or two
threads (the default), or pass by pass against the floor of its memory traffic (``--passes``).

    python benchmarks/optim_step.py [--threads 1] [--repeats 200] [--json PATH]
    python benchmarks/optim_step.py --passes [--repeats 200] [--json PATH]

Before each timed update the script runs the matrix products of one training step (the GEMM
floor of ``scratchvae bench``), as a training step does: they evict the optimizer's arrays
from the cache (and, with BLAS on two threads, leave OpenBLAS's worker spinning).

Block sizes (the default): one Adam update of the benchmark's 784-400-20 VAE (652,824 float32
parameters) after the products of a step at batch 128. The variants are interleaved, one
update each in turn, and the table gives medians:

    per tensor, 12 whole-tensor passes     the update before the flat buffer
    textbook                               Adam.textbook_step (temporaries, per tensor)
    blocks of N                            Adam.step with optim.BLOCK = N
    2 threads, blocks of N                 the blocks split between this thread and one more

Passes (``--passes``): Adam on the same model and Adagrad on the paper's Frey Face model
(560-200-20, 349,560 parameters, products of a step at batch 100), each NumPy operation of
the update timed on its own: over one block that stays in the cache (what the operation
costs), and in the walk over every block right after the products (what it costs in a
training step, where the first operation to touch an array pays for bringing it back). The
floor is the walk that only reads and writes what an update must: theta, g and every state
array read once, theta and the states written once (Adam 28 bytes per parameter, Adagrad 20),
with the fewest NumPy operations that do so (``m += g; v += g; theta += g``).
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratchvae import optim
from scratchvae.experiments.bench import contenders, machine
from scratchvae.vae import VAE

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

    def run_split(self, opt, halves):
        first, second = halves
        with opt.step_in_parts() as update:
            self.work = lambda: update(*second)
            self.go.set()
            update(*first)
            self.done.wait()
            self.done.clear()


def make_optimizer(cls, model, block, **kwargs):
    old = optim.BLOCK
    optim.BLOCK = block if block is not None else 1 << 40
    try:
        return cls(model.named_parameters(), **kwargs)
    finally:
        optim.BLOCK = old


def halves(opt):
    """The optimizer's parameter names in two parts of about equal size, for two ``update``
    calls of one ``step_in_parts`` (a full name is a prefix that matches that tensor alone)."""
    names, sizes = [n for n, _, _ in opt.named], [p.size for _, p, _ in opt.named]
    total, run, cut = sum(sizes), 0, len(names)
    for i, size in enumerate(sizes):
        run += size
        if run >= total / 2:
            cut = i + 1
            break
    return names[:cut], names[cut:]


def products(floor):
    for a, b, out in floor.products:
        np.matmul(a, b, out=out)


def fill_gradients(model, seed=0):
    rng = np.random.default_rng(seed)
    for _, _, g in model.named_parameters():
        g[...] = rng.standard_normal(g.shape, dtype=np.float32) * 1e-2


def measure_blocks(threads, repeats, seed=0):
    model = contenders.make_model(784, 400, 20, seed)
    floor = contenders.GemmFloor(model, 128, seed)
    fill_gradients(model, seed)
    variants = {}
    ref = make_optimizer(optim.Adam, model, None, lr=1e-3)
    ref._scratch_full = {name: np.empty_like(p) for name, p, _ in ref.named}
    variants["per tensor, 12 whole-tensor passes"] = lambda: per_tensor_update(ref)
    tb = make_optimizer(optim.Adam, model, None, lr=1e-3)
    variants["textbook (per tensor, temporaries)"] = tb.textbook_step
    for block in BLOCKS:
        opt = make_optimizer(optim.Adam, model, block, lr=1e-3)
        variants[f"blocks of {block or 'the whole buffer'}"] = opt.step
    helper = Helper()
    for block in (16384, 32768):
        opt = make_optimizer(optim.Adam, model, block, lr=1e-3)
        variants[f"2 threads, blocks of {block}"] = (
            lambda opt=opt, parts=halves(opt): helper.run_split(opt, parts))
    times = {k: [] for k in variants}
    with machine.limit_threads(threads):
        for _ in range(repeats):
            for name, fn in variants.items():
                products(floor)
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {k: {"median_us": 1e6 * statistics.median(v), "min_us": 1e6 * min(v),
                "max_us": 1e6 * max(v)} for k, v in times.items()}


# ---------------------------------------------------------------------------------------
# Pass by pass
# ---------------------------------------------------------------------------------------
def adam_passes(opt, dtype):
    """Adam.update's operations, one entry each: (what it computes, arrays it reads -> writes,
    the operation on one block (theta, g, m, v, buf)). Its constants are the update's own."""
    c1, c2, lr_t, eps_t = optim.constants(dtype, 1 - opt.b1, 1 - opt.b2, opt._lr_t, opt._eps_t)
    return [
        ("buf = g - m", "g m -> buf", lambda p, g, m, v, buf: np.subtract(g, m, out=buf)),
        ("buf *= 1 - b1", "buf -> buf", lambda p, g, m, v, buf: np.multiply(buf, c1, out=buf)),
        ("m += buf", "m buf -> m", lambda p, g, m, v, buf: np.add(m, buf, out=m)),
        ("buf = g * g", "g -> buf", lambda p, g, m, v, buf: np.multiply(g, g, out=buf)),
        ("buf -= v", "buf v -> buf", lambda p, g, m, v, buf: np.subtract(buf, v, out=buf)),
        ("buf *= 1 - b2", "buf -> buf", lambda p, g, m, v, buf: np.multiply(buf, c2, out=buf)),
        ("v += buf", "v buf -> v", lambda p, g, m, v, buf: np.add(v, buf, out=v)),
        ("buf = sqrt(v)", "v -> buf", lambda p, g, m, v, buf: np.sqrt(v, out=buf)),
        ("buf += eps_t", "buf -> buf", lambda p, g, m, v, buf: np.add(buf, eps_t, out=buf)),
        ("buf = m / buf", "m buf -> buf", lambda p, g, m, v, buf: np.divide(m, buf, out=buf)),
        ("buf *= lr_t", "buf -> buf", lambda p, g, m, v, buf: np.multiply(buf, lr_t, out=buf)),
        ("theta -= buf", "theta buf -> theta", lambda p, g, m, v, buf: np.subtract(p, buf, out=p)),
    ]


def adagrad_passes(opt, dtype):
    """Adagrad.update's operations (see :func:`adam_passes`), on one block (theta, g, h, buf)."""
    lr, eps = optim.constants(dtype, opt.lr, opt.eps)
    return [
        ("buf = g * g", "g -> buf", lambda p, g, h, buf: np.multiply(g, g, out=buf)),
        ("h += buf", "h buf -> h", lambda p, g, h, buf: np.add(h, buf, out=h)),
        ("buf = sqrt(h)", "h -> buf", lambda p, g, h, buf: np.sqrt(h, out=buf)),
        ("buf += eps", "buf -> buf", lambda p, g, h, buf: np.add(buf, eps, out=buf)),
        ("buf = g / buf", "g buf -> buf", lambda p, g, h, buf: np.divide(g, buf, out=buf)),
        ("buf *= lr", "buf -> buf", lambda p, g, h, buf: np.multiply(buf, lr, out=buf)),
        ("theta -= buf", "theta buf -> theta", lambda p, g, h, buf: np.subtract(p, buf, out=p)),
    ]


def floor_passes(n_states):
    """Every array read once and theta and the states written once: g plus each state into
    itself, then g into theta (the values are of no interest)."""
    def into(i):
        return lambda *block: np.add(block[i], block[1], out=block[i])
    names = ["m", "v"] if n_states == 2 else ["h"]
    return ([(f"{s} += g", f"{s} g -> {s}", into(2 + i)) for i, s in enumerate(names)]
            + [("theta += g", "theta g -> theta", into(0))])


def _blocks(opt):
    ((_, _, _, blocks),) = opt._part(())[1]   # every parameter: step()'s walk
    return blocks


def check_passes(make_model, make, passes_of, steps=3):
    """The pass list does what the optimizer's update does, bit for bit (so that the table
    times the update as it is): ``steps`` updates both ways, on two copies of the model with
    the same gradients."""
    models = [make_model() for _ in range(2)]
    for model in models:
        fill_gradients(model)
    a, b = (make(model) for model in models)
    for _ in range(steps):
        a.step()
        b._begin_step()
        passes = passes_of(b, b.named[0][1].dtype)
        for block in _blocks(b):
            for _, _, op in passes:
                op(*block)
        b._end_step()
    for (name, p, _), (_, q, _) in zip(a.named, b.named):
        if not np.array_equal(p, q):
            raise AssertionError(f"the pass list differs from the update in {name}")


def measure_passes(name, make_model, batch_size, make, passes_of, repeats, seed=0):
    """Per pass: microseconds per update in the walk after a step's products and nanoseconds
    per element over one block in cache; the same for the floor's walk (on arrays of its own,
    whose values it spoils)."""
    models = [make_model() for _ in range(2)]
    floor = contenders.GemmFloor(models[0], batch_size, seed)
    for model in models:
        fill_gradients(model, seed)
    check_passes(make_model, make, passes_of)
    opt, other = make(models[0]), make(models[1])
    opt._begin_step()
    passes = passes_of(opt, np.float32)
    touch = floor_passes(len(opt.state_names))
    blocks = _blocks(opt)
    walked = {"update": blocks, "floor": _blocks(other)}
    n = sum(b[0].size for b in blocks)
    walk = {k: [[] for _ in ps] for k, ps in (("update", passes), ("floor", touch))}
    whole = {"update": [], "floor": []}
    clock = time.perf_counter
    for _ in range(repeats):
        for kind, ps in (("update", passes), ("floor", touch)):
            products(floor)
            spent = [0.0] * len(ps)
            began = clock()
            for block in walked[kind]:
                for i, (_, _, op) in enumerate(ps):
                    t0 = clock()
                    op(*block)
                    spent[i] += clock() - t0
            whole[kind].append(clock() - began)
            for i, s in enumerate(spent):
                walk[kind][i].append(s)
    one = blocks[0]
    cached = {k: [[] for _ in ps] for k, ps in (("update", passes), ("floor", touch))}
    for _ in range(repeats):
        for kind, ps in (("update", passes), ("floor", touch)):
            for i, (_, _, op) in enumerate(ps):
                t0 = clock()
                op(*walked[kind][0])
                cached[kind][i].append(clock() - t0)

    def rows(kind, ps):
        return [{"pass": label, "arrays": arrays,
                 "walk_us": 1e6 * statistics.median(walk[kind][i]),
                 "cached_ns_per_element": 1e9 * statistics.median(cached[kind][i]) / one[0].size}
                for i, (label, arrays, _) in enumerate(ps)]
    bytes_per = 4 * (3 + 2 * len(opt.state_names))   # read theta, g, states; write theta, states
    floor_s = statistics.median(whole["floor"])
    return {"optimizer": name, "parameters": n, "block": one[0].size, "blocks": len(blocks),
            "passes": rows("update", passes), "floor_passes": rows("floor", touch),
            "update_us": 1e6 * statistics.median(whole["update"]), "floor_us": 1e6 * floor_s,
            "bytes_per_parameter": bytes_per, "floor_gb_per_s": bytes_per * n / floor_s / 1e9}


def frey_model(seed=0):
    return VAE(560, 20, (200,), likelihood="gaussian", activation="tanh", init="paper",
               weight_decay=1 / 1500, seed=seed)


def report_passes(r):
    lines = [f"{r['optimizer']}: {r['parameters']:,} parameters in {r['blocks']} blocks of "
             f"{r['block']:,}; the whole update {r['update_us']:.0f} us after a step's products",
             f"  {'pass':<16} {'reads -> writes':<20} {'in the walk, us':>16} "
             f"{'one block in cache, ns/element':>32}"]
    for p in r["passes"]:
        lines.append(f"  {p['pass']:<16} {p['arrays']:<20} {p['walk_us']:>16.0f} "
                     f"{p['cached_ns_per_element']:>32.3f}")
    total_cached = sum(p["cached_ns_per_element"] for p in r["passes"])
    lines.append(f"  {'sum':<37} {sum(p['walk_us'] for p in r['passes']):>16.0f} {total_cached:>32.3f}")
    lines.append(f"  floor: {r['bytes_per_parameter']} bytes per parameter read or written, "
                 f"{r['bytes_per_parameter'] * r['parameters'] / 1e6:.1f} MB per update; touched "
                 f"once each ({', '.join(p['pass'] for p in r['floor_passes'])}) after the products: "
                 f"{r['floor_us']:.0f} us ({r['floor_gb_per_s']:.1f} GB/s); the update is "
                 f"{r['update_us'] / r['floor_us']:.2f}x its floor")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS threads for the products (default: 1)")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--passes", action="store_true",
                   help="time each pass of Adam and Adagrad and the floor, instead of block sizes")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    if args.passes:
        with machine.limit_threads(args.threads):
            result = [measure_passes("Adam, 784-400-20 VAE", lambda: contenders.make_model(784, 400, 20, 0),
                                     128, lambda m: optim.Adam(m.named_parameters(), lr=1e-3),
                                     adam_passes, args.repeats),
                      measure_passes("Adagrad, 560-200-20 Frey Face VAE", frey_model, 100,
                                     lambda m: optim.Adagrad(m.named_parameters(), lr=0.02),
                                     adagrad_passes, args.repeats)]
        load_after = os.getloadavg()
        print(f"BLAS {args.threads} thread(s), medians of {args.repeats} (load average "
              f"{load_before[0]:.2f} before, {load_after[0]:.2f} after)")
        for r in result:
            print(report_passes(r))
    else:
        result = measure_blocks(args.threads, args.repeats)
        load_after = os.getloadavg()
        print(f"Adam update of 652,824 float32 parameters after one step's products at batch 128, "
              f"BLAS {args.threads} thread(s), median of {args.repeats} (load average "
              f"{load_before[0]:.2f} before, {load_after[0]:.2f} after)")
        base = result["per tensor, 12 whole-tensor passes"]["median_us"]
        for name, r in result.items():
            print(f"  {name:<46} {r['median_us']:7.0f} us  ({r['min_us']:.0f}-{r['max_us']:.0f})  "
                  f"{r['median_us'] / base:5.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_before": load_before, "load_after": load_after,
                                               "threads": args.threads, "cpu": machine.cpu_model(),
                                               "blas": machine.blas_info(), "result": result},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
