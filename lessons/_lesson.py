"""What every lesson shares: fast or full mode, the output and data folders, checks, figures.

    python lessons/07_vae_mnist.py [--fast] [--out DIR] [--data-dir DIR] [--download] [--seed N] [--threads N] [--no-show]

Fast mode (``--fast``, or the environment variable ``SCRATCHVAE_FAST=1``) shrinks every loop so
that a lesson runs in seconds, for CI; full mode runs the real experiment. Figures go to
``--out`` (default: ``$SCRATCHVAE_LESSONS_OUT``, else ``lessons/out/``) and are also shown when
matplotlib has a display. Unknown arguments are ignored, so a lesson also runs as a notebook
(whose kernel passes its own); a notebook takes its settings from the environment variables.
"""
import argparse
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from scratchvae.backend import DEFAULT_THREADS, set_threads
from scratchvae.data.datasets import default_data_dir
from scratchvae.gradcheck import rel_error

HERE = Path(__file__).resolve().parent
NON_INTERACTIVE = {"agg", "pdf", "pgf", "ps", "svg", "cairo", "template"}


def _positive_int(text):
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


class Lesson:
    """The run's settings, parsed from the command line and the environment."""

    def __init__(self, name):
        parser = argparse.ArgumentParser(prog=f"{name}.py")
        parser.add_argument("--fast", action="store_true",
                            help="small, quick version (also: SCRATCHVAE_FAST=1)")
        parser.add_argument("--out", type=Path, default=Path(os.environ.get("SCRATCHVAE_LESSONS_OUT") or HERE / "out"),
                            help="folder for the figures (default: $SCRATCHVAE_LESSONS_OUT, else lessons/out/)")
        parser.add_argument("--data-dir", type=Path, default=None,
                            help="folder with MNIST and Frey Face (default: $SCRATCHVAE_DATA_DIR, else data/)")
        parser.add_argument("--download", action="store_true",
                            help="download a missing data set (checksums verified)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-show", action="store_true", help="save figures without showing them")
        parser.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS,
                            help=f"threads for NumPy's matrix products (default: {DEFAULT_THREADS})")
        args, _ = parser.parse_known_args()
        set_threads(args.threads)
        self.name = name
        self.fast = args.fast or os.environ.get("SCRATCHVAE_FAST", "0") not in ("", "0")
        self.out = args.out
        self.data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
        self.download = args.download
        self.seed = args.seed
        self.show = not args.no_show and plt.get_backend().lower() not in NON_INTERACTIVE
        self.out.mkdir(parents=True, exist_ok=True)
        print(f"{name}: {'fast' if self.fast else 'full'} mode, figures in {self.out}")

    def pick(self, fast, full):
        """``fast`` in fast mode, ``full`` otherwise (sizes, steps, sample counts)."""
        return fast if self.fast else full

    def check(self, what, value, expected, tol):
        """Print ``value`` beside ``expected`` with their relative error; stop if it exceeds ``tol``.

        For arrays the worst entry counts."""
        err = float(np.max(rel_error(value, expected)))
        shown = (f"{float(value):.10g} vs {float(expected):.10g}" if np.ndim(value) == 0
                 else f"{np.size(value)} entries")
        print(f"  check {what}: {shown}, relative error {err:.1e} (tolerance {tol:.0e})")
        if not err <= tol:
            raise AssertionError(f"{what}: relative error {err:.2e} exceeds {tol:.0e}")
        return err

    def save(self, fig, stem):
        """Write ``fig`` to ``<out>/<lesson number>_<stem>.png`` (whole or not at all), then show it.

        Returns nothing, so that a notebook cell that ends with it shows the figure alone."""
        path = self.out / f"{self.name[:2]}_{stem}.png"
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
        print(f"  saved {path}")
        if self.show:
            plt.show()
        plt.close(fig)

    def load(self, name):
        """The data set ``name`` ('mnist' or 'frey') in full mode; scikit-learn's built-in 8 x 8
        digits in fast mode. Without the files: a message saying what to get, then exit 2."""
        from scratchvae.data.datasets import DataError, load_dataset
        if self.fast:
            return load_dataset("digits")
        try:
            return load_dataset(name, self.data_dir, download=self.download)
        except DataError as err:
            print(f"\n{self.name} needs the {name} data set, which is not usable in {self.data_dir}:\n"
                  f"{err}\n\nRun again with --data-dir pointing at the folder that holds it, or "
                  f"with --download to fetch it (checksums verified), or with --fast to run on "
                  f"scikit-learn's built-in 8 x 8 digits instead.", file=sys.stderr)
            sys.exit(2)
