"""Figure 3's figure, data and page, from its runs (``figure3 report``).

Every number on the page is computed here, from the runs' records (``history.json``), from the
settings of :mod:`scratchvae.experiments.figure3` or from the estimator's check on the
linear-Gaussian model (:func:`scratchvae.derivations.hmc.compare_q`); every comparison in its
prose is worded from those numbers (which is higher, by how much, whether within the noise), so
that no sentence can disagree with ``figure3.json`` beside it.
"""
import json
import math
from pathlib import Path

import numpy as np

from . import figure3 as f3

LABELS = {"aevb": "AEVB", "wake-sleep": "Wake-Sleep", "mcem": "MCEM", "mcem-online": "on-line MCEM"}
COLORS = {"aevb": "tab:red", "wake-sleep": "tab:green", "mcem": "tab:blue", "mcem-online": "tab:purple"}
FAR = 5.0            # nats: an estimate this far above L_5000 is called far above it
START_MATTERS = 1.0  # nats: a start of the chains that changes the estimate by more is reported


def collect(runs_dir):
    """The records of every run found under ``runs_dir``, by run name: its ``history.json``
    (written when a training command ends), else, for a run still training, what its last
    checkpoint holds."""
    found = {}
    for method in f3.METHODS + f3.OPTIONS:
        for size in f3.SIZES:
            folder = Path(runs_dir) / f"{method}-{size}"
            r = None
            if (folder / "history.json").is_file():
                r = json.loads((folder / "history.json").read_text())
            elif (folder / "checkpoint.npz").is_file():
                with np.load(folder / "checkpoint.npz", allow_pickle=False) as z:
                    r = {**json.loads(str(z["meta"])), "training": True}
            if r and r.get("history"):
                found[f"{method}-{size}"] = r
    return found


# ---------------------------------------------------------------------------------------
# numbers from the records
# ---------------------------------------------------------------------------------------
def sci(s):
    """3e7 -> '3 x 10^7', 1e8 -> '10^8', 5.6e6 -> '5.6 x 10^6' (two significant digits)."""
    s = float(s)
    if s <= 0:
        return f"{s:g}"
    e = int(math.floor(math.log10(s)))
    m = round(s / 10 ** e, 1)
    if m >= 10:
        m, e = m / 10, e + 1
    m = f"{m:g}"
    return f"10^{e}" if m == "1" else f"{m} x 10^{e}"


def curve(run, part, x="samples"):
    """``(xs, log p(x) estimates)`` of a run's curve (the chains' method-blind start)."""
    h = run["history"]
    return np.array([r[x] for r in h], dtype=float), np.array([r[f"{part}_log_px"] for r in h])


def value_at(run, part, where, x="samples"):
    """The run's estimate at ``where`` samples (or training seconds), linear in log10 between its
    points; None outside the range it covers."""
    xs, ys = curve(run, part, x)
    if not len(xs) or where < xs[0] * (1 - 1e-9) or where > xs[-1] * (1 + 1e-9):
        return None
    return float(np.interp(math.log10(where), np.log10(xs), ys))


def crossing(a, b, part, x="samples"):
    """How run ``a``'s curve stands against run ``b``'s where both have points: a dict with the
    common range, the differences a - b at a's points inside it (b interpolated), and ``overtakes``:
    the first point of a at or above b after a point below it (None if none)."""
    xa, _ = curve(a, part, x)
    xb, _ = curve(b, part, x)
    lo, hi = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    pts = [p for p in xa if lo * (1 - 1e-9) <= p <= hi * (1 + 1e-9)]
    if not pts:
        return None
    diffs = [(p, value_at(a, part, p, x) - value_at(b, part, p, x)) for p in pts]
    overtakes = None
    for (p0, d0), (p1, d1) in zip(diffs, diffs[1:]):
        if d0 < 0 <= d1:
            overtakes = p1
            break
    return {"from": lo, "to": hi, "diffs": diffs, "overtakes": overtakes,
            "always_above": all(d >= 0 for _, d in diffs), "always_below": all(d < 0 for _, d in diffs)}


def final_of(run):
    """The run's final record (with the model's own start and the bounds), or its last point."""
    return run.get("final") or run["history"][-1]


def bound_sizes(runs):
    """``(k, images)`` of the runs' final L_k (from their records; the module's defaults if none)."""
    for r in runs.values():
        b = final_of(r).get("bounds")
        if b is not None:
            return b["k"], b["n_images"]
    return f3.FINAL_K, f3.FINAL_IMAGES


def seconds_per_million(run, key="train_time"):
    return run[key] / run["samples"] * 1e6 if run["samples"] else float("nan")


# ---------------------------------------------------------------------------------------
# figure and table
# ---------------------------------------------------------------------------------------
def plot(runs, path):
    """Two panels (small, large training set): estimated log p(x) against training samples,
    train (solid) and held-out (dashed) per method."""
    from ..training.plots import _figure, _save

    fig = _figure(11, 4.2)
    values = [h[f"{part}_log_px"] for r in runs.values() for h in r["history"] for part in ("train", "test")]
    # the range from the second decade on: the first points (before Adagrad's warm-up ends, a model
    # still at its initialization near -784 log 2) would squash the rest; they are drawn off the axes
    later = [h[f"{part}_log_px"] for r in runs.values() for h in r["history"] for part in ("train", "test")
             if h["samples"] >= 10 * f3.FIRST_POINT]
    values = later or values
    ylim = (min(values) - 5, max(values) + 15) if values else (-210, -90)
    for i, size in enumerate(f3.SIZES):
        ax = fig.add_subplot(1, 2, i + 1)
        n = None
        for method in f3.METHODS + f3.OPTIONS:
            r = runs.get(f"{method}-{size}")
            if not r or not r["history"]:
                continue
            n = r["n_train"]
            for part, style in (("train", "-"), ("test", "--")):
                s, v = curve(r, part)
                ax.plot(s, v, style, color=COLORS[method], label=f"{LABELS[method]} ({part})")
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
    K, _ = bound_sizes(runs)
    lines = ["| run | N train | samples trained | est. log p(x) train / test | same, chains from the "
             f"model's z | kernel q (same samples) train / test | ELBO train / test | L_{K} train / test | "
             "HMC acceptance (est.) | training time | CPU time | estimates time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        f = final_of(r)
        b = f.get("bounds")
        if r.get("training"):
            name = f"{name} (still training)"
        missing = "- (no encoder)" if name.startswith("mcem") else "- (measured at the run's end)"
        elbo = missing if b is None else f"{b['train_elbo']:.1f} / {b['test_elbo']:.1f}"
        lk = missing if b is None else f"{b['train_L_k']:.1f} / {b['test_L_k']:.1f}"
        g = f.get("guided_start")
        guided = "-" if g is None else f"{g['train_log_px']:.1f} / {g['test_log_px']:.1f}"
        se = "".join(f" +- {f[f'{p}_log_px_se']:.1f}" if f.get(f"{p}_log_px_se") is not None else ""
                     for p in ("train",))
        se_t = f" +- {f['test_log_px_se']:.1f}" if f.get("test_log_px_se") is not None else ""
        est_time = r["wall_time"] - r["train_time"]
        lines.append(
            f"| {name} | {r['n_train']} | {sci(f['samples'])} | {f['train_log_px']:.1f}{se} / "
            f"{f['test_log_px']:.1f}{se_t} | {guided} | {f['train_log_px_kde']:.1f} / {f['test_log_px_kde']:.1f} | "
            f"{elbo} | {lk} | {f['train_accept']:.2f} / {f['test_accept']:.2f} | "
            f"{r['train_time'] / 60:.1f} min | {r['train_cpu_time'] / 60:.1f} min | {est_time / 60:.1f} min |")
    return "\n".join(lines)


def bounds_table(runs):
    """Per run with an encoder and part: the estimate with the model's own start and the
    method-blind one on the first 500 images, against L_5000 and the ELBO on the same images."""
    K, N = bound_sizes(runs)
    lines = [f"| run | part | est., model's start | est., prior start | L_{K} | ELBO | "
             f"est. (model's start) - L_{K} | L_{K} - ELBO |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        f = final_of(r)
        b = f.get("bounds")
        if r.get("training"):
            name = f"{name} (still training)"
        if b is None:
            continue
        n = f3.FINAL_IMAGES          # the key's name; it holds the first min(500, n_eval) images
        for part in ("train", "test"):
            d, se = b[f"{part}_guided_minus_L_k"], b[f"{part}_guided_minus_L_k_se"]
            lines.append(f"| {name} | {'training' if part == 'train' else 'held-out'} | "
                         f"{f['guided_start'][f'{part}_log_px_first{n}']:.2f} | {f[f'{part}_log_px_first{n}']:.2f} | "
                         f"{b[f'{part}_L_k']:.2f} | {b[f'{part}_elbo']:.2f} | {d:+.2f} +- {se or 0:.2f} | "
                         f"{b[f'{part}_L_k'] - b[f'{part}_elbo']:+.2f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


# ---------------------------------------------------------------------------------------
# what the numbers say, in words
# ---------------------------------------------------------------------------------------
def _part(part):
    return "training" if part == "train" else "held-out"


def bound_sentences(runs):
    """log p(x) >= L_5000 >= ELBO on the same images, run by run, worded from the numbers."""
    out = []
    at_or_above, below, far = [], [], []
    for name, r in runs.items():
        b = final_of(r).get("bounds")
        if b is None:
            continue
        for part in ("train", "test"):
            d, se = b[f"{part}_guided_minus_L_k"], b[f"{part}_guided_minus_L_k_se"] or 0.0
            gap = b[f"{part}_L_k"] - b[f"{part}_elbo"]
            item = (name, part, d, se, gap)
            (at_or_above if d >= -2 * se else below).append(item)
            if d > FAR:
                far.append(item)
    total = len(at_or_above) + len(below)
    if not total:
        return out
    K, N = bound_sizes(runs)
    s = (f"On the first {N} images of each part, the estimate with the chains started at the "
         f"model's own guess is at or above L_{K} (within two standard errors of the difference "
         f"image by image) in {len(at_or_above)} of {total} cases, as log p(x) >= L_k requires")
    if below:
        s += "; it is below it in " + ", ".join(
            f"{n} {_part(p)} ({d:+.2f} +- {se:.2f} nats)" for n, p, d, se, _ in below)
        s += ", where the estimate falls short of log p(x)"
    ordered = sum(1 for *_, gap in at_or_above + below if gap >= 0)
    out.append(s + f". L_{K} is at or above the ELBO in {ordered} of {total}.")
    close = [(n, p, d) for n, p, d, se, _ in at_or_above if abs(d) <= 1.0]
    if close:
        out.append(f"Within a nat of L_{K}: " + ", ".join(f"{n} {_part(p)} ({d:+.2f})" for n, p, d in close) + ".")
    for n, p, d, se, gap in far:
        why = (f"the ELBO is {gap:.1f} nats below L_{K} there too: the encoder's q(z|x) is far from "
               f"these images' posteriors, and {K} importance samples drawn from it still miss much of "
               "p(x), while the chains find the posterior without the encoder"
               if gap > FAR else
               f"{K} importance samples from the encoder fall short of the posterior the chains find "
               f"(the ELBO is {gap:.1f} nats below L_{K})")
        out.append(f"The {_part(p)} estimate of {n} is {d:.1f} +- {se:.1f} nats above its L_{K}: {why}.")
    return out


def start_sentences(runs):
    """The method-blind start of the chains against the model's own guess, worded from the numbers."""
    out = []
    for name, r in runs.items():
        f = final_of(r)
        g = f.get("guided_start")
        if g is None:
            continue
        for part in ("train", "test"):
            d = g[f"{part}_log_px"] - f[f"{part}_log_px"]
            if abs(d) > START_MATTERS:
                s = (f"{name}, {_part(part)} images: started at the model's own guess of z the estimate is "
                     f"{abs(d):.1f} nats {'higher' if d > 0 else 'lower'} ({g[f'{part}_log_px']:.1f} against "
                     f"{f[f'{part}_log_px']:.1f} from the best of {f3.ESTIMATOR['n_init']} prior draws)")
                b = f.get("bounds")
                if b is not None and d > 0:
                    db, se = b[f"{part}_blind_minus_L_k"], b[f"{part}_blind_minus_L_k_se"] or 0.0
                    if db < -2 * se:
                        s += (f"; the prior start is {-db:.2f} +- {se:.2f} nats below L_{b['k']} on the "
                              f"first {b['n_images']}, which log p(x) >= L_k rules out: some of its chains stay "
                              "in a minor mode of the posterior, and the estimate is then that mode's share of p(x)")
                out.append(s + ".")
    if out:
        out.append("The curves keep the method-blind start, so that MCEM, which has no encoder, is measured "
                   "like the others; where the two starts differ, read the curve as a lower estimate.")
    else:
        out.append(f"The start of the chains changes no final estimate by more than {START_MATTERS:g} nat.")
    return out


def overfit_sentences(runs):
    out = []
    for size in f3.SIZES:
        gaps = []
        for method in f3.METHODS + f3.OPTIONS:
            r = runs.get(f"{method}-{size}")
            if r is None:
                continue
            f = final_of(r)
            gaps.append((method, f["train_log_px"], f["test_log_px"], f["train_log_px"] - f["test_log_px"]))
        if gaps:
            n = runs[f"{gaps[0][0]}-{size}"]["n_train"]
            out.append(f"Training minus held-out estimate at the end, {size} set ({n} images): " + "; ".join(
                f"{LABELS[m]} {tr:.1f} - ({te:.1f}) = {gap:+.1f} nats" for m, tr, te, gap in gaps) + ".")
    return out


def ranking_sentences(runs):
    """Per training set: which method is higher on the held-out curve, per sample and per second
    of training, and whether and where one overtakes another."""
    out = []
    for size in f3.SIZES:
        aevb, mcem, ws = (runs.get(f"{m}-{size}") for m in ("aevb", "mcem", "wake-sleep"))
        for other, label in ((mcem, "MCEM"), (ws, "Wake-Sleep")):
            if aevb is None or other is None:
                continue
            for x, unit in (("samples", "training samples"), ("train_time", "seconds of training")):
                c = crossing(aevb, other, "test", x)
                if c is None:
                    out.append(f"{size} set: the AEVB and {label} runs share no range of {unit}.")
                    continue
                where = (f"from {sci(c['from'])} to {sci(c['to'])} {unit}" if x == "samples" else
                         f"from {c['from']:.0f} to {c['to']:.0f} {unit}")
                last_p, last_d = c["diffs"][-1]
                if c["always_above"]:
                    s = f"AEVB's held-out estimate is at or above {label}'s at every common point {where}"
                elif c["always_below"]:
                    s = f"{label}'s held-out estimate is above AEVB's at every common point {where}"
                elif c["overtakes"] is not None:
                    at = sci(c["overtakes"]) if x == "samples" else f"{c['overtakes']:.0f}"
                    s = f"AEVB overtakes {label} on the held-out images at about {at} {unit} (points {where})"
                else:
                    s = f"AEVB falls below {label} on the held-out images within the common range {where}"
                per = "per training sample" if x == "samples" else "per second of training"
                out.append(f"{size} set, {per}: {s}; at the last common point AEVB minus {label} is "
                           f"{last_d:+.1f} nats.")
        if aevb is not None and mcem is not None:
            a, m = seconds_per_million(aevb), seconds_per_million(mcem)
            out.append(f"{size} set: training takes {a:.0f} s per 10^6 samples for AEVB and {m:.0f} s for "
                       f"MCEM ({m / a:.1f} times as long per sample).")
        if aevb is not None and aevb["samples"] < 10**8 and size == "large":
            out.append(f"AEVB on the large set reached {sci(aevb['samples'])} samples; the paper's axis "
                       "goes to 10^8.")
    return out


def q_sentences(runs, check):
    out = []
    g, k = check["gaussian"], check["kde"]
    out.append(
        f"On the linear-Gaussian model ({check['n_chains']} chains with the settings of the figure), the "
        f"Gaussian q's estimate is off the exact log p(x) by {g['bias']:+.3f} +- {g['bias_se']:.3f} nats on "
        f"average with a spread of {g['spread']:.2f} per chain; the kernel estimate's, from the same samples, "
        f"by {k['bias']:+.3f} +- {k['bias_se']:.3f} with a spread of {k['spread']:.2f} (worst single errors "
        f"{g['worst']:.1f} and {k['worst']:.1f} nats).")
    out.append(
        f"The tails, measured: the bandwidth factor the authors' rule picks is {k['factor']:.2f} at the median "
        f"and above sqrt(2) for {100 * k['wide_bandwidth']:.0f} % of the chains; the far tails of q are at least "
        f"twice as wide as the posterior's (the ratio q / p(x, z) then has infinite variance) for "
        f"{100 * k['tails_infinite']:.0f} % of the chains with the kernel estimate and "
        f"{100 * g['tails_infinite']:.0f} % with the Gaussian (its covariance from 50 correlated samples "
        "overshoots too, less often).")
    diffs = [(n, p, final_of(r)[f"{p}_log_px_kde"] - final_of(r)[f"{p}_log_px"])
             for n, r in runs.items() for p in ("train", "test")]
    if diffs:
        lo, hi = min(d for *_, d in diffs), max(d for *_, d in diffs)
        out.append(f"On the runs' last points the kernel estimate minus the Gaussian one, from the same samples, "
                   f"lies between {lo:+.2f} and {hi:+.2f} nats (mean over the evaluation images).")
    return out


# ---------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------
def settings_rows():
    m, e = f3.MCEM_SETTINGS, f3.ESTIMATOR
    return [
        ("data", "MNIST, pixels binarized once with a fixed seed (MCEM keeps one z per image, so an image "
                 "must not change between visits); every method trains and is measured on the same images"),
        ("model", f"Nz = {f3.Z_DIM}; decoder (and encoder for AEVB and wake-sleep) with one hidden layer of "
                  f"{f3.HIDDEN} tanh units; Bernoulli p(x|z); weights from N(0, 0.01^2), a N(0, I) prior as "
                  "weight decay 1/N"),
        ("training sets", f"small: the first {f3.SMALL_N} training images; large: every training image "
                          "`load_dataset(\"mnist\")` gives (the table says how many)"),
        ("AEVB, wake-sleep", f"minibatches of {f3.BATCH_SIZE}, Adagrad step {f3.LR}, its first "
                             f"{f3.ADAGRAD_WARMUP} steps only accumulating squared gradients (the authors' "
                             "`step_vae` and `step_wakesleep`)"),
        ("MCEM (batch)", f"per iteration, one HMC transition of {m['n_leapfrog']} leapfrog steps of every "
                         f"training point's z; one step size for all chains, from {m['step_size']}, multiplied "
                         f"by {m['tune_factor']} after each iteration whose mean acceptance is at least "
                         f"{m['target_accept']:.0%}, else divided by it; then {m['weight_updates']} Adagrad "
                         f"updates (step {f3.LR}, no warm-up), each on all N points with those z"),
        ("MCEM (on-line, an option)", "runs `mcem-online-*`, not in the paper's figure: the same E- and M-step "
                                      f"on one minibatch of {f3.BATCH_SIZE} at a time, each image's z a persistent "
                                      "chain moved only when its image is drawn; it shows what makes the paper's "
                                      "MCEM a batch algorithm (a sweep over all N points per weight update)"),
        ("estimator (appendix D)", f"on the first 1000 training and held-out images (`--n-eval`): one HMC chain "
                                   f"per image of {e['n_leapfrog']} leapfrog steps per transition, started at "
                                   f"the best of {e['n_init']} prior draws; the authors' chains "
                                   "(`chains=\"authors\"`: 5 burn-in transitions, each chain's step from 0.001 "
                                   "and multiplied by exp(1.02 (2a - 1)) after every transition); "
                                   f"{e['n_samples']} samples fit q, {e['n_samples']} more estimate 1/p(x); q "
                                   f"{e['q']} (full covariance), the authors' kernel estimate from the same "
                                   "samples beside it"),
        ("evaluation points", f"{f3.PER_DECADE} per decade of training samples from {sci(f3.FIRST_POINT)}; "
                              f"at the last one also ELBO (100 samples of z) and L_{f3.FINAL_K} on the first "
                              f"{f3.FINAL_IMAGES} evaluation images of each part, and the estimate with the "
                              "chains started at the model's own guess where that is better"),
    ]


STATIC_INTRO = """# Figure 3: the marginal likelihood of AEVB, wake-sleep and Monte Carlo EM

Kingma & Welling (2013) measure, in their Figure 3, not a lower bound but the marginal likelihood
log p(x) itself, for models with a 3-D latent space trained by AEVB, by wake-sleep and by Monte Carlo
EM (MCEM, which has no encoder), on a small and a large MNIST training set. This page does the same
with scratchvae: `scratchvae/models/hmc.py` (Hybrid Monte Carlo on z),
`scratchvae/training/marginal_likelihood.py` (the estimator of appendix D),
`scratchvae/models/mcem.py` (appendix E), `scratchvae/experiments/figure3.py` (the runs) and
`scratchvae/experiments/figure3_report.py` (this page, written from the runs' data: every number
below is computed from them). Lesson 12 (`lessons/12_posterior_sampling.py`) explains each piece and
checks it against an exact 2-D posterior.
"""

STATIC_SOURCES = """## What the paper and the authors' code say

The paper (section 5 and appendices D and E, as this project reads them) gives: Nz = 3 and 100 hidden units; MNIST; a small and
a large training set; MCEM "not an on-line algorithm"; per MCEM step 10 HMC leapfrog steps with the
step size tuned automatically to 90 % acceptance, then 5 weight updates with the sample; Adagrad for
every algorithm; the estimator on the first 1000 training and test points, 50 posterior samples per
point from HMC with 4 leapfrog steps, a density q fitted to posterior samples and averaged over new
ones.

The authors' public code (the anglepy repository of the first author) settles more. It is their
library, not the scripts that made the paper's figures (those are not public), and its files changed
over its history (an earlier `hmc.py` tunes the estimator's chains with one shared step and uses a
kernel estimate with Scott's bandwidth); where it and the paper give different numbers (20 leapfrog
steps by default in `step_batch_mcem`, 10 in `ll_estimator`), the paper's are used. Followed here:

- `wzoptim.py`, `step_batch_mcem`: one HMC transition of the z of *every* point it is given (the E-step
  over the whole training set), then `m_steps = 5` calls of the weight-update function it is passed.
  That function belongs to the unpublished script; the library's Adagrad stepper (`woptim.py`,
  `step_adagrad` over `BNModel.FuncLikelihood`) walks the training set's minibatches in a fixed
  cycle. Here each of the 5 updates uses all N points (`MCEM(m_batch_size=None)`; a fixed cycle of
  minibatches is `m_batch_size=100`).
- `hmc.py`, `hmc_step_autotune` (the E-step's tuning): one step for all chains, from 0.01, multiplied
  by min(1.25, 1.02^min(100, B)) after every transition if the fraction of B chains accepted is at
  least the target (0.9), else divided by it; the tuning never stops.
- `hmc_est.py` (commit c23d603), `ll_estimator` and `estimate_mcmc_likelihood`: chains started at a
  draw of the model (for z given x, the prior), `n_burnin = 5` transitions, then `n_leaps = 100`
  transitions kept; each chain its own step (`hmc_step_autotune_indiv`), from 0.001, multiplied by
  exp(1.02 (2a - 1)) after every transition (a = 1 if it accepted), burn-in and sampling alike: a
  rule whose fixed point is 50 % acceptance (its target argument is not used). The first half of the
  samples fits q, the second half estimates. q is `kde2` by default: `scipy.stats.gaussian_kde` with
  the bandwidth factor chosen among Scott's factor times e^((i - 5)/2), i = 0..9, by how well a
  kernel estimate of the half's second half predicts its first half; a diagonal Gaussian for one
  latent dimension or fewer than 4 fitting samples per dimension; `cov`, a full-covariance
  Gaussian, is the other choice.

Where neither says, this page chooses: each MCEM weight update on all N points (above); the
estimator's chains start at the best of 64 prior draws rather than one (the same rule for every
method, no encoder used), and at the end again at the model's own guess (the encoder's mean, MCEM's
kept z); the tuning rules see each chain's acceptance probability, whose mean is that of the
accept/reject outcome the authors' code uses and whose noise is smaller; a leapfrog trajectory of
n steps makes n position updates (the authors' makes n + 1) and its step is jittered by +-10 % rather
than given a random sign; MNIST is binarized once; the large training set is every image
`load_dataset` gives (50000 in the paper).
"""


def xaxis_section(runs):
    lines = ["## The x-axis: training samples evaluated", "",
             "The paper labels Figure 3's axis, like Figure 2's, \"# training samples evaluated\", and does not "
             "say how MCEM's samples are counted. Here: for AEVB and wake-sleep, the images of the minibatches "
             "trained on (100 per weight update); for batch MCEM, the N training points of each iteration, "
             "whose posterior samples that iteration draws (one HMC transition each) and then learns from "
             "(5 weight updates, each over the same N points with the same z). That is the count "
             "`step_batch_mcem` itself keeps: it calls the points it is given its batch. Counting every point "
             "each weight update evaluates as well would put MCEM's points 6 times further right. In work, an "
             "MCEM sample so counted costs 16 forward and backward passes through the decoder (1 + 10 for the "
             "transition, 5 for the updates), an AEVB or wake-sleep sample one pass through the encoder and "
             "one through the decoder, each forward and back."]
    costs = [(n, seconds_per_million(r), seconds_per_million(r, "train_cpu_time")) for n, r in runs.items()]
    if costs:
        lines += ["", "Measured cost of a training sample as counted (training only, without the estimates): "
                  + "; ".join(f"{n} {s:.0f} s per 10^6 samples ({c:.0f} s of CPU)" for n, s, c in costs) + "."]
    return "\n".join(lines)


def estimator_section(check):
    return "\n".join(["## The estimator: which q", "",
                      "Both densities are fitted to the same chains; the figure's curves use the Gaussian q, "
                      "and the authors' kernel estimate (`q=\"kde\"`) is recorded beside it at every point "
                      "(`*_log_px_kde` in the data). Why the Gaussian: the ratio q(z) / p(x, z) has a finite "
                      "variance under the posterior only if q falls off faster than the posterior far from it; "
                      "a kernel estimate falls off as one kernel, of covariance f^2 C (C the samples' covariance, "
                      "close to the posterior's), which a bandwidth factor f above sqrt(2) makes wider than "
                      "twice the posterior's. Measured "
                      "(`scratchvae.derivations.hmc.compare_q`, also a test):", ""]
                     + [f"- {s}" for s in q_sentences({}, check)]
                     + ["", "The heavier tails show as an upward bias. The estimate is minus the log of an "
                        "average of 50 ratios; when rare, very large ratios carry much of the ratio's "
                        "expectation, the average of 50 is most of the time below that expectation, and minus "
                        "its log above log p(x). `scratchvae gradcheck` runs the Gaussian q's check "
                        "(`appendix_d_estimator`)."])


def commands_section(runs):
    lines = ["## Commands", "", "```bash",
             "export SCRATCHVAE_DATA_DIR=/path/to/data OPENBLAS_NUM_THREADS=1"]
    for name in f3.RUNS:
        target = runs[name]["samples"] if name in runs else f3.TARGETS[name]
        lines.append(f"scratchvae reproduce figure3 train {name} --samples {target} --runs-dir runs/figure3")
    lines += ["scratchvae reproduce figure3 report --runs-dir runs/figure3 --page docs/figure3.md", "```", "",
              "A run resumes from its checkpoint when started again (bitwise, on one machine and BLAS "
              "kernel); `--max-minutes M` stops it before an evaluation point it cannot reach within M "
              "minutes; `mcem-online-small` and `mcem-online-large` run the on-line variant. "]
    if runs:
        lines += ["Wall times of the runs on this page (training and estimates, one core each): "
                  + "; ".join(f"{n} {r['wall_time'] / 3600:.2f} h to {sci(r['samples'])} samples"
                              for n, r in runs.items()) + "."]
    return "\n".join(lines)


def results_section(runs, check, figure="results/figure3.png", data="results/figure3.json"):
    if not runs:
        return ("## Results\n\nNo Figure-3 runs made with this code are on this page yet: the commands "
                "below make them, and `figure3 report` then writes the figure, the table and the sentences "
                "that compare them.")
    parts = ["## Results", "", f"![Figure 3: estimated log p(x) against training samples]({figure})", "",
             f"Data: [`{data}`]({data}). \"est.\" is the curve's last point (chains started at the best of "
             f"{f3.ESTIMATOR['n_init']} prior draws; +- the standard error over images, which differ far more "
             "than the estimator's noise); the next column starts them at the model's own guess; the kernel "
             "q is fitted to the same samples as the Gaussian.", "", markdown_table(runs), ""]
    bt = bounds_table(runs)
    if bt:
        K, N = bound_sizes(runs)
        parts += [f"The same estimates on the first {N} images of each part, beside "
                  f"L_{K} and the ELBO there (+- the standard error of the difference image by image):",
                  "", bt, ""]
    parts += ["What the numbers say:", ""]
    for group in (bound_sentences(runs), start_sentences(runs), overfit_sentences(runs),
                  ranking_sentences(runs), q_sentences(runs, check)[-1:] if runs else []):
        parts += [f"- {s}" for s in group]
    return "\n".join(parts)


def write_page(runs, check, path, figure="results/figure3.png", data="results/figure3.json"):
    settings = "\n".join(["## Settings", "", "| | |", "|---|---|"] +
                         [f"| {k} | {v} |" for k, v in settings_rows()])
    text = "\n\n".join([STATIC_INTRO, settings, STATIC_SOURCES, xaxis_section(runs), estimator_section(check),
                        results_section(runs, check, figure, data), commands_section(runs)]) + "\n"
    from ..training.checkpoint import atomic_write
    with atomic_write(Path(path), "w") as f:
        f.write(text)
    return text


def report(runs_dir, results_dir, page=None, print_fn=print, n_replicas=2000):
    """Figure, data (``figure3.json``: the runs and the estimator's check) and, with ``page``,
    the page. A missing runs folder is an error; a folder without runs writes the page without
    results."""
    from ..derivations.hmc import compare_q
    from ..training.checkpoint import atomic_write

    if not Path(runs_dir).is_dir():
        raise FileNotFoundError(f"no runs folder at {runs_dir} (train runs with `figure3 train` first)")
    runs = collect(runs_dir)
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    check = compare_q(n_replicas=n_replicas)
    if runs:
        path = plot(runs, out / "figure3.png")
        from ..training.plots import shrink_png
        shrink_png(path)
        print_fn(f"written: {path}")
    with atomic_write(out / "figure3.json", "w") as f:
        json.dump({"runs": runs, "estimator_check": check}, f, indent=1)
    print_fn(f"written: {out / 'figure3.json'}")
    if page:
        rel = Path(out).resolve()
        try:
            rel = rel.relative_to(Path(page).resolve().parent)
        except ValueError:
            pass
        write_page(runs, check, page, figure=f"{rel.as_posix()}/figure3.png",
                   data=f"{rel.as_posix()}/figure3.json")
        print_fn(f"written: {page}")
    print_fn(markdown_table(runs) if runs else f"no Figure-3 runs under {runs_dir}")
    return 0
