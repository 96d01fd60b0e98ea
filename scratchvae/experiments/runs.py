"""The runs of Kingma & Welling (2013), section 5, Figure 2: what a named run is, and how it
is trained and evaluated.

A run is named ``<dataset>-z<latent size>[-ws][-sd0.01|-sd0.1][-contiguous][-s<split seed>][-r<seed>]``:
``frey-z2`` ... ``frey-z20``, ``mnist-z3`` ... ``mnist-z200`` (and ``digits-z2``, a
seconds-long stand-in that needs no download); ``-ws`` trains it with the wake-sleep
algorithm instead of AEVB (also ``--algorithm wake-sleep``), ``-sd0.1`` / ``-sd0.01`` draws
the initial weights with that standard deviation instead of the algorithm's own (``INIT``:
``frey-z2-sd0.1`` is AEVB from wake-sleep's scale, ``frey-z2-ws-sd0.01`` wake-sleep from
AEVB's), ``-contiguous`` uses Frey
Face's contiguous split (``--split contiguous``), ``-s3`` the random split of seed 3
(``--split-seed 3``), ``-r2`` the run's own seed 2 (initial weights, minibatch order, noise;
default 0). Each uses the paper's settings (section 5):

    one hidden layer of tanh units in encoder and decoder: 200 (Frey Face), 500 (MNIST)
    p(x|z): Gaussian with sigmoid mean and learned variance (Frey Face, pixels / 256),
            Bernoulli (MNIST)
    minibatches of 100, one sample of z per image (S = 1; the paper writes L = 1)
    Adagrad, global step size from {0.01, 0.02, 0.1} chosen on the training bound of the
            first iterations (``stepsize``)
    weights drawn from "N(0, 0.01)"; a N(0, I) prior on the parameters, spread over the
            N training images as weight decay 1/N per image

Where the paper is silent this module follows the authors' code (the public ``anglepy``
library and its experiment scripts):

    Adagrad's warm-up: the first 101 steps only accumulate squared gradients (``step_vae``
            updates once its step counter, starting at 0, exceeds 100)
    Frey Face split: the frames shuffled, 1600 train / 365 held-out (``gpulearn_z_x``);
            here the shuffle is ``np.random.default_rng(0).permutation(1965)``
    weight decay: the prior's gradient times batch / N_train added to the summed
            minibatch gradient, i.e. 1/N per image with the mean used here (Adagrad does
            not see the difference of scale)
    wake-sleep: the decoder's update first, then dreams of the updated decoder for the
            sleep phase (``step_wakesleep``); the encoder's log-variance outputs start with
            zero weights and biases (``VAE_Z_X.init_w``); see scratchvae.models.wake_sleep
    initial weights: N(0, 0.01^2), standard deviation 0.01 (``init_w(std=1e-2)``), for AEVB

and departs from it in one place: wake-sleep starts from N(0, 0.1^2), the paper's
"N(0, 0.01)" read as a variance, as the paper writes N(mu, sigma^2); from the code's
N(0, 0.01^2) wake-sleep does not leave the prior on Frey Face at Nz = 2 and 5 (``INIT``)

and chooses itself: MNIST images are binarized afresh for every minibatch (dynamic
binarization; the held-out images once, with a fixed seed); MNIST's split is 60k/10k, or
9k/1k of the test file when only that is present; the prior covers biases as well as
weight matrices (the authors' code leaves biases out; see the results page).

Training evaluates the bound at log-spaced numbers of training samples (the x-axis of
Figure 2), on all held-out images (at most 1000) and on as many training images (a fixed
subset). A run stops at its sample target or, with ``max_minutes``, before the next
evaluation point it could not reach in time; it resumes from its checkpoint when
started again.
"""
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

STEP_SIZES = (0.01, 0.02, 0.1)          # the paper's candidates
RUNS_DIR = "runs/reproduce"
LATENT_SIZES = {"frey": (2, 5, 10, 20), "mnist": (3, 5, 10, 20, 200), "digits": (2,)}  # Figure 2
ALGORITHMS = ("aevb", "wake-sleep")
SPLITS = ("random", "contiguous")
BATCH_SIZE = 100
ADAGRAD_WARMUP = 101                    # steps that only accumulate g^2, as in the authors' code
EVAL_SIZE = 1000                        # held-out images per evaluation point, at most
EVAL_K, EVAL_IMAGES = 5000, 200
PLATFORM = "platform.json"              # beside a run's checkpoint: where each session ran


@dataclass(frozen=True)
class Experiment:
    """One model of the paper: a dataset, a latent size and the settings that go with it."""
    dataset: str
    z_dim: int
    hidden: int
    lr: float                           # chosen by `stepsize`, see STEP_SIZE_CHOICE
    binarization: str
    algorithm: str = "aevb"
    split: str = "random"               # Frey Face only: "random" (the paper's) or "contiguous"
    split_seed: int = 0
    seed: int = 0                       # the run's own: initial weights, batch order, noise
    init: str = "paper"                 # see INIT

    @property
    def name(self):
        return (f"{self.dataset}-z{self.z_dim}" + ("-ws" if self.algorithm == "wake-sleep" else "")
                + ("" if self.own_init else f"-{SCALE_NAMES[self.init]}")
                + ("-contiguous" if self.split == "contiguous" else "")
                + (f"-s{self.split_seed}" if self.split_seed else "")
                + (f"-r{self.seed}" if self.seed else ""))

    @property
    def own_init(self):
        """Whether the run starts from its algorithm's initial weights (``INIT``), as the
        runs of the figures do; the others (``-sd...``) measure what the scale does."""
        return self.init == INIT[self.algorithm]


# The initial weights of each algorithm (scratchvae.layers.init_weights). AEVB: N(0, 0.01^2), the
# authors' code. Wake-sleep: N(0, 0.1^2), the paper's "N(0, 0.01)" read as a variance; from
# N(0, 0.01^2) wake-sleep stays at the prior on Frey Face at Nz = 2 and 5 (see
# scratchvae.models.wake_sleep, "Which one mattered"). No one scale is best: on MNIST the larger
# one slows wake-sleep at Nz = 20 and 200 (the results page sets the two side by side).
INIT = {"aevb": "paper", "wake-sleep": "paper-variance"}
SCALE_NAMES = {"paper": "sd0.01", "paper-variance": "sd0.1"}   # a name's -sd suffix: the other one's scale

# Adagrad step sizes chosen with `reproduce stepsize` (docs/results/stepsize.json): the
# candidate with the highest training bound after the first 10^5 samples.
STEP_SIZE_CHOICE = {"frey": 0.01, "mnist": 0.01, "digits": 0.1}
HIDDEN = {"frey": 200, "mnist": 500, "digits": 50}
BINARIZATION = {"frey": "none", "mnist": "dynamic", "digits": "dynamic"}
NAME = re.compile(r"(frey|mnist|digits)-z(\d+)(-ws)?(?:-(sd0\.01|sd0\.1))?(-contiguous)?(?:-s(\d+))?(?:-r(\d+))?")


def _non_negative_int(option, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"--{option} must be an integer >= 0, got {value!r}")


def experiment(name, lr=None, algorithm=None, split=None, split_seed=None, seed=None):
    """The :class:`Experiment` called ``name`` (``frey-z20``, ``frey-z20-ws``, ...), optionally
    with another step size; ``algorithm``, ``split``, ``split_seed`` and ``seed`` (the command
    line's options) add to what the name says and must not contradict it."""
    m = NAME.fullmatch(str(name))
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"experiment must be <dataset>-z<latent size>[-ws][-sd0.01|-sd0.1][-contiguous]"
                         f"[-s<seed>][-r<seed>] with dataset frey, mnist or digits, e.g. frey-z20 or "
                         f"frey-z20-ws; got {name!r}")
    ds = m.group(1)
    named = {"algorithm": "wake-sleep" if m.group(3) else "aevb",
             "split": "contiguous" if m.group(5) else "random",
             "split_seed": int(m.group(6) or 0), "seed": int(m.group(7) or 0)}
    init = {v: k for k, v in SCALE_NAMES.items()}[m.group(4)] if m.group(4) else None
    for option, value, allowed in (("algorithm", algorithm, ALGORITHMS), ("split", split, SPLITS)):
        if value is not None and value not in allowed:
            raise ValueError(f"--{option} must be one of {', '.join(allowed)}; got {value!r}")
    _non_negative_int("split-seed", split_seed)
    _non_negative_int("seed", seed)
    given = {"algorithm": algorithm, "split": split, "split_seed": split_seed, "seed": seed}
    for key, value in given.items():
        if value is None:
            continue
        in_name = named[key] != Experiment.__dataclass_fields__[key].default
        if in_name and named[key] != value:
            raise ValueError(f"--{key.replace('_', '-')} {value} contradicts the experiment "
                             f"name {name!r}")
        named[key] = value
    if ds != "frey" and named["split"] != "random":
        raise ValueError(f"--split {named['split']} applies to frey only, not to {name!r}")
    return Experiment(ds, int(m.group(2)), HIDDEN[ds], STEP_SIZE_CHOICE[ds] if lr is None else lr,
                      BINARIZATION[ds], init=init or INIT[named["algorithm"]], **named)


def figure2_names(datasets=("frey", "mnist")):
    """Every run of the paper's Figure 2: each dataset, latent size and algorithm."""
    return [f"{ds}-z{z}{suffix}" for ds in datasets for z in LATENT_SIZES[ds] for suffix in ("", "-ws")]


def spread_names(z_dim=20, shuffles=3, seeds=3):
    """The Frey Face runs that measure the spread of a result: ``shuffles`` random splits
    (``-s``) times ``seeds`` seeds of the run itself (``-r``), AEVB, Nz = ``z_dim``."""
    return [experiment(f"frey-z{z_dim}", split_seed=s, seed=r).name
            for s in range(shuffles) for r in range(seeds)]


def scale_names():
    """Figure 2's models from the other algorithm's initial weights: on Frey Face AEVB from
    N(0, 0.1^2) at every Nz and wake-sleep from N(0, 0.01^2) where it stays at the prior; on
    MNIST wake-sleep from N(0, 0.01^2) at every Nz, where the larger scale slows it."""
    return ([f"frey-z{z}-{SCALE_NAMES['paper-variance']}" for z in LATENT_SIZES["frey"]]
            + [f"frey-z{z}-ws-{SCALE_NAMES['paper']}" for z in (2, 5)]
            + [f"mnist-z{z}-ws-{SCALE_NAMES['paper']}" for z in LATENT_SIZES["mnist"]])


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
    from ..models.wake_sleep import WakeSleep
    from ..optim import Adagrad
    from ..training.trainer import Trainer
    from ..vae import VAE

    n_train = data.train.shape[0]
    model_cls = WakeSleep if exp.algorithm == "wake-sleep" else VAE   # same networks, init, prior
    model = model_cls(data.train.shape[1], exp.z_dim, (exp.hidden,), likelihood=data.likelihood,
                activation="tanh", init=exp.init, weight_decay=1.0 / n_train, device=device, seed=seed)
    optimizer = Adagrad(model.named_parameters(), lr=exp.lr, warmup=ADAGRAD_WARMUP)
    run_info = {"dataset": data.name, "image_shape": list(data.image_shape), "split": data.split,
                "experiment": exp.name, "algorithm": exp.algorithm,
                "adagrad_warmup": ADAGRAD_WARMUP}
    if exp.algorithm == "wake-sleep":   # its update order and initialization: a run resumes only with the same
        run_info.update(model.settings())
    return Trainer(model, optimizer, data.train, data.test, batch_size=BATCH_SIZE,
                   binarization=exp.binarization, seed=seed, out=out, run_info=run_info,
                   progress=False, eval_size=EVAL_SIZE, overwrite=overwrite, checkpoint_every=0)


def train(exp, data, out, samples, max_minutes=None, seed=0, device="cpu", overwrite=False,
          print_fn=print):
    """Train ``exp`` towards ``samples`` training samples, evaluating at :func:`eval_points`.

    Continues the run in ``out`` if it holds one (unless ``overwrite``). With
    ``max_minutes``, no evaluation point is started that the measured speed says would
    end after the budget; the remaining time then goes to a last stretch rounded down to
    10^5 samples. Records where this session ran in ``out/platform.json``. Returns the
    trainer."""
    from ..training.trainer import CHECKPOINT

    out = Path(out)
    trainer = build_trainer(exp, data, out, seed, device, overwrite)
    if (out / CHECKPOINT).is_file() and not overwrite:
        trainer.resume()
        print_fn(f"{exp.name}: resuming at {trainer.samples} samples")
    if trainer.samples < samples:
        record_platform(out, trainer.samples, overwrite)
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


def record_platform(out, samples, overwrite=False):
    """Append where this session of the run in ``out`` runs, from ``samples`` on, to
    ``out/platform.json`` (a list of sessions; started afresh with ``overwrite``), with the
    session's start time, which tells a run from a rerun of the same command."""
    import datetime

    from ..training.checkpoint import atomic_write
    from .bench.machine import platform_now

    path = Path(out) / PLATFORM
    try:
        sessions = [] if overwrite or not path.is_file() else json.loads(path.read_text())
    except ValueError:
        sessions = []
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    sessions.append({"from_samples": samples, "started": started, **platform_now()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(sessions, f, indent=1)


def load_data(exp, data_dir):
    from ..data.datasets import load_dataset

    return load_dataset(exp.dataset, data_dir=data_dir, download=False, seed=exp.split_seed,
                        split=exp.split)


def stepsize(names, runs_dir, samples, results_dir, data_dir=None, seed=0, device="cpu",
             options=None, print_fn=print):
    """Short runs with each candidate step size; the paper chose "based on performance on
    the training set in the first few iterations". Writes ``results_dir/stepsize.json``.
    ``options``: ``{algorithm, split, split_seed}`` for :func:`experiment`."""
    from ..training.checkpoint import atomic_write

    options = options or {}
    results = []
    for name in names:
        for lr in STEP_SIZES:
            exp = experiment(name, lr, **options)
            t0 = time.perf_counter()
            trainer = train(exp, load_data(exp, data_dir), Path(runs_dir) / "stepsize" / f"{exp.name}-lr{lr:g}",
                            samples, seed=seed, device=device, overwrite=True, print_fn=print_fn)
            r = trainer.history[-1]
            results.append({"experiment": exp.name, "lr": lr, "samples": r["samples"],
                            "train_elbo": r["train_elbo"], "test_elbo": r["test_elbo"],
                            "seconds": round(time.perf_counter() - t0, 1)})
    for name in names:
        rows = [r for r in results if r["experiment"] == name]
        best = max(rows, key=lambda r: r["train_elbo"])
        print_fn(f"{name}: best step size {best['lr']:g} (train bound {best['train_elbo']:.2f} "
                 f"after {best['samples']} samples)")
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "stepsize.json", "w") as f:
        json.dump(results, f, indent=1)
    print_fn(f"written: {out / 'stepsize.json'}")
    return results


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
