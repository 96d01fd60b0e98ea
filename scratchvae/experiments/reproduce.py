"""Reproduce Kingma & Welling (2013), section 5: Figures 2, 4 and 5 and an L_5000 per model.

    python -m scratchvae.experiments.reproduce stepsize                 pick Adagrad's step size as the paper did
    python -m scratchvae.experiments.reproduce train frey-z20           train one experiment (resumes if begun)
    python -m scratchvae.experiments.reproduce evaluate frey-z20        held-out ELBO and L_5000 of a trained run
    python -m scratchvae.experiments.reproduce report --page docs/results.md --log LOG
                                                                        figures, table, data and the results page
    python -m scratchvae.experiments.reproduce run all [--dry-run]      every run of section 5 on a Dask cluster
    python -m scratchvae.experiments.reproduce figure3 ...              Figure 3's runs and its page

(also ``scratchvae reproduce ...``). This module is the command line only; the work is done in
one room per part: ``runs`` (what a named run is, its training and evaluation), ``figure2``
(Figure 2 and the results table), ``results`` and ``page`` (the runs read back, and the results
page), ``runner`` (``reproduce run``: every run, scheduled on Dask) and ``figure3`` (with ``figure3_report``, ``figure3_page`` and ``figure3_cli``).
An experiment's name says its dataset, latent size, algorithm, split and seed: see
:mod:`scratchvae.experiments.runs`.
"""
import argparse
import sys
from pathlib import Path

from . import page, runs
from .runs import (ADAGRAD_WARMUP, ALGORITHMS, BATCH_SIZE, EVAL_K, EVAL_IMAGES, RUNS_DIR,  # noqa: F401
                   SPLITS, STEP_SIZES, build_trainer, eval_points, experiment, train)

RESULTS_DIR, RESULTS_PAGE = page.RESULTS_DIR, page.RESULTS_PAGE


def _shrink_png(path, colors=32):
    """Kept for callers of the earlier single-file module: :func:`scratchvae.training.plots.shrink_png`."""
    from ..training.plots import shrink_png
    return shrink_png(path, colors)


def _experiment(args, name, lr=None):
    """The experiment ``name`` with the command line's --algorithm, --split, --split-seed."""
    return experiment(name, lr, getattr(args, "algorithm", None), getattr(args, "split", None),
                      getattr(args, "split_seed", None))


def _seed(args, exp):
    """The run's seed: the name's ``-r<seed>``, else ``--seed`` (default 0); the two must agree."""
    given = getattr(args, "seed", None)
    if exp.seed and given is not None and given != exp.seed:
        raise ValueError(f"--seed {given} contradicts the experiment name {exp.name!r}")
    return exp.seed or given or 0


def cmd_train(args):
    for name in args.experiments:
        exp = _experiment(args, name, args.lr)
        train(exp, runs.load_data(exp, args.data_dir), Path(args.runs_dir) / exp.name, args.samples,
              args.max_minutes, _seed(args, exp), args.device, args.overwrite)
    return 0


def cmd_stepsize(args):
    options = {k: getattr(args, k) for k in ("algorithm", "split", "split_seed")}
    runs.stepsize(args.experiments, args.runs_dir, args.samples, args.results_dir, args.data_dir,
                  args.seed or 0, args.device, options)
    return 0


def cmd_evaluate(args):
    import json

    from ..training.checkpoint import atomic_write

    for name in args.experiments:
        exp = _experiment(args, name)
        run = Path(args.runs_dir) / exp.name
        result = runs.evaluate_run(run, runs.load_data(exp, args.data_dir), args.k, args.n_images,
                                   args.seed or 0)
        with atomic_write(run / "evaluation.json", "w") as f:
            json.dump(result, f, indent=1)
        print(f"{name}: {result['n_images']} held-out images, ELBO {result['elbo']:.2f}, "
              f"L_{args.k} {result['L_k']:.2f} +- {result['L_k_stderr']:.2f} nats "
              f"({result['L_k_seconds']:.0f} s)")
    return 0


def cmd_report(args):
    page.report(args.runs_dir, args.results_dir, args.page, args.log, args.spread_dir)
    return 0


def cmd_run(args):
    from .runner import run_command
    return run_command(args)


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def add_arguments(parser):
    """Add the ``reproduce`` subcommands to ``parser`` (an ``argparse.ArgumentParser``)."""
    def common(p, experiments=True):
        if experiments:
            p.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                           help="frey-z2 ... frey-z20, mnist-z3 ... mnist-z200 (or digits-z2), each with "
                                "optional -ws, -sd0.1 or -sd0.01, -contiguous, -s<split seed>, -r<seed> "
                                "(scratchvae.experiments.runs)")
        p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ and frey/ "
                       "(default: $SCRATCHVAE_DATA_DIR or ./data); nothing is downloaded")
        p.add_argument("--runs-dir", default=RUNS_DIR, metavar="DIR",
                       help=f"where each experiment's run folder is (default: {RUNS_DIR})")
        p.add_argument("--seed", type=int, help="random seed (default: 0, or the name's -r<seed>)")
        if experiments:
            p.add_argument("--algorithm", choices=ALGORITHMS, help="aevb or wake-sleep (default: "
                           "aevb, or wake-sleep for a name ending in -ws)")
            p.add_argument("--split", choices=SPLITS, help="Frey Face: random (the paper's "
                           "1600/365, default) or contiguous (the last 465 frames held out)")
            p.add_argument("--split-seed", type=int, metavar="S",
                           help="seed of the random split (default: 0, the documented split)")

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

    p = sub.add_parser("report", help="figures, data files, table and the results page")
    common(p, experiments=False)
    p.add_argument("--results-dir", default=RESULTS_DIR, metavar="DIR",
                   help=f"where figures and data go (default: {RESULTS_DIR})")
    p.add_argument("--page", metavar="FILE", help=f"write the results page here (e.g. {RESULTS_PAGE})")
    p.add_argument("--log", metavar="FILE", help="a queue log of the training commands, for the "
                   "page's table of commands and wall times")
    p.add_argument("--spread-dir", metavar="DIR", help="the runs of `reproduce run spread` "
                   "(default: <runs-dir>/spread, if there)")
    p.set_defaults(reproduce_func=cmd_report)

    from . import runner
    p = sub.add_parser("run", help="every run of section 5 (or those named), on a Dask cluster",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=runner.__doc__.split("\n\n")[0])
    runner.add_arguments(p)
    p.set_defaults(reproduce_func=cmd_run)

    from . import figure3_cli   # Figure 3: AEVB, wake-sleep and MCEM by estimated marginal likelihood
    p = sub.add_parser("figure3", help="Figure 3: train its runs (figure3 train ...) or draw it (figure3 report)")
    figure3_cli.add_arguments(p)
    p.set_defaults(reproduce_func=figure3_cli.run)
    return parser


def run(args):
    """Run the subcommand parsed into ``args``; returns the exit status."""
    for name in ("samples", "k", "n_images"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, "
                             f"got {getattr(args, name)}")
    if getattr(args, "max_minutes", None) is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {args.seed}")
    if getattr(args, "log", None) is not None and not Path(args.log).is_file():
        raise FileNotFoundError(f"--log: no such file: {args.log} (expected a queue log)")
    if args.reproduce_command in ("train", "stepsize", "evaluate"):
        for name in args.experiments:
            _seed(args, _experiment(args, name))          # fail before any work
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
