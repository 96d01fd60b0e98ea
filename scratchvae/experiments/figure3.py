"""The paper's Figure 3: the marginal likelihood of AEVB, wake-sleep and Monte Carlo EM on MNIST.

    python -m scratchvae.experiments.figure3 train aevb-small mcem-small ...   train (resumes if begun)
    python -m scratchvae.experiments.figure3 report                           figure, table, data

(also ``scratchvae reproduce figure3 ...``). A run is named ``<method>-<size>``: method ``aevb``,
``wake-sleep`` or ``mcem``; size ``small`` (the first 1000 training images) or ``large`` (every
training image available: 50000 with the full MNIST training set, the 9000 of the test-file
split otherwise; the run records which).

Settings (Kingma & Welling 2013, section 5 and appendices D, E, as read there): Nz = 3, one
hidden layer of 100 tanh units in decoder (and encoder), Bernoulli p(x|z), minibatches of 100,
Adagrad for every method, weights from N(0, 0.01^2) with a N(0, I) prior spread over the
training set as weight decay 1/N. MCEM: no encoder, one HMC transition of 10 leapfrog steps
per visit with the step tuned to 90 % acceptance, then 5 weight updates. The marginal
likelihood is estimated with appendix D on the first ``--n-eval`` (1000) training and held-out
images: HMC with 4 leapfrog steps, 50 samples to fit q and 50 more to estimate.

Where the paper is silent this module chooses, and the results page says so: the Adagrad
step size 0.01 for every method (the project's MNIST choice); MNIST binarized once with a
fixed seed (MCEM keeps one z per image, so the images must not change between visits; every
method sees the same binary images); "training samples evaluated" counts the images of the
minibatches a method has trained on (an MCEM minibatch counts once, although it costs one
HMC transition and five weight updates); the estimator's chains start at the best of 64
prior draws and burn in for 100 transitions (no encoder is used, so every method is measured
the same way).
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ("aevb", "wake-sleep", "mcem")
SIZES = ("small", "large")
SMALL_N = 1000
Z_DIM, HIDDEN, BATCH_SIZE, LR = 3, 100, 100, 0.01
RUNS_DIR, RESULTS_DIR = "runs/figure3", "docs/results"
ESTIMATOR = dict(n_samples=50, n_burnin=100, n_leapfrog=4, target_accept=0.9, n_init=64)
FINAL_K, FINAL_IMAGES = 5000, 500      # L_5000 on the first 500 evaluation images of each part


def parse_run(name):
    """``'aevb-small'`` -> ``('aevb', 'small')``; a ValueError names what is accepted."""
    for method in METHODS:
        for size in SIZES:
            if name == f"{method}-{size}":
                return method, size
    raise ValueError(f"run must be <method>-<size> with method in {METHODS} and size in {SIZES}, "
                     f"e.g. aevb-small; got {name!r}")


def eval_points(stop, start=10**4, per_decade=4):
    """Log-spaced sample counts from ``start`` to ``stop`` (both included), multiples of 100."""
    from .runs import eval_points as points
    return points(stop, start, per_decade)


# ---------------------------------------------------------------------------------------
# data and methods
# ---------------------------------------------------------------------------------------
def load_images(size, data_dir=None, seed=0, n_eval=1000):
    """Binary training images (the first 1000, or all), and the first ``n_eval`` binary training
    and held-out images that the estimator is run on. Each set is binarized once."""
    from ..data.datasets import binarize, load_dataset

    d = load_dataset("mnist", data_dir=data_dir, download=False)
    ss = np.random.SeedSequence(seed).spawn(2)
    train = d.train if size == "large" else d.train[:SMALL_N]
    train = binarize(train, np.random.default_rng(ss[0]))
    test = binarize(d.test[:n_eval], np.random.default_rng(ss[1]))
    return {"train": train, "eval_train": train[:n_eval], "eval_test": test, "split": d.split}


class Method:
    """One learning algorithm behind one interface: ``step(x, idx)``, its ``model`` (with a
    ``decoder``), ``optimizer``, and extra state to checkpoint."""

    def __init__(self, name, n_train, seed=0):
        from ..optim import Adagrad
        self.name = name
        common = dict(weight_decay=1.0 / n_train, seed=seed)
        if name == "mcem":
            from ..models.mcem import MCEM
            self.model = MCEM(784, n_train, Z_DIM, (HIDDEN,), **common)
        else:
            # wake-sleep uses the VAE's encoder, decoder, initialization and weight prior;
            # only its gradients (its backward) differ
            from ..models.wake_sleep import WakeSleep
            from ..vae import VAE
            cls = WakeSleep if name == "wake-sleep" else VAE
            self.model = cls(784, Z_DIM, (HIDDEN,), activation="tanh", init="paper", **common)
        self.optimizer = Adagrad(self.model.named_parameters(), lr=LR)

    def step(self, x, idx):
        """One minibatch; returns the method's own training objective (for a divergence check)."""
        from ..training.step import train_step

        if self.name == "mcem":
            return self.model.train_step(x, idx, self.optimizer)
        try:        # the Trainer's step: wake-sleep updates its decoder between its two phases
            return -train_step(self.model, self.optimizer, x)
        except FloatingPointError:
            return float("nan")

    def optimizers(self):
        return {"opt": self.optimizer}

    def arrays(self):
        """Everything besides the parameters and optimizer state that a bitwise resume needs."""
        return {"mcem_z": self.model.z} if self.name == "mcem" else {}


def _save(path, method, meta):
    from ..training.checkpoint import atomic_write, rng_state

    arrays = {f"param/{k}": p for k, p in method.model.parameters().items()}
    for oname, opt in method.optimizers().items():
        state = opt.state_dict()
        meta.setdefault("optimizer_t", {})[oname] = state.pop("t")
        arrays.update({f"optim/{oname}/{k}": a for k, a in state.items()})
    arrays.update(method.arrays())
    meta["rng"] = rng_state(method.model.rng)
    if method.name == "mcem":
        meta["step_size"] = method.model.step_size
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _load(path, method):
    from ..training.checkpoint import set_rng_state

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    for k, p in method.model.parameters().items():
        p[...] = arrays[f"param/{k}"]
    for oname, opt in method.optimizers().items():
        prefix = f"optim/{oname}/"
        state = {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}
        state["t"] = meta["optimizer_t"][oname]
        opt.load_state_dict(state)
    if method.name == "mcem":
        method.model.z[...] = arrays["mcem_z"]
        method.model.step_size = meta["step_size"]
    set_rng_state(method.model.rng, meta["rng"])
    return meta


def own_guess(method, x, part):
    """The method's own guess of z for the evaluation images ``x``: the encoder's mean
    (AEVB, wake-sleep), MCEM's kept z of the training images, or None (MCEM, held-out)."""
    if method.name != "mcem":
        return method.model.encode(x)[0]
    return method.model.z[:x.shape[0]] if part == "train" else None


def evaluate(method, data, seed=0, guided=False):
    """The appendix-D estimate of log p(x) on the evaluation images (train and held-out),
    the chains started at the best of the prior draws, or (``guided``) at the method's own
    guess of z where that is better (:func:`own_guess`)."""
    from ..training.marginal_likelihood import estimate_log_marginal

    out = {}
    for part in ("train", "test"):
        x = data[f"eval_{part}"].astype(np.float32)
        z_start = own_guess(method, x, part) if guided else None
        r = estimate_log_marginal(method.model.decoder, Z_DIM, x, seed=seed, z_start=z_start,
                                  **ESTIMATOR)
        out[f"{part}_log_px"] = float(r["log_px"].mean())
        # on the images that final_bounds measures too, for a comparison image by image
        out[f"{part}_log_px_first{FINAL_IMAGES}"] = float(r["log_px"][:FINAL_IMAGES].mean())
        out[f"{part}_log_px_se"] = float(r["log_px"].std(ddof=1) / math.sqrt(len(r["log_px"])))
        out[f"{part}_accept"] = r["accept_rate"]
        # p(x) <= 1 for binary images: a positive estimate means the estimator failed there
        out[f"{part}_impossible"] = int((r["log_px"] > 0).sum())
    return out


def final_bounds(method, data, k=FINAL_K, n_images=FINAL_IMAGES, seed=0):
    """ELBO and L_k of a model with an encoder on the first ``n_images`` evaluation images of
    each part (None for MCEM, which has no encoder)."""
    if method.name == "mcem":
        return None
    from ..training.evaluate import evaluate_elbo, importance_sampled_bound

    out = {"k": k, "n_images": n_images}
    for part in ("train", "test"):
        x = data[f"eval_{part}"][:n_images].astype(np.float32)
        out[f"{part}_elbo"] = evaluate_elbo(method.model, x, n_samples=100, seed=seed).elbo
        out[f"{part}_L_k"] = float(importance_sampled_bound(method.model, x, k=k, seed=seed).mean())
    return out


def train(name, samples, out, data_dir=None, max_minutes=None, seed=0, n_eval=1000, print_fn=print):
    """Train run ``name`` towards ``samples`` training samples, estimating log p(x) at each of
    :func:`eval_points`; resumes from ``out/checkpoint.npz``. With ``max_minutes``, no stretch is
    started that the measured speed says would end after the budget. At the last point it also
    records the ELBO and L_5000 (methods with an encoder). Returns the run's record."""
    method_name, size = parse_run(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_images(size, data_dir, seed, n_eval)
    n = data["train"].shape[0]
    method = Method(method_name, n, seed)
    ckpt = out / "checkpoint.npz"
    meta = {"run": name, "n_train": n, "split": data["split"], "samples": 0, "wall_time": 0.0,
            "history": [], "settings": {"z_dim": Z_DIM, "hidden": HIDDEN, "batch_size": BATCH_SIZE,
                                        "lr": LR, "estimator": ESTIMATOR, "n_eval": n_eval, "seed": seed}}
    if ckpt.is_file():
        meta = _load(ckpt, method)
        print_fn(f"{name}: resuming at {meta['samples']} samples")
    budget = None if max_minutes is None else 60.0 * max_minutes
    t_session, s_session = time.perf_counter(), meta["samples"]
    x = data["train"].astype(np.float32)
    steps_per_epoch = n // BATCH_SIZE
    for target in eval_points(samples):
        if target <= meta["samples"]:
            continue
        if budget is not None and meta["samples"] > s_session:
            elapsed = time.perf_counter() - t_session
            rate = (meta["samples"] - s_session) / elapsed
            if elapsed + (target - meta["samples"]) / rate > budget:
                print_fn(f"{name}: stopped at {meta['samples']} samples; the {max_minutes:g}-minute "
                         f"budget would not reach {target}")
                break
        t0 = time.perf_counter()
        while meta["samples"] < target:
            step = meta["samples"] // BATCH_SIZE
            epoch, b = divmod(step, steps_per_epoch)
            # the order of epoch e depends on (seed, e) only, so a resumed run draws the same batches
            order = np.random.default_rng([seed, epoch]).permutation(n)
            idx = order[b * BATCH_SIZE:(b + 1) * BATCH_SIZE]
            objective = method.step(x[idx], idx)
            meta["samples"] += BATCH_SIZE
            if not np.isfinite(objective):
                raise RuntimeError(f"{name}: the training objective is {objective} at {meta['samples']} samples")
        t1 = time.perf_counter()
        record = {"samples": meta["samples"], "train_seconds": round(t1 - t0, 2),
                  **evaluate(method, data, seed)}
        record["eval_seconds"] = round(time.perf_counter() - t1, 2)
        meta["wall_time"] += time.perf_counter() - t0
        record["wall_time"] = round(meta["wall_time"], 1)
        meta["history"].append(record)
        _save(ckpt, method, meta)
        print_fn(f"{name}: {record['samples']:>10} samples  log p(x) train {record['train_log_px']:9.2f}  "
                 f"test {record['test_log_px']:9.2f}  ({record['wall_time']:.0f} s)", flush=True)
    if meta["history"] and meta.get("final", {}).get("samples") != meta["samples"]:
        t0 = time.perf_counter()
        bounds = final_bounds(method, data, seed=seed)
        meta["final"] = {"samples": meta["samples"], **meta["history"][-1], "bounds": bounds,
                         "bounds_seconds": round(time.perf_counter() - t0, 1)}
        _save(ckpt, method, meta)
    if meta["history"] and "guided_start" not in meta["final"]:
        meta["final"]["guided_start"] = evaluate(method, data, seed, guided=True)
        _save(ckpt, method, meta)
    (out / "history.json").write_text(json.dumps({k: v for k, v in meta.items()}, indent=1))
    return meta


# ---------------------------------------------------------------------------------------
# the results: figure and table
# ---------------------------------------------------------------------------------------
def collect(runs_dir):
    """The ``history.json`` of every run found under ``runs_dir``, by run name."""
    found = {}
    for method in METHODS:
        for size in SIZES:
            p = Path(runs_dir) / f"{method}-{size}" / "history.json"
            if p.is_file():
                found[f"{method}-{size}"] = json.loads(p.read_text())
    return found


def plot(runs, path):
    """Two panels (small, large training set): estimated log p(x) against training samples,
    train (solid) and held-out (dashed) per method."""
    from ..training.plots import _figure, _save

    fig = _figure(11, 4.2)
    values = [h[f"{part}_log_px"] for r in runs.values() for h in r["history"] for part in ("train", "test")]
    ylim = (min(values) - 5, max(values) + 15) if values else (-210, -90)
    colors = {"aevb": "tab:red", "wake-sleep": "tab:green", "mcem": "tab:blue"}
    for i, size in enumerate(SIZES):
        ax = fig.add_subplot(1, 2, i + 1)
        n = None
        for method in METHODS:
            r = runs.get(f"{method}-{size}")
            if not r or not r["history"]:
                continue
            n = r["n_train"]
            s = [h["samples"] for h in r["history"]]
            ax.plot(s, [h["train_log_px"] for h in r["history"]], "-", color=colors[method],
                    label=f"{method.upper() if method != 'wake-sleep' else 'Wake-Sleep'} (train)")
            ax.plot(s, [h["test_log_px"] for h in r["history"]], "--", color=colors[method],
                    label=f"{method.upper() if method != 'wake-sleep' else 'Wake-Sleep'} (test)")
        ax.set_xscale("log")
        ax.set_xlabel("# training samples evaluated")
        ax.set_ylabel("marginal log-likelihood (nats)")
        ax.set_title(f"N_train = {n}" if n else f"{size} training set (no run)")
        ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
        if n:
            ax.legend(fontsize=7, loc="upper left", ncol=3)
    fig.suptitle("MNIST, Nz = 3: estimated log p(x) (appendix D)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def markdown_table(runs):
    lines = ["| run | N train | samples trained | est. log p(x) train / test | est., chains from the "
             "model's z | ELBO train / test | L_5000 train / test | HMC acceptance (est.) | "
             "wall time (train + est.) | final bounds time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        f = r.get("final") or (r["history"][-1] if r["history"] else None)
        if f is None:
            continue
        b = f.get("bounds") if isinstance(f, dict) else None
        elbo = "- (no encoder)" if b is None else f"{b['train_elbo']:.1f} / {b['test_elbo']:.1f}"
        lk = "- (no encoder)" if b is None else f"{b['train_L_k']:.1f} / {b['test_L_k']:.1f}"
        g, n = f.get("guided_start"), FINAL_IMAGES
        guided = ("-" if g is None else f"{g['train_log_px']:.1f} / {g['test_log_px']:.1f} (first {n}: "
                  f"{g[f'train_log_px_first{n}']:.1f} / {g[f'test_log_px_first{n}']:.1f})")
        lines.append(
            f"| {name} | {r['n_train']} | {f['samples']:.2g} | {f['train_log_px']:.1f} +- "
            f"{f['train_log_px_se']:.1f} / {f['test_log_px']:.1f} +- {f['test_log_px_se']:.1f} | {guided} | {elbo} | "
            f"{lk} | {f['train_accept']:.2f} / {f['test_accept']:.2f} | {r['wall_time'] / 60:.1f} min | "
            f"{f.get('bounds_seconds', '-')} s |")
    return "\n".join(lines)


def cmd_train(args):
    for name in args.runs:
        train(name, args.samples, Path(args.runs_dir) / name, args.data_dir, args.max_minutes, args.seed,
              args.n_eval)
    return 0


def cmd_report(args):
    runs = collect(args.runs_dir)
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not runs:
        print(f"no Figure-3 runs under {args.runs_dir}")
        return 1
    path = plot(runs, out / "figure3.png")
    from ..training.plots import shrink_png as _shrink_png
    _shrink_png(path)
    (out / "figure3.json").write_text(json.dumps(runs, indent=1))
    print(f"written: {path}\nwritten: {out / 'figure3.json'}\n")
    print(markdown_table(runs))
    return 0


def add_arguments(parser):
    sub = parser.add_subparsers(dest="figure3_command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train Figure-3 runs (resumes a run begun)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="aevb-small, mcem-large, wake-sleep-small, ...")
    p.add_argument("--samples", type=int, default=10**7, help="training samples to reach (default 10^7)")
    p.add_argument("--max-minutes", type=float, metavar="M", help="stop before a point M minutes cannot reach")
    p.add_argument("--n-eval", type=int, default=1000, help="first N training and held-out images estimated")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ (default $SCRATCHVAE_DATA_DIR)")
    p.add_argument("--runs-dir", default=RUNS_DIR, metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(figure3_func=cmd_train)
    p = sub.add_parser("report", help="Figure 3 and its table from the runs")
    p.add_argument("--runs-dir", default=RUNS_DIR, metavar="DIR")
    p.add_argument("--results-dir", default=RESULTS_DIR, metavar="DIR")
    p.set_defaults(figure3_func=cmd_report)
    return parser


def run(args):
    for name in ("samples", "n_eval"):
        v = getattr(args, name, 1)
        if isinstance(v, int) and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    if getattr(args, "max_minutes", None) is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")
    for name in getattr(args, "runs", []):
        parse_run(name)
    return args.figure3_func(args)


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(prog="python -m scratchvae.experiments.figure3",
                                                   description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"figure3 {args.figure3_command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
