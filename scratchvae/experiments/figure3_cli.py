"""The command line of Figure 3 (``scratchvae reproduce figure3 train|report``): the runs of
:mod:`.figure3`, the report of :mod:`.figure3_page`. Apart from both so that neither imports
the other."""
import argparse
import sys
from pathlib import Path

from .figure3 import OPTIONS, PAGE, RESULTS_DIR, RUNS, RUNS_DIR, parse_run, train
from .figure3_page import report


def cmd_train(args):
    for name in args.runs:
        train(name, args.samples, Path(args.runs_dir) / name, args.data_dir, args.max_minutes, args.seed,
              args.n_eval)
    return 0


def cmd_report(args):
    return report(args.runs_dir, args.results_dir, args.page, print_fn=print)


def add_arguments(parser):
    sub = parser.add_subparsers(dest="figure3_command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train Figure-3 runs (resumes a run begun)")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help=f"{', '.join(RUNS)} (or {', '.join(f'{o}-small' for o in OPTIONS)}, ...)")
    p.add_argument("--samples", type=int, default=10**7, help="training samples to reach (default 10^7)")
    p.add_argument("--max-minutes", type=float, metavar="M", help="stop before a point M minutes cannot reach")
    p.add_argument("--n-eval", type=int, default=1000, help="first N training and held-out images estimated")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ (default $SCRATCHVAE_DATA_DIR)")
    p.add_argument("--runs-dir", default=RUNS_DIR, metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(figure3_func=cmd_train)
    p = sub.add_parser("report", help="Figure 3, its data and its page from the runs")
    p.add_argument("--runs-dir", default=RUNS_DIR, metavar="DIR")
    p.add_argument("--results-dir", default=RESULTS_DIR, metavar="DIR")
    p.add_argument("--page", metavar="FILE", help=f"write the page here (e.g. {PAGE})")
    p.set_defaults(figure3_func=cmd_report)
    return parser


def run(args):
    for name in ("samples", "n_eval"):
        v = getattr(args, name, 1)
        if isinstance(v, int) and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    if getattr(args, "max_minutes", None) is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if getattr(args, "seed", 0) < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {args.seed}")
    for name in getattr(args, "runs", []):
        parse_run(name)
    return args.figure3_func(args)


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(prog="python -m scratchvae.experiments.figure3_cli",
                                                   description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    from ..backend import set_threads
    set_threads()          # one BLAS thread, the library's rule (as `scratchvae` sets it)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"figure3 {args.figure3_command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
