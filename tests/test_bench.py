"""The benchmark runs end to end on a tiny configuration, and the training step keeps the
memory properties it reports. Nothing here is timed: timings belong in the benchmark."""
import json
import sys
import tracemalloc

import numpy as np
import pytest

import scratchvae as sv
from scratchvae import VAE, Adagrad
from scratchvae.experiments import bench
from scratchvae.experiments.bench import comparisons, contenders, machine, memory

# One thread: on a busy machine, two threads that wait for each other can take 100x longer.
TINY = ["--dataset", "digits", "--batch-sizes", "50", "--repeats", "2", "--hidden", "16",
        "--z-dim", "2", "--threads", "1"]


def _run(tmp_path, *extra):
    path = tmp_path / "bench.json"
    assert bench.main([*TINY, "--json", str(path), *extra]) == 0
    return json.loads(path.read_text())


def test_bench_runs_and_writes_its_json(tmp_path, capsys):
    report = _run(tmp_path)
    out = capsys.readouterr().out
    assert "scratchvae bench: 64-16-2 ReLU Bernoulli VAE" in out
    assert list(report["comparisons"]) == ["1"] and report["config"]["threads"] == [1]
    r = report["comparisons"]["1"]["50"]
    assert r["threads"] == 1 and (r["overlap"] == "on" or r["overlap"].startswith("off ("))
    assert r["steps_per_epoch"] == 1500 // 50 and r["epochs"] == 2
    expected = {"scratchvae", "gemm_floor"} | ({"torch", "torch_fused"} if report["torch"]["version"] else set()) \
        | ({"scratchvae_overlap"} if r["overlap"] == "on" else set())   # timed beside it where a core is idle
    assert set(r["median_s"]) == expected
    assert all(len(t) == 2 and min(t) > 0 for t in r["times_s"].values())
    assert r["ratios"]["scratchvae/gemm_floor"] == pytest.approx(
        r["median_s"]["scratchvae"] / r["median_s"]["gemm_floor"])
    # Trained for 2 epochs: the held-out -ELBO of 8x8 digits is a finite number of nats
    # between 0 and 64 log 2 (what a model that ignores the pixels would pay at p = 1/2).
    nelbo = r["heldout_nelbo"]
    assert set(nelbo) == expected - {"gemm_floor"} and r["heldout_after_epochs"] == 2
    assert all(0 < v < 64 * np.log(2) for v in nelbo.values())
    if r["overlap"] == "on":   # the overlapped step trains the very same model, bit for bit
        assert nelbo["scratchvae_overlap"] == nelbo["scratchvae"]
    if report["torch"]["version"]:  # same weights, same batches: the same model, within noise
        assert r["valid"] and r["nelbo_spread"] < comparisons.ELBO_TOLERANCE
    assert [g["where"] for g in report["goals"]] == ["batch 128, 1 thread", "batch 128, 2 threads",
                                                     "batch 32, 1 thread", "batch 32, 2 threads",
                                                     "batch 128, 1 thread", "Frey Face, 1 thread"]
    assert all(g["met"] is None for g in report["goals"])  # those workloads were not run
    # what the machine was and how busy: enough to judge the numbers
    machine = report["machine"]
    assert machine["cpu"] and machine["blas"]["library"] == "openblas" and machine["blas"]["kernel"]
    assert f"CPU: {machine['cpu']}" in out and f"kernel {machine['blas']['kernel']}" in out
    q = r["quiet"]
    assert len(q["load_before"]) == len(q["load_after"]) == 3 and q["others_cores"] >= 0
    assert isinstance(q["noisy"], bool) and ("NOISY" in out) == any(
        x["quiet"]["noisy"] for x in report["comparisons"]["1"].values())
    for name, times in r["times_s"].items():   # median and spread of every contender
        assert r["spread_s"][name] == {"median": r["median_s"][name], "min": min(times), "max": max(times)}
    steps = r["scratchvae_steps"]              # the epoch is the sum of its steps
    assert 0 < steps["median_step_s"] * r["steps_per_epoch"] == pytest.approx(steps["median_step_x_steps_s"])
    assert 0 < steps["slowest_tenth_share"] <= 1
    assert not list(tmp_path.glob("*.tmp"))


def test_the_headline_is_the_library_rule_of_one_thread_and_two_threads_stand_beside_it(
        tmp_path, capsys, monkeypatch):
    """By default every comparison runs at 1 and then 2 threads, the first the headline; the
    overlapped scratchvae step is timed beside the plain one where a core is idle (here: at 1
    thread of 2 CPUs), and not where BLAS has a thread per CPU."""
    from scratchvae.training import overlap
    monkeypatch.setattr(overlap, "available_cpus", lambda: 2)
    parser = bench.add_arguments(__import__("argparse").ArgumentParser())
    assert parser.parse_args([]).thread_counts == [1, 2]
    report = _run(tmp_path, "--threads", "1", "2", "--no-torch", "--repeats", "1")
    out = capsys.readouterr().out
    assert list(report["comparisons"]) == ["1", "2"] and report["config"]["threads"] == [1, 2]
    one, two = (report["comparisons"][n]["50"] for n in ("1", "2"))
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["overlap"] == "on" and two["overlap"] == "off (BLAS runs 2 threads on 2 CPUs: no core is idle)"
    # the plain step and the overlapped one, interleaved, where the overlap can run
    assert set(one["median_s"]) == {"scratchvae", "scratchvae_overlap", "gemm_floor"}
    assert set(two["median_s"]) == {"scratchvae", "gemm_floor"}
    assert one["ratios"]["scratchvae_overlap/scratchvae"] == pytest.approx(
        one["median_s"]["scratchvae_overlap"] / one["median_s"]["scratchvae"])
    assert one["heldout_nelbo"]["scratchvae_overlap"] == one["heldout_nelbo"]["scratchvae"]
    assert "threads 1, 2 (the headline: 1, the library's rule)" in out
    rows = [line for line in out.splitlines() if line.startswith("   50    30")]
    assert [row.split()[2] for row in rows] == ["1", "2"]


def test_goals_are_judged_at_their_thread_counts():
    def comparison(sv, fused, floor, valid=True):
        return {"median_s": {"scratchvae": sv, "torch_fused": fused, "gemm_floor": floor},
                "valid": valid, "quiet": {"noisy": False}}
    results = {"1": {"128": comparison(0.8, 1.0, 0.6), "32": comparison(0.95, 1.0, 0.5)},
               "2": {"128": comparison(0.9, 1.0, 0.5, valid=False)}}
    goals = {(g["where"], g["what"]): (g["value"], g["met"]) for g in comparisons.check_goals(results)}
    assert goals[("batch 128, 1 thread", "scratchvae / torch fused")] == (pytest.approx(0.8), True)
    assert goals[("batch 128, 1 thread", "scratchvae / GEMM floor")] == (pytest.approx(0.8 / 0.6), True)
    assert goals[("batch 32, 1 thread", "scratchvae / torch fused")] == (pytest.approx(0.95), False)
    assert goals[("batch 128, 2 threads", "scratchvae / torch fused")] == (pytest.approx(0.9), False)  # void
    assert goals[("batch 32, 2 threads", "scratchvae / torch fused")] == (None, None)
    assert goals[("Frey Face, 1 thread", "scratchvae / torch per step")] == (None, None)


def test_without_pytorch_it_says_so_and_compares_with_the_gemm_floor(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    report = _run(tmp_path)
    out = capsys.readouterr().out
    assert "PyTorch is not installed" in out and "GEMM floor only" in out
    assert report["torch"] == {"version": None, "why_not": "PyTorch is not installed (pip install torch)"}
    r = report["comparisons"]["1"]["50"]
    assert set(r["median_s"]) == {"scratchvae", "gemm_floor"} | (
        {"scratchvae_overlap"} if r["overlap"] == "on" else set())    # scratchvae's two steps


def test_gemm_floor_multiplies_at_the_models_shapes():
    """Forward x W and dW = x^T dy for every layer, dx = dy W^T for all but the first."""
    model = contenders.make_model(784, 400, 20, seed=0)
    floor = contenders.GemmFloor(model, batch_size=32)
    shapes = [(a.shape, b.shape) for a, b, _ in floor.products]
    assert shapes == [((32, 784), (784, 400)), ((784, 32), (32, 400)),                     # encoder 1
                      ((32, 400), (400, 40)), ((400, 32), (32, 40)), ((32, 40), (40, 400)),  # 2
                      ((32, 20), (20, 400)), ((20, 32), (32, 400)), ((32, 400), (400, 20)),  # decoder 1
                      ((32, 400), (400, 784)), ((400, 32), (32, 784)), ((32, 784), (784, 400))]


def test_memory_run_reports_resident_memory_per_epoch(tmp_path):
    args = bench.add_arguments(__import__("argparse").ArgumentParser()).parse_args(
        [*TINY, "--memory-epochs", "3"])
    m = memory.measure_memory(args, log=lambda *_: None)
    assert m["epochs"] == 3 and len(m["rss_per_epoch"]) == 3
    assert 0 < m["rss_after_setup"] <= m["peak_rss"] and max(m["rss_per_epoch"]) <= m["peak_rss"]
    assert m["parameters"] == sum(p.size for p in contenders.make_model(64, 16, 2, 0).parameters().values())


def test_an_adam_step_allocates_nothing_proportional_to_the_parameters():
    model = sv.VAE(784, 20, (400,), seed=0)
    opt = sv.Adam(model.named_parameters())
    x = np.random.default_rng(0).random((32, 784), dtype=np.float32)
    model.loss_and_grads(x)
    opt.step()  # the first step may create what later steps reuse
    tracemalloc.start()
    try:
        opt.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n_bytes = sum(p.nbytes for p in model.parameters().values())  # 2.6 MB
    assert peak < 16 * 1024 < n_bytes / 100


def test_bench_is_a_scratchvae_command(tmp_path):
    from scratchvae.cli import main
    path = tmp_path / "bench.json"
    assert main(["bench", *TINY, "--repeats", "1", "--no-torch", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["comparisons"]["1"]["50"]["epochs"] == 1


# --- The fast forms a training step uses agree with the readable references ------------
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-6)])
def test_bernoulli_likelihood_and_grad_at_once_agree_with_the_reference_pair(xp, dtype, tol):
    from scratchvae import distributions as D
    rng = np.random.default_rng(0)
    logits = np.concatenate([rng.normal(0, 4, (6, 50)), [[-1e4, -30, -1e-3, 0, 1e-3, 30, 1e4] * 7 + [0]]])
    x = np.concatenate([rng.random((3, 50)), rng.integers(0, 2, (4, 50))])
    x, logits = xp.asarray(x, dtype=dtype), xp.asarray(logits, dtype=dtype)
    logp, dlogits = D.bernoulli_log_likelihood_and_grad(x, logits)
    ref_logp = D.bernoulli_log_likelihood(x, logits)
    assert logp.dtype == dlogits.dtype == np.dtype(dtype)
    # Per row, up to rounding of a sum of 50 terms of size up to 1e4.
    scale = float(xp.abs(x * logits).sum(axis=1).max()) + 50
    assert float(xp.abs(logp - ref_logp).max()) < tol * scale
    assert float(xp.abs(dlogits - D.bernoulli_log_likelihood_grad(x, logits)).max()) < tol



def test_the_noisy_mark_follows_the_load_per_core(monkeypatch):
    cpus = machine.os.cpu_count()
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (0.9 * machine.QUIET_LOAD * cpus, 0.0, 0.0))
    q = machine.Quietness().result()   # below the load limit: noisy only if others used the CPUs
    assert q["noisy"] == (q["others_cores"] is not None and q["others_cores"] > machine.QUIET_LOAD * cpus)
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (1.1 * machine.QUIET_LOAD * cpus, 0.0, 0.0))
    assert machine.Quietness().result()["noisy"] is True


def test_frey_workload_runs_beside_pytorch_and_does_the_same_work():
    """A tiny Gaussian-decoder run through the Frey comparison: per-step times at each thread
    count, and (with PyTorch) a held-out bound that agrees, since both draw the same eps."""
    rng = np.random.default_rng(0)
    train, test = rng.random((200, 12), dtype=np.float32), rng.random((50, 12), dtype=np.float32)
    torch, _ = contenders.import_torch()
    r = comparisons.compare_frey(train, test, (1,), repeats=2, torch=torch, hidden=8, z_dim=2, lr=0.02,
                           unit_epochs=1, log=lambda *_: None)
    one = r["threads"]["1"]
    assert one["steps_per_unit"] == 2 and all(len(v) == 2 and min(v) > 0 for v in one["step_s"].values())
    overlapped = {"scratchvae_overlap"} if one["overlap"] == "on" else set()   # where a core is idle
    assert set(one["median_step_s"]) == ({"scratchvae", "torch"} if torch else {"scratchvae"}) | overlapped
    assert one["agree_steps"] == comparisons.FREY_AGREE_STEPS
    if overlapped:                      # the same model, bit for bit
        assert one["agree_nelbo"]["scratchvae_overlap"] == one["agree_nelbo"]["scratchvae"]
        assert one["heldout_nelbo"]["scratchvae_overlap"] == one["heldout_nelbo"]["scratchvae"]
    if torch is not None:
        e = one["agree_nelbo"]
        assert one["valid"] and abs(e["scratchvae"] - e["torch"]) < 0.05, e
        assert one["ratios"]["scratchvae/torch"] == pytest.approx(
            one["median_step_s"]["scratchvae"] / one["median_step_s"]["torch"])


def _frey_like_runs(lrs, threads=1):
    """Fresh ScratchRuns of one Frey-shaped model (560 pixels, Gaussian decoder, Adagrad), one per lr."""
    runs = []
    for lr in lrs:
        model = VAE(560, 5, (50,), likelihood="gaussian", activation="tanh", init="paper",
                    weight_decay=1 / 300, seed=0)
        runs.append(contenders.ScratchRun(model, lr, Adagrad(model.named_parameters(), lr=lr)))
    return runs


def test_the_frey_agreement_tells_rounding_from_a_different_learning_rate():
    """Judged after FREY_AGREE_STEPS steps, the same work at 1 and 2 BLAS threads agrees within
    the tolerance, and a learning rate 5 % higher does not: the check can fail."""
    rng = np.random.default_rng(0)
    train, test = rng.random((300, 560), dtype=np.float32), rng.random((60, 560), dtype=np.float32)
    eps = rng.standard_normal((60, 5), dtype=np.float32)
    same = {}
    for threads in (1, 2):
        with machine.limit_threads(threads):
            same[threads] = comparisons.agreement(_frey_like_runs([0.02]), train, test, eps, 100, 0)["scratchvae"]
    assert abs(same[1] - same[2]) <= comparisons.FREY_AGREE_TOLERANCE, same
    a, b = (r.heldout_nelbo(test, eps) for r in _frey_like_runs([0.02, 0.021]))
    assert a == b   # the same start
    runs = _frey_like_runs([0.02, 0.021])
    runs[1].name = "faster"
    moved = comparisons.agreement(runs, train, test, eps, 100, 0)
    assert abs(moved["scratchvae"] - moved["faster"]) > comparisons.FREY_AGREE_TOLERANCE, moved


def test_the_run_without_openblas_coretype_repeats_the_same_command_line():
    parser = bench.add_arguments(__import__("argparse").ArgumentParser())
    args = parser.parse_args([*TINY, "--frey", "--no-torch", "--data-dir", "/path/to/data"])
    again = parser.parse_args(bench._argv_of(args))
    assert {k: v for k, v in vars(again).items() if k not in ("json",)} == \
        {k: v for k, v in vars(args).items() if k not in ("json",)}


def test_a_comparison_is_judged_by_the_load_before_the_benchmark_began(monkeypatch):
    """The benchmark's own earlier comparisons raise the load average for minutes; a later
    comparison is judged by the load taken at the start (and by the others' CPU use)."""
    cpus = machine.os.cpu_count()
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (2.0 * machine.QUIET_LOAD * cpus, 0.0, 0.0))
    assert machine.Quietness().result()["noisy"] is True
    q = machine.Quietness(load_before=(0.1 * machine.QUIET_LOAD * cpus, 0.0, 0.0)).result()
    assert q["noisy"] == (q["others_cores"] is not None and q["others_cores"] > machine.QUIET_LOAD * cpus)


def test_the_optimizer_benchmark_times_the_update_as_it_is():
    """benchmarks/optim_step.py --passes times Adam's and Adagrad's operations one by one from
    its own list of them; the list must do what the optimizers' updates do, bit for bit."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "optim_step.py"
    spec = importlib.util.spec_from_file_location("optim_step", path)
    optim_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(optim_step)
    def model():
        return VAE(30, 3, (20,), seed=0)
    adam = lambda m: sv.Adam(m.named_parameters(), lr=1e-2)   # noqa: E731
    optim_step.check_passes(model, adam, optim_step.adam_passes)
    optim_step.check_passes(model, lambda m: sv.Adagrad(m.named_parameters(), lr=1e-2),
                            optim_step.adagrad_passes)
    wrong = lambda opt, dtype: optim_step.adam_passes(opt, dtype)[:-1]   # noqa: E731 (theta never moves)
    with pytest.raises(AssertionError, match="differs from the update"):
        optim_step.check_passes(model, adam, wrong)
