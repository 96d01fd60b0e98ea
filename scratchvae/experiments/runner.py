"""``scratchvae reproduce run``: every run of section 5 from one command, on a Dask cluster.

    scratchvae reproduce run all --dry-run          every run, what it has done, its estimated time
    scratchvae reproduce run all                    on a local cluster: one worker process per core
    scratchvae reproduce run figure2 --workers 2    Figure 2 only, two at a time
    scratchvae reproduce run frey-z20 frey-z20-ws --samples 1000000
    scratchvae reproduce run spread                 Frey Face Nz = 20: 3 shuffles x 3 seeds
    scratchvae reproduce run all --scheduler tcp://HOST:8786
                                                    on a running cluster whose workers share --runs-dir
    scratchvae reproduce run figure2 --max-minutes 170
                                                    within a time limit (a cluster job's, a session's)

Runs are named as their folders under ``--runs-dir``: Figure 2's by the experiment names of
:mod:`.runs` (``frey-z20``, ``mnist-z3-ws``, ...), Figure 3's ``figure3/<method>-<size>``
(``figure3/aevb-large``, see :mod:`.figure3`), the spread's ``spread/<experiment>``
(``spread/frey-z20-s1-r2``). Groups: ``all`` (Figures 2 and 3), ``figure2``, ``figure3``,
``spread``, ``scale`` (Figure 2's models from the other algorithm's initial weights,
``frey-z2-sd0.1``, ``frey-z2-ws-sd0.01``, ...). Each run goes to its target (Figure 2: 10^8
training samples, the paper's axis; Figure 3: what :mod:`.figure3` sets, else 10^8; the
spread: 10^7; a run from the other scale: 10^6; ``--samples`` for all),
resuming from its checkpoint what a run has done: a finished run costs nothing, an
interrupted one continues bit for bit. With ``--max-minutes M``, a run begins no evaluation
point that its measured speed says would end more than M minutes after the command started
(the time left goes to a last stretch, as in ``reproduce train --max-minutes``), and a run
whose turn comes after that is not started: the same command later resumes them all.

The scheduling is Dask's ``distributed`` (``pip install 'scratchvae[cluster]'``; the library
never imports it): one task per run, the longest first, on a ``LocalCluster`` of ``--workers``
processes (default: one per core) with one thread each, on loopback, or on the cluster at
``--scheduler``. Every run uses one BLAS thread. A worker that dies (killed, out of memory,
its machine gone) is replaced and its run starts again on another worker, from its last
checkpoint; a run that fails (bad data, a diverged loss) fails alone: the others go on, and
the command ends with each failure and a non-zero exit status. Each run's progress lines are
printed as they come, prefixed by its name, and kept in ``run.log`` in its folder; its start and
end (exit status, wall time) go to ``queue.log`` in ``--runs-dir``, the log ``reproduce report
--log`` turns into the results page's table of commands.
"""
import json
import os
import time
from pathlib import Path

from .runs import experiment, figure2_names, scale_names, spread_names

FIGURE3_DIR, SPREAD_DIR = "figure3", "spread"
TARGETS = {"figure2": 10**8, "figure3": 10**8, "spread": 10**7, "scale": 10**6}
TOPIC = "scratchvae-reproduce"            # the Dask event topic of the runs' progress lines
LOG = "run.log"
QUEUE_LOG = "queue.log"    # in --runs-dir: a START and an END line per run, for `reproduce report --log`


def figure3_names():
    """Figure 3's runs, from what :mod:`.figure3` exposes: its ``RUNS``, else each of its
    ``METHODS`` on each of its ``SIZES`` of training set."""
    from . import figure3

    names = getattr(figure3, "RUNS", None) or [f"{m}-{s}" for s in figure3.SIZES for m in figure3.METHODS]
    return [f"{FIGURE3_DIR}/{name}" for name in names]


GROUPS = {"figure2": figure2_names, "figure3": figure3_names,
          "spread": lambda: [f"{SPREAD_DIR}/{name}" for name in spread_names()], "scale": scale_names}
GROUPS["all"] = lambda: GROUPS["figure2"]() + GROUPS["figure3"]()


def spec(name, samples=None):
    """What one run is: ``{name, kind, folder, samples}``; a ValueError names what is accepted."""
    if name.startswith(f"{FIGURE3_DIR}/"):
        from . import figure3

        figure3.parse_run(name.split("/", 1)[1])
        # its own target where figure3 sets one (TARGETS), else the paper's axis
        target = getattr(figure3, "TARGETS", {}).get(name.split("/", 1)[1], TARGETS["figure3"])
        return {"name": name, "kind": "figure3", "folder": name, "samples": samples or target}
    elif name.startswith(f"{SPREAD_DIR}/"):
        exp = experiment(name.split("/", 1)[1])
        if exp.name != name.split("/", 1)[1]:
            raise ValueError(f"write {name!r} as {SPREAD_DIR}/{exp.name}")
        kind = "spread"
    else:
        try:
            exp = experiment(name)
        except ValueError as e:
            raise ValueError(f"{e}; or a group ({', '.join(GROUPS)}), or figure3/<method>-<size>, "
                             f"or {SPREAD_DIR}/<experiment>") from None
        if exp.name != name:
            raise ValueError(f"write {name!r} as {exp.name}")
        kind = "figure2" if exp.own_init else "scale"
    return {"name": name, "kind": kind, "folder": name, "samples": samples or TARGETS[kind]}


def specs(names, samples=None):
    """The runs named (groups expanded, each once, in order)."""
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise ValueError(f"--samples must be a positive integer, got {samples!r}")
    expanded = [n for name in names for n in (GROUPS[name]() if name in GROUPS else [name])]
    if not expanded:
        raise ValueError("name the runs: all, figure2, figure3, spread, or runs such as frey-z20")
    return [spec(name, samples) for name in dict.fromkeys(expanded)]


# ---------------------------------------------------------------------------------------
# one run, on a worker
# ---------------------------------------------------------------------------------------
def run_one(spec, runs_dir, data_dir=None, deadline=None):
    """Train the run ``spec`` in ``runs_dir/<folder>`` to its target, resuming what it has done,
    with one BLAS thread; its progress lines go to its ``run.log`` and, on a Dask worker, to
    the client. With ``deadline`` (a ``time.time()``), it begins no evaluation point it could not
    reach by then, and does not start if the deadline has passed. Returns a summary:
    where the run ended and the seconds this call took."""
    from ..backend import set_threads

    set_threads(1)
    out = Path(runs_dir) / spec["folder"]
    publish = _publisher()
    t0 = time.time()
    if deadline is not None and deadline <= t0:
        line = f"{spec['name']}: not started, the --max-minutes budget is spent"
        if publish is not None:
            publish(line)
        return {"name": spec["name"], "samples": done_samples(spec, runs_dir), "wall_time": None,
                "train": None, "test": None, "measure": None, "seconds": 0.0, "pid": os.getpid()}
    out.mkdir(parents=True, exist_ok=True)

    def log(*parts, **_):
        line = " ".join(str(p) for p in parts)
        with open(out / LOG, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        if publish is not None:
            publish(line)

    log(f"{spec['name']}: started towards {spec['samples']} samples in process {os.getpid()}")
    command = (f"python -m scratchvae.experiments.reproduce {'figure3 ' * (spec['kind'] == 'figure3')}"
               f"train {spec['folder'].rsplit('/', 1)[-1]} --samples {spec['samples']}")
    _queue(runs_dir, "START", command)
    try:
        result = _train(spec, out, data_dir, log, None if deadline is None else (deadline - t0) / 60)
    except BaseException:
        _queue(runs_dir, f"END rc=1 wall={time.time() - t0:.0f}s", command)
        raise
    short = f" at={result['samples']}" if result["samples"] < spec["samples"] else ""  # the budget stopped it
    _queue(runs_dir, f"END rc=0 wall={time.time() - t0:.0f}s{short}", command)
    return {"name": spec["name"], **result, "seconds": round(time.time() - t0, 1), "pid": os.getpid()}


def _queue(runs_dir, event, command):
    """One line of the queue log: time, process, event, command (what ``results.log_rows`` reads)."""
    with open(Path(runs_dir) / QUEUE_LOG, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid{os.getpid()} {event} {command}\n")


def _train(spec, out, data_dir, log, max_minutes=None):
    """Train one run (Figure 3's or an experiment of :mod:`.runs`); returns where it ended."""
    if spec["kind"] == "figure3":
        from . import figure3

        meta = figure3.train(spec["name"].split("/", 1)[1], spec["samples"], out, data_dir, max_minutes,
                             print_fn=log)
        last = meta["history"][-1] if meta["history"] else {}
        return {"samples": meta["samples"], "wall_time": meta["wall_time"],
                "train": last.get("train_log_px"), "test": last.get("test_log_px"), "measure": "log p(x)"}
    from .runs import load_data, train

    exp = experiment(spec["folder"].rsplit("/", 1)[-1])
    trainer = train(exp, load_data(exp, data_dir), out, spec["samples"], max_minutes, seed=exp.seed, print_fn=log)
    last = trainer.history[-1] if trainer.history else {}
    return {"samples": trainer.samples, "wall_time": last.get("wall_time", 0.0),
            "train": last.get("train_elbo"), "test": last.get("test_elbo"), "measure": "ELBO"}


def _publisher():
    """A function that sends a line to the client, when this runs on a Dask worker; else None."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return lambda line: worker.log_event(TOPIC, line)


# ---------------------------------------------------------------------------------------
# every run, on a cluster
# ---------------------------------------------------------------------------------------
def execute(run_specs, runs_dir, client, data_dir=None, estimates=None, print_fn=print, deadline=None):
    """Submit one task per run to the Dask ``client`` (the longest first, by ``estimates``:
    ``{name: seconds}``; each with ``deadline``, see :func:`run_one`) and wait for all. Prints
    each run's progress lines as they come and a line when it ends. Returns ``(results,
    failures)``: ``[summary]`` and ``[(name, error)]``."""
    from distributed import as_completed

    estimates = estimates or {}
    client.subscribe_topic(TOPIC, lambda event: print_fn(event[1], flush=True))
    futures = {}
    # submitted longest first too: a free worker takes a task as it comes, before its priority counts
    for s in sorted(run_specs, key=lambda s: -(estimates.get(s["name"]) or 0)):
        future = client.submit(run_one, s, str(runs_dir), data_dir, deadline, key=f"reproduce-run:{s['name']}",
                               pure=False, priority=int(estimates.get(s["name"]) or 0))
        futures[future] = s
    results, failures = [], []
    for i, future in enumerate(as_completed(futures), 1):
        name = futures[future]["name"]
        if future.status in ("error", "cancelled"):       # cancelled: by another client of the scheduler
            error = future.exception() if future.status == "error" else None
            failures.append((name, f"{type(error).__name__}: {error}" if error else "cancelled on the scheduler"))
            print_fn(f"[{i}/{len(futures)}] {name}: FAILED: {failures[-1][1].splitlines()[0]}", flush=True)
            continue
        r = future.result()
        results.append(r)
        if r["wall_time"] is None:
            print_fn(f"[{i}/{len(futures)}] {name}: not started, the --max-minutes budget is spent "
                     f"(at {r['samples']} samples)", flush=True)
            continue
        value = "" if r["test"] is None else (f", {r['measure']} train {r['train']:.2f} / held-out "
                                               f"{r['test']:.2f}")
        print_fn(f"[{i}/{len(futures)}] {name}: at {r['samples']} samples{value} "
                 f"({r['wall_time'] / 60:.1f} min of training in all; {r['seconds']:.0f} s now)", flush=True)
    client.unsubscribe_topic(TOPIC)
    return results, failures


def local_cluster(workers):
    """A ``LocalCluster`` of ``workers`` processes, one thread each, on loopback (its dashboard
    on a free port), without a memory limit (a long run must not be stopped for its size) and
    quiet: what becomes of each run is printed by :func:`execute`.

    Its workers start without Dask's default ``MALLOC_TRIM_THRESHOLD_=65536``: setting it turns
    off glibc's adaptive mmap threshold, so every array above 128 KiB (a minibatch's activations)
    is mapped and unmapped anew, page faults and all; a Frey Face run then took about twice as
    long (30.7 s against 13.8 s for 3 x 10^5 samples of frey-z20, one run each, beside two
    idle-priority trainings: not a quiet machine, so the ratio is indicative only). Workers of a cluster at
    ``--scheduler`` should start without it too (``distributed.nanny.pre-spawn-environ``)."""
    import logging

    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=":0", memory_limit=0, silence_logs=logging.CRITICAL)


def run_command(args, print_fn=print):
    """``reproduce run``: the runs named, listed (``--dry-run``) or run; returns the exit status."""
    run_specs = specs(args.names, args.samples)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {args.workers}")
    if args.workers is not None and args.scheduler:
        raise ValueError("--workers sets the size of the local cluster; with --scheduler the "
                         "cluster's own workers run")
    runs_dir = Path(args.runs_dir).resolve()
    from ..backend import available_cores

    workers = min(args.workers or available_cores(), len(run_specs))
    estimates = estimate(run_specs, runs_dir, args.results_dir)
    if args.dry_run:
        print_fn(dry_run_table(run_specs, estimates, workers, args.results_dir))
        return 0
    try:
        from distributed import Client
    except ImportError:
        raise OSError("reproduce run schedules its runs with Dask's distributed, which is not "
                      "installed: pip install 'scratchvae[cluster]' (or pip install distributed); "
                      "--dry-run needs nothing") from None
    runs_dir.mkdir(parents=True, exist_ok=True)
    data_dir = None if args.data_dir is None else str(Path(args.data_dir).resolve())
    seconds = {name: e["seconds"] for name, e in estimates.items()}
    t0 = time.time()
    deadline = None if args.max_minutes is None else t0 + 60 * args.max_minutes
    try:
        if args.scheduler:
            with Client(args.scheduler, timeout="30s") as client:
                print_fn(f"{len(run_specs)} runs on the cluster at {args.scheduler} "
                         f"({len(client.scheduler_info()['workers'])} workers), into {runs_dir}")
                results, failures = execute(run_specs, runs_dir, client, data_dir, seconds, print_fn, deadline)
        else:
            with local_cluster(workers) as cluster, Client(cluster) as client:
                print_fn(f"{len(run_specs)} runs on a local cluster of {workers} worker processes "
                         f"(scheduler {cluster.scheduler_address}), into {runs_dir}")
                results, failures = execute(run_specs, runs_dir, client, data_dir, seconds, print_fn, deadline)
    except KeyboardInterrupt:
        print_fn("interrupted: each run keeps its last checkpoint; the same command resumes them"
                 + (" (the cluster at --scheduler may still be running the runs it had begun)"
                    if args.scheduler else ""))
        return 130
    targets = {s["name"]: s["samples"] for s in run_specs}
    short = sum(r["samples"] < targets[r["name"]] for r in results)
    print_fn(f"{len(results) - short} of {len(run_specs)} runs at their target in {(time.time() - t0) / 60:.1f} min"
             + (f"; {short} stopped short by --max-minutes (the same command resumes them)" if short else ""))
    if failures:
        print_fn(f"{len(failures)} failed:")
        for name, error in failures:
            print_fn(f"  {name}: " + "\n    ".join(error.splitlines()))
        return 1
    return 0


# ---------------------------------------------------------------------------------------
# --dry-run: what each run has done, and how long the rest should take
# ---------------------------------------------------------------------------------------
def done_samples(spec, runs_dir):
    """Training samples the run's folder has reached (0 if there is none)."""
    folder = Path(runs_dir) / spec["folder"]
    try:
        if spec["kind"] == "figure3":
            import numpy as np

            with np.load(folder / "checkpoint.npz", allow_pickle=False) as z:
                return int(json.loads(str(z["meta"]))["samples"])
        from ..training.metrics import read_metrics

        records = read_metrics(folder / "metrics.jsonl")
        return max((r.get("samples", 0) for r in records), default=0)
    except (OSError, ValueError, KeyError):
        return 0


def measured_speeds(results_dir):
    """Training samples per second of the archived runs in ``results_dir``: each Figure-2 run's
    ``<name>.metrics.jsonl`` and each Figure-3 run in ``figure3.json`` (its last record:
    samples over wall time, evaluations included). ``{name: (samples/s, samples measured)}``."""
    from ..training.metrics import read_metrics

    speeds = {}
    for path in sorted(Path(results_dir).glob("*.metrics.jsonl")):
        try:
            records = [r for r in read_metrics(path) if r.get("wall_time")]
        except ValueError:
            continue
        if records:
            speeds[path.name[: -len(".metrics.jsonl")]] = (records[-1]["samples"] / records[-1]["wall_time"],
                                                            records[-1]["samples"])
    fig3 = Path(results_dir) / "figure3.json"
    if fig3.is_file():
        found = json.loads(fig3.read_text())
        if isinstance(found.get("runs"), dict):          # the report's later layout: {"runs": ..., ...}
            found = found["runs"]
        for name, run in found.items():
            history = [h for h in run.get("history", []) if isinstance(h, dict) and h.get("wall_time")]
            if history:
                speeds[f"{FIGURE3_DIR}/{name}"] = (history[-1]["samples"] / history[-1]["wall_time"],
                                                   history[-1]["samples"])
    return speeds


def _speed_of(spec, speeds):
    """``(samples/s, from which archived run)`` for a run: its own archive, else the same model
    on the canonical split and seed, else the median of its dataset and algorithm; a Figure-3
    run without its own, the same method on the other training set (a sample costs about the
    same: one point's pass, whatever N)."""
    name = spec["folder"].rsplit("/", 1)[-1] if spec["kind"] == "spread" else spec["name"]
    if name in speeds:
        return speeds[name][0], name
    if spec["kind"] == "figure3":
        method, size = name.rsplit("-", 1)
        other = f"{method}-{'large' if size == 'small' else 'small'}"
        return (speeds[other][0], other) if other in speeds else (None, None)
    exp = experiment(name)
    base = f"{exp.dataset}-z{exp.z_dim}" + ("-ws" if exp.algorithm == "wake-sleep" else "")
    if base in speeds:
        return speeds[base][0], base
    alike = sorted(v[0] for k, v in speeds.items() if "/" not in k and _alike(k, exp))
    if alike:
        return alike[len(alike) // 2], f"median of {len(alike)} {exp.dataset} {exp.algorithm} runs"
    return None, None


def _alike(name, exp):
    try:
        other = experiment(name)
    except ValueError:
        return False
    return (other.dataset, other.algorithm, other.split) == (exp.dataset, exp.algorithm, exp.split)


def estimate(run_specs, runs_dir, results_dir):
    """``{name: {done, speed, source, seconds}}``: what each run has reached in ``runs_dir``,
    the speed measured on the archived runs in ``results_dir``, and the seconds left (None
    where nothing was measured)."""
    speeds = measured_speeds(results_dir)
    out = {}
    for s in run_specs:
        done = done_samples(s, runs_dir)
        speed, source = _speed_of(s, speeds)
        left = max(0, s["samples"] - done)
        out[s["name"]] = {"done": done, "speed": speed, "source": source,
                          "seconds": None if speed is None else left / speed}
    return out


def _duration(seconds):
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def makespan(seconds, workers):
    """Seconds until the last of runs taking ``seconds`` ends when ``workers`` take them longest first."""
    loads = [0.0] * workers
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def dry_run_table(run_specs, estimates, workers, results_dir):
    """The runs, what each has done, its target and estimated time, and the totals."""
    rows = [("run", "done", "target", "samples/s", "estimated", "speed measured on")]
    for s in run_specs:
        e = estimates[s["name"]]
        rows.append((s["name"], f"{e['done']:.3g}", f"{s['samples']:.3g}",
                     "-" if e["speed"] is None else f"{e['speed']:.3g}",
                     "done" if e["done"] >= s["samples"] else _duration(e["seconds"]), e["source"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    known = [e["seconds"] for e in estimates.values() if e["seconds"] is not None]
    unknown = len(estimates) - len(known)
    lines.append(f"\n{len(run_specs)} runs: {_duration(sum(known))} of computing"
                 + (f" (and {unknown} without a measured speed)" if unknown else "")
                 + f"; on {workers} worker{'s' if workers != 1 else ''}, longest first, about "
                 f"{_duration(makespan(known, workers))}.")
    lines.append(f"Speeds: training samples per second of the archived runs in {results_dir} (their "
                 "last record: samples over wall time, evaluations included), measured on the machine "
                 "that made them, two runs at a time; a run is estimated at the speed of its own "
                 "archive, else the same model's, else the median of its dataset and algorithm "
                 "(a Figure-3 run: the same method's on the other training set).")
    return "\n".join(lines)


def add_arguments(p):
    """The options of ``reproduce run``."""
    from .page import RESULTS_DIR
    from .runs import RUNS_DIR

    p.add_argument("names", nargs="+", metavar="NAME",
                   help="all, figure2, figure3, spread, or runs: frey-z20, mnist-z3-ws, "
                   "figure3/aevb-large, spread/frey-z20-s1-r2, ...")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, what each has done and its estimated time; run nothing")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.1:8786), whose "
                   "workers see --runs-dir and the data at the same paths")
    p.add_argument("--runs-dir", default=RUNS_DIR, metavar="DIR",
                   help=f"where each run's folder is (default: {RUNS_DIR})")
    p.add_argument("--samples", type=int, metavar="N",
                   help="training samples every run is taken to (default: Figures 2 and 3: 10^8, "
                   "the spread: 10^7)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ and frey/ "
                   "(default: $SCRATCHVAE_DATA_DIR or ./data on each worker); nothing is downloaded")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop each run at the last evaluation point it can reach M minutes after the "
                   "command starts, and start none after that (a cluster job's time limit); the same "
                   "command resumes them")
    p.add_argument("--results-dir", default=RESULTS_DIR, metavar="DIR",
                   help=f"the archived runs whose measured speed --dry-run uses (default: {RESULTS_DIR})")
    return p

