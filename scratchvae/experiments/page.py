"""The results page of section 5 (``docs/results.md``): figures, data files, the table and
every sentence with a number, each computed from the runs (:func:`report`)."""
import dataclasses
import json
import os
from pathlib import Path

from .bench.machine import where_runs_ran
from .figure2 import PAPER, at, markdown_table, plot_figure2, sci, table_rows
from .results import (SETTING_DEFAULTS, archive_run, archived_runs, collect_runs, compare_reruns,
                      log_rows, log_table, merge_commands)
from .page_spread import spread_text
from .page_text import PAGE
from .runs import INIT, STEP_SIZE_CHOICE, STEP_SIZES, experiment

RESULTS_DIR, RESULTS_PAGE = "docs/results", "docs/results.md"
SPREAD = "spread"                        # the spread runs' folder, under the runs and results folders


def report(runs_dir, results_dir, page=None, log=None, spread_dir=None, print_fn=print):
    """Figures, data files and the table from the runs in ``runs_dir`` (and those an earlier
    report archived in ``results_dir``); with ``page``, the results page too. ``spread_dir``
    (default ``runs_dir/spread``) holds the runs of ``reproduce run spread``, archived in
    ``results_dir/spread``. A ``runs_dir`` that does not exist is an error unless
    ``results_dir`` holds archived runs to report from; nothing is written before that check."""
    from ..training import plots
    from ..training.checkpoint import atomic_write, load_model

    out = Path(results_dir)
    if not Path(runs_dir).is_dir():
        if not archived_runs(out):
            raise FileNotFoundError(f"--runs-dir: no such folder: {runs_dir} (and no runs archived "
                                    f"in {out} to report from)")
        print_fn(f"no runs folder at {runs_dir}: reporting the runs archived in {out}")
    if spread_dir is not None and not Path(spread_dir).is_dir():
        raise FileNotFoundError(f"--spread-dir: no such folder: {spread_dir}")
    out.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(runs_dir, archive=out)
    reruns = compare_reruns(runs_dir, out, out / "reruns.json")
    kept = archived_runs(out / SPREAD)
    for name, run in collect_runs(spread_dir or Path(runs_dir) / SPREAD).items():
        if name not in kept or kept[name]["records"][-1]["samples"] <= run["records"][-1]["samples"]:
            archive_run(run, out / SPREAD)               # unless the archive got further
    written = []
    for name, run in runs.items():
        if run["folder"] is None:
            continue                                     # archived: its files are in `out`
        archive_run(run, out)
        exp = run["experiment"]
        if exp.algorithm != "aevb" or exp.split != "random" or exp.split_seed or exp.seed or not exp.own_init:
            continue                                     # figures 4 and 5: the paper's AEVB models
        model, c = load_model(run["folder"] / "checkpoint.npz")
        shape = c.meta["settings"]["image_shape"]
        if exp.z_dim == 2:
            written.append(plots.plot_manifold(model, shape, out / f"{name}-manifold.png"))
        if exp.dataset != "frey":
            written.append(plots.plot_samples(model, shape, out / f"{name}-samples.png", n=100))
    for ds in sorted({run["experiment"].dataset for run in runs.values()}):
        written.append(plot_figure2(runs, ds, out / f"{ds}-figure2.png"))
    for path in written:
        plots.shrink_png(path)
    rows = table_rows(runs)
    with atomic_write(out / "summary.json", "w") as f:
        json.dump(rows, f, indent=1)
    for path in written:
        print_fn(f"written: {path} ({path.stat().st_size // 1024} KB)")
    print_fn(f"written: {out / 'summary.json'}\n")
    table = markdown_table(rows)
    print_fn(table)
    if page:
        Path(page).parent.mkdir(parents=True, exist_ok=True)
        commands = merge_commands(out / "commands.json", log_rows(log, set(runs)))
        spread = archived_runs(out / SPREAD)
        text = PAGE.format(table=table, commands=log_table(commands), reruns=reruns_text(reruns),
                           results=os.path.relpath(out, Path(page).parent),
                           **contiguous_lesson(out / "contiguous"),
                           stepsize=stepsize_table(out / "stepsize.json") + stepsize_note(out / "stepsize.json"),
                           stepsize_seconds=stepsize_seconds(out / "stepsize.json"),
                           splits=splits_table(runs), mnist_train=mnist_train(runs), mnist_gap=mnist_gap(runs),
                           split_seeds=split_seed_spread(runs), spread=spread_text(spread, runs),
                           ws_vs_aevb=ws_vs_aevb(runs), ws_collapse=ws_collapse(runs), ws_versions=ws_versions(runs),
                           paper_gap=paper_gap(runs), heldout_peaks=heldout_peaks(runs),
                           init_scale=init_scale(runs), machines=machines(runs),
                           figures=figure_links(out, Path(page).parent))
        with atomic_write(page, "w") as f:
            f.write(text)
        print_fn(f"\nwritten: {page}")
    return runs


# ---------------------------------------------------------------------------------------
# the sentences: each computed from the runs
# ---------------------------------------------------------------------------------------
def reruns_text(reruns):
    if not reruns:
        return ""
    parts = [f"{name}: {c['identical']} of {c['points']} evaluation points identical"
             + ("" if c["identical"] == c["points"] else f", bounds at most {c['max_diff']:.2g} nats apart")
             for name, c in sorted(reruns.items())]
    return ("\n\nA run started again from the beginning (its earlier folder lost) can be set beside "
            "the records the earlier run left, at the sample counts both reached: " + "; ".join(parts)
            + ' ("identical": every number of the record but its wall time, bit for bit).')


def figure_links(out, page_dir):
    rel = os.path.relpath(out, page_dir)
    names = sorted(p.name for p in Path(out).glob("*.png"))
    fig2 = [n for n in names if n.endswith("-figure2.png")]
    fig4 = [n for n in names if n.endswith("-manifold.png")]
    fig5 = [n for n in names if n.endswith("-samples.png")]
    text = "### Figure 2: the lower bound against training samples\n\n"
    text += "\n\n".join(f"![{n[:-4]}]({rel}/{n})" for n in fig2) or "(no runs yet)"
    if fig4:
        text += ("\n\n### Figure 4: the 2-D latent manifold\n\nDecoder means on a 20 x 20 grid of "
                 "z, equally spaced in probability through the inverse normal CDF.\n\n"
                 + "\n".join(f"![{n[:-4]}]({rel}/{n})" for n in fig4))
    if fig5:
        text += ("\n\n### Figure 5: samples from the prior\n\nDecoder means (pixel probabilities) "
                 "of 100 draws z ~ N(0, I).\n\n" + "\n".join(f"![{n[:-4]}]({rel}/{n})" for n in fig5))
    return text


def stepsize_table(path):
    if not path.is_file():
        return "(`reproduce stepsize` has not been run)"
    rows = json.loads(path.read_text())
    lines = ["| model | 0.01 | 0.02 | 0.1 |", "|---|---|---|---|"]
    for name in dict.fromkeys(r["experiment"] for r in rows):
        mine = {r["lr"]: r["train_elbo"] for r in rows if r["experiment"] == name}
        best = max(mine, key=mine.get)

        def show(lr):
            text = f"{mine[lr]:.1f}" if abs(mine[lr]) < 1e5 else f"{mine[lr]:.1e} (diverged)"
            return f"**{text}**" if lr == best else text
        lines.append(f"| {name}: training bound after 10^5 samples | "
                     + " | ".join(show(lr) if lr in mine else "-" for lr in STEP_SIZES) + " |")
    return "\n".join(lines)


def stepsize_note(path):
    """The step each dataset's runs use, and every model of the table whose own best differs."""
    if not path.is_file():
        return ""
    rows = json.loads(path.read_text())
    used = ", ".join(f"{ds} {lr:g}" for ds, lr in STEP_SIZE_CHOICE.items()
                     if any(r["experiment"].startswith(ds + "-") for r in rows))
    differ = []
    for name in dict.fromkeys(r["experiment"] for r in rows):
        mine = {r["lr"]: r["train_elbo"] for r in rows if r["experiment"] == name}
        best, ds = max(mine, key=mine.get), name.split("-")[0]
        if ds in STEP_SIZE_CHOICE and best != STEP_SIZE_CHOICE[ds]:
            differ.append(f"{name} ({best:g}: {mine[best]:.1f} against {mine.get(STEP_SIZE_CHOICE[ds], float('nan')):.1f})")
    text = (f"\n\nThe runs use one step size per dataset, for both algorithms ({used}; "
            "`STEP_SIZE_CHOICE` in `scratchvae/experiments/runs.py`), so that AEVB and wake-sleep differ "
            "only in their gradients and the scale of their initial weights.")
    if differ:
        text += (" The best of the first 10^5 samples differs from it for " + "; ".join(differ)
                 + ": those runs keep the dataset's step.")
    return text


def stepsize_seconds(path):
    if not path.is_file():
        return "not run"
    rows = json.loads(path.read_text())
    return f"{len(rows)} runs of 10^5 samples, {sum(r['seconds'] for r in rows):.0f} s of training in all"


def splits_table(runs):
    """Which images each run trained and was evaluated on: one row per split (its description,
    from the run's settings), with the runs that used it."""
    by_split = {}
    for name, run in sorted(runs.items(), key=lambda item: (item[1]["experiment"].dataset,
                                                             item[1]["experiment"].z_dim, item[0])):
        s = run["settings"]
        key = (s.get("split", "?"), s.get("n_train"), s.get("n_test"))
        by_split.setdefault(key, []).append(name)
    lines = ["| split | training / held-out images | runs |", "|---|---|---|"]
    lines += [f"| {split} | {n_train} / {n_test} | {', '.join(names)} |"
              for (split, n_train, n_test), names in by_split.items()]
    return "\n".join(lines) if by_split else "(no runs yet)"


def mnist_train(runs):
    """The training images of the MNIST runs, in words ('9000', or '9000 and 60000')."""
    sizes = sorted({run["settings"].get("n_train") for run in runs.values()
                    if run["experiment"].dataset == "mnist"})
    return " and ".join(str(n) for n in sizes) if sizes else "(no MNIST run yet)"


def mnist_gap(runs, samples=10**7):
    """How far the held-out bound of the MNIST AEVB runs is below their training bound at
    ``samples``, in one sentence."""
    found = [(run["experiment"].z_dim, r["train_elbo"] - r["test_elbo"]) for run in runs.values()
             if run["experiment"].dataset == "mnist" and run["experiment"].algorithm == "aevb"
             and run["experiment"].own_init and not run["experiment"].seed and (r := at(run["records"], samples))]
    if not found:
        return f"(no MNIST AEVB run has reached {sci(samples)} samples yet)."
    found.sort()
    return (f"at {sci(samples)} samples by " + ", ".join(f"{gap:.1f}" for _, gap in found)
            + f" nats (Nz = {', '.join(str(z) for z, _ in found)}).")


WS_STEPS = {("decoder-first", "zero"): "the authors' step (the decoder updated first, the dreams "
                                       "from the updated decoder) and start (zero log-variance outputs)",
            ("together", "drawn"): "the earlier step (both gradients at the same parameters) and start "
                                   "(every weight drawn), made before the authors' order was followed"}
WS_INITS = {"paper": "weights from N(0, 0.01^2), the authors' code",
            "paper-variance": "weights from N(0, 0.1^2), the paper's N(0, 0.01) as a variance"}


def machines(runs):
    """Where each run of the table trained: its wall time is that machine's."""
    return ("Where the runs on this page trained (a wall time is its machine's): " + where_runs_ran(
        {name: r.get("platform") for name, r in runs.items()},
        unrecorded="not recorded (made before runs recorded their machine)") + ".")


def ws_versions(runs):
    """Which wake-sleep step, start and initial weights each wake-sleep run on the page was
    made with (its settings; a run without them predates the choice and used the earlier ones)."""
    groups = {}
    for name, run in sorted(runs.items()):
        if run["experiment"].algorithm == "wake-sleep":
            s = run["settings"]
            key = tuple(s.get(k, SETTING_DEFAULTS[k]) for k in ("update_order", "logvar_init", "init"))
            groups.setdefault(key, []).append(name)
    if not groups:
        return ""
    parts = [f"{', '.join(names)}: {WS_STEPS.get(key[:2], 'update order %s, log-variance start %s' % key[:2])}; "
             f"{WS_INITS.get(key[2], key[2])}" for key, names in groups.items()]
    return " The wake-sleep runs on this page: " + "; ".join(parts) + "."


def ws_vs_aevb(runs):
    """One sentence per model with both algorithms: their held-out bounds at the largest
    evaluation point both reached."""
    parts = []
    for name, run in sorted(runs.items(), key=lambda item: (item[1]["experiment"].dataset,
                                                            item[1]["experiment"].z_dim)):
        exp = run["experiment"]
        if exp.algorithm != "wake-sleep":
            continue
        other = runs.get(name[:-3] if name.endswith("-ws") else None)
        if other is None:
            continue
        common = sorted({r["samples"] for r in run["records"]} & {r["samples"] for r in other["records"]})
        if not common:
            continue
        n = common[-1]
        a, w = at(other["records"], n)["test_elbo"], at(run["records"], n)["test_elbo"]
        parts.append(f"{exp.dataset} Nz = {exp.z_dim} at {n:.2g} samples: AEVB {a:.0f}, "
                     f"wake-sleep {w:.0f} ({'AEVB higher, as in the paper' if a > w else 'wake-sleep higher, unlike the paper'})")
    return ("Held-out bounds, " + "; ".join(parts) + ".") if parts else \
        "(No wake-sleep run has reached an evaluation point of its AEVB counterpart yet.)"


def paper_gap(runs):
    """One clause per point of PAPER that an AEVB run reached: its bounds, the paper's and
    the difference."""
    def diff(a, b):
        return "-" if b is None else f"{a - b:+.0f}"

    parts = []
    for (ds, z), points in PAPER.items():
        run = runs.get(f"{ds}-z{z}")
        for n, paper in sorted(points.items()):
            r = at(run["records"], n) if run else None
            if r:
                parts.append(f"{ds} Nz = {z} at {sci(n)}: {r['train_elbo']:.0f} / {r['test_elbo']:.0f} "
                             f"against {' / '.join('-' if v is None else str(v) for v in paper)} "
                             f"({diff(r['train_elbo'], paper[0])} / {diff(r['test_elbo'], paper[1])})")
    return "; ".join(parts) + "." if parts else "none yet."


def heldout_peaks(runs, min_samples=10**7):
    """One clause per AEVB run trained past ``min_samples``: its best held-out bound, where,
    and the held-out bound where the run ended (or that it is still rising)."""
    parts = []
    for name, run in sorted(runs.items(), key=lambda item: (item[1]["experiment"].dataset,
                                                             item[1]["experiment"].z_dim)):
        exp, records = run["experiment"], run["records"]
        if (exp.algorithm != "aevb" or exp.split_seed or exp.seed or not exp.own_init
                or records[-1]["samples"] <= min_samples):
            continue
        best, last = max(records, key=lambda r: r["test_elbo"]), records[-1]
        now = "still rising" if best is last else f"{last['test_elbo']:.0f} at {last['samples']:.2g}"
        parts.append(f"{exp.dataset} Nz = {exp.z_dim} held-out {best['test_elbo']:.0f} at "
                     f"{best['samples']:.2g} samples, {now}")
    return "; ".join(parts) + "." if parts else "(no run has gone past 10^7 samples yet)."


def ws_collapse(runs, kl_below=0.05):
    """A paragraph naming the wake-sleep runs whose encoder is still the prior (training KL
    below ``kl_below`` at their last evaluation), with the reason; empty if there are none."""
    stuck = [(run["experiment"], run["records"][-1]) for run in runs.values()
             if run["experiment"].algorithm == "wake-sleep" and run["experiment"].own_init
             and run["records"][-1]["train_kl"] < kl_below]
    if not stuck:
        return ""
    names = ", ".join(f"{e.dataset} Nz = {e.z_dim} (KL term {r['train_kl']:.3f} at {r['samples']:.2g} samples)"
                      for e, r in stuck)
    return (f"\n\n  Stuck at the start: {names}. Its encoder is the prior, q(z|x) = N(0, I) for every "
            "x, and its decoder ignores z; its bound is that of one Gaussian per pixel. This is a "
            "fixed point of both phases: dreams of a decoder that ignores z carry no information "
            "about z, so the sleep phase fits q(z|x) = p(z); codes z ~ N(0, I) that ignore x give "
            "the wake phase no reason to use z, and the weight prior pulls the decoder's weights on "
            "z towards 0. From the authors' code's initial weights, N(0, 0.01^2), the path from z "
            "to x passes two tiny matrices and wake-sleep does not leave the point at Nz = 2 and 5 "
            "in any seed, order of updates or step size tried; from N(0, 0.1^2), the paper's "
            "N(0, 0.01) read as a variance, it leaves within 10^5 samples (measured in "
            "`scratchvae/models/wake_sleep.py`). AEVB leaves it from either, because its encoder "
            "gradient comes from reconstructing the data, not from dreams.")


SCALES = {"paper": "N(0, 0.01^2)", "paper-variance": "N(0, 0.1^2)"}


def init_scale(runs):
    """One clause per run from the other algorithm's initial scale (``-sd...``): its held-out
    bound and KL term beside those of the same model from its own scale, at the largest
    evaluation point both reached."""
    found = []
    for name, run in sorted(runs.items(), key=lambda item: (item[1]["experiment"].algorithm,
                                                            item[1]["experiment"].dataset,
                                                            item[1]["experiment"].z_dim)):
        exp = run["experiment"]
        own = runs.get(dataclasses.replace(exp, init=INIT[exp.algorithm]).name)
        if exp.own_init or own is None:
            continue
        common = sorted({r["samples"] for r in run["records"]} & {r["samples"] for r in own["records"]})
        if common:
            by_init = {exp.init: at(run["records"], common[-1]), own["experiment"].init: at(own["records"], common[-1])}
            found.append((exp, common[-1], [by_init[init] for init in SCALES]))
    if not found:
        return "(no run from the other scale yet: `scratchvae reproduce run scale`)."
    points = {n for _, n, _ in found}
    clauses = [f"{'AEVB' if exp.algorithm == 'aevb' else exp.algorithm} {exp.dataset} Nz = {exp.z_dim}"
               + ("" if len(points) == 1 else f" at {sci(n)}") + ": "
               + " / ".join(f"{r['test_elbo']:.0f} ({r['test_kl']:.3g})" for r in pair) + f" ({exp.name})"
               for exp, n, pair in found]
    return (("" if len(points) > 1 else f"at {sci(points.pop())} samples, ") + "held-out bound (its KL term) "
            f"from {' / from '.join(SCALES.values())}: " + "; ".join(clauses) + ". " + _better_scale(found))


def _better_scale(found):
    """Which scale gives the higher held-out bound, model by model, grouped by scale, then by
    algorithm and dataset, with the margins."""
    groups = {scale: {} for scale in SCALES.values()}
    for exp, _, pair in found:
        (low, high), (a, b) = SCALES.values(), (r["test_elbo"] for r in pair)
        model = ("AEVB" if exp.algorithm == "aevb" else exp.algorithm, exp.dataset)
        groups[high if b > a else low].setdefault(model, []).append((exp.z_dim, abs(b - a)))
    return "The held-out bound is higher " + "; ".join(
        f"from {scale} for " + ", ".join(
            f"{algorithm} {dataset} Nz = {', '.join(str(z) for z, _ in zs)} (by {', '.join(f'{d:.0f}' for _, d in zs)} nats)"
            for (algorithm, dataset), zs in models.items())
        for scale, models in groups.items() if models) + "."


def split_seed_spread(runs, samples=10**6):
    """One sentence: the held-out bound at ``samples`` of frey-z20 on each random split run."""
    found = {run["experiment"].split_seed: r["test_elbo"] for name, run in runs.items()
             if name.startswith("frey-z20") and run["experiment"].algorithm == "aevb" and not run["experiment"].seed
             and run["experiment"].split == "random" and run["experiment"].own_init
             and (r := at(run["records"], samples))}
    if len(found) < 2:
        return "(Runs of Nz = 20 on other shuffles, `--split-seed`, have not reached 10^6 samples yet.)"
    values = ", ".join(f"{v:.0f} (seed {k})" for k, v in sorted(found.items()))
    return (f"On {len(found)} shuffles, the held-out bound of Nz = 20 at 10^6 samples is {values}: "
            f"a spread of {max(found.values()) - min(found.values()):.0f} nats.")


def contiguous_lesson(folder, frames=1965):
    """The runs of the contiguous split (their ``evaluation.json`` files in ``folder``): the
    page's three pieces, ``{contiguous_elbos, contiguous, contiguous_worst}``: the held-out ELBO
    of each run, the ELBO of every 100 consecutive held-out frames as markdown lines, and the
    block that scores lowest with how far below the other held-out frames it is."""
    evs = sorted(((experiment(p.name.split(".")[0]), json.loads(p.read_text()))
                  for p in Path(folder).glob("*.evaluation.json")), key=lambda item: item[0].z_dim)
    if not evs:
        none = "(no runs of the contiguous split are kept)"
        return {"contiguous_elbos": none, "contiguous": none, "contiguous_worst": none}
    lines, gaps, worst = [], [], set()
    for exp, ev in evs:
        blocks = [(tuple(blk["images"]), blk["elbo"]) for blk in ev["heldout_elbo_blocks"]]
        lines.append(f"- {exp.name}, all held-out frames: ELBO {ev['elbo']:.0f}; by 100 "
                     f"consecutive held-out frames: " + ", ".join(f"{a}-{b}: {e:.0f}" for (a, b), e in blocks))
        (a, b), low = min(blocks, key=lambda blk: blk[1])
        rest = [(b2 - a2, e) for (a2, b2), e in blocks if (a2, b2) != (a, b)]
        rest_mean = sum(n * e for n, e in rest) / sum(n for n, _ in rest)
        gaps.append(f"{rest_mean - low:.0f}{' nats' if not gaps else ''} for Nz = {exp.z_dim}")
        worst.add((a, b, ev["n_images"]))
    sizes = ", ".join(str(exp.z_dim) for exp, _ in evs)
    samples = " and ".join(sci(n) for n in sorted({ev["samples_trained"] for _, ev in evs}))
    elbos = f"Nz = {sizes} at {samples}: " + ", ".join(f"{ev['elbo']:.0f}" for _, ev in evs)
    if len(worst) == 1:
        a, b, n = worst.pop()
        first = frames - n
        where = (f"Frames {a}-{b} of that held-out part (frames {first + a}-{first + b - 1} of the video) "
                 f"score lowest in every run")
    else:
        where = "The lowest-scoring block differs between the runs; each scores"
    return {"contiguous_elbos": elbos, "contiguous": "\n".join(lines),
            "contiguous_worst": f"{where}, far below the other held-out frames (by {', '.join(gaps)})"}
