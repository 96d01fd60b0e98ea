"""What the runs of section 5 left behind, read back for the results page: the run folders,
the copies an earlier report archived, reruns set beside them, and the queue log of the
commands that made them."""
import json
import re
from pathlib import Path

from .runs import experiment

# What a run's settings held before they recorded these: the wake-sleep step, start and scale
# of every run made before each was chosen (see page.ws_versions).
SETTING_DEFAULTS = {"update_order": "together", "logvar_init": "drawn", "init": "paper"}


def same_settings(a, b):
    """Whether two runs' settings agree on every key either records (a missing key read as
    SETTING_DEFAULTS has it): only such runs are the same command run again."""
    return all(a.get(k, SETTING_DEFAULTS.get(k)) == b.get(k, SETTING_DEFAULTS.get(k)) for k in {*a, *b})


def read_run(folder):
    """``{experiment, folder, records, settings, evaluation, platform}`` of the run in
    ``folder`` (read as far as it got), or None: not a run's folder, no evaluation yet, or a
    checkpoint being written this very moment."""
    from ..training import checkpoint as ckpt
    from ..training.metrics import read_metrics

    folder = Path(folder)
    try:
        exp = experiment(folder.name)
    except ValueError:
        return None                                      # stepsize/ and other folders
    if not (folder / "metrics.jsonl").is_file() or not (folder / "checkpoint.npz").is_file():
        return None
    records = [r for r in read_metrics(folder / "metrics.jsonl") if r.get("samples", 0) > 0]
    if not records:
        return None
    try:
        meta = ckpt.load(folder / "checkpoint.npz").meta
    except ckpt.CheckpointError:
        return None
    ev, platform = folder / "evaluation.json", folder / "platform.json"
    return {"experiment": exp, "folder": folder, "records": records, "settings": meta["settings"],
            "evaluation": json.loads(ev.read_text()) if ev.is_file() else None,
            "platform": json.loads(platform.read_text()) if platform.is_file() else None}


def collect_runs(runs_dir, archive=None):
    """``{name: run}`` for every experiment folder in ``runs_dir`` with metrics (see
    :func:`read_run`). A run still in progress is read as far as it got.

    ``archive`` is the results folder of earlier reports: a model whose run folder is gone
    (a machine not kept), or whose folder got less far than the archived run, is read from
    there as the last report saved it (``folder`` is then None)."""
    runs = {}
    for folder in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else []:
        run = read_run(folder)
        if run is not None:
            runs[run["experiment"].name] = run
    for name, run in archived_runs(archive).items():
        if name not in runs or runs[name]["records"][-1]["samples"] < run["records"][-1]["samples"]:
            runs[name] = run
    return runs


def archived_runs(folder):
    """The runs a report saved in ``folder``: ``<name>.metrics.jsonl`` beside
    ``<name>.settings.json`` (and ``<name>.evaluation.json``, ``<name>.platform.json`` if
    there were such files)."""
    from ..training.metrics import read_metrics

    runs = {}
    for settings in sorted(Path(folder).glob("*.settings.json")) if folder else []:
        name = settings.name[: -len(".settings.json")]
        try:
            exp = experiment(name)
        except ValueError:
            continue                                     # not a run of ours: leave it alone
        metrics = settings.with_name(f"{name}.metrics.jsonl")
        ev, platform = settings.with_name(f"{name}.evaluation.json"), settings.with_name(f"{name}.platform.json")
        records = [r for r in read_metrics(metrics) if r.get("samples", 0) > 0] if metrics.is_file() else []
        if records:
            runs[name] = {"experiment": exp, "folder": None, "records": records,
                          "settings": json.loads(settings.read_text()),
                          "evaluation": json.loads(ev.read_text()) if ev.is_file() else None,
                          "platform": json.loads(platform.read_text()) if platform.is_file() else None}
    return runs


def archive_run(run, out):
    """Copy a run's metrics, settings, evaluation and platform into the folder ``out`` as
    ``<name>.metrics.jsonl`` etc., where :func:`archived_runs` finds them."""
    import shutil

    from ..training.checkpoint import atomic_write

    name, folder = run["experiment"].name, run["folder"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "metrics.jsonl", out / f"{name}.metrics.jsonl")
    with atomic_write(out / f"{name}.settings.json", "w") as f:
        json.dump(run["settings"], f, indent=1)
    for kind in ("evaluation", "platform"):
        if (folder / f"{kind}.json").is_file():
            shutil.copyfile(folder / f"{kind}.json", out / f"{name}.{kind}.json")


def differing_point(a, b):
    """Compare the records of two runs of one model at the sample counts both have:
    ``{"points", "identical", "max_diff", "first_difference"}`` (bounds, train and held-out,
    in nats; ``first_difference``: the first such count where any number but the wall time
    differs, or None), or None if they share no count."""
    old = {r["samples"]: r for r in b}
    pairs = [(r, old[r["samples"]]) for r in a if r["samples"] in old]
    if not pairs:
        return None
    same = [all(x[k] == y.get(k) for k in x if k != "wall_time") for x, y in pairs]
    diffs = [abs(x[k] - y[k]) for x, y in pairs for k in ("train_elbo", "test_elbo")]
    first = next((x["samples"] for (x, _), s in zip(pairs, same) if not s), None)
    return {"points": len(pairs), "identical": sum(same), "max_diff": max(diffs),
            "first_difference": first}


def own_copy(run, old, old_metrics):
    """Whether the archived run ``old`` is a copy of ``run`` that an earlier report saved: both
    began with the same session (its start time in their platform records). For records
    without start times, whether the archived metrics file is a prefix of the run's (a run
    only appends), which an identical rerun also is."""
    started = [(r["platform"] or [{}])[0].get("started") for r in (run, old)]
    if all(started):
        return started[0] == started[1]
    return (run["folder"] / "metrics.jsonl").read_bytes().startswith(Path(old_metrics).read_bytes())


def compare_reruns(runs_dir, archive, path):
    """Set each run in ``runs_dir`` beside the records an earlier report archived for the same
    model from another run (one started again after its folder was lost), at the sample counts
    both have: ``{name: {"points", "identical", "max_diff"}}`` (bounds, train and held-out, in
    nats), merged into ``path``. An archive that is this run's own copy (see :func:`own_copy`),
    or one made with other settings, is skipped."""
    from ..training.checkpoint import atomic_write

    path = Path(path)
    found = json.loads(path.read_text()) if path.is_file() else {}
    archived = archived_runs(archive)
    for name, run in collect_runs(runs_dir).items():
        if name not in archived or own_copy(run, archived[name], Path(archive) / f"{name}.metrics.jsonl"):
            continue
        if not same_settings(run["settings"], archived[name]["settings"]):
            continue                  # another algorithm's step or start: not the same command
        c = differing_point(run["records"], archived[name]["records"])
        if c:
            found[name] = {k: c[k] for k in ("points", "identical", "max_diff")}
    with atomic_write(path, "w") as f:
        json.dump(found, f, indent=1, sort_keys=True)
    return found


def log_rows(log_path, names=None):
    """Rows ``[command, started, wall time, status]`` for the ``reproduce`` commands of a
    queue log (lines ``<time> <worker> START <command>`` and ``<time> <worker> END rc=<code>
    wall=<seconds>s [at=<samples>] <command>``, ``at`` where a time budget stopped the run short
    of its target). A command started again before its END was interrupted (its machine
    stopped) and resumed from its checkpoint. Commands are shortened to ``reproduce ...``
    without their folders, so the page names no folder of the machine that ran them."""
    lines = Path(log_path).read_text().splitlines() if log_path and Path(log_path).is_file() else []
    started, rows = {}, []
    for line in lines:
        m = re.match(r"(\S+) (\S+) (START|END)(?: rc=(\d+) wall=(\d+)s(?: at=(\d+))?)? (.*)$", line)
        if not m or "scratchvae.experiments.reproduce" not in m.group(7):
            continue
        command = "reproduce " + m.group(7).split("scratchvae.experiments.reproduce", 1)[1].strip()
        command = re.sub(r"\s--(runs-dir|data-dir|results-dir)\s+\S+", "", command)
        exp_name = command.split()[2] if len(command.split()) > 2 else ""
        if names is not None and exp_name not in names:
            continue
        key = m.group(7)
        if m.group(3) == "START":
            if key in started:                   # started again with no END: it was killed
                rows[started[key]][3] = "interrupted, resumed"
            started[key] = len(rows)
            rows.append([command, m.group(1)[:16].replace("T", " "), "-", "running"])
        elif key in started:
            row = rows[started.pop(key)]
            row[2] = f"{int(m.group(5)) / 60:.1f} min"
            rc, at = m.group(4), m.group(6)
            row[3] = (f"exit status {rc}" if rc != "0" else
                      f"stopped at {int(at):.3g} samples by --max-minutes" if at else "done")
    return rows


def log_table(rows):
    """The rows of :func:`log_rows` as a Markdown table."""
    return "\n".join(["| command | started (UTC) | wall time | status |", "|---|---|---|---|"]
                     + [f"| `{c}` | {t} | {w} | {st} |" for c, t, w, st in rows])


def merge_commands(path, rows):
    """The command rows saved in ``path`` by earlier reports, updated with ``rows`` (the same
    command started at the same minute is one row) and saved back, in order of start."""
    from ..training.checkpoint import atomic_write

    path = Path(path)
    merged = {(c, t): [c, t, w, st] for c, t, w, st in
              (json.loads(path.read_text()) if path.is_file() else [])}
    merged.update({(c, t): [c, t, w, st] for c, t, w, st in rows})
    merged = sorted(merged.values(), key=lambda r: r[1])
    with atomic_write(path, "w") as f:
        json.dump(merged, f, indent=0)
    return merged
