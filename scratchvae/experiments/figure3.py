"""The paper's Figure 3: the marginal likelihood of AEVB, wake-sleep and Monte Carlo EM on MNIST.

    python -m scratchvae.experiments.figure3_cli train aevb-small mcem-small ...   train (resumes if begun)
    python -m scratchvae.experiments.figure3_cli report --page docs/figure3.md     figure, data and page

(also ``scratchvae reproduce figure3 ...``). A run is named ``<method>-<size>``: method ``aevb``,
``wake-sleep`` or ``mcem`` (batch Monte Carlo EM, the paper's), or ``mcem-online`` (a named
option: Monte Carlo EM one minibatch at a time, :meth:`scratchvae.models.mcem.MCEM.train_step`);
size ``small`` (the first 1000 training images) or ``large`` (every training image
``load_dataset("mnist")`` gives: 50000 or 60000 with the full training file, the 9000 of the
test-file split otherwise; the run records which).

The settings are the paper's (section 5, appendices D and E) where it gives them, else those of
the authors' public code (the anglepy library), else this module's choices; each is a constant
below, and ``report`` writes the page that lists them (:func:`settings_rows`). A run estimates
log p(x) with the appendix-D estimator at log-spaced numbers of training samples (4 per decade
from 10^4), on the first ``--n-eval`` training and held-out images, and writes a checkpoint there
from which it resumes bitwise; at its last point it also measures ELBO and L_5000 (AEVB,
wake-sleep) and the estimate with the chains started at the model's own guess of z.
"""
import json
import math
import time
from pathlib import Path

import numpy as np

from .bench.machine import platform_now

METHODS = ("aevb", "wake-sleep", "mcem")        # the paper's three
OPTIONS = ("mcem-online",)                        # named options, not in the paper's figure
SIZES = ("small", "large")
RUNS = tuple(f"{m}-{s}" for m in METHODS for s in SIZES)
SMALL_N = 1000
Z_DIM, HIDDEN, BATCH_SIZE, LR = 3, 100, 100, 0.01
ADAGRAD_WARMUP = 101       # AEVB and wake-sleep: the authors' step_vae / step_wakesleep (warmup=100)
# batch MCEM (appendix E and the authors' step_batch_mcem): one HMC transition of 10 leapfrog steps
# of every training point's z, the shared step tuned towards 90 % acceptance (authors' rule and
# factor), then 5 Adagrad updates each on all N points (m_batch_size None)
MCEM_SETTINGS = dict(n_leapfrog=10, target_accept=0.9, weight_updates=5, step_size=0.01,
                     tune_factor=1.25, m_batch_size=None)
# the estimator (appendix D): 50 samples fit q and 50 more estimate, 4 leapfrog steps; the chains
# run as the authors' estimator runs them (5 burn-in transitions, every chain's step tuned after
# every transition), started at the best of 64 prior draws; q Gaussian, the authors' kernel
# estimate recorded beside it from the same samples
ESTIMATOR = dict(n_samples=50, n_leapfrog=4, n_init=64, chains="authors", q="gaussian", also_q=("kde",))
FINAL_K, FINAL_IMAGES = 5000, 500      # L_5000 on the first 500 evaluation images of each part
PER_DECADE, FIRST_POINT = 4, 10**4
RUNS_DIR, RESULTS_DIR, PAGE = "runs/figure3", "docs/results", "docs/figure3.md"
# how far each run of the figure goes (--samples); the paper's axis reaches 10^8
TARGETS = {"aevb-small": 10**8, "aevb-large": 10**8, "wake-sleep-small": 10**8, "wake-sleep-large": 10**8,
           "mcem-small": 10**8, "mcem-large": 10**8}


def parse_run(name):
    """``'aevb-small'`` -> ``('aevb', 'small')``; a ValueError names what is accepted."""
    method, _, size = str(name).rpartition("-")
    if method not in METHODS + OPTIONS or size not in SIZES:
        raise ValueError(f"run must be <method>-<size> with method in {METHODS + OPTIONS} and size in "
                         f"{SIZES}, e.g. aevb-small; got {name!r}")
    return method, size


def eval_points(stop, start=FIRST_POINT, per_decade=PER_DECADE, unit=BATCH_SIZE):
    """Log-spaced sample counts from ``start`` to ``stop``, each at the nearest multiple of
    ``unit`` (a minibatch, or for batch MCEM the training set), and ``stop`` itself rounded up to
    one: where a run pauses to estimate log p(x) and save its checkpoint."""
    n = int(math.floor(per_decade * math.log10(stop / start) + 1e-9)) if stop >= start else -1
    points = {max(unit, int(round(start * 10 ** (i / per_decade) / unit)) * unit) for i in range(n + 1)}
    last = int(math.ceil(stop / unit)) * unit
    return sorted(p for p in points | {last} if p <= last)


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
    """One learning algorithm behind one interface: its ``model`` (with a ``decoder``), its
    ``optimizer``, ``unit`` (training samples per step: a minibatch, or for batch MCEM the
    whole training set) and ``step``."""

    def __init__(self, name, n_train, seed=0):
        from ..optim import Adagrad
        self.name = name
        self.batch = name == "mcem"
        self.unit = n_train if self.batch else BATCH_SIZE
        common = dict(weight_decay=1.0 / n_train, seed=seed)
        if name.startswith("mcem"):
            from ..models.mcem import MCEM
            self.model = MCEM(784, n_train, Z_DIM, (HIDDEN,), **common, **MCEM_SETTINGS)
            warmup = 0            # the authors' step_adagrad, their M-step's optimizer, has none
        else:
            # wake-sleep uses the VAE's encoder, decoder and weight prior; its gradients
            # (its backward) and the scale of its initial weights differ
            from ..models.wake_sleep import WakeSleep
            from ..vae import VAE
            from .runs import INIT          # wake-sleep from N(0, 0.1^2), as in Figure 2
            algorithm = "wake-sleep" if name == "wake-sleep" else "aevb"
            cls = WakeSleep if name == "wake-sleep" else VAE
            self.model = cls(784, Z_DIM, (HIDDEN,), activation="tanh", init=INIT[algorithm], **common)
            warmup = ADAGRAD_WARMUP
        self.optimizer = Adagrad(self.model.named_parameters(), lr=LR, warmup=warmup)

    def step(self, x, idx):
        """One step on the images ``x`` (rows ``idx`` of the training set; for batch MCEM the
        whole set); returns the method's own training objective (for a divergence check)."""
        from ..training.step import train_step

        if self.batch:
            return self.model.batch_step(x, self.optimizer)
        if self.name == "mcem-online":
            return self.model.train_step(x, idx, self.optimizer)
        try:        # the Trainer's step: wake-sleep updates its decoder between its two phases
            return -train_step(self.model, self.optimizer, x)
        except FloatingPointError:
            return float("nan")

    def state(self):
        """Everything besides the parameters and optimizer state that a bitwise resume needs:
        ``(arrays, meta)``."""
        if not self.name.startswith("mcem"):
            return {}, {}
        m = self.model
        return {"mcem_z": m.z}, {"step_size": m.step_size, "m_cursor": m.m_cursor,
                                 "accept_rate": m.accept_rate}

    def set_state(self, arrays, meta):
        if self.name.startswith("mcem"):
            m = self.model
            m.z[...] = arrays["mcem_z"]
            m.step_size, m.m_cursor, m.accept_rate = meta["step_size"], meta["m_cursor"], meta["accept_rate"]


def _save(path, method, meta):
    from ..training.checkpoint import atomic_write, rng_state

    arrays = {f"param/{k}": p for k, p in method.model.parameters().items()}
    state = method.optimizer.state_dict()
    meta["optimizer_t"] = state.pop("t")
    arrays.update({f"optim/{k}": a for k, a in state.items()})
    extra, extra_meta = method.state()
    arrays.update(extra)
    meta["method_state"] = extra_meta
    meta["rng"] = rng_state(method.model.rng)
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _load(path, method):
    from ..training.checkpoint import set_rng_state

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("run") is None or "method_state" not in meta:
        raise ValueError(f"{path} is not a checkpoint of this Figure-3 code (no run or method state); "
                         "move it away to start the run again")
    params = method.model.parameters()
    for k, p in params.items():
        a = arrays.get(f"param/{k}")
        if a is None or a.shape != p.shape or not np.isfinite(a).all():
            raise ValueError(f"{path}: parameter {k!r} is missing, of the wrong shape or not finite")
    for k, p in params.items():
        p[...] = arrays[f"param/{k}"]
    state = {k[len("optim/"):]: a for k, a in arrays.items() if k.startswith("optim/")}
    state["t"] = meta["optimizer_t"]
    method.optimizer.load_state_dict(state)
    method.set_state(arrays, meta["method_state"])
    set_rng_state(method.model.rng, meta["rng"])
    return meta


def own_guess(method, x, part):
    """The method's own guess of z for the evaluation images ``x``: the encoder's mean
    (AEVB, wake-sleep), MCEM's kept z of the training images, or None (MCEM, held-out)."""
    if not method.name.startswith("mcem"):
        return method.model.encode(x)[0]
    return method.model.z[:x.shape[0]] if part == "train" else None


def evaluate(method, data, seed=0, guided=False, keep=False):
    """The appendix-D estimate of log p(x) on the evaluation images (train and held-out), with
    the Gaussian q and, from the same samples, the authors' kernel estimate; the chains started
    at the best of the prior draws, or (``guided``) at the method's own guess of z where that is
    better (:func:`own_guess`). With ``keep``, also the per-image estimates (``_images``)."""
    from ..training.marginal_likelihood import estimate_log_marginal

    out, images = {}, {}
    for part in ("train", "test"):
        x = data[f"eval_{part}"].astype(np.float32)
        z_start = own_guess(method, x, part) if guided else None
        r = estimate_log_marginal(method.model.decoder, Z_DIM, x, seed=seed, z_start=z_start, **ESTIMATOR)
        lp, kde = r["log_px"], r["also"]["kde"]
        out[f"{part}_log_px"] = float(lp.mean())
        out[f"{part}_log_px_se"] = float(lp.std(ddof=1) / math.sqrt(len(lp))) if len(lp) > 1 else None
        # on the images that final_bounds measures too, for a comparison image by image
        out[f"{part}_log_px_first{FINAL_IMAGES}"] = float(lp[:FINAL_IMAGES].mean())
        out[f"{part}_log_px_kde"] = float(kde["log_px"].mean())
        out[f"{part}_kde_factor"] = None if kde["kde_factor"] is None else float(np.median(kde["kde_factor"]))
        out[f"{part}_accept"] = r["accept_rate"]
        # p(x) <= 1 for binary images: a positive estimate means the estimator failed there
        out[f"{part}_impossible"] = int((lp > 0).sum())
        images[part] = lp
    return (out, images) if keep else out


def final_bounds(method, data, guided, blind, k=None, n_images=FINAL_IMAGES, seed=0):
    """ELBO and L_k of a model with an encoder on the first ``n_images`` evaluation images of
    each part, and the differences image by image of the estimates (``guided`` and ``blind``:
    per-image arrays by part) from L_k, with their standard errors (None for MCEM, which has
    no encoder)."""
    if method.name.startswith("mcem"):
        return None
    from ..training.evaluate import evaluate_elbo, importance_sampled_bound

    k = FINAL_K if k is None else k
    out = {"k": k, "n_images": min(n_images, data["eval_train"].shape[0], data["eval_test"].shape[0])}
    for part in ("train", "test"):
        x = data[f"eval_{part}"][:n_images].astype(np.float32)
        lk = importance_sampled_bound(method.model, x, k=k, seed=seed)
        out[f"{part}_elbo"] = evaluate_elbo(method.model, x, n_samples=100, seed=seed).elbo
        out[f"{part}_L_k"] = float(lk.mean())
        for name, est in (("guided", guided), ("blind", blind)):
            d = est[part][:len(lk)] - lk
            out[f"{part}_{name}_minus_L_k"] = float(d.mean())
            out[f"{part}_{name}_minus_L_k_se"] = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else None
    return out


def train(name, samples, out, data_dir=None, max_minutes=None, seed=0, n_eval=1000, print_fn=print):
    """Train run ``name`` towards ``samples`` training samples (rounded up to the method's
    step), estimating log p(x) at each of :func:`eval_points`; resumes from ``out/checkpoint.npz``
    bitwise. With ``max_minutes``, no stretch is started that the measured speed says would end
    after the budget. At the last point it also records the estimate with the model's own start,
    and (AEVB, wake-sleep) the ELBO and L_5000. Each session that trains records where it ran
    (``platform``: CPU, NumPy, BLAS kernel), so that the page compares times only between runs
    made on one machine. Returns the run's record."""
    method_name, size = parse_run(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_images(size, data_dir, seed, n_eval)
    n = data["train"].shape[0]
    method = Method(method_name, n, seed)
    ckpt = out / "checkpoint.npz"
    meta = {"run": name, "method": method_name, "size": size, "n_train": n, "split": data["split"],
            "samples": 0, "iterations": 0, "wall_time": 0.0, "train_time": 0.0, "train_cpu_time": 0.0,
            "history": [],
            "settings": {"z_dim": Z_DIM, "hidden": HIDDEN, "batch_size": BATCH_SIZE, "lr": LR,
                         "adagrad_warmup": 0 if method_name.startswith("mcem") else ADAGRAD_WARMUP,
                         "samples_per_step": method.unit, "estimator": ESTIMATOR, "n_eval": n_eval,
                         "seed": seed, **({"mcem": MCEM_SETTINGS} if method_name.startswith("mcem") else {})}}
    if ckpt.is_file():
        meta = _load(ckpt, method)
        print_fn(f"{name}: resuming at {meta['samples']} samples")
    targets = [t for t in eval_points(samples, unit=method.unit) if t > meta["samples"]]
    if targets:                      # timings compare only between runs made on one machine
        meta.setdefault("platform", []).append({"from_samples": meta["samples"], **platform_now()})
    budget = None if max_minutes is None else 60.0 * max_minutes
    t_session, s_session = time.perf_counter(), meta["samples"]
    x = data["train"].astype(np.float32)
    steps_per_epoch = n // BATCH_SIZE
    for target in targets:
        if budget is not None and meta["samples"] > s_session:
            elapsed = time.perf_counter() - t_session
            rate = (meta["samples"] - s_session) / elapsed
            if elapsed + (target - meta["samples"]) / rate > budget:
                print_fn(f"{name}: stopped at {meta['samples']} samples; the {max_minutes:g}-minute "
                         f"budget would not reach {target}")
                break
        t0, c0 = time.perf_counter(), time.process_time()
        while meta["samples"] < target:
            if method.batch:
                objective = method.step(x, None)
            else:
                step = meta["samples"] // BATCH_SIZE
                epoch, b = divmod(step, steps_per_epoch)
                # the order of epoch e depends on (seed, e) only, so a resumed run draws the same batches
                order = np.random.default_rng([seed, epoch]).permutation(n)
                idx = order[b * BATCH_SIZE:(b + 1) * BATCH_SIZE]
                objective = method.step(x[idx], idx)
            meta["samples"] += method.unit
            meta["iterations"] += 1
            if not np.isfinite(objective):
                raise RuntimeError(f"{name}: the training objective is {objective} at {meta['samples']} samples")
        t1, c1 = time.perf_counter(), time.process_time()
        meta["train_time"] += t1 - t0
        meta["train_cpu_time"] += c1 - c0
        record = {"samples": meta["samples"], "iterations": meta["iterations"],
                  "train_seconds": round(t1 - t0, 2), "train_time": round(meta["train_time"], 1),
                  "train_cpu_time": round(meta["train_cpu_time"], 1), "objective": float(objective),
                  **evaluate(method, data, seed)}
        if method_name.startswith("mcem"):
            record.update(hmc_step_size=method.model.step_size, hmc_accept=method.model.accept_rate)
        record["eval_seconds"] = round(time.perf_counter() - t1, 2)
        meta["wall_time"] += time.perf_counter() - t0
        record["wall_time"] = round(meta["wall_time"], 1)
        meta["history"].append(record)
        _save(ckpt, method, meta)
        print_fn(f"{name}: {record['samples']:>10} samples  log p(x) train {record['train_log_px']:9.2f}  "
                 f"test {record['test_log_px']:9.2f}  ({record['wall_time']:.0f} s)", flush=True)
    if meta["history"] and (meta.get("final") or {}).get("samples") != meta["samples"]:
        t0 = time.perf_counter()
        guided, guided_images = evaluate(method, data, seed, guided=True, keep=True)
        _, blind_images = evaluate(method, data, seed, keep=True)     # the last point's, again (same seed)
        bounds = final_bounds(method, data, guided_images, blind_images, seed=seed)
        meta["final"] = {"samples": meta["samples"], **meta["history"][-1], "guided_start": guided,
                         "bounds": bounds, "final_seconds": round(time.perf_counter() - t0, 1)}
        _save(ckpt, method, meta)
    (out / "history.json").write_text(json.dumps(meta, indent=1))
    return meta
