"""The paper-reproduction entry point: its settings, its schedule, and a seconds-long
end-to-end run on the embedded 8x8 digits (train, resume, evaluate, report)."""
import json
import math
import shutil

import numpy as np
import pytest

from scratchvae.experiments import reproduce
from scratchvae.experiments.page import heldout_peaks, init_scale, paper_gap, ws_collapse
from scratchvae.experiments.results import compare_reruns, log_rows
from scratchvae.data.datasets import DataSplits
from scratchvae.optim import Adagrad
from scratchvae.training.trainer import read_metrics


def test_eval_points_are_log_spaced_batch_multiples_ending_at_the_target():
    points = reproduce.eval_points(10**7)
    assert points[0] == 10**4 and points[-1] == 10**7
    assert all(p % reproduce.BATCH_SIZE == 0 for p in points)
    assert len(points) == 3 * 8 + 1                      # 8 per decade over 3 decades
    ratios = np.diff(np.log10(points))
    assert np.allclose(ratios, 1 / 8, atol=0.01)
    assert 10**6 in points and 10**5 in points
    assert reproduce.eval_points(12345)[-1] == 12345      # an odd target is still reached


@pytest.mark.parametrize("name, hidden, likelihood_data", [("frey-z20", 200, "gaussian"),
                                                           ("mnist-z5", 500, "bernoulli")])
def test_experiments_carry_the_papers_settings(tmp_path, name, hidden, likelihood_data):
    exp = reproduce.experiment(name)
    assert exp.hidden == hidden and exp.lr in reproduce.STEP_SIZES
    n_train, d = 300, 12
    rng = np.random.default_rng(0)
    data = DataSplits(exp.dataset, rng.random((n_train, d), dtype=np.float32),
                      rng.random((50, d), dtype=np.float32), None, None, (3, 4),
                      likelihood_data, "test split")
    trainer = reproduce.build_trainer(exp, data, tmp_path / "run")
    model = trainer.model
    assert model.hidden_dims == (hidden,) and model.z_dim == exp.z_dim
    assert model.activation == "tanh" and model.init == "paper"
    assert model.likelihood == likelihood_data
    assert model.weight_decay == pytest.approx(1 / n_train)      # N(0, I) prior over N images
    assert isinstance(trainer.optimizer, Adagrad) and trainer.optimizer.lr == exp.lr
    assert trainer.batch_size == 100
    assert trainer.binarization == ("dynamic" if exp.dataset == "mnist" else "none")
    w = model.encoder.parameters()
    first_weight = next(v for k, v in w.items() if k.endswith("W"))
    assert 0.008 < float(first_weight.std()) < 0.012              # N(0, 0.01^2)


@pytest.mark.parametrize("bad", ["frey", "mnist-z0", "cifar-z2", "frey-z2x"])
def test_bad_experiment_names(bad, capsys):
    with pytest.raises(ValueError, match="experiment must be"):
        reproduce.experiment(bad)
    assert reproduce.main(["train", bad]) == 1
    assert "experiment must be" in capsys.readouterr().err


def test_bad_numbers_are_refused_before_any_work(tmp_path, capsys):
    assert reproduce.main(["train", "digits-z2", "--samples", "0", "--runs-dir", str(tmp_path)]) == 1
    assert "--samples" in capsys.readouterr().err
    assert reproduce.main(["train", "digits-z2", "--max-minutes", "-1",
                           "--runs-dir", str(tmp_path)]) == 1
    assert "--max-minutes" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_smoke_train_resume_evaluate_report(tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    common = ["--runs-dir", str(runs)]
    assert reproduce.main(["train", "digits-z2", "--samples", "3000", *common]) == 0
    first = read_metrics(runs / "digits-z2" / "metrics.jsonl")
    assert [r["samples"] for r in first] == [3000]               # below 10^4: the target alone
    # a second call with a larger target resumes: the earlier records are kept as they were
    assert reproduce.main(["train", "digits-z2", "--samples", "12000", *common]) == 0
    assert "resuming at 3000 samples" in capsys.readouterr().out
    records = read_metrics(runs / "digits-z2" / "metrics.jsonl")
    assert records[: len(first)] == first
    assert [r["samples"] for r in records][-2:] == [10000, 12000]
    assert records[-1]["train_elbo"] > first[0]["train_elbo"]     # it learned

    assert reproduce.main(["evaluate", "digits-z2", "--k", "50", "--n-images", "20", *common]) == 0
    ev = json.loads((runs / "digits-z2" / "evaluation.json").read_text())
    assert ev["n_images"] == 20 and ev["k"] == 50 and ev["samples_trained"] == 12000
    assert math.isfinite(ev["L_k"]) and ev["L_k"] >= ev["elbo"] - 3 * ev["L_k_stderr"]
    blocks = ev["heldout_elbo_blocks"]                            # every held-out image, in blocks
    assert blocks[0]["images"][0] == 0 and blocks[-1]["images"][1] == 297
    assert all(a["images"][1] == b["images"][0] for a, b in zip(blocks, blocks[1:]))

    capsys.readouterr()
    log = tmp_path / "log.txt"                      # a queue log: one finished run, one running
    log.write_text(
        "2026-01-01T10:00:00Z worker1 START cd /x && python3 -m scratchvae.experiments.reproduce "
        "train digits-z2 --samples 12000 --runs-dir /secret/runs\n"
        "2026-01-01T10:00:30Z worker2 START cd /x && env A=1 python3 -m scratchvae.experiments.reproduce "
        "train digits-z2-ws --samples 9000 --runs-dir /secret/runs\n"
        "2026-01-01T10:02:00Z worker1 END rc=0 wall=120s cd /x && python3 -m "
        "scratchvae.experiments.reproduce train digits-z2 --samples 12000 --runs-dir /secret/runs\n")
    page = tmp_path / "docs" / "results.md"
    assert reproduce.main(["report", *common, "--results-dir", str(results), "--page", str(page),
                           "--log", str(log)]) == 0
    out = capsys.readouterr().out
    for name in ("digits-z2-manifold.png", "digits-z2-samples.png", "digits-figure2.png"):
        png = results / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size < 150 * 1024
    rows = json.loads((results / "summary.json").read_text())
    assert [(r["dataset"], r["z_dim"]) for r in rows] == [("digits", 2)]
    aevb = rows[0]["aevb"]
    assert aevb["samples"] == 12000 and aevb["evaluation"]["L_k"] == ev["L_k"]
    assert aevb["at"] == {} and "wake-sleep" not in rows[0]       # 10^6 not reached; no ws run
    assert "| digits Nz=2 | - | - | - |" in out and "1.2e+04 (" in out and "| not run |" in out
    text = page.read_text()
    assert "| `reproduce train digits-z2 --samples 12000` | 2026-01-01 10:00 | 2.0 min | done |" in text
    assert "/secret" not in text and "{" not in text.split("## Settings")[0]
    assert "![digits-figure2](../results/digits-figure2.png)" in text

    # the run folders gone (a machine not kept): the next report, from an empty runs folder
    # and no log, still shows the runs and the commands that the last report saved
    shutil.rmtree(runs)
    (results / "notes.settings.json").write_text("{}")          # not a run: ignored, no traceback
    assert reproduce.main(["report", *common, "--results-dir", str(results), "--page", str(page)]) == 0
    again = json.loads((results / "summary.json").read_text())
    assert again[0]["aevb"]["samples"] == 12000 and again[0]["aevb"]["at"] == aevb["at"]
    assert again[0]["aevb"]["evaluation"]["L_k"] == ev["L_k"]
    text = page.read_text()
    assert "| `reproduce train digits-z2 --samples 12000` | 2026-01-01 10:00 | 2.0 min | done |" in text
    assert "![digits-z2-manifold](../results/digits-z2-manifold.png)" in text
    # a new, shorter run of the same model does not hide the archived one that got further
    assert reproduce.main(["train", "digits-z2", "--samples", "3000", *common]) == 0
    assert reproduce.main(["report", *common, "--results-dir", str(results)]) == 0
    assert json.loads((results / "summary.json").read_text())[0]["aevb"]["samples"] == 12000
    # ... and is set beside it where both have records: the same command gives the same numbers
    assert json.loads((results / "reruns.json").read_text())["digits-z2"] == \
        {"points": 1, "identical": 1, "max_diff": 0.0}
    assert reproduce.main(["train", "digits-z2", "--samples", "12000", *common]) == 0
    # a rerun whose records match the archived ones byte for byte, wall times too (a quick run
    # on a quiet machine), is a rerun still, not the archive's own copy: it has its own start
    (results / "digits-z2.metrics.jsonl").write_bytes((runs / "digits-z2" / "metrics.jsonl").read_bytes())
    for _ in range(2):                  # the second report compares with the first's copy: skipped
        assert reproduce.main(["report", *common, "--results-dir", str(results), "--page", str(page)]) == 0
        assert json.loads((results / "reruns.json").read_text())["digits-z2"] == \
            {"points": 3, "identical": 3, "max_diff": 0.0}
    assert "digits-z2: 3 of 3 evaluation points identical" in page.read_text()
    # a record that differs is counted as such, with the size of the difference
    records = read_metrics(runs / "digits-z2" / "metrics.jsonl")
    records[-1]["test_elbo"] += 0.5
    (results / "digits-z2.metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    platform = json.loads((results / "digits-z2.platform.json").read_text())
    platform[0]["started"] = "2026-01-01T10:00:00.000000+00:00"      # archived from another run
    (results / "digits-z2.platform.json").write_text(json.dumps(platform))
    found = compare_reruns(runs, results, tmp_path / "reruns.json")
    assert found["digits-z2"] == {"points": 3, "identical": 2, "max_diff": 0.5}


def test_a_time_budget_stops_before_the_next_evaluation_point(tmp_path, capsys):
    assert reproduce.main(["train", "digits-z2", "--samples", "10000000", "--max-minutes", "1e-6",
                           "--runs-dir", str(tmp_path)]) == 0
    records = read_metrics(tmp_path / "digits-z2" / "metrics.jsonl")
    assert [r["samples"] for r in records] == [10**4]            # the first point only
    assert "budget would not reach" in capsys.readouterr().out


# --- paper mode: Adagrad's warm-up, the Frey split, the experiment names --------------------

def _quadratic(seed=0):
    """Parameters and gradients of 1/2 ||theta - c||^2, as (name, param, grad) triples."""
    rng = np.random.default_rng(seed)
    theta, c = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    return theta, c, np.zeros_like(theta)


def test_adagrad_warmup_accumulates_squared_gradients_without_moving():
    theta, c, g = _quadratic()
    start = theta.copy()
    opt = Adagrad([("theta", theta, g)], lr=0.1, warmup=3)
    squares = np.zeros_like(theta)
    for _ in range(3):
        g[...] = theta - c
        squares += g * g
        opt.step()
        np.testing.assert_array_equal(theta, start)            # no update while warming up
    np.testing.assert_allclose(opt.state["h"]["theta"], squares)
    # step 4 is an ordinary Adagrad step from the accumulated h
    g[...] = theta - c
    expected = start - 0.1 * g / (np.sqrt(squares + g * g) + opt.eps)
    opt.step()
    np.testing.assert_allclose(theta, expected, rtol=1e-12)
    # and the warm-up survives a checkpoint: t counts the warm-up steps
    assert opt.state_dict()["t"] == 4


def test_adagrad_without_warmup_is_unchanged():
    a, c, ga = _quadratic()
    b, _, gb = _quadratic()
    plain, warm0 = Adagrad([("t", a, ga)], lr=0.05), Adagrad([("t", b, gb)], lr=0.05, warmup=0)
    for _ in range(5):
        ga[...], gb[...] = a - c, b - c
        plain.step(), warm0.step()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _quadratic()[0])


@pytest.mark.parametrize("bad", [-1, 1.5, "100", True, None])
def test_adagrad_rejects_a_bad_warmup(bad):
    theta, _, g = _quadratic()
    with pytest.raises(ValueError, match="warmup must be an integer >= 0"):
        Adagrad([("theta", theta, g)], warmup=bad)


def test_paper_mode_uses_the_authors_warmup(tmp_path):
    exp = reproduce.experiment("frey-z5")
    rng = np.random.default_rng(0)
    data = DataSplits("frey", rng.random((200, 12), dtype=np.float32),
                      rng.random((30, 12), dtype=np.float32), None, None, (3, 4), "gaussian", "s")
    trainer = reproduce.build_trainer(exp, data, tmp_path / "run")
    assert trainer.optimizer.warmup == reproduce.ADAGRAD_WARMUP == 101
    assert trainer.settings()["adagrad_warmup"] == 101


@pytest.mark.parametrize("name, options, expected", [
    ("frey-z20", {}, ("aevb", "random", 0, "frey-z20")),
    ("frey-z20-ws", {}, ("wake-sleep", "random", 0, "frey-z20-ws")),
    ("frey-z20", {"algorithm": "wake-sleep"}, ("wake-sleep", "random", 0, "frey-z20-ws")),
    ("frey-z2", {"split": "contiguous"}, ("aevb", "contiguous", 0, "frey-z2-contiguous")),
    ("frey-z2-contiguous", {"split": "contiguous"}, ("aevb", "contiguous", 0, "frey-z2-contiguous")),
    ("frey-z2", {"split_seed": 3}, ("aevb", "random", 3, "frey-z2-s3")),
    ("mnist-z200-ws", {}, ("wake-sleep", "random", 0, "mnist-z200-ws")),
    ("frey-z2-sd0.1-s1", {}, ("aevb", "random", 1, "frey-z2-sd0.1-s1")),
    ("frey-z2-ws-sd0.01", {}, ("wake-sleep", "random", 0, "frey-z2-ws-sd0.01")),
    ("frey-z2-sd0.01", {}, ("aevb", "random", 0, "frey-z2")),            # AEVB's own scale
])
def test_experiment_names_carry_algorithm_and_split(name, options, expected):
    exp = reproduce.experiment(name, **options)
    assert (exp.algorithm, exp.split, exp.split_seed, exp.name) == expected
    assert reproduce.experiment(exp.name) == exp                 # the name says it all


@pytest.mark.parametrize("name, init, sd", [("frey-z2", "paper", 0.01), ("frey-z2-sd0.1", "paper-variance", 0.1),
                                            ("frey-z2-ws", "paper-variance", 0.1),
                                            ("frey-z2-ws-sd0.01", "paper", 0.01)])
def test_an_sd_suffix_starts_the_run_from_the_other_scale(tmp_path, name, init, sd):
    exp = reproduce.experiment(name)
    assert exp.init == init and exp.own_init == (name.count("-sd") == 0)
    rng = np.random.default_rng(0)
    data = DataSplits("frey", rng.random((200, 560), dtype=np.float32),
                      rng.random((30, 560), dtype=np.float32), None, None, (28, 20), "gaussian", "s")
    model = reproduce.build_trainer(exp, data, tmp_path / "run").model
    assert model.init == init
    W = next(p for k, p, _ in model.decoder.named_parameters() if k.endswith("W"))
    assert 0.8 * sd < float(W.std()) < 1.2 * sd


@pytest.mark.parametrize("name, options, words", [
    ("frey-z20", {"algorithm": "gibbs"}, "--algorithm must be one of aevb, wake-sleep"),
    ("frey-z20", {"split": "shuffled"}, "--split must be one of random, contiguous"),
    ("frey-z20", {"split_seed": 1.5}, "--split-seed must be an integer"),
    ("frey-z20", {"split_seed": -2}, "--split-seed must be an integer"),
    ("frey-z20-ws", {"algorithm": "aevb"}, "--algorithm aevb contradicts"),
    ("mnist-z20", {"split": "contiguous"}, "applies to frey only"),
])
def test_bad_algorithm_and_split_options_name_the_option(name, options, words):
    with pytest.raises(ValueError, match=words):
        reproduce.experiment(name, **options)


def test_bad_options_on_the_command_line(tmp_path, capsys):
    common = ["--runs-dir", str(tmp_path)]
    assert reproduce.main(["train", "frey-z2-ws", "--algorithm", "aevb", *common]) == 1
    assert "--algorithm aevb contradicts" in capsys.readouterr().err
    with pytest.raises(SystemExit):                              # argparse: exit status 2
        reproduce.main(["train", "frey-z2", "--split-seed", "x", *common])
    assert "--split-seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reproduce.main(["train", "frey-z2", "--split", "odd", *common])
    assert "--split" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_wake_sleep_experiments_share_everything_but_the_algorithm(tmp_path):
    from scratchvae.models.wake_sleep import WakeSleep
    from scratchvae.vae import VAE

    rng = np.random.default_rng(0)
    data = DataSplits("frey", rng.random((200, 12), dtype=np.float32),
                      rng.random((30, 12), dtype=np.float32), None, None, (3, 4), "gaussian", "s")
    aevb = reproduce.build_trainer(reproduce.experiment("frey-z5"), data, tmp_path / "a")
    ws = reproduce.build_trainer(reproduce.experiment("frey-z5-ws"), data, tmp_path / "w")
    assert type(aevb.model) is VAE and type(ws.model) is WakeSleep
    # networks and prior; the initial weights 10 times larger: N(0, 0.1^2) against N(0, 0.01^2)
    assert {**ws.model.config(), "init": "paper"} == aevb.model.config()
    assert ws.model.init == "paper-variance" and ws.settings()["init"] == "paper-variance"
    for name, p in aevb.model.parameters().items():              # the same draws, but
        if name == "encoder.2.W" or name == "encoder.2.b":       # the encoder's logvar outputs:
            p = np.concatenate([p[..., :5], np.zeros_like(p[..., 5:])], axis=-1)   # zero, as the authors'
        np.testing.assert_allclose(ws.model.parameters()[name], 10 * p, rtol=1e-6, err_msg=name)
    assert (type(ws.optimizer), ws.optimizer.lr, ws.optimizer.warmup) == \
        (type(aevb.optimizer), aevb.optimizer.lr, aevb.optimizer.warmup)
    assert ws.settings()["algorithm"] == "wake-sleep" and aevb.settings()["algorithm"] == "aevb"
    # the authors' order and initialization are part of the run: a run of the earlier
    # wake-sleep (both gradients at the same parameters) is not continued with them
    assert (ws.settings()["update_order"], ws.settings()["logvar_init"]) == ("decoder-first", "zero")
    assert "update_order" not in aevb.settings()


def test_smoke_wake_sleep_run(tmp_path):
    runs = tmp_path / "runs"
    assert reproduce.main(["train", "digits-z2", "--algorithm", "wake-sleep", "--samples", "3000",
                           "--runs-dir", str(runs)]) == 0
    records = read_metrics(runs / "digits-z2-ws" / "metrics.jsonl")
    assert [r["samples"] for r in records] == [3000] and math.isfinite(records[0]["test_elbo"])
    assert reproduce.main(["train", "digits-z2", "--samples", "3000", "--runs-dir", str(runs)]) == 0
    page = tmp_path / "results.md"
    assert reproduce.main(["report", "--runs-dir", str(runs), "--results-dir", str(tmp_path / "r"),
                           "--page", str(page)]) == 0
    text = page.read_text()
    assert "Held-out bounds, digits Nz = 2 at 3e+03 samples: AEVB " in text
    rows = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert rows[0]["wake-sleep"]["samples"] == rows[0]["aevb"]["samples"] == 3000


def test_the_page_names_a_wake_sleep_run_stuck_at_the_prior():
    def run(name, kl):
        return {"experiment": reproduce.experiment(name),
                "records": [{"samples": 10**6, "train_kl": kl, "test_elbo": 1.0}]}
    runs = {"frey-z2-ws": run("frey-z2-ws", 0.0004), "frey-z20-ws": run("frey-z20-ws", 12.3),
            "frey-z2": run("frey-z2", 3.0)}
    text = ws_collapse(runs)
    assert "frey Nz = 2 (KL term 0.000 at 1e+06 samples)" in text and "Nz = 20" not in text
    assert ws_collapse({"frey-z20-ws": runs["frey-z20-ws"]}) == ""


def test_the_page_sets_each_run_from_the_other_scale_beside_its_own():
    def run(name, *points):
        return {"experiment": reproduce.experiment(name),
                "records": [{"samples": n, "test_elbo": te, "test_kl": kl} for n, te, kl in points]}
    runs = {"frey-z2": run("frey-z2", (10**6, 740.3, 7.9), (10**8, 855.0, 9.0)),
            "frey-z2-sd0.1": run("frey-z2-sd0.1", (10**6, 785.2, 8.1)),
            "frey-z2-ws": run("frey-z2-ws", (10**6, 745.0, 5.1)),
            "frey-z2-ws-sd0.01": run("frey-z2-ws-sd0.01", (10**5, 557.0, 0.002), (10**6, 558.6, 0.0004)),
            "frey-z5-ws-sd0.01": run("frey-z5-ws-sd0.01", (10**6, 558.0, 0.0))}     # no frey-z5-ws
    assert init_scale(runs) == (
        "at 10^6 samples, held-out bound (its KL term) from N(0, 0.01^2) / from N(0, 0.1^2): "
        "AEVB frey Nz = 2: 740 (7.9) / 785 (8.1) (frey-z2-sd0.1); "
        "wake-sleep frey Nz = 2: 559 (0.0004) / 745 (5.1) (frey-z2-ws-sd0.01). "
        "The held-out bound is higher from N(0, 0.1^2) for AEVB frey Nz = 2 (by 45 nats), "
        "wake-sleep frey Nz = 2 (by 186 nats).")
    both = dict(runs, **{"mnist-z20-ws": run("mnist-z20-ws", (10**6, -149.1, 43.6)),
                         "mnist-z20-ws-sd0.01": run("mnist-z20-ws-sd0.01", (10**6, -128.7, 15.3)),
                         "mnist-z3-ws": run("mnist-z3-ws", (10**6, -158.0, 6.2)),
                         "mnist-z3-ws-sd0.01": run("mnist-z3-ws-sd0.01", (10**6, -160.5, 5.7))})
    assert init_scale(both).endswith(
        "The held-out bound is higher from N(0, 0.01^2) for wake-sleep mnist Nz = 20 (by 20 nats); "
        "from N(0, 0.1^2) for AEVB frey Nz = 2 (by 45 nats), wake-sleep frey Nz = 2 (by 186 nats), "
        "wake-sleep mnist Nz = 3 (by 2 nats).")
    runs["frey-z2-sd0.1"]["records"] = [{"samples": 10**5, "test_elbo": 600.0, "test_kl": 2.0}]
    runs["frey-z2"]["records"].insert(0, {"samples": 10**5, "test_elbo": 590.0, "test_kl": 1.5})
    assert init_scale(runs).startswith("held-out bound (its KL term) from N(0, 0.01^2) / from N(0, 0.1^2): "
                                       "AEVB frey Nz = 2 at 10^5: 590 (1.5) / 600 (2) (frey-z2-sd0.1); "
                                       "wake-sleep frey Nz = 2 at 10^6: ")
    assert init_scale({"frey-z2": runs["frey-z2"]}) == "(no run from the other scale yet: `scratchvae reproduce run scale`)."
    stuck = dict(runs, **{"frey-z2-ws-sd0.01": run("frey-z2-ws-sd0.01", (10**6, 558.6, 0.0004))})
    for r in stuck.values():
        r["records"] = [dict(x, train_kl=x["test_kl"]) for x in r["records"]]
    assert ws_collapse(stuck) == ""         # a run from the other scale is not one of the figure's


def test_the_page_sets_each_reached_point_beside_the_paper():
    def run(name, *points):
        return {"experiment": reproduce.experiment(name),
                "records": [{"samples": n, "train_elbo": tr, "test_elbo": te} for n, tr, te in points]}
    runs = {"frey-z20": run("frey-z20", (10**7, 1240.4, 1100.0), (10**8, 1490.2, 1301.0)),
            "frey-z2": run("frey-z2", (10**7, 800.0, 790.0))}            # 10^8 not reached
    text = paper_gap(runs)
    assert text == ("frey Nz = 20 at 10^7: 1240 / 1100 against 1250 / - (-10 / -); "
                    "frey Nz = 20 at 10^8: 1490 / 1301 against 1485 / 1320 (+5 / -19).")
    assert paper_gap({"frey-z2": runs["frey-z2"]}) == "none yet."


def test_the_page_says_where_the_held_out_bound_peaked():
    def run(name, *points):
        return {"experiment": reproduce.experiment(name),
                "records": [{"samples": n, "test_elbo": te} for n, te in points]}
    runs = {"frey-z20": run("frey-z20", (10**6, 1000.0), (4 * 10**7, 1300.4), (10**8, 1275.2)),
            "frey-z20-ws": run("frey-z20-ws", (10**6, 700.0), (10**8, 900.0)),   # not AEVB
            "frey-z2": run("frey-z2", (10**6, 700.0), (10**7, 800.0)),           # not past 10^7
            "frey-z20-sd0.1": run("frey-z20-sd0.1", (10**6, 1000.0), (10**8, 1400.0))}  # not the figure's
    assert heldout_peaks(runs) == "frey Nz = 20 held-out 1300 at 4e+07 samples, 1275 at 1e+08."
    assert heldout_peaks({"frey-z2": runs["frey-z2"]}).startswith("(no run")
    rising = {"frey-z5": run("frey-z5", (10**7, 1000.0), (2 * 10**7, 1050.0))}
    assert heldout_peaks(rising) == "frey Nz = 5 held-out 1050 at 2e+07 samples, still rising."


def test_log_rows_mark_a_run_started_again_before_its_end_as_interrupted(tmp_path):
    cmd = ("python3 -m scratchvae.experiments.reproduce train frey-z2 --samples 100000000 "
           "--runs-dir /secret/runs")
    log = tmp_path / "log.txt"
    log.write_text(f"2026-01-01T09:19:59 w1 START {cmd}\n"             # its machine stopped
                   f"2026-01-02T09:45:25 w2 START {cmd}\n"             # resumed from its checkpoint
                   f"2026-01-02T10:25:25 w2 END rc=0 wall=2400s {cmd}\n"
                   f"2026-01-02T10:30:00 w1 START {cmd.replace('frey-z2', 'frey-z5')}\n"
                   f"2026-01-02T10:31:00 w2 START {cmd.replace('frey-z2', 'frey-z10')}\n"
                   f"2026-01-02T11:06:00 w2 END rc=0 wall=2100s at=30613700 {cmd.replace('frey-z2', 'frey-z10')}\n")
    short = "reproduce train frey-z2 --samples 100000000"
    assert log_rows(log) == [
        [short, "2026-01-01 09:19", "-", "interrupted, resumed"],
        [short, "2026-01-02 09:45", "40.0 min", "done"],
        [short.replace("frey-z2", "frey-z5"), "2026-01-02 10:30", "-", "running"],
        [short.replace("frey-z2", "frey-z10"), "2026-01-02 10:31", "35.0 min",
         "stopped at 3.06e+07 samples by --max-minutes"]]
    assert log_rows(log, names={"frey-z5"})[0][3] == "running"


def test_report_with_a_log_that_is_not_there_says_so(tmp_path, capsys):
    missing = tmp_path / "queue-log.txt"
    assert reproduce.main(["report", "--runs-dir", str(tmp_path / "runs"), "--results-dir",
                           str(tmp_path / "r"), "--log", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"reproduce report: error: --log: no such file: {missing} (expected a queue log)"
    assert not (tmp_path / "r").exists()                          # nothing written
