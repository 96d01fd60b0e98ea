"""``scratchvae bench``: how fast scratchvae trains, beside PyTorch doing the same work.

The work is the paper's MNIST model: a 784-400-20 VAE with ReLU hidden layers and a
Bernoulli decoder on grey pixel values, trained with Adam (lr 1e-3) in float32 on the
9000 / 1000 split of the MNIST test file (or the standard split when the training files
are present). Each contender trains its own copy of the same initial weights on the
same minibatches, and their epochs are interleaved so that a busy machine slows all of
them alike:

    scratchvae    train_step (VAE.loss_and_grads + Adam.step), on NumPy: the library's default
    sv overlapped the same step with the decoder's weight gradients and update on a second
                  thread during the encoder's backward (training/overlap.py, off by default in
                  training): a copy of its own, timed beside the plain step where a core is
                  idle (``--overlap``), so that a quiet run shows whether it pays
    torch         the same model in PyTorch, default Adam        (if PyTorch is installed)
    torch fused   the same, Adam(fused=True)                     (if PyTorch is installed)
    GEMM floor    only the epoch's matrix products, with NumPy's BLAS at the same shapes

An epoch is ``N // batch_size`` full minibatches of a fresh permutation. The report
gives, for each contender, the median epoch time and the spread (min-max) of the
epochs, the ratios of the medians, and each model's held-out negative ELBO after 3
epochs: the models do the same work only if these agree (within about 2 nats),
otherwise the comparison is void. ``--frey`` adds the paper's Frey Face workload
(560-200-20 tanh, Gaussian decoder, Adagrad, batch 100) beside the same model in
PyTorch, per step, at each number of threads; ``--memory`` the resident memory of a
20-epoch run (peak, and growth across epochs); ``--scale`` how epoch time grows with
the hidden width and the batch size, against the GEMM floor at each point.

A benchmark that cannot flatter: the report names the CPU, NumPy's BLAS library and the
kernel it chose for this CPU (threadpoolctl), and the load average before and after. It
also counts the CPU time that other processes used during each comparison, and marks
the comparison NOISY when that, or the load before it, exceeds 0.3 per core: two-thread
BLAS waits for its second thread, so other work on the second core slows scratchvae and
PyTorch unequally. Where the environment sets ``OPENBLAS_CORETYPE`` (which forces
OpenBLAS's kernel), the command measures again in a process without it and prints both;
the headline is the run as the environment sets it. (Tests and CI never change it.)

Why an epoch can cost more than ``steps x`` the median step that ``profile_step.py``
reports: the epoch is the *sum* of its steps, and on a busy machine a few steps whose
two-thread matrix products wait for a preempted BLAS thread take many times the median.
The report gives the share of the epoch spent in its slowest tenth of steps.

Threads: every comparison runs at each of ``--threads`` (default 1 and 2), NumPy's BLAS
limited through threadpoolctl and PyTorch through ``torch.set_num_threads``. The first is
the headline: one thread, the library's rule (README, "Threads"), against PyTorch held to
one thread as well; two threads stand beside it.

PyTorch is an optional peer, never a dependency: without it the benchmark compares
scratchvae with the GEMM floor only, and says so.
"""
# The parts, each importing only those before it: machine (CPU, BLAS, threads, quietness),
# contenders (data, model and the runs timed), comparisons (and the goals), memory,
# report (table and JSON); this module is the command line, and __main__ runs it.
# (A module named `compare` would be hidden by the function `compare` imported here.)
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .comparisons import check_goals, compare, compare_frey, measure_scale
from .contenders import import_torch, load_images
from .machine import QUIET_LOAD, Quietness, limit_threads, machine_info
from .memory import measure_memory, memory_child
from .report import format_table, write_json

BATCH_SIZES = (128, 32, 512)
THREADS = (1, 2)         # the first is the headline: the library's rule


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
    p.add_argument("--threads", type=_positive_int, nargs="+", default=list(THREADS),
                   dest="thread_counts", metavar="N",
                   help="BLAS / PyTorch threads, each measured in turn; the first is the headline "
                   "(default: 1 2: the library's rule first)")
    p.add_argument("--overlap", choices=("auto", "on", "off"), default="auto",
                   help="time scratchvae's overlapped step (the decoder's weight gradients and "
                   "update on a second core during the encoder's backward; training/overlap.py) "
                   "beside the plain one, interleaved: auto where a core is idle, on at every "
                   "thread count, off never (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order (default: 0)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--memory", action="store_true",
                   help="also report the resident memory of a --memory-epochs run")
    p.add_argument("--memory-epochs", type=_positive_int, default=20, help="(default: 20)")
    p.add_argument("--scale", action="store_true",
                   help="also time hidden widths 200..1600 and batch sizes 32..1024 against the "
                   "GEMM floor")
    p.add_argument("--scale-repeats", type=_positive_int, default=3, help="(default: 3)")
    p.add_argument("--frey", action="store_true",
                   help="also time the paper's Frey Face workload (560-200-20 tanh, Gaussian "
                   "decoder, Adagrad, batch 100) against PyTorch, per step, at each --threads")
    p.add_argument("--frey-repeats", type=_positive_int, default=7, help="(default: 7)")
    p.add_argument("--all", action="store_true", help="--memory, --scale and --frey")
    p.add_argument("--coretype-child", action="store_true", help=argparse.SUPPRESS)
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
    quiet = Quietness()
    if quiet.load_before[0] / quiet.cpus > QUIET_LOAD:
        print(f"warning: load average {quiet.load_before[0]:.2f} on {quiet.cpus} CPUs: other work "
              "is running, the timings will be noisy")
    sizes = [train.shape[1], args.hidden, args.z_dim]
    report = {"config": {"model": "-".join(map(str, sizes)) + " ReLU Bernoulli VAE",
                         "data": f"{split} ({train.shape[0]} / {test.shape[0]} images, grey)",
                         "lr": args.lr, "threads": args.thread_counts, "repeats": args.repeats,
                         "scale_repeats": args.scale_repeats, "frey_repeats": args.frey_repeats,
                         "seed": args.seed, "batch_sizes": args.batch_sizes, "overlap": args.overlap},
              "torch": {"version": getattr(torch, "__version__", None), "why_not": why_not},
              "comparisons": {}}     # {threads: {batch size: comparison}}, the headline first
    headline = args.thread_counts[0]
    with limit_threads(headline, torch):
        report["machine"] = machine_info()
    for threads in args.thread_counts:
        with limit_threads(threads, torch):
            for batch_size in args.batch_sizes:
                r = compare(train, test, batch_size, args.hidden, args.z_dim, args.lr, args.repeats,
                            args.seed, torch, load_before=quiet.load_before, overlap=args.overlap)
                report["comparisons"].setdefault(str(threads), {})[str(batch_size)] = dict(r, threads=threads)
    if args.scale or args.all:
        with limit_threads(headline, torch):
            report["scale"] = measure_scale(train, test, args, torch)
    if args.frey or args.all:
        frey_train, frey_test, _ = load_images("frey", args.data_dir)
        report["frey"] = compare_frey(frey_train, frey_test, args.thread_counts, args.frey_repeats,
                                      torch, seed=args.seed, load_before=quiet.load_before,
                                      overlap=args.overlap)
    if args.memory or args.all:
        report["memory"] = measure_memory(args)
    q = quiet.result()
    report["machine"].update(load_before=q["load_before"], load_after=q["load_after"],
                             others_cores=q["others_cores"])
    report["noisy"] = q["noisy"] or any(r["quiet"]["noisy"] for by_batch in report["comparisons"].values()
                                        for r in by_batch.values())
    report["goals"] = check_goals(report["comparisons"], report.get("frey"))
    if os.environ.get("OPENBLAS_CORETYPE") and not args.coretype_child:
        report["coretype_unset"] = rerun_without_coretype(args)
        report["headline"] = f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} (as set)"
    if not args.coretype_child:
        print(format_table(report))
    write_json(report, args.json)
    if not args.coretype_child:
        print(f"wrote {args.json}")
    return 0


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(
        prog="scratchvae bench", description=__doc__.split("\n\n")[0].strip("`"),
        formatter_class=argparse.RawDescriptionHelpFormatter))
    return run(parser.parse_args(argv))


def rerun_without_coretype(args, log=print):
    """The same benchmark in a child process whose environment lacks OPENBLAS_CORETYPE
    (OpenBLAS reads it when it loads, so only a new process can measure without it).
    Only the benchmark command does this; tests and CI never change the variable."""
    import tempfile
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    package_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unset.json"
        argv = [sys.executable, "-m", "scratchvae.experiments.bench", *_argv_of(args),
                "--json", str(path), "--coretype-child"]
        log("  OPENBLAS_CORETYPE unset: the same measurement in a separate process")
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the run without OPENBLAS_CORETYPE failed:\n{done.stderr.strip()}")
        return json.loads(path.read_text())


def _argv_of(args):
    """The command line of ``args``, for a child process (memory and scale stay with the parent)."""
    argv = ["--dataset", args.dataset, "--batch-sizes", *map(str, args.batch_sizes),
            "--repeats", str(args.repeats), "--hidden", str(args.hidden), "--z-dim", str(args.z_dim),
            "--lr", str(args.lr), "--threads", *map(str, args.thread_counts), "--seed", str(args.seed),
            "--frey-repeats", str(args.frey_repeats), "--overlap", args.overlap]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    if args.no_torch:
        argv.append("--no-torch")
    if args.frey or args.all:
        argv.append("--frey")
    return argv
