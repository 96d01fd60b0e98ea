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
from .bench.machine import same_platform, where_runs_ran

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


def with_archive(runs, archive):
    """``runs`` and, for every run not among them or further in it, its record in an earlier
    ``figure3.json`` (``archive``, if it exists), marked ``archived``: a run folder that is
    gone (another machine, a deleted folder) still shows as far as it got, and so does one that
    a rerun, still short of it, has not yet passed. In the order of METHODS, SIZES."""
    kept = json.loads(Path(archive).read_text())["runs"] if Path(archive).is_file() else {}
    merged = {name: {**r, "archived": True} for name, r in kept.items()}
    for name, r in runs.items():
        if name not in merged or merged[name]["history"][-1]["samples"] <= r["history"][-1]["samples"]:
            merged[name] = r
    order = [f"{m}-{s}" for m in f3.METHODS + f3.OPTIONS for s in f3.SIZES]
    return {name: merged[name] for name in order if name in merged}


def label(name, r):
    """A run's name as the tables show it: a run still training says so; one shown from the
    archive that had not finished says where it stopped."""
    if r.get("training"):
        return f"{name} (stopped; from the archive)" if r.get("archived") else f"{name} (still training)"
    return name


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
    common range, the differences a - b at a's points inside it and at its two ends (the other
    curve interpolated), ``overtakes``: the first such point with a at or above b after one
    below it, and ``falls_back``: the first point after that with a below b again (None if none). The ends count because the runs' evaluation points fall a batch
    apart: MCEM's 5.6 x 10^7 is 2000 samples short of AEVB's, and is still where both last are."""
    xa, _ = curve(a, part, x)
    xb, _ = curve(b, part, x)
    lo, hi = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    if lo > hi * (1 + 1e-9):
        return None
    pts = [p for p in xa if lo * (1 - 1e-9) <= p <= hi * (1 + 1e-9)]
    pts = sorted(pts + [end for end in {lo, hi} if not any(abs(p - end) <= 1e-9 * end for p in pts)])
    diffs = [(p, value_at(a, part, p, x) - value_at(b, part, p, x)) for p in pts]
    overtakes = next((p1 for (_, d0), (p1, d1) in zip(diffs, diffs[1:]) if d0 < 0 <= d1), None)
    falls_back = None if overtakes is None else next((p for p, d in diffs if p > overtakes and d < 0), None)
    return {"from": lo, "to": hi, "diffs": diffs, "overtakes": overtakes, "falls_back": falls_back,
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


def machines_sentence(runs):
    """Which run trained where: a time is a property of the run and its machine."""
    return "Where the runs trained: " + where_runs_ran(
        {name: r.get("platform") for name, r in runs.items()},
        unrecorded="not recorded (made before Figure-3 runs recorded it)") + "."


def not_comparable(a, b, a_label, b_label):
    """Why the times of runs ``a`` and ``b`` are not compared, or None when they ran on one machine."""
    if same_platform(a.get("platform"), b.get("platform")):
        return None
    missing = [lbl for r, lbl in ((a, a_label), (b, b_label)) if not r.get("platform")]
    if len(missing) == 2:
        return "neither run recorded its machine"
    if missing:
        return f"the {missing[0]} run did not record its machine"
    return "the two ran on different machines"


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
        name = label(name, r)
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
        name = label(name, r)
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
                why = not_comparable(aevb, other, "AEVB", label) if x == "train_time" else None
                if why:
                    out.append(f"{size} set, per second of training: AEVB and {label} are not compared: {why}.")
                    continue
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
                    at, back = ((sci(v) if x == "samples" else f"{v:.0f}") if v is not None else None
                                for v in (c["overtakes"], c["falls_back"]))
                    s = f"AEVB overtakes {label} on the held-out images at about {at} {unit}"
                    s += f" and falls below it again at about {back} (points {where})" if back else f" (points {where})"
                else:
                    s = f"AEVB falls below {label} on the held-out images within the common range {where}"
                per = "per training sample" if x == "samples" else "per second of training"
                out.append(f"{size} set, {per}: {s}; at the last common point AEVB minus {label} is "
                           f"{last_d:+.1f} nats.")
        if aevb is not None and mcem is not None and not not_comparable(aevb, mcem, "AEVB", "MCEM"):
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
