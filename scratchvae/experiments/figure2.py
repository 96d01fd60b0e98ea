"""The paper's Figure 2 and the results table: the lower bound of AEVB and wake-sleep against
training samples, per dataset and latent size, beside the values read off the paper's figure.

Every function here takes ``runs``: ``{name: run}`` as :func:`.results.collect_runs` returns
them (each run's :class:`~.runs.Experiment`, its evaluation records and settings)."""
import math

from .runs import LATENT_SIZES

# The paper's Figure 2, read off the plot (about +-20 nats): {(dataset, z): {samples: (train, test)}};
# None where a curve cannot be read apart from the other.
PAPER = {
    ("frey", 2): {10**8: (935, 875)},
    ("frey", 5): {10**8: (1230, 1115)},
    ("frey", 10): {10**8: (1460, 1315)},
    ("frey", 20): {10**7: (1250, None), 10**8: (1485, 1320)},
    ("mnist", 20): {10**7: (-104, None), 2 * 10**8: (-97, -99)},
}
TABLE_POINTS = (10**6, 10**7, 10**8)     # the columns of the results table


def at(records, samples):
    """The evaluation record taken at exactly ``samples`` training samples, or None."""
    return next((r for r in records if r["samples"] == samples), None)


def data_title(dataset, settings):
    """A figure's title computed from the data a run used (its checkpoint's settings)."""
    name = {"frey": "Frey Face", "mnist": "MNIST", "digits": "8x8 digits"}.get(dataset, dataset)
    split = settings.get("split", "")
    where = " of the test file" if "test file" in split else ""
    kind = ", contiguous" if "contiguous" in split else ""
    return (f"{name}: {settings['n_train']} training / {settings['n_test']} held-out "
            f"images{where}{kind}")


def plot_figure2(runs, dataset, path, paper=PAPER):
    """The paper's Figure 2 for one dataset: one panel per latent size, training samples
    (log axis, 10^5 to 10^8) against the lower bound per image, four curves per panel
    (AEVB and wake-sleep, train and held-out), and the paper's AEVB values read off its
    figure as markers. Panels without a run say so."""
    from ..training.plots import _figure, _save

    sizes = LATENT_SIZES[dataset]
    fig = _figure(3.6 * len(sizes), 4.2)
    axes = fig.subplots(1, len(sizes), squeeze=False)[0]
    title = None
    styles = {("aevb", "train_elbo"): ("C0", "--", "AEVB (train)"),
              ("aevb", "test_elbo"): ("C0", "-", "AEVB (held-out)"),
              ("wake-sleep", "train_elbo"): ("C3", "--", "wake-sleep (train)"),
              ("wake-sleep", "test_elbo"): ("C3", "-", "wake-sleep (held-out)")}
    for ax, z in zip(axes, sizes):
        shown, curves = [], 0
        for algorithm, suffix in (("aevb", ""), ("wake-sleep", "-ws")):
            run = runs.get(f"{dataset}-z{z}{suffix}")
            if run is None:
                continue
            title = title or data_title(dataset, run["settings"])
            records = [r for r in run["records"] if r["samples"] >= 10**5] or run["records"]
            n = [r["samples"] for r in records]
            for key in ("train_elbo", "test_elbo"):
                color, line, label = styles[(algorithm, key)]
                values = [r[key] for r in records]
                ax.plot(n, values, line, color=color, label=label, linewidth=1.8)
                shown += values
                curves += 1
        for samples, values in paper.get((dataset, z), {}).items():
            for value, marker in zip(values, ("x", "o")):
                if value is not None:
                    ax.plot([samples], [value], marker, color="k", markersize=7, fillstyle="none",
                            label="paper, AEVB (train x, held-out o)")
                    shown.append(value)
        ax.set_xscale("log")
        ax.set_xlim(10**5, 1.2 * 10**8)
        if shown:
            lo, hi = min(shown), max(shown)
            ax.set_ylim(lo - 0.05 * (hi - lo + 1), hi + 0.05 * (hi - lo + 1))
        if not curves:
            ax.text(0.5, 0.5, "not run yet", transform=ax.transAxes, ha="center", fontsize=13)
        ax.set_title(f"$N_z$ = {z}", fontsize=14)
        ax.set_xlabel("training samples evaluated", fontsize=12)
        ax.tick_params(labelsize=11)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("lower bound per image (nats)", fontsize=12)
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=5, fontsize=11,
               frameon=False)
    fig.suptitle(title or dataset, fontsize=15)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    return _save(fig, path)


def table_rows(runs):
    """One row per latent size with a run: AEVB and wake-sleep train/held-out bounds at
    TABLE_POINTS, the paper's, and how far each run got."""
    rows = []
    for ds in ("frey", "mnist", "digits"):
        for z in LATENT_SIZES[ds]:
            row = {"dataset": ds, "z_dim": z, "paper": {str(k): v for k, v in PAPER.get((ds, z), {}).items()}}
            for algorithm, suffix in (("aevb", ""), ("wake-sleep", "-ws")):
                run = runs.get(f"{ds}-z{z}{suffix}")
                if run is None:
                    continue
                last = run["records"][-1]
                row[algorithm] = {
                    "experiment": run["experiment"].name, "samples": last["samples"],
                    "wall_time": last["wall_time"], "split": run["settings"].get("split"),
                    "last": [last["train_elbo"], last["test_elbo"]],
                    "at": {str(n): [r["train_elbo"], r["test_elbo"]]
                           for n in TABLE_POINTS if (r := at(run["records"], n))},
                    "evaluation": run["evaluation"]}
            if "aevb" in row or "wake-sleep" in row:
                rows.append(row)
    return rows


def markdown_table(rows):
    """The results table: per model, train / held-out at 10^6, 10^7, 10^8 for AEVB and
    wake-sleep beside the paper's AEVB values, and how far each run got."""
    def pair(v):
        return "-" if v is None else " / ".join("-" if a is None else f"{a:.0f}" for a in v)

    head = ["model"] + [f"AEVB {sci(n)}" for n in TABLE_POINTS] + [f"paper {sci(n)}" for n in (10**7, 10**8)] \
        + [f"wake-sleep {sci(n)}" for n in TABLE_POINTS] + ["AEVB reached", "wake-sleep reached"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        a, w = row.get("aevb", {}), row.get("wake-sleep", {})
        cells = [f"{row['dataset']} Nz={row['z_dim']}"]
        cells += [pair(a.get("at", {}).get(str(n))) for n in TABLE_POINTS]
        cells += [pair(row["paper"].get(str(n))) for n in (10**7, 10**8)]
        cells += [pair(w.get("at", {}).get(str(n))) for n in TABLE_POINTS]
        cells += [_reached(a), _reached(w)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sci(n):
    """``10^7`` for a power of ten, else two significant digits (``2e+08``)."""
    return f"10^{round(math.log10(n))}" if 10 ** round(math.log10(n)) == n else f"{n:.2g}"


def _reached(run):
    if not run:
        return "not run"
    return (f"{run['samples']:.2g} ({run['last'][0]:.0f} / {run['last'][1]:.0f}), "
            f"{run['wall_time'] / 60:.0f} min")
