"""Reproduce Kingma & Welling (2013), section 5: Figures 2, 4 and 5 and an L_5000 per model.

    python -m scratchvae.experiments.reproduce stepsize                 pick Adagrad's step size as the paper did
    python -m scratchvae.experiments.reproduce train frey-z20           train one experiment (resumes if begun)
    python -m scratchvae.experiments.reproduce evaluate frey-z20        held-out ELBO and L_5000 of a trained run
    python -m scratchvae.experiments.reproduce report                   figures, table and data of the results page

An experiment is named ``<dataset>-z<latent size>``: ``frey-z2`` ... ``mnist-z20`` (and
``digits-z2``, a seconds-long stand-in that needs no download). Each uses the paper's
settings (section 5):

    one hidden layer of tanh units in encoder and decoder: 200 (Frey Face), 500 (MNIST)
    p(x|z): Gaussian with sigmoid mean and learned variance (Frey Face, pixels / 256),
            Bernoulli (MNIST)
    minibatches of 100, one sample of z per image (L = 1)
    Adagrad, global step size from {0.01, 0.02, 0.1} chosen on the training bound of the
            first iterations (``stepsize``)
    weights drawn from N(0, 0.01^2); a N(0, I) prior on them, spread over the N training
            images as weight decay 1/N

Where the paper is silent this module chooses: MNIST images are binarized afresh for every
minibatch (dynamic binarization; the held-out images once, with a fixed seed), and the
splits are those of :mod:`scratchvae.data.datasets` (Frey Face: first 1500 frames / last 465;
MNIST: 60k/10k, or 9k/1k of the test file when only that is present).

Training evaluates the bound at log-spaced numbers of training samples (the x-axis of
Figure 2), on all held-out images (at most 1000) and on as many training images (a fixed
subset). A run stops at its sample target or, with ``--max-minutes``, before the next
evaluation point it could not reach in time; it resumes from its checkpoint when
started again.
"""
import argparse
import json
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STEP_SIZES = (0.01, 0.02, 0.1)          # the paper's candidates
RUNS_DIR, RESULTS_DIR = "runs/reproduce", "docs/results"
LATENT_SIZES = (2, 5, 10, 20)
BATCH_SIZE = 100
EVAL_SIZE = 1000                        # held-out images per evaluation point, at most
EVAL_K, EVAL_IMAGES = 5000, 200


@dataclass(frozen=True)
class Experiment:
    """One model of the paper: a dataset, a latent size and the settings that go with it."""
    dataset: str
    z_dim: int
    hidden: int
    lr: float                           # chosen by `stepsize`, see STEP_SIZE_CHOICE
    binarization: str

    @property
    def name(self):
        return f"{self.dataset}-z{self.z_dim}"


# Adagrad step sizes chosen with `reproduce stepsize` (docs/results/stepsize.json): the
# candidate with the highest training bound after the first 10^5 samples.
STEP_SIZE_CHOICE = {"frey": 0.01, "mnist": 0.01, "digits": 0.1}
HIDDEN = {"frey": 200, "mnist": 500, "digits": 50}
BINARIZATION = {"frey": "none", "mnist": "dynamic", "digits": "dynamic"}

# The paper's Figure 2, read off the plot (about +-20 nats): {(dataset, z): {samples: (train, test)}};
# None where a curve cannot be read apart from the other.
PAPER = {
    ("frey", 2): {10**8: (935, 875)},
    ("frey", 5): {10**8: (1230, 1115)},
    ("frey", 10): {10**8: (1460, 1315)},
    ("frey", 20): {10**7: (1250, None), 10**8: (1485, 1320)},
    ("mnist", 20): {10**7: (-104, None), 2 * 10**8: (-97, -99)},
}


def experiment(name, lr=None):
    """The :class:`Experiment` called ``name`` (``frey-z20``), optionally with another step size."""
    m = re.fullmatch(r"(frey|mnist|digits)-z(\d+)", name)
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"experiment must be <dataset>-z<latent size> with dataset frey, mnist "
                         f"or digits, e.g. frey-z20; got {name!r}")
    ds = m.group(1)
    return Experiment(ds, int(m.group(2)), HIDDEN[ds], STEP_SIZE_CHOICE[ds] if lr is None else lr,
                      BINARIZATION[ds])


def eval_points(stop, start=10**4, per_decade=8):
    """Log-spaced sample counts from ``start`` to ``stop`` (both included), multiples of
    the batch size: where training pauses to evaluate and save a checkpoint."""
    n = int(math.floor(per_decade * math.log10(stop / start) + 1e-9))
    points = {int(round(start * 10 ** (i / per_decade) / BATCH_SIZE)) * BATCH_SIZE for i in range(n + 1)}
    return sorted(p for p in points | {stop} if 0 < p <= stop)


# ---------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------
def build_trainer(exp, data, out, seed=0, device="cpu", overwrite=False):
    """Model, Adagrad and :class:`~scratchvae.training.trainer.Trainer` with the paper's settings."""
    from ..optim import Adagrad
    from ..training.trainer import Trainer
    from ..vae import VAE

    n_train = data.train.shape[0]
    model = VAE(data.train.shape[1], exp.z_dim, (exp.hidden,), likelihood=data.likelihood,
                activation="tanh", init="paper", weight_decay=1.0 / n_train, device=device, seed=seed)
    optimizer = Adagrad(model.named_parameters(), lr=exp.lr)
    run_info = {"dataset": data.name, "image_shape": list(data.image_shape), "split": data.split,
                "experiment": exp.name}
    return Trainer(model, optimizer, data.train, data.test, batch_size=BATCH_SIZE,
                   binarization=exp.binarization, seed=seed, out=out, run_info=run_info,
                   progress=False, eval_size=EVAL_SIZE, overwrite=overwrite, checkpoint_every=0)


def train(exp, data, out, samples, max_minutes=None, seed=0, device="cpu", overwrite=False,
          print_fn=print):
    """Train ``exp`` towards ``samples`` training samples, evaluating at :func:`eval_points`.

    Continues the run in ``out`` if it holds one (unless ``overwrite``). With
    ``max_minutes``, no evaluation point is started that the measured speed says would
    end after the budget; the remaining time then goes to a last stretch rounded down to
    10^5 samples. Returns the trainer."""
    from ..training.trainer import CHECKPOINT

    out = Path(out)
    trainer = build_trainer(exp, data, out, seed, device, overwrite)
    if (out / CHECKPOINT).is_file() and not overwrite:
        trainer.resume()
        print_fn(f"{exp.name}: resuming at {trainer.samples} samples")
    budget = None if max_minutes is None else 60.0 * max_minutes
    t0, s0 = time.perf_counter(), trainer.samples
    for target in eval_points(samples):
        if target <= trainer.samples:
            continue
        if budget is not None and trainer.samples > s0:
            elapsed = time.perf_counter() - t0
            rate = (trainer.samples - s0) / elapsed                 # samples per second, evaluations included
            if elapsed + (target - trainer.samples) / rate > budget:
                left = int((budget - elapsed) * rate) // 10**5 * 10**5
                if left > 0:
                    trainer.fit(samples=trainer.samples + left, eval_every=10**15)
                    _log(exp, trainer, print_fn)
                print_fn(f"{exp.name}: stopped at {trainer.samples} samples, the "
                         f"{max_minutes:g}-minute budget would not reach {target}")
                return trainer
        trainer.fit(samples=target, eval_every=10**15)              # evaluates once, at the target
        _log(exp, trainer, print_fn)
    return trainer


def _log(exp, trainer, print_fn):
    r = trainer.history[-1]
    print_fn(f"{exp.name}: {r['samples']:>10} samples  train {r['train_elbo']:10.3f}  "
             f"held-out {r['test_elbo']:10.3f}  ({r['wall_time']:.0f} s)")


def load_data(exp, data_dir):
    from ..data.datasets import load_dataset

    return load_dataset(exp.dataset, data_dir=data_dir, download=False)


def cmd_train(args):
    for name in args.experiments:
        exp = experiment(name, args.lr)
        train(exp, load_data(exp, args.data_dir), Path(args.runs_dir) / exp.name, args.samples,
              args.max_minutes, args.seed, args.device, args.overwrite)
    return 0


def cmd_stepsize(args):
    """Short runs with each candidate step size; the paper chose "based on performance on
    the training set in the first few iterations"."""
    from ..training.checkpoint import atomic_write

    results = []
    for name in args.experiments:
        for lr in STEP_SIZES:
            exp = experiment(name, lr)
            t0 = time.perf_counter()
            trainer = train(exp, load_data(exp, args.data_dir),
                            Path(args.runs_dir) / "stepsize" / f"{exp.name}-lr{lr:g}",
                            args.samples, seed=args.seed, device=args.device, overwrite=True)
            r = trainer.history[-1]
            results.append({"experiment": exp.name, "lr": lr, "samples": r["samples"],
                            "train_elbo": r["train_elbo"], "test_elbo": r["test_elbo"],
                            "seconds": round(time.perf_counter() - t0, 1)})
    for name in args.experiments:
        rows = [r for r in results if r["experiment"] == name]
        best = max(rows, key=lambda r: r["train_elbo"])
        print(f"{name}: best step size {best['lr']:g} (train bound {best['train_elbo']:.2f} "
              f"after {best['samples']} samples)")
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "stepsize.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"written: {out / 'stepsize.json'}")
    return 0


# ---------------------------------------------------------------------------------------
# evaluation: ELBO beside L_k
# ---------------------------------------------------------------------------------------
def evaluate_run(run, data, k=EVAL_K, n_images=EVAL_IMAGES, seed=0, elbo_samples=100, block=100):
    """ELBO and L_k of the trained run in folder ``run`` on its first ``n_images``
    held-out images (binarized as in training), both in nats per image, with timings;
    and the ELBO of every ``block`` consecutive held-out images (all of them), which
    shows whether some part of the held-out set is unlike the training images."""
    from ..training.checkpoint import load_model
    from ..training.evaluate import evaluate_elbo, importance_sampled_bound
    from ..training.trainer import heldout_images

    model, c = load_model(Path(run) / "checkpoint.npz")
    s = c.meta["settings"]
    x_all = heldout_images(data.test, s["binarization"], s["seed"]).astype(model.dtype)
    blocks = [{"images": [i, min(i + block, len(x_all))],
               "elbo": evaluate_elbo(model, x_all[i:i + block], n_samples=10, seed=seed).elbo}
              for i in range(0, len(x_all), block)]
    x = x_all[:n_images]
    t0 = time.perf_counter()
    elbo = evaluate_elbo(model, x, n_samples=elbo_samples, seed=seed)
    t1 = time.perf_counter()
    bound = importance_sampled_bound(model, x, k=k, seed=seed)
    t2 = time.perf_counter()
    n = x.shape[0]
    return {"experiment": s.get("experiment"), "samples_trained": c.meta["progress"]["samples"],
            "n_images": n, "elbo": elbo.elbo, "elbo_samples_per_image": elbo_samples,
            "k": k, "L_k": float(bound.mean()), "L_k_stderr": float(bound.std(ddof=1) / math.sqrt(n)),
            "elbo_seconds": round(t1 - t0, 1), "L_k_seconds": round(t2 - t1, 1),
            "heldout_elbo_blocks": blocks}


def cmd_evaluate(args):
    from ..training.checkpoint import atomic_write

    for name in args.experiments:
        exp = experiment(name)
        run = Path(args.runs_dir) / exp.name
        result = evaluate_run(run, load_data(exp, args.data_dir), args.k, args.n_images, args.seed)
        with atomic_write(run / "evaluation.json", "w") as f:
            json.dump(result, f, indent=1)
        print(f"{name}: {result['n_images']} held-out images, ELBO {result['elbo']:.2f}, "
              f"L_{args.k} {result['L_k']:.2f} +- {result['L_k_stderr']:.2f} nats "
              f"({result['L_k_seconds']:.0f} s)")
    return 0


# ---------------------------------------------------------------------------------------
# the results page: figures, data files and the table
# ---------------------------------------------------------------------------------------
def _shrink_png(path, colors=32):
    """Re-save a figure with a palette of ``colors`` colours (32 grey levels are plenty
    to read a picture of decoder means), so that every PNG of the results page is small."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    r, g, b = (np.asarray(c) for c in img.split())
    if (r == g).all() and (g == b).all():
        img = img.convert("L")
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def _at(records, samples):
    """The evaluation record taken at exactly ``samples`` training samples, or None."""
    return next((r for r in records if r["samples"] == samples), None)


def table_rows(results_dir):
    """One row per experiment found in ``results_dir``: our bounds beside the paper's."""
    from ..training.trainer import read_metrics

    rows = []
    for ds in ("frey", "mnist", "digits"):
        for z in LATENT_SIZES:
            name = f"{ds}-z{z}"
            metrics = Path(results_dir) / f"{name}.metrics.jsonl"
            if not metrics.is_file():
                continue
            records = read_metrics(metrics)
            last = records[-1]
            at7 = _at(records, 10**7)
            ev_path = Path(results_dir) / f"{name}.evaluation.json"
            ev = json.loads(ev_path.read_text()) if ev_path.is_file() else None
            paper = PAPER.get((ds, z), {})
            rows.append({"experiment": name, "samples": last["samples"],
                         "train_elbo": last["train_elbo"], "test_elbo": last["test_elbo"],
                         "train_elbo_1e7": at7 and at7["train_elbo"], "test_elbo_1e7": at7 and at7["test_elbo"],
                         "wall_time": last["wall_time"], "evaluation": ev,
                         "paper": {str(k): v for k, v in paper.items()}})
    return rows


def markdown_table(rows):
    def num(v, fmt="{:.0f}"):
        return "-" if v is None else fmt.format(v)

    def paper(row, samples):
        v = row["paper"].get(str(samples))
        return "-" if v is None else " / ".join(num(a) for a in v)

    lines = ["| model | samples trained | train / held-out bound, last | at 10^7 | paper at 10^7 | "
             "paper at 10^8 (MNIST 2x10^8) | held-out ELBO / L_k | training wall time | L_k time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ev = r["evaluation"]
        lk = "-" if ev is None else f"{ev['elbo']:.1f} / {ev['L_k']:.1f} (k={ev['k']}, {ev['n_images']} images)"
        lk_time = "-" if ev is None else f"{ev['L_k_seconds']:.0f} s"
        big = 2 * 10**8 if r["experiment"].startswith("mnist") else 10**8
        lines.append(
            f"| {r['experiment']} | {r['samples']:.2g} | {r['train_elbo']:.1f} / {r['test_elbo']:.1f} | "
            f"{num(r['train_elbo_1e7'], '{:.1f}')} / {num(r['test_elbo_1e7'], '{:.1f}')} | "
            f"{paper(r, 10**7)} | {paper(r, big)} | {lk} | {r['wall_time'] / 60:.1f} min | "
            f"{lk_time} |")
    return "\n".join(lines)


def cmd_report(args):
    from ..training import plots
    from ..training.checkpoint import atomic_write, load_model

    runs, out = Path(args.runs_dir), Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    by_dataset = {}
    for name in sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []:
        try:
            exp = experiment(name)
        except ValueError:
            continue                                     # stepsize/ and other folders
        run = runs / name
        if not (run / "metrics.jsonl").is_file() or not (run / "checkpoint.npz").is_file():
            continue
        shutil.copyfile(run / "metrics.jsonl", out / f"{name}.metrics.jsonl")
        if (run / "evaluation.json").is_file():
            shutil.copyfile(run / "evaluation.json", out / f"{name}.evaluation.json")
        by_dataset.setdefault(exp.dataset, []).append(exp)
        model, c = load_model(run / "checkpoint.npz")
        shape = c.meta["settings"]["image_shape"]
        if exp.z_dim == 2:
            written.append(plots.plot_manifold(model, shape, out / f"{name}-manifold.png"))
        if exp.dataset != "frey":
            written.append(plots.plot_samples(model, shape, out / f"{name}-samples.png", n=100))
    titles = {"frey": "Frey Face (1500 train / 465 held-out frames)",
              "mnist": "MNIST (9000 train / 1000 held-out of the test file)",
              "digits": "8x8 digits"}
    for ds, exps in by_dataset.items():
        exps = sorted(exps, key=lambda e: e.z_dim)
        written.append(plots.plot_curves([out / f"{e.name}.metrics.jsonl" for e in exps],
                                         out / f"{ds}-curves.png",
                                         labels=[f"Nz={e.z_dim}" for e in exps],
                                         title=f"lower bound, {titles[ds]}"))
    for path in written:
        _shrink_png(path)
    rows = table_rows(out)
    with atomic_write(out / "summary.json", "w") as f:
        json.dump(rows, f, indent=1)
    for path in written:
        print(f"written: {path} ({path.stat().st_size // 1024} KB)")
    print(f"written: {out / 'summary.json'}\n")
    print(markdown_table(rows))
    for r in rows:
        if r["evaluation"] and r["evaluation"].get("heldout_elbo_blocks"):
            print(f"\n{r['experiment']}: held-out ELBO by consecutive images: " + ", ".join(
                f"{a}-{b}: {e:.0f}" for (a, b), e in
                ((blk["images"], blk["elbo"]) for blk in r["evaluation"]["heldout_elbo_blocks"])))
    return 0


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def add_arguments(parser):
    """Add the ``reproduce`` subcommands to ``parser`` (an ``argparse.ArgumentParser``)."""
    def common(p, experiments=True):
        if experiments:
            p.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                           help="frey-z2 ... frey-z20, mnist-z2 ... mnist-z20 (or digits-z2)")
        p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ and frey/ "
                       "(default: $SCRATCHVAE_DATA_DIR or ./data); nothing is downloaded")
        p.add_argument("--runs-dir", default=RUNS_DIR, metavar="DIR",
                       help=f"where each experiment's run folder is (default: {RUNS_DIR})")
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    sub = parser.add_subparsers(dest="reproduce_command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train experiments with the paper's settings (resumes a run begun)")
    common(p)
    p.add_argument("--samples", type=int, default=10**7,
                   help="training samples to reach (default: 10^7)")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop each run before an evaluation point it cannot reach within M minutes")
    p.add_argument("--lr", type=float, help="another Adagrad step size than the chosen one")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu")
    p.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    p.set_defaults(reproduce_func=cmd_train)

    p = sub.add_parser("stepsize", help="short runs with each step size in {0.01, 0.02, 0.1}")
    common(p)
    p.add_argument("--samples", type=int, default=10**5, help="samples per run (default: 10^5)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu")
    p.add_argument("--results-dir", default=RESULTS_DIR, metavar="DIR",
                   help=f"where stepsize.json goes (default: {RESULTS_DIR})")
    p.set_defaults(reproduce_func=cmd_stepsize)

    p = sub.add_parser("evaluate", help="held-out ELBO and L_k of trained runs")
    common(p)
    p.add_argument("--k", type=int, default=EVAL_K, help=f"importance samples (default: {EVAL_K})")
    p.add_argument("--n-images", type=int, default=EVAL_IMAGES,
                   help=f"first N held-out images (default: {EVAL_IMAGES})")
    p.set_defaults(reproduce_func=cmd_evaluate)

    p = sub.add_parser("report", help="figures, data files and table of the results page")
    common(p, experiments=False)
    p.add_argument("--results-dir", default=RESULTS_DIR, metavar="DIR",
                   help=f"where figures and data go (default: {RESULTS_DIR})")
    p.set_defaults(reproduce_func=cmd_report)

    from . import figure3   # Figure 3: AEVB, wake-sleep and MCEM by estimated marginal likelihood
    p = sub.add_parser("figure3", help="Figure 3: train its runs (figure3 train ...) or draw it (figure3 report)")
    figure3.add_arguments(p)
    p.set_defaults(reproduce_func=figure3.run)
    return parser


def run(args):
    """Run the subcommand parsed into ``args``; returns the exit status."""
    for name in ("samples", "k", "n_images"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, "
                             f"got {getattr(args, name)}")
    if getattr(args, "max_minutes", None) is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")
    for name in getattr(args, "experiments", []):
        experiment(name)                                 # fail before any work
    return args.reproduce_func(args)


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m scratchvae.experiments.reproduce", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    from ..cli import _expected_errors
    from ..training.trainer import TrainingInterrupted

    try:
        return run(args)
    except TrainingInterrupted as e:
        print(f"reproduce: {e} (run the same command again to resume)", file=sys.stderr)
        return 130
    except _expected_errors() as e:
        print(f"reproduce {args.reproduce_command}: error: {str(e).strip() or type(e).__name__}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
