"""``scratchvae bench``: how fast scratchvae trains, beside PyTorch doing the same work.

The work is the paper's MNIST model: a 784-400-20 VAE with ReLU hidden layers and a
Bernoulli decoder on grey pixel values, trained with Adam (lr 1e-3) in float32 on the
9000 / 1000 split of the MNIST test file (or the standard split when the training files
are present). Each contender trains its own copy of the same initial weights on the
same minibatches, and their epochs are interleaved so that a busy machine slows all of
them alike:

    scratchvae    train_step (VAE.loss_and_grads + Adam.step), on NumPy
    torch         the same model in PyTorch, default Adam        (if PyTorch is installed)
    torch fused   the same, Adam(fused=True)                     (if PyTorch is installed)
    GEMM floor    only the epoch's matrix products, with NumPy's BLAS at the same shapes

An epoch is ``N // batch_size`` full minibatches of a fresh permutation. The report
gives the median epoch time of each, the ratios, and each model's held-out negative
ELBO after 3 epochs: the models do the same work only if these agree (within about
2 nats), otherwise the comparison is void. ``--memory`` adds the resident memory of a
20-epoch run (peak, and growth across epochs) and ``--scale`` how epoch time grows with
the hidden width and the batch size, against the GEMM floor at each point.

Threads: NumPy's BLAS is limited to ``--threads`` through threadpoolctl (a dependency of
scikit-learn), and PyTorch through ``torch.set_num_threads``. Without threadpoolctl,
start Python with ``OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2``.
Timings on a shared machine are noisy: compare the ratios of one run, and run it when
the machine is otherwise idle (the report shows the load average).

PyTorch is an optional peer, never a dependency: without it the benchmark compares
scratchvae with the GEMM floor only, and says so.
"""
import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..data.datasets import load_dataset
from ..data.download import MissingDataError
from ..optim import Adam
from ..training.step import train_step
from ..vae import VAE

BATCH_SIZES = (128, 32, 512)
WIDTHS = (200, 400, 800, 1600)
SCALE_BATCHES = (32, 64, 128, 256, 512, 1024)
ELBO_EPOCHS = 3          # held-out -ELBO compared after this many epochs
ELBO_TOLERANCE = 2.0     # nats: beyond this the two models did not do the same work
SHARED_DATA = Path("..") / "shared" / "data"   # an optional local copy beside the project
CONTENDERS = ("scratchvae", "torch", "torch_fused", "gemm_floor")
LABELS = {"scratchvae": "scratchvae", "torch": "torch", "torch_fused": "torch fused",
          "gemm_floor": "GEMM floor"}
# (batch size, what, numerator, denominator, at most)
GOALS = ((128, "scratchvae / torch fused", "scratchvae", "torch_fused", 0.85),
         (128, "scratchvae / GEMM floor", "scratchvae", "gemm_floor", 1.3),
         (32, "scratchvae / torch fused", "scratchvae", "torch_fused", 1.0))


# ---------------------------------------------------------------------------------------
# Setup: data, threads, PyTorch
# ---------------------------------------------------------------------------------------
def load_images(dataset, data_dir):
    """``(train, test, split)``: float32 grey images in [0, 1] (no binarization).

    Without ``data_dir``, files already in the default folder come first, then a local
    copy in ../shared/data, then a download into the default folder."""
    try:
        data = load_dataset(dataset, data_dir=data_dir, download=False)
    except MissingDataError:
        if data_dir is None and (SHARED_DATA / dataset).is_dir():
            data = load_dataset(dataset, data_dir=SHARED_DATA, download=False)
        else:
            data = load_dataset(dataset, data_dir=data_dir)
    return data.train, data.test, data.split


@contextlib.contextmanager
def limit_threads(n, torch=None):
    """Run the block with ``n`` BLAS threads for NumPy (and ``n`` threads for PyTorch)."""
    old_torch = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl is not installed: NumPy's BLAS keeps its default threads; set "
              f"OPENBLAS_NUM_THREADS={n} (or OMP_NUM_THREADS / MKL_NUM_THREADS) before starting "
              "Python", file=sys.stderr)
        limiter = contextlib.nullcontext()
    else:
        limiter = threadpool_limits(limits=n, user_api="blas")
    try:
        with limiter:
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(old_torch)


def blas_threads():
    """What NumPy's BLAS libraries report: ``[{'library': ..., 'threads': ...}]``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"library": i.get("internal_api"), "version": i.get("version"),
             "threads": i.get("num_threads")} for i in threadpool_info() if i.get("user_api") == "blas"]


def import_torch(wanted=True):
    """``(torch, None)``, or ``(None, why not)``: PyTorch is optional."""
    if not wanted:
        return None, "--no-torch was given"
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed (pip install torch)"
    return torch, None


# ---------------------------------------------------------------------------------------
# The contenders: each trains (or multiplies) through one epoch of the same minibatches
# ---------------------------------------------------------------------------------------
def make_model(x_dim, hidden, z_dim, seed):
    return VAE(x_dim, z_dim, (hidden,), likelihood="bernoulli", activation="relu", seed=seed)


def linear_layers(model):
    """The Linear layers of a VAE in forward order, encoder first."""
    return [layer for net in (model.encoder, model.decoder.net) for layer in net.layers if layer.params]


class ScratchRun:
    """scratchvae on NumPy: what a training loop does each step."""
    name = "scratchvae"

    def __init__(self, model, lr):
        self.model = model
        self.optimizer = Adam(model.named_parameters(), lr=lr)

    def epoch(self, x, order, batch_size):
        for start in range(0, len(order) - batch_size + 1, batch_size):
            train_step(self.model, self.optimizer, x[order[start:start + batch_size]])

    def heldout_nelbo(self, x, eps):
        return -float(self.model.elbo(x, eps=eps).elbo.mean())


class TorchRun:
    """The same model in PyTorch, starting from a copy of the scratchvae weights.

    ``loss = -1/B sum_b [sum_d (x_d l_d - softplus(l_d)) - KL_b]``, the Bernoulli term
    through ``binary_cross_entropy_with_logits``, the KL in closed form, autograd for the
    gradients."""

    def __init__(self, torch, model, lr, fused):
        self.torch = torch
        self.name = "torch_fused" if fused else "torch"
        self.z_dim = model.z_dim
        nn = torch.nn
        layers = linear_layers(model)
        linears = [nn.Linear(l.in_dim, l.out_dim) for l in layers]
        with torch.no_grad():
            for lin, layer in zip(linears, layers):  # torch keeps W as (out, in): x W^T + b
                lin.weight.copy_(torch.from_numpy(layer.params["W"].T.copy()))
                lin.bias.copy_(torch.from_numpy(layer.params["b"].copy()))
        n_enc = len(model.hidden_dims) + 1

        def mlp(lins):
            mods = []
            for i, lin in enumerate(lins):
                mods += [lin] + ([nn.ReLU()] if i < len(lins) - 1 else [])
            return nn.Sequential(*mods)

        self.encoder, self.decoder = mlp(linears[:n_enc]), mlp(linears[n_enc:])
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=lr, fused=fused)

    def elbo(self, x, eps):
        F = self.torch.nn.functional
        h = self.encoder(x)
        mu, logvar = h[:, : self.z_dim], h[:, self.z_dim:]
        z = mu + self.torch.exp(0.5 * logvar) * eps
        logits = self.decoder(z)
        rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
        kl = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return rec - kl

    def epoch(self, x, order, batch_size):
        torch = self.torch
        x, order = torch.from_numpy(x), torch.from_numpy(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            xb = x[order[start:start + batch_size]]
            eps = torch.randn(batch_size, self.z_dim)
            loss = -self.elbo(xb, eps).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss.item()  # the training loop reads the loss each step, as scratchvae's does

    def heldout_nelbo(self, x, eps):
        with self.torch.inference_mode():
            return -float(self.elbo(self.torch.from_numpy(x), self.torch.from_numpy(eps)).mean())


class GemmFloor:
    """Only the matrix products of an epoch, at the model's shapes, with NumPy's BLAS.

    Per step and Linear layer (row convention, y = x W + b): the forward ``x W``, the
    weight gradient ``x^T dy`` and, except for the first layer, whose input is the data,
    the input gradient ``dy W^T``. Outputs are preallocated, so only the products count."""
    name = "gemm_floor"

    def __init__(self, model, batch_size, seed=0):
        rng = np.random.default_rng(seed)
        self.products = []
        for i, layer in enumerate(linear_layers(model)):
            n_in, n_out = layer.in_dim, layer.out_dim
            x = rng.standard_normal((batch_size, n_in), dtype=np.float32)
            W = rng.standard_normal((n_in, n_out), dtype=np.float32)
            dy = rng.standard_normal((batch_size, n_out), dtype=np.float32)
            self.products.append((x, W, np.empty((batch_size, n_out), np.float32)))
            self.products.append((x.T, dy, np.empty((n_in, n_out), np.float32)))
            if i > 0:
                self.products.append((dy, W.T, np.empty((batch_size, n_in), np.float32)))

    def epoch(self, x, order, batch_size):
        for _ in range(len(order) // batch_size):
            for a, b, out in self.products:
                np.matmul(a, b, out=out)



def time_epoch(run, x, order, batch_size):
    gc.collect()
    start = time.perf_counter()
    run.epoch(x, order, batch_size)
    return time.perf_counter() - start


def epoch_order(n, seed, epoch):
    """The minibatch order of one epoch, shared by every contender."""
    return np.random.default_rng([seed, epoch]).permutation(n)


# ---------------------------------------------------------------------------------------
# One comparison at one batch size
# ---------------------------------------------------------------------------------------
def compare(train, test, batch_size, hidden, z_dim, lr, repeats, seed, torch, log=print,
            contenders=CONTENDERS):
    """Interleaved epochs of every contender; returns times, medians, ratios, held-out -ELBO."""
    model = make_model(train.shape[1], hidden, z_dim, seed)
    runs = []
    for name in contenders:  # the torch copies start from the untrained scratchvae weights
        if name == "scratchvae":
            runs.append(ScratchRun(model, lr))
        elif name == "gemm_floor":
            runs.append(GemmFloor(model, batch_size, seed))
        elif torch is not None:
            runs.append(TorchRun(torch, model, lr, fused=name == "torch_fused"))
    eps = np.random.default_rng([seed, 1]).standard_normal((test.shape[0], z_dim), dtype=np.float32)
    times = {run.name: [] for run in runs}
    nelbo = {}
    elbo_epoch = min(ELBO_EPOCHS, repeats)
    for epoch in range(repeats):
        order = epoch_order(train.shape[0], seed, epoch)
        for run in runs:
            times[run.name].append(time_epoch(run, train, order, batch_size))
            if epoch + 1 == elbo_epoch and not isinstance(run, GemmFloor):
                nelbo[run.name] = run.heldout_nelbo(test, eps)
        log(f"  batch {batch_size:4d} epoch {epoch + 1}/{repeats}: " + "  ".join(
            f"{LABELS[k]} {v[-1]:.3f} s" for k, v in times.items()))
    median = {k: statistics.median(v) for k, v in times.items()}
    ratios = {f"{a}/{b}": median[a] / median[b] for a in median for b in median
              if a == "scratchvae" and b != a}
    spread = max(nelbo.values()) - min(nelbo.values()) if len(nelbo) > 1 else 0.0
    return {"batch_size": batch_size, "steps_per_epoch": train.shape[0] // batch_size,
            "epochs": repeats, "times_s": times, "median_s": median, "ratios": ratios,
            "heldout_nelbo": nelbo, "heldout_after_epochs": elbo_epoch,
            "nelbo_spread": spread, "valid": spread <= ELBO_TOLERANCE}


def check_goals(results):
    goals = []
    for batch_size, what, a, b, limit in GOALS:
        r = results.get(str(batch_size))
        value = r["median_s"][a] / r["median_s"][b] if r and b in r["median_s"] else None
        goals.append({"batch_size": batch_size, "what": what, "at_most": limit, "value": value,
                      "met": None if value is None else bool(value <= limit and r["valid"])})
    return goals


# ---------------------------------------------------------------------------------------
# Memory: a separate process trains for 20 epochs and reports its resident memory
# ---------------------------------------------------------------------------------------
def rss_bytes():
    """Resident memory of this process now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return peak_rss_bytes()


def peak_rss_bytes():
    """Peak resident memory of this process: VmHWM on Linux (getrusage's ru_maxrss would
    include the parent's memory at the fork that started this process)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def memory_child(args):
    """Runs in the child process: train, measure, print one JSON line."""
    import tracemalloc

    train, _, _ = load_images(args.dataset, args.data_dir)
    with limit_threads(args.threads):
        run = ScratchRun(make_model(train.shape[1], args.hidden, args.z_dim, args.seed), args.lr)
        batch_size = args.batch_sizes[0]
        after_setup = rss_bytes()
        rss = []
        for epoch in range(args.memory_epochs):
            run.epoch(train, epoch_order(train.shape[0], args.seed, epoch), batch_size)
            rss.append(rss_bytes())
        # What one step and one Adam update allocate, as NumPy reports it to tracemalloc.
        x = train[:batch_size]
        tracemalloc.start()
        run.model.loss_and_grads(x)
        step_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        run.optimizer.step()
        adam_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    n_params = sum(p.size for p in run.model.parameters().values())
    print(json.dumps({"batch_size": batch_size, "epochs": args.memory_epochs,
                      "rss_after_setup": after_setup, "rss_per_epoch": rss,
                      "peak_rss": peak_rss_bytes(), "parameters": int(n_params),
                      "step_peak_traced": step_peak, "adam_step_traced": adam_peak}))
    return 0


def measure_memory(args, log=print):
    """Start the memory child (a fresh process: PyTorch must not share its memory)."""
    argv = [sys.executable, "-m", "scratchvae.experiments.bench", "--memory-child",
            "--dataset", args.dataset, "--hidden", str(args.hidden), "--z-dim", str(args.z_dim),
            "--batch-sizes", str(args.batch_sizes[0]), "--threads", str(args.threads),
            "--memory-epochs", str(args.memory_epochs), "--seed", str(args.seed)]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    log(f"  memory: training {args.memory_epochs} epochs in a separate process")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the memory run failed:\n{done.stderr.strip()}")
    m = json.loads(done.stdout.strip().splitlines()[-1])
    rss = m["rss_per_epoch"]
    m["growth_after_first_epoch"] = rss[-1] - rss[0]
    return m


# ---------------------------------------------------------------------------------------
# Scale: epoch time against the GEMM floor as the width and the batch size grow
# ---------------------------------------------------------------------------------------
def measure_scale(train, test, args, torch, log=print):
    contenders = ("scratchvae", "torch_fused", "gemm_floor")
    points = [(w, 128) for w in WIDTHS] + [(400, b) for b in SCALE_BATCHES if b != 128]
    rows = []
    for hidden, batch_size in points:
        r = compare(train, test, batch_size, hidden, args.z_dim, args.lr, args.scale_repeats,
                    args.seed, torch, log=lambda *_: None, contenders=contenders)
        row = {"hidden": hidden, "batch_size": batch_size, "median_s": r["median_s"],
               "ratios": r["ratios"]}
        rows.append(row)
        log(f"  scale: hidden {hidden:4d} batch {batch_size:4d}: " + "  ".join(
            f"{LABELS[k]} {v:.3f} s" for k, v in r["median_s"].items()))
    return rows


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
def _s(value):
    return "-" if value is None else f"{value:.3f}"


def _x(value):
    return "-" if value is None else f"{value:.2f}x"


def format_table(report):
    cfg = report["config"]
    title = (f"scratchvae bench: {cfg['model']}, Adam lr {cfg['lr']:g}, float32, "
             f"{cfg['threads']} threads, {cfg['data']}; median of {cfg['repeats']} interleaved "
             f"epochs (load average {report['machine']['load_before'][0]:.2f} before, "
             f"{report['machine']['load_after'][0]:.2f} after)")
    lines = [title]
    if report["torch"]["version"] is None:
        lines.append(f"PyTorch: not compared ({report['torch']['why_not']}); "
                     "scratchvae against the GEMM floor only")
    head = (f"{'batch':>5} {'steps':>5} | {'scratchvae':>10} {'torch':>7} {'fused':>7} {'GEMM':>7} | "
            f"{'/torch':>6} {'/fused':>6} {'/GEMM':>6} | -ELBO after {ELBO_EPOCHS} epochs: sv, torch, fused")
    lines += [head, "-" * len(head)]
    for r in report["batch"].values():
        m, q, e = r["median_s"], r["ratios"], r["heldout_nelbo"]
        nelbo = ", ".join(f"{e[k]:.2f}" if k in e else "-" for k in ("scratchvae", "torch", "torch_fused"))
        verdict = "" if len(e) < 2 else ("  ok" if r["valid"] else
                                          f"  VOID: differ by {r['nelbo_spread']:.1f} nats")
        lines.append(f"{r['batch_size']:>5} {r['steps_per_epoch']:>5} | {_s(m.get('scratchvae')):>10} "
                     f"{_s(m.get('torch')):>7} {_s(m.get('torch_fused')):>7} {_s(m.get('gemm_floor')):>7} | "
                     f"{_x(q.get('scratchvae/torch')):>6} {_x(q.get('scratchvae/torch_fused')):>6} "
                     f"{_x(q.get('scratchvae/gemm_floor')):>6} | {nelbo}{verdict}")
    lines.append("(times in seconds per epoch; /torch, /fused, /GEMM: scratchvae's time over theirs)")
    for g in report["goals"]:
        state = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        lines.append(f"goal at batch {g['batch_size']}: {g['what']} <= {g['at_most']}: "
                     f"{_x(g['value'])} {state}")
    mem = report.get("memory")
    if mem:
        mib = 2.0 ** 20
        lines.append(f"memory, {mem['epochs']} epochs at batch {mem['batch_size']}: peak RSS "
                     f"{mem['peak_rss'] / mib:.1f} MiB; RSS after epoch 1 "
                     f"{mem['rss_per_epoch'][0] / mib:.1f} MiB, after epoch {mem['epochs']} "
                     f"{mem['rss_per_epoch'][-1] / mib:.1f} MiB (growth "
                     f"{mem['growth_after_first_epoch'] / mib:+.2f} MiB); one step allocates at most "
                     f"{mem['step_peak_traced'] / mib:.2f} MiB at once, one Adam update "
                     f"{mem['adam_step_traced']} bytes ({mem['parameters']} parameters)")
    if report.get("scale"):
        lines.append(f"scale ({cfg['scale_repeats']} interleaved epochs each):")
        lines.append(f"{'hidden':>6} {'batch':>5} | {'scratchvae':>10} {'fused':>7} {'GEMM':>7} | "
                     f"{'/fused':>6} {'/GEMM':>6}")
        for row in report["scale"]:
            m, q = row["median_s"], row["ratios"]
            lines.append(f"{row['hidden']:>6} {row['batch_size']:>5} | {_s(m.get('scratchvae')):>10} "
                         f"{_s(m.get('torch_fused')):>7} {_s(m.get('gemm_floor')):>7} | "
                         f"{_x(q.get('scratchvae/torch_fused')):>6} {_x(q.get('scratchvae/gemm_floor')):>6}")
    return "\n".join(lines)


def write_json(report, path):
    """Write to a temporary file beside ``path``, then rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)


def machine_info():
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "blas": blas_threads()}


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_arguments(p):
    p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist",
                   help="mnist (default; 9000 / 1000 of the test file when the training files "
                   "are absent) or digits (embedded 8x8, for a quick run)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ (default: "
                   "$SCRATCHVAE_DATA_DIR or ./data, then ../shared/data if present)")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", default=list(BATCH_SIZES),
                   metavar="B", help="batch sizes to compare (default: 128 32 512)")
    p.add_argument("--repeats", type=_positive_int, default=7,
                   help="interleaved epochs per contender (default: 7)")
    p.add_argument("--hidden", type=_positive_int, default=400, help="hidden width (default: 400)")
    p.add_argument("--z-dim", type=_positive_int, default=20, help="latent size (default: 20)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default: 1e-3)")
    p.add_argument("--threads", type=_positive_int, default=2,
                   help="BLAS / PyTorch threads (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order (default: 0)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--memory", action="store_true",
                   help="also report the resident memory of a --memory-epochs run")
    p.add_argument("--memory-epochs", type=_positive_int, default=20, help="(default: 20)")
    p.add_argument("--scale", action="store_true",
                   help="also time hidden widths 200..1600 and batch sizes 32..1024 against the "
                   "GEMM floor")
    p.add_argument("--scale-repeats", type=_positive_int, default=3, help="(default: 3)")
    p.add_argument("--all", action="store_true", help="--memory and --scale")
    p.add_argument("--json", default="bench.json", metavar="PATH",
                   help="where to write the results (default: bench.json)")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    return p


def run(args):
    if args.memory_child:
        return memory_child(args)
    torch, why_not = import_torch(not args.no_torch)
    if torch is None:
        print(f"PyTorch: {why_not}; comparing scratchvae with the GEMM floor only")
    train, test, split = load_images(args.dataset, args.data_dir)
    load_before = os.getloadavg()
    if load_before[0] > 2:
        print(f"warning: load average {load_before[0]:.1f}: the machine is busy, timings are noisy")
    sizes = [train.shape[1], args.hidden, args.z_dim]
    report = {"config": {"model": "-".join(map(str, sizes)) + " ReLU Bernoulli VAE",
                         "data": f"{split} ({train.shape[0]} / {test.shape[0]} images, grey)",
                         "lr": args.lr, "threads": args.threads, "repeats": args.repeats,
                         "scale_repeats": args.scale_repeats, "seed": args.seed,
                         "batch_sizes": args.batch_sizes},
              "torch": {"version": getattr(torch, "__version__", None), "why_not": why_not},
              "batch": {}}
    with limit_threads(args.threads, torch):
        report["machine"] = machine_info()
        for batch_size in args.batch_sizes:
            report["batch"][str(batch_size)] = compare(
                train, test, batch_size, args.hidden, args.z_dim, args.lr, args.repeats,
                args.seed, torch)
        if args.scale or args.all:
            report["scale"] = measure_scale(train, test, args, torch)
    if args.memory or args.all:
        report["memory"] = measure_memory(args)
    report["machine"]["load_before"] = load_before
    report["machine"]["load_after"] = os.getloadavg()
    report["goals"] = check_goals(report["batch"])
    print(format_table(report))
    write_json(report, args.json)
    print(f"wrote {args.json}")
    return 0


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(
        prog="scratchvae bench", description=__doc__.split("\n\n")[0].strip("`"),
        formatter_class=argparse.RawDescriptionHelpFormatter))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
