"""The ``scratchvae`` command (also ``python -m scratchvae``).

    scratchvae train       train a VAE; write checkpoint, metrics and figures into --out
    scratchvae evaluate    held-out ELBO and the importance-sampled bound L_k of a run
    scratchvae plot        redraw a run's figures, or compare runs' learning curves
    scratchvae gradcheck   check every derivation against finite differences
    scratchvae data        download (fetch) or check (verify) MNIST and Frey Face
    scratchvae exercises   write a workbook of exercises (start) or grade one (check)
    scratchvae bench       time scratchvae against PyTorch and the GEMM floor
    scratchvae reproduce   regenerate the results of Kingma & Welling (2013)

Flags follow pytorch/examples (``--epochs``, ``--batch-size``, ``--lr``, ...). Every command
takes ``--threads N``, the threads of NumPy's matrix products (default: one; README, "Threads").
Bad input ends with one line on stderr and a non-zero exit status, never a traceback.
"""
import argparse
import importlib
import json
import math
import shlex
import sys
import time
from pathlib import Path

from ..backend import DEFAULT_THREADS, available_cores, set_threads
from ..layers import INITS
from ..optim import OPTIMIZERS
from . import exercises
from .arguments import positive_float, positive_int

DATASETS = ("digits", "mnist", "frey")
EPOCHS = {"digits": 200, "mnist": 10, "frey": 100}   # when neither --epochs nor --samples is given
DEFAULT_RUN = "runs/digits-z2"                        # where the default `scratchvae train` writes


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line on stderr (with where to find
    the options), not the whole usage block. Subcommands' parsers are of this class too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _common(p, out_help):
    p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ and frey/ "
                   "(default: $SCRATCHVAE_DATA_DIR or ./data)")
    p.add_argument("--no-download", action="store_true",
                   help="never download: fail with instructions if data files are missing")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                   help="where to compute (default: cpu; gpu needs CuPy)")
    p.add_argument("--out", metavar="DIR", help=out_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------
def _add_train(sub):
    p = sub.add_parser("train", help="train a VAE and draw its figures",
                       description="Train a VAE. Writes checkpoint.npz, metrics.jsonl and the "
                       "figures (PNG) into --out. Without options: the embedded 8x8 digits, "
                       "a 2-D latent space, a few seconds on a laptop.")
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits (embedded, no download), mnist or frey (default: digits)")
    p.add_argument("--epochs", type=positive_int,
                   help="passes over the training images (default: "
                   + ", ".join(f"{k} {v}" for k, v in EPOCHS.items()) + ")")
    p.add_argument("--samples", type=positive_int, metavar="N",
                   help="train on N training images in all instead of --epochs (the x-axis "
                   "of the paper's Figure 2)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="images per step (default: 100)")
    p.add_argument("--lr", type=positive_float,
                   help="learning rate (default: the optimizer's: adam 1e-3, adagrad 0.01, sgd 0.01)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam", help="(default: adam)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--latent-dim", type=positive_int, default=2,
                   help="size of z (default: 2, which allows the manifold figure)")
    p.add_argument("--hidden-dim", type=positive_int, nargs="+", default=[400], metavar="H",
                   help="hidden layer sizes of the encoder; the decoder mirrors them (default: 400)")
    p.add_argument("--likelihood", choices=("bernoulli", "gaussian"),
                   help="p(x|z) (default: gaussian for frey, bernoulli otherwise)")
    p.add_argument("--activation", choices=("relu", "tanh", "sigmoid", "softplus"), default="relu",
                   help="hidden nonlinearity (default: relu)")
    p.add_argument("--init", choices=INITS, default="glorot",
                   help="weight initialization (default: glorot)")
    p.add_argument("--weight-decay", type=float, default=0.0, metavar="LAMBDA",
                   help="lambda/2 |theta|^2 added to the loss (default: 0)")
    p.add_argument("--binarization", choices=("none", "fixed", "dynamic"), default="none",
                   help="grey pixels as they are, or binary images drawn once or every batch "
                   "(default: none)")
    p.add_argument("--algorithm", choices=("aevb", "wake-sleep"), default="aevb",
                   help="AEVB (the VAE's ELBO gradient) or the wake-sleep algorithm on the same "
                   "encoder and decoder (default: aevb)")
    p.add_argument("--sleep-batch-size", type=positive_int, metavar="N",
                   help="wake-sleep only: dreams per sleep phase (default: --batch-size)")
    p.add_argument("--split", choices=("random", "contiguous"), default="random",
                   help="frey only: random 1600/365 frames (the paper's, default) or contiguous "
                   "(the last 465 frames held out)")
    p.add_argument("--split-seed", type=int, default=0, metavar="S",
                   help="seed of the random train/held-out split (default: 0, the documented one)")
    p.add_argument("--eval-every", type=positive_int, metavar="N",
                   help="evaluate every N training samples (default: every epoch); a "
                   "checkpoint is saved at the first evaluation 30 s after the last, and at the end")
    _common(p, "run folder (default: runs/<dataset>-z<latent-dim>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out (same options; a larger --epochs or "
                   "--samples trains further)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--overlap", choices=("auto", "on", "off"), default="off",
                   help="make the decoder's weight gradients and optimizer update on a second "
                   "core while the encoder's backward runs (the same numbers, bit for bit); "
                   "auto: where a core is idle (default: off; not yet shown to pay, see "
                   "docs/threads.md)")
    p.set_defaults(func=cmd_train)


def _load_data(args, name, split="random", split_seed=0):
    from ..data.datasets import load_dataset

    return load_dataset(name, data_dir=args.data_dir, download=not args.no_download,
                        seed=split_seed, split=split)


def cmd_train(args, argv):
    from ..training import plots
    from ..training.checkpoint import writable_dir
    from ..training.trainer import CHECKPOINT, Trainer, TrainingInterrupted
    from ..models.wake_sleep import WakeSleep
    from ..vae import VAE

    if args.sleep_batch_size is not None and args.algorithm != "wake-sleep":
        raise UsageError("--sleep-batch-size applies to --algorithm wake-sleep only")
    if args.split_seed < 0:
        raise UsageError(f"--split-seed must be an integer >= 0, got {args.split_seed}")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if args.epochs is not None and args.samples is not None:
        raise UsageError("give --epochs or --samples, not both")
    out = writable_dir(args.out or f"runs/{args.dataset}-z{args.latent_dim}")  # fail early
    if args.resume and not (out / CHECKPOINT).is_file():
        raise UsageError(f"--resume: there is no checkpoint in {str(out)!r} to continue from")
    if not args.resume and not args.overwrite and (out / CHECKPOINT).exists():
        raise UsageError(f"{str(out)!r} already holds a run; add --resume to continue it, "
                         f"--overwrite to start it again, or choose another --out")
    data = _load_data(args, args.dataset, args.split, args.split_seed)
    likelihood = args.likelihood or data.likelihood
    wake_sleep = {} if args.algorithm == "aevb" else {"sleep_batch_size": args.sleep_batch_size}
    model = (WakeSleep if wake_sleep else VAE)(
        data.train.shape[1], args.latent_dim, tuple(args.hidden_dim), likelihood=likelihood,
        activation=args.activation, init=args.init, weight_decay=args.weight_decay,
        device=args.device, seed=args.seed, **wake_sleep)
    optimizer = OPTIMIZERS[args.optimizer](model.named_parameters(),
                                           **({} if args.lr is None else {"lr": args.lr}))
    run_info = {"dataset": data.name, "image_shape": list(data.image_shape), "split": data.split}
    # only what differs from the defaults, so that runs begun before these options still resume
    run_info.update({k: v for k, v in (("split_option", args.split), ("split_seed", args.split_seed))
                     if v != {"split_option": "random", "split_seed": 0}[k]})
    if wake_sleep:
        run_info.update(algorithm="wake-sleep", **wake_sleep, **model.settings())
    trainer = Trainer(model, optimizer, data.train, data.test, batch_size=args.batch_size,
                      binarization=args.binarization, seed=args.seed, out=out, run_info=run_info,
                      progress=not args.no_progress, overwrite=args.overwrite, overlap=args.overlap)
    if args.resume:
        trainer.resume()
    if args.samples is not None:
        target = {"samples": args.samples}
        n_evals = args.samples / (args.eval_every or data.train.shape[0])
    else:
        epochs = args.epochs or EPOCHS[args.dataset]
        target = {"epochs": epochs}
        n_evals = epochs * data.train.shape[0] / (args.eval_every or data.train.shape[0])
    every = max(1, round(n_evals / 10))              # about ten lines per run

    def log(record):
        if len(trainer.history) % every == 0:
            _write(f"epoch {record['epoch']:8.2f}  samples {record['samples']:>10}  "
                   f"train elbo {record['train_elbo']:9.3f}  held-out elbo {record['test_elbo']:9.3f}  "
                   f"({record['wall_time']:.1f} s)")

    print(f"training on {data.split}; {model}; {args.optimizer} lr={optimizer.lr:g}; "
          f"writing into {out}")
    try:
        trainer.fit(**target, eval_every=args.eval_every, log=log)
    except TrainingInterrupted as e:
        command = ["scratchvae", *argv] + ([] if args.resume else ["--resume"])
        raise TrainingInterrupted(f"{e}: {shlex.join(command)}") from None
    last = trainer.history[-1] if trainer.history else None
    if last:
        print(f"done: {last['samples']} training samples ({last['epoch']:g} epochs), "
              f"train elbo {last['train_elbo']:.3f}, held-out elbo {last['test_elbo']:.3f} nats "
              f"per image; checkpoint {trainer.checkpoint_path}")
    if not args.no_plots:
        test_x = trainer.images.eval_sets["test"]
        paths = plots.plot_run(model, data.image_shape, test_x, out,
                               test_labels=None if data.test_labels is None
                               else data.test_labels[: test_x.shape[0]])
        print("figures: " + ", ".join(str(p) for p in paths))
    return 0


def _write(line):
    from tqdm import tqdm

    tqdm.write(line)


# ---------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------
def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="held-out ELBO and importance-sampled bound L_k of a run",
                       description="Evaluate a trained run on its held-out images: the ELBO "
                       "over all of them, and L_k = E[log 1/k sum_i p(x, z_i)/q(z_i|x)], which "
                       "approaches log p(x) from below as k grows (Burda et al. 2016). Writes "
                       "evaluation.json into the run folder.")
    p.add_argument("--k", type=int, default=1000,
                   help="importance samples per image for L_k; 0 skips it (default: 1000; "
                   "the literature uses 5000)")
    p.add_argument("--n-images", type=positive_int, default=1000,
                   help="held-out images for L_k (default: 1000)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="images at once (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation noise (default: 0)")
    _common(p, f"run folder to evaluate (default: {DEFAULT_RUN})")
    p.set_defaults(func=cmd_evaluate)


def _load_run(args):
    """The model, checkpoint and data of the run in ``args.out``."""
    from ..training.checkpoint import load_model

    out = Path(args.out or DEFAULT_RUN)
    model, c = load_model(out / "checkpoint.npz", device=args.device)
    settings = c.meta.get("settings", {})
    data = None
    if "dataset" in settings:
        data = _load_data(args, settings["dataset"], settings.get("split_option", "random"),
                          settings.get("split_seed", 0))
        if data.split != settings.get("split", data.split):
            raise UsageError(f"{str(out)!r} was trained on {settings['split']!r}, but the data "
                             f"now split the same way give {data.split!r}")
    return out, model, c, data


def _heldout(model, settings, data):
    """The held-out images a run was evaluated on while it trained (same binarization and
    seed), in the model's dtype and on its device."""
    from ..backend import to_device
    from ..training.images import heldout_images

    x = heldout_images(data.test, settings["binarization"], settings["seed"])
    return to_device(x.astype(model.dtype), model.device)


def cmd_evaluate(args, argv):
    from ..training.checkpoint import atomic_write
    from ..training.evaluate import evaluate_elbo, importance_sampled_bound

    if args.k < 0:
        raise UsageError(f"--k must be >= 0, got {args.k}")
    out, model, c, data = _load_run(args)
    if data is None:
        raise UsageError(f"{str(out)!r} does not name its dataset; evaluate it from Python")
    s = c.meta["settings"]
    x = _heldout(model, s, data)
    t0 = time.perf_counter()
    elbo = evaluate_elbo(model, x, batch_size=max(args.batch_size, 1000), seed=args.seed)
    result = {"run": str(out), "samples_trained": c.meta.get("progress", {}).get("samples"),
              "n_test": int(x.shape[0]), "test_elbo": elbo.elbo, "test_rec": elbo.rec,
              "test_kl": elbo.kl}
    print(f"held-out ELBO over {x.shape[0]} images: {elbo.elbo:.3f} nats "
          f"(rec {elbo.rec:.3f}, kl {elbo.kl:.3f}) in {time.perf_counter() - t0:.1f} s")
    if args.k:
        n = min(args.n_images, x.shape[0])
        t0 = time.perf_counter()
        bound = importance_sampled_bound(model, x[:n], k=args.k, batch_size=args.batch_size,
                                         seed=args.seed, progress=not args.no_progress
                                         and sys.stderr.isatty())
        seconds = time.perf_counter() - t0
        result.update({"k": args.k, "n_images": n, "L_k": float(bound.mean()),
                       "L_k_stderr": float(bound.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
                       "L_k_seconds": round(seconds, 2)})
        print(f"L_{args.k} over the first {n} held-out images: {bound.mean():.3f} nats "
              f"in {seconds:.1f} s")
    with atomic_write(out / "evaluation.json", "w") as f:
        json.dump(result, f, indent=1)
    print(f"written: {out / 'evaluation.json'}")
    return 0


# ---------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------
def _add_plot(sub):
    from ..training.plots import FIGURES

    p = sub.add_parser("plot", help="draw a run's figures, or compare runs' learning curves",
                       description="Draw figures of a trained run as PNG files: the 2-D latent "
                       "manifold (Figure 4 of Kingma & Welling 2013), prior samples (Figure 5), "
                       "latent means by label, reconstructions, and the lower bound against "
                       "training samples (Figure 2), for one or several runs.")
    p.add_argument("kind", choices=(*FIGURES, "all"), help="which figure")
    p.add_argument("--runs", nargs="+", metavar="DIR",
                   help="for curves: the run folders (or metrics.jsonl files) to compare "
                   "(default: --out)")
    p.add_argument("--labels", nargs="+", help="for curves: one legend label per run")
    p.add_argument("--output", metavar="PNG", help="file to write (default: <out>/<kind>.png; "
                   "with --runs, curves.png in the current folder)")
    _common(p, f"run folder (default: {DEFAULT_RUN})")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args, argv):
    from ..training import plots
    from ..training.checkpoint import writable_dir

    out = Path(args.out or DEFAULT_RUN)
    if args.output and args.kind == "all":
        raise UsageError("--output names one file; with 'all' the figures go into --out")
    output = Path(args.output) if args.output else None
    if output is not None:
        writable_dir(output.parent)
    if args.kind == "curves":
        # several runs are no one run's figure: into the current folder, not into --out
        default = out / "curves.png" if not args.runs else Path("curves.png")
        path = plots.plot_curves(args.runs or [out], output or default, labels=args.labels)
        print(f"written: {path}")
        return 0
    out, model, c, data = _load_run(args)
    s = c.meta.get("settings", {})
    if args.kind == "manifold" and model.z_dim != 2:
        raise UsageError(f"the manifold figure needs a 2-D latent space; the run in {str(out)!r} "
                         f"has {model.z_dim}")
    if data is None or "image_shape" not in s:
        raise UsageError(f"{str(out)!r} does not name its dataset; plot it from Python")
    x = _heldout(model, s, data)
    kinds = plots.FIGURES if args.kind == "all" else [args.kind]
    paths = plots.plot_run(model, s["image_shape"], x, out, test_labels=data.test_labels,
                           kinds=kinds, output=output)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


# ---------------------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------------------
def _add_gradcheck(sub):
    p = sub.add_parser("gradcheck", help="check every derivation against finite differences",
                       description="Run every derivation check of scratchvae, in the order of "
                       "the lecture notes: each hand-written gradient against central "
                       "differences in float64, each identity two ways, each expectation against "
                       "a Monte Carlo estimate. Prints one row per check; exits with status 1 if "
                       "any fails.")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                   help="run the checks with NumPy (cpu) or CuPy (gpu) (default: cpu)")
    p.set_defaults(func=cmd_gradcheck)


def cmd_gradcheck(args, argv):
    from ..backend import xp_for
    from ..derivations import format_table, run_all

    checks = run_all(xp_for(args.device))
    print(format_table(checks))
    failed = [c for c in checks if not c.passed]
    for c in failed:
        print(f"\nFAILED {c.name}: {c.formula}\n  {c.details}")
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
def _add_data(sub):
    p = sub.add_parser("data", help="download (fetch) or check (verify) MNIST and Frey Face",
                       description="fetch: download the missing files of a dataset into the "
                       "data folder, each checked against its published checksum. verify: check "
                       "the files present, without downloading.")
    p.add_argument("action", choices=("fetch", "verify"))
    p.add_argument("--dataset", choices=("mnist", "frey", "all"), default="all",
                   help="(default: all)")
    p.add_argument("--data-dir", metavar="DIR", help="(default: $SCRATCHVAE_DATA_DIR or ./data)")
    p.set_defaults(func=cmd_data)


def cmd_data(args, argv):
    from ..data import datasets

    names = ("mnist", "frey") if args.dataset == "all" else (args.dataset,)
    ok = True
    for name in names:
        statuses = (datasets.fetch(name, args.data_dir) if args.action == "fetch"
                    else datasets.verify(name, args.data_dir))
        for status in statuses:
            print(status)
            ok &= status.ok or not status.file.required
    if not ok and args.action == "verify":
        where = args.data_dir or datasets.default_data_dir()
        raise DataMissing(f"required files are missing or damaged in {str(where)!r}: download them "
                          f"with `scratchvae data fetch --dataset {args.dataset}`, or give the "
                          f"folder that holds them with --data-dir (or $SCRATCHVAE_DATA_DIR)")
    return 0 if ok else 1


class DataMissing(Exception):
    """``data verify`` found required files missing or damaged: one line, exit status 1."""


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------
def build_parser():
    parser = Parser(
        prog="scratchvae", description="A Variational Autoencoder from scratch in NumPy: train "
        "it, evaluate it, draw the figures of Kingma & Welling (2013), check its gradients.",
        epilog="Run `scratchvae COMMAND --help` for the options of a command.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_plot(sub)
    _add_gradcheck(sub)
    _add_data(sub)
    exercises.add_parser(sub)
    _add_module(sub, "bench", "time scratchvae against PyTorch and the GEMM floor")
    _add_module(sub, "reproduce", "regenerate the results of Kingma & Welling (2013)")
    _add_threads(parser)
    return parser


THREADS_HELP = ("threads for NumPy's matrix products (default: %d; see the README, "
                "\"Threads\")" % DEFAULT_THREADS)


def _add_threads(parser, top=True):
    """``--threads N`` on ``parser`` and on every (sub)command under it that has none of its own."""
    if "--threads" not in parser._option_string_actions:
        parser.add_argument("--threads", type=positive_int, metavar="N", help=THREADS_HELP,
                            default=None if top else argparse.SUPPRESS)   # keep the top's value
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _add_threads(subparser, top=False)


def _add_module(sub, name, help):
    """A command whose options and work live in the module ``scratchvae.experiments.<name>``
    (it provides ``add_arguments(parser)`` and ``run(args)``)."""
    module = importlib.import_module(f"scratchvae.experiments.{name}")
    p = sub.add_parser(name, help=help, description=module.__doc__.strip().split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    p.set_defaults(func=lambda args, argv: module.run(args))


def _expected_errors():
    """The exceptions that mean bad input or a fault the message explains."""
    from ..backend import DeviceError
    from ..data.download import DataError
    from ..training.trainer import TrainingDiverged

    return (UsageError, DataMissing, ValueError, TypeError, OSError, DeviceError, DataError,
            TrainingDiverged)


def main(argv=None):
    """Entry point of the ``scratchvae`` console script; returns the exit status."""
    from ..training.trainer import TrainingInterrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    threads = args.threads or DEFAULT_THREADS
    if threads > available_cores():       # refused, not capped: a run must use what it says it used
        print(f"scratchvae {args.command}: error: --threads {threads} is more than the "
              f"{available_cores()} cores this process may use (BLAS threads beyond the cores only "
              f"wait for each other); give at most {available_cores()}", file=sys.stderr)
        return 2
    set_threads(threads)
    try:
        return args.func(args, argv)
    except TrainingInterrupted as e:
        print(f"scratchvae: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("scratchvae: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as e:
        message = str(e).strip() or type(e).__name__
        status = 2 if isinstance(e, UsageError) else 1
        print(f"scratchvae {args.command}: error: {message}", file=sys.stderr)
        return status
