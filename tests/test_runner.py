"""``reproduce run``: every run from one command, on a Dask cluster of two worker processes on
loopback (no network). Tiny runs on the embedded digits: on the cluster they end bitwise where
the same runs end one after the other in this process, a run whose worker is killed resumes
from its checkpoint to the same bits, and a failing run stops no other."""
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from scratchvae.experiments import reproduce, runner
from scratchvae.experiments.results import log_rows
from scratchvae.training import checkpoint

ARCHIVE = Path(__file__).resolve().parents[1] / "docs" / "results"


def _state(folder):
    """Everything a run ends with: its checkpoint's arrays and meta (progress, generator
    states, history) and its metrics, wall times left out."""
    with np.load(folder / "checkpoint.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    meta["progress"].pop("wall_time")
    for record in meta["history"]:
        record.pop("wall_time")
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    for record in metrics:
        record.pop("wall_time")
    return arrays, meta, metrics


def _assert_same_run(a, b):
    arrays_a, meta_a, metrics_a = _state(a)
    arrays_b, meta_b, metrics_b = _state(b)
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)   # bit for bit
    assert meta_a == meta_b
    assert metrics_a == metrics_b and metrics_a


def test_dry_run_lists_every_run_with_what_it_has_done_and_its_time(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "frey-z20").mkdir(parents=True)                  # half done: half the time left
    (runs / "frey-z20" / "metrics.jsonl").write_text(json.dumps({"samples": 5 * 10**7}) + "\n")
    status = reproduce.main(["run", "all", "spread", "scale", "digits-z2", "--dry-run", "--runs-dir", str(runs),
                             "--results-dir", str(ARCHIVE), "--workers", "2"])
    out = capsys.readouterr().out
    assert status == 0 and not any(p.name != "frey-z20" for p in runs.iterdir())   # nothing run
    names = [line.split()[0] for line in out.splitlines()[1:] if line and not line[0].isupper()
             and not line[0].isdigit()]
    expected = [f"{ds}-z{z}{ws}" for ds, zs in (("frey", (2, 5, 10, 20)), ("mnist", (3, 5, 10, 20, 200)))
                for z in zs for ws in ("", "-ws")]
    figure3 = runner.figure3_names()                          # as figure3 lists them
    assert sorted(figure3) == sorted(f"figure3/{m}-{s}" for s in ("small", "large")
                                     for m in ("aevb", "wake-sleep", "mcem"))
    expected += figure3
    expected += [f"spread/frey-z20{s}{r}" for s in ("", "-s1", "-s2") for r in ("", "-r1", "-r2")]
    scale = ([f"frey-z{z}-sd0.1" for z in (2, 5, 10, 20)] + ["frey-z2-ws-sd0.01", "frey-z5-ws-sd0.01"]
             + [f"mnist-z{z}-ws-sd0.01" for z in (3, 5, 10, 20, 200)])
    assert names == expected + scale + ["digits-z2"]
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in names}
    frey = json.loads((ARCHIVE / "frey-z20.metrics.jsonl").read_text().splitlines()[-1])
    minutes = (10**8 - 5 * 10**7) / (frey["samples"] / frey["wall_time"]) / 60
    assert re.search(rf"frey-z20\s+5e\+07\s+1e\+08\s+\S+\s+{minutes:.0f} min\s+frey-z20$", rows["frey-z20"])
    assert re.search(r"spread/frey-z20-s1-r2\s+0\s+1e\+07\s+\S+\s+\d+ min\s+frey-z20$", rows["spread/frey-z20-s1-r2"])
    assert re.search(r"frey-z2-ws-sd0.01\s+0\s+1e\+06\s", rows["frey-z2-ws-sd0.01"])   # a scale run's target
    assert "unknown" in rows["digits-z2"]                     # no archived digits run to measure
    unknown = sum("unknown" in row for row in rows.values())
    assert re.search(rf"45 runs: [\d.]+ h of computing \(and {unknown} without a measured speed\); on 2 "
                     r"workers, longest first, about [\d.]+ h\.", out)


def test_a_figure3_run_without_its_own_speed_takes_the_other_training_sets():
    speeds = {"figure3/mcem-small": (2000.0, 10**6), "figure3/aevb-large": (14000.0, 10**8)}
    assert runner._speed_of(_spec("figure3/mcem-large", 10**6), speeds) == (2000.0, "figure3/mcem-small")
    assert runner._speed_of(_spec("figure3/aevb-small", 10**6), speeds) == (14000.0, "figure3/aevb-large")
    assert runner._speed_of(_spec("figure3/wake-sleep-small", 10**6), speeds) == (None, None)


def test_bad_names_and_options_are_refused_before_any_work(tmp_path, capsys):
    for argv, words in ((["frey-z21x"], "experiment must be"), (["figure3/aevb-huge"], "run must be"),
                        (["frey-z20-r0"], "write 'frey-z20-r0' as frey-z20"),
                        (["all", "--workers", "0"], "--workers must be a positive integer"),
                        (["all", "--samples", "0"], "--samples must be a positive integer"),
                        (["all", "--max-minutes", "0"], "--max-minutes must be > 0"),
                        (["all", "--max-minutes", "nan"], "--max-minutes must be > 0"),
                        (["all", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers sets")):
        assert reproduce.main(["run", *argv, "--runs-dir", str(tmp_path / "runs")]) == 1
        assert words in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    with runner.local_cluster(2) as c:
        yield c


def _spec(name, samples):
    return runner.spec(name, samples)


def test_the_workers_keep_glibcs_adaptive_malloc(cluster):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers by default, which fixes glibc's
    mmap threshold and made training about twice as slow; the local cluster's workers go without it
    and still use one BLAS thread."""
    from distributed import Client

    with Client(cluster) as client:
        env = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OPENBLAS_NUM_THREADS")))
    assert len(env) == 2 and set(env.values()) == {(None, "1")}, env


def test_the_longest_runs_start_first_whatever_order_they_are_named_in(tmp_path):
    distributed = pytest.importorskip("distributed")

    names = ["digits-z2", "digits-z2-s1", "digits-z2-s2"]        # named shortest first
    # one worker, so that the order of the starts is the order the scheduler chose
    with runner.local_cluster(1) as c, distributed.Client(c) as client:
        runner.execute([_spec(n, 10000) for n in names], tmp_path, client,
                       estimates={n: i + 1 for i, n in enumerate(names)})
    starts = [line.split()[-3] for line in (tmp_path / runner.QUEUE_LOG).read_text().splitlines()
              if " START " in line]
    assert starts == names[::-1]


def test_a_run_cancelled_on_the_scheduler_is_a_failure_that_stops_no_other(tmp_path):
    distributed = pytest.importorskip("distributed")

    with runner.local_cluster(1) as c, distributed.Client(c) as client, distributed.Client(c) as other:
        result = {}
        thread = threading.Thread(target=lambda: result.update(out=runner.execute(
            [_spec("digits-z2", 20000), _spec("digits-z2-s1", 20000)], tmp_path, client,
            estimates={"digits-z2": 2, "digits-z2-s1": 1})))
        thread.start()
        deadline = time.time() + 60
        while time.time() < deadline and not (tmp_path / runner.QUEUE_LOG).is_file():
            time.sleep(0.02)                                  # digits-z2 has started; -s1 waits
        other.cancel([distributed.Future("reproduce-run:digits-z2-s1", other)], force=True)
        thread.join(timeout=120)
    results, failures = result["out"]
    assert [r["name"] for r in results] == ["digits-z2"] and results[0]["samples"] == 20000
    assert failures == [("digits-z2-s1", "cancelled on the scheduler")]


def test_two_runs_on_the_cluster_end_as_one_after_the_other_and_a_failure_stops_neither(tmp_path, capsys, cluster):
    empty = tmp_path / "no-data"
    empty.mkdir()
    status = reproduce.main(["run", "digits-z2", "mnist-z3", "digits-z2-ws", "--samples", "20000",
                             "--runs-dir", str(tmp_path / "cluster"), "--data-dir", str(empty),
                             "--scheduler", cluster.scheduler_address])
    out = capsys.readouterr().out
    assert status == 1                                        # mnist-z3 has no data here
    assert re.search(r"\[\d/3\] mnist-z3: FAILED: \w+", out) and "2 of 3 runs at their target" in out
    summary = out.split("\n1 failed:\n", 1)[1]
    assert summary.startswith("  mnist-z3: MissingDataError: the mnist files are not in")
    for name in ("digits-z2", "digits-z2-ws"):
        assert f"{name}:      20000 samples" in out           # its progress lines, as they came
        assert re.search(rf"\[\d/3\] {name}: at 20000 samples, ELBO train", out)
        runner.run_one(_spec(name, 20000), tmp_path / "sequential")
        _assert_same_run(tmp_path / "cluster" / name, tmp_path / "sequential" / name)
        log = (tmp_path / "cluster" / name / "run.log").read_text()
        assert f"{name}: started towards 20000 samples" in log
    # the queue log: a START and an END per run, read by `reproduce report --log` as its commands
    rows = log_rows(tmp_path / "cluster" / runner.QUEUE_LOG)
    assert sorted(r[0] for r in rows) == [f"reproduce train {n} --samples 20000"
                                          for n in ("digits-z2", "digits-z2-ws", "mnist-z3")]
    assert {r[0].split()[2]: r[3] for r in rows} == {"digits-z2": "done", "digits-z2-ws": "done",
                                                     "mnist-z3": "exit status 1"}


def _checkpoint_samples(folder):
    """The samples the run's checkpoint has reached (0 before its first one). A metrics record
    comes before its checkpoint, so under load a kill between the two resumes at the start."""
    try:
        return checkpoint.load(folder / "checkpoint.npz").meta["progress"]["samples"]
    except (OSError, ValueError, KeyError):
        return 0


def test_a_killed_worker_is_retried_and_its_run_resumes_to_the_same_bits(tmp_path, cluster):
    folder = tmp_path / "cluster" / "digits-z2"
    argv = ["run", "digits-z2", "--samples", "100000", "--runs-dir", str(tmp_path / "cluster"),
            "--scheduler", cluster.scheduler_address]
    result = {}
    thread = threading.Thread(target=lambda: result.update(status=reproduce.main(argv)))
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and _checkpoint_samples(folder) == 0:
        time.sleep(0.05)                                      # until a checkpoint past the start
    pid = int(re.search(r"in process (\d+)", (folder / "run.log").read_text()).group(1))
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert result.get("status") == 0
    log = (folder / "run.log").read_text()
    assert len(re.findall("started towards 100000 samples", log)) == 2    # once more, after the kill
    resumed = int(re.search(r"resuming at (\d+) samples", log).group(1))
    assert 0 < resumed < 100000
    runner.run_one(_spec("digits-z2", 100000), tmp_path / "uninterrupted")
    _assert_same_run(folder, tmp_path / "uninterrupted" / "digits-z2")


def test_a_time_budget_stops_runs_short_and_starts_none_after_it(tmp_path, capsys, cluster):
    common = ["--samples", "20000", "--scheduler", cluster.scheduler_address]
    status = reproduce.main(["run", "digits-z2", "--runs-dir", str(tmp_path / "spent"),
                             "--max-minutes", "1e-9", *common])
    out = capsys.readouterr().out
    assert status == 0 and "[1/1] digits-z2: not started, the --max-minutes budget is spent (at 0 samples)" in out
    assert "0 of 1 runs at their target" in out and "1 stopped short by --max-minutes" in out
    assert not (tmp_path / "spent" / "digits-z2").exists()           # nothing written for it
    status = reproduce.main(["run", "digits-z2", "--runs-dir", str(tmp_path / "ample"),
                             "--max-minutes", "60", *common])
    assert status == 0 and "1 of 1 runs at their target" in capsys.readouterr().out
    runner.run_one(_spec("digits-z2", 20000), tmp_path / "unlimited")
    _assert_same_run(tmp_path / "ample" / "digits-z2", tmp_path / "unlimited" / "digits-z2")


def test_a_run_the_budget_stops_short_is_logged_as_stopped_not_done(tmp_path):
    # one second cannot reach 10^8 samples: the run stops after its first evaluation point
    result = runner.run_one(_spec("digits-z2", 10**8), tmp_path, deadline=time.time() + 1.0)
    assert 10**4 <= result["samples"] < 10**8
    end = (tmp_path / runner.QUEUE_LOG).read_text().splitlines()[-1]
    assert f" at={result['samples']} " in end
    [row] = log_rows(tmp_path / runner.QUEUE_LOG)
    assert row[3] == f"stopped at {result['samples']:.3g} samples by --max-minutes"
