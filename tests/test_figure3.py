"""The Figure-3 experiment end to end on a few steps of real MNIST: training with log p(x)
estimates at the evaluation points, the final bounds and the guided estimate, a resume that
adds nothing and one that continues bitwise, checkpoints that are refused, and the report: its
figure, its data and a page whose numbers and words come from that data."""
import json

import numpy as np
import pytest

from datafiles import SHARED_DATA, needs_shared
from scratchvae.experiments import figure3, figure3_cli, figure3_page, figure3_report as rep

QUIET = dict(print_fn=lambda *a, **k: None)
TIMING = {"train_seconds", "train_time", "train_cpu_time", "eval_seconds", "wall_time", "final_seconds"}


def _untimed(record):
    return {k: v for k, v in record.items() if k not in TIMING}


def _checkpoint(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    return arrays, meta


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """aevb-small and mcem-small trained to 12000 samples, each in two sessions (10^4, then the
    rest), and again in one: {name: (two-session folder, one-session folder)}; L_k with k = 500
    instead of 5000 (time)."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("no reference data")
    patch = pytest.MonkeyPatch()
    patch.setattr(figure3, "FINAL_K", 500)
    root = tmp_path_factory.mktemp("figure3")
    out = {}
    for name in ("aevb-small", "mcem-small"):
        a, b = root / "runs" / name, root / "straight" / name
        figure3.train(name, 10000, a, data_dir=SHARED_DATA, n_eval=10, **QUIET)
        figure3.train(name, 12000, a, data_dir=SHARED_DATA, n_eval=10, **QUIET)
        figure3.train(name, 12000, b, data_dir=SHARED_DATA, n_eval=10, **QUIET)
        out[name] = (a, b)
    patch.undo()
    return out


@needs_shared
@pytest.mark.parametrize("name", ["aevb-small", "mcem-small"])
def test_a_run_records_estimates_and_final_bounds_and_resumes_bitwise(runs, name):
    a, b = runs[name]
    meta = json.loads((a / "history.json").read_text())
    assert [r["samples"] for r in meta["history"]] == figure3.eval_points(12000, unit=1000 if name == "mcem-small" else 100)
    final = meta["final"]
    assert final["samples"] == 12000
    for part in ("train", "test"):
        assert final[f"{part}_log_px"] < 0 and final[f"{part}_impossible"] == 0
        assert 0.3 < final[f"{part}_accept"] <= 1                 # the authors' chains aim at 0.5
        assert final[f"{part}_log_px_kde"] < 0
        assert final["guided_start"][f"{part}_log_px"] < 0
    if name == "aevb-small":   # log p(x) >= L_k >= ELBO, within the estimates' noise
        bounds = final["bounds"]
        assert bounds["train_L_k"] >= bounds["train_elbo"] - 0.5
        assert bounds["train_guided_minus_L_k"] >= -1.0
    else:
        assert final["bounds"] is None and meta["history"][-1]["hmc_accept"] > 0
        assert meta["iterations"] == 12 and meta["settings"]["samples_per_step"] == 1000
    # two sessions and one give the same run, to the bit
    (pa, ma), (pb, mb) = _checkpoint(a / "checkpoint.npz"), _checkpoint(b / "checkpoint.npz")
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    assert ma["rng"] == mb["rng"] and ma["method_state"] == mb["method_state"]
    assert [_untimed(r) for r in ma["history"]] == [_untimed(r) for r in mb["history"]]
    # asked for what it reached, a run trains nothing and keeps its record
    again = figure3.train(name, 12000, a, data_dir=SHARED_DATA, n_eval=10, **QUIET)
    assert again["history"] == meta["history"] and again["final"] == final
    # each session that trained says where it ran; one that trained nothing adds nothing
    assert [p["from_samples"] for p in meta["platform"]] == [0, 10000]
    assert meta["platform"][0]["cpu"] and meta["platform"][0]["blas"]["threads"] >= 1
    assert again["platform"] == meta["platform"]


@needs_shared
def test_the_report_writes_figure_data_and_a_page_from_the_runs(runs, tmp_path):
    runs_dir = runs["aevb-small"][0].parent
    page = tmp_path / "docs" / "figure3.md"
    assert figure3_page.report(runs_dir, tmp_path / "docs" / "results", page, n_replicas=100, **QUIET) == 0
    data = json.loads((tmp_path / "docs" / "results" / "figure3.json").read_text())
    assert set(data["runs"]) == {"aevb-small", "mcem-small"}
    assert (tmp_path / "docs" / "results" / "figure3.png").stat().st_size > 10000
    text = page.read_text()
    assert "](results/figure3.png)" in text and "](results/figure3.json)" in text
    for name, r in data["runs"].items():                # the table's numbers are the data's
        f = r["final"]
        assert f"| {name} | 1000 | 1.2 x 10^4 | {f['train_log_px']:.1f} +- {f['train_log_px_se']:.1f} / " in text
        assert f"{f['train_log_px_kde']:.1f} / {f['test_log_px_kde']:.1f}" in text
    b = data["runs"]["aevb-small"]["final"]["bounds"]
    assert f"{b['test_guided_minus_L_k']:+.2f} +- {b['test_guided_minus_L_k_se']:.2f}" in text
    g = data["estimator_check"]["gaussian"]
    assert f"by {g['bias']:+.3f} +- {g['bias_se']:.3f} nats" in text
    assert "scratchvae reproduce figure3 train mcem-small --samples 12000" in text


def test_the_report_refuses_a_missing_runs_folder_and_writes_a_page_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs folder"):
        figure3_page.report(tmp_path / "nowhere", tmp_path / "results", None, **QUIET)
    assert figure3_cli.main(["report", "--runs-dir", str(tmp_path / "nowhere")]) == 1
    (tmp_path / "runs").mkdir()
    figure3_page.report(tmp_path / "runs", tmp_path / "results", tmp_path / "page.md", n_replicas=50, **QUIET)
    text = (tmp_path / "page.md").read_text()
    assert "No Figure-3 runs made with this code" in text and "figure3.png" not in text


@needs_shared
def test_checkpoints_with_nan_weights_or_from_other_code_are_refused(runs, tmp_path):
    src = runs["aevb-small"][0] / "checkpoint.npz"
    arrays, meta = _checkpoint(src)
    for label, change in (("nan", lambda a, m: a["param/decoder.net.0.W"].fill(np.nan)),
                          ("old", lambda a, m: m.pop("method_state"))):
        a, m = {k: v.copy() for k, v in arrays.items()}, dict(meta)
        change(a, m)
        out = tmp_path / label
        out.mkdir()
        np.savez(out / "checkpoint.npz", meta=np.array(json.dumps(m)), **a)
        with pytest.raises(ValueError, match="not finite|not a checkpoint of this Figure-3 code"):
            figure3.train("aevb-small", 12000, out, data_dir=SHARED_DATA, n_eval=10, **QUIET)


# -- the page's words come from its numbers ----------------------------------------------------
def _synthetic(d_test, gap_test, blind_minus=0.0):
    """A run record with an encoder whose held-out estimate is d_test above L_5000 and whose
    ELBO is gap_test below it."""
    part = dict(train_log_px=-120.0, test_log_px=-140.0, train_log_px_se=1.0, test_log_px_se=1.0,
                train_log_px_first500=-120.0, test_log_px_first500=-140.0, train_log_px_kde=-119.8,
                test_log_px_kde=-139.9, train_accept=0.5, test_accept=0.5)
    bounds = {"k": 5000, "n_images": 500, "train_L_k": -120.2, "train_elbo": -121.0,
              "test_L_k": -140.0 - d_test, "test_elbo": -140.0 - d_test - gap_test,
              "train_guided_minus_L_k": 0.2, "train_guided_minus_L_k_se": 0.05,
              "test_guided_minus_L_k": d_test, "test_guided_minus_L_k_se": 0.3,
              "train_blind_minus_L_k": blind_minus, "train_blind_minus_L_k_se": 0.05,
              "test_blind_minus_L_k": d_test, "test_blind_minus_L_k_se": 0.3}
    final = {"samples": 10**7, **part, "bounds": bounds, "guided_start": dict(part)}
    return {"n_train": 1000, "samples": 10**7, "history": [{"samples": 10**7, **part}], "final": final,
            "wall_time": 100.0, "train_time": 60.0, "train_cpu_time": 50.0}


def test_an_estimate_far_above_L_5000_is_said_so_with_the_reason_the_numbers_give():
    text = " ".join(rep.bound_sentences({"aevb-small": _synthetic(14.1, 12.3)}))
    assert "The held-out estimate of aevb-small is 14.1 +- 0.3 nats above its L_5000" in text
    assert "the ELBO is 12.3 nats below L_5000 there too" in text
    assert "in 2 of 2 cases" in text


def test_an_estimate_below_L_5000_is_said_to_fall_short():
    text = " ".join(rep.bound_sentences({"aevb-small": _synthetic(-2.0, 1.0)}))
    assert "in 1 of 2 cases" in text and "aevb-small held-out (-2.00 +- 0.30 nats)" in text
    assert "falls short of log p(x)" in text


def test_the_ranking_is_read_off_the_curves():
    def run(points):
        return {"samples": points[-1][0],
                "history": [{"samples": s, "train_time": s / 1000, "test_log_px": v} for s, v in points]}
    aevb = run([(10**4, -200), (10**5, -160), (10**6, -140), (10**7, -130)])
    mcem = run([(10**4, -180), (10**5, -150), (10**6, -145)])
    c = rep.crossing(aevb, mcem, "test")
    assert c["overtakes"] == 10**6 and c["to"] == 10**6
    assert rep.value_at(mcem, "test", 10**7) is None
    # the shorter run's last point, a batch short of the other's, is the last common point: there
    # the difference is the one at the end of both curves, not at the point before
    mcem = run([(10**4, -180), (10**5, -150), (10**6, -145), (10**7 - 2000, -138)])
    c = rep.crossing(aevb, mcem, "test")
    assert c["to"] == 10**7 - 2000 and c["diffs"][-1][0] == 10**7 - 2000
    assert c["diffs"][-1][1] == pytest.approx(-130 - (-138), abs=1e-3)
    assert [p for p, _ in c["diffs"]] == [10**4, 10**5, 10**6, 10**7 - 2000]
    later = run([(2 * 10**4, -170), (10**5, -150)])                  # starts after aevb's first point
    assert rep.crossing(aevb, later, "test")["diffs"][0][0] == 2 * 10**4
    assert rep.crossing(aevb, run([(10**8, -120)]), "test") is None   # no common range
    # a curve that overtakes and then falls below again is said to, not only to overtake
    again = rep.crossing(aevb, run([(10**4, -180), (10**5, -165), (10**6, -145), (10**7, -120)]), "test")
    assert again["overtakes"] == 10**5 and again["falls_back"] == 10**7
    assert rep.crossing(aevb, mcem, "test")["falls_back"] is None
    said = rep.ranking_sentences({"aevb-small": aevb, "mcem-small": run([(10**4, -180), (10**5, -165),
                                                                        (10**6, -145), (10**7, -120)])})
    assert ("small set, per training sample: AEVB overtakes MCEM on the held-out images at about 10^5 "
            "training samples and falls below it again at about 10^7 (points from 10^4 to 10^7 training "
            "samples); at the last common point AEVB minus MCEM is -10.0 nats.") in said
    assert rep.sci(12000) == "1.2 x 10^4" and rep.sci(10**8) == "10^8" and rep.sci(5.6e6) == "5.6 x 10^6"


def test_times_are_compared_only_between_runs_made_on_one_machine():
    here = {"cpu": "CPU A", "numpy": "2.4.6", "blas": {"library": "openblas", "version": "0.3.31",
                                                       "kernel": "Haswell", "threads": 1}}
    there = {**here, "blas": {**here["blas"], "kernel": "SkylakeX"}}

    def run(points, platform):
        return {"samples": points[-1][0], "train_time": points[-1][0] / 1000,
                "history": [{"samples": s, "train_time": s / 1000, "test_log_px": v} for s, v in points],
                **({"platform": platform} if platform is not None else {})}
    aevb_points = [(10**4, -200), (10**5, -160), (10**6, -140)]
    mcem_points = [(10**4, -180), (10**5, -150), (10**6, -145)]
    one = [{"from_samples": 0, **here}, {"from_samples": 10**5, **here}]   # resumed, same machine
    said = rep.ranking_sentences({"aevb-small": run(aevb_points, one),
                                  "mcem-small": run(mcem_points, [{"from_samples": 0, **here}])})
    assert any(s.startswith("small set, per second of training: AEVB overtakes MCEM") for s in said)
    assert any("times as long per sample" in s for s in said)
    for mcem_platform, why in (([{"from_samples": 0, **there}], "the two ran on different machines"),
                               (None, "the MCEM run did not record its machine")):
        said = rep.ranking_sentences({"aevb-small": run(aevb_points, one),
                                      "mcem-small": run(mcem_points, mcem_platform)})
        assert f"small set, per second of training: AEVB and MCEM are not compared: {why}." in said
        assert not any("times as long" in s for s in said)
        assert any(s.startswith("small set, per training sample: AEVB overtakes MCEM") for s in said)
    # a run resumed on another machine is not one machine's run
    assert not rep.same_platform(one, [{"from_samples": 0, **here}, {"from_samples": 10**5, **there}])
    assert rep.machines_sentence({"aevb-small": run(aevb_points, one), "mcem-small": run(mcem_points, None),
                                  "mcem-large": run(mcem_points, [{"from_samples": 0, **here},
                                                                  {"from_samples": 10**5, **there}])}) == (
        "Where the runs trained: aevb-small on CPU A, NumPy 2.4.6, openblas 0.3.31 (Haswell kernel); "
        "mcem-large on CPU A, NumPy 2.4.6, openblas 0.3.31 (Haswell kernel) then CPU A, NumPy 2.4.6, "
        "openblas 0.3.31 (SkylakeX kernel); mcem-small: not recorded (made before Figure-3 runs recorded it).")


def test_runs_are_named_and_evaluation_points_fall_on_whole_steps():
    assert figure3.parse_run("mcem-online-small") == ("mcem-online", "small")
    assert figure3.parse_run("wake-sleep-large") == ("wake-sleep", "large")
    for bad in ("mcem", "aevb-medium", "online-small", "mcem-online"):
        with pytest.raises(ValueError, match="run must be"):
            figure3.parse_run(bad)
    assert figure3.eval_points(10**5) == [10000, 17800, 31600, 56200, 100000]
    assert figure3.eval_points(10**5, unit=9000) == [9000, 18000, 36000, 54000, 99000, 108000]
    assert figure3.eval_points(2000) == [2000]


def test_a_run_still_training_is_read_from_its_checkpoint_and_marked(tmp_path):
    """No history.json yet (it is written when a training command ends): the report reads the
    records from the checkpoint and says the run is still training."""
    folder = tmp_path / "aevb-large"
    folder.mkdir()
    record = {"samples": 1000, "train_log_px": -150.0, "test_log_px": -151.0}
    np.savez(folder / "checkpoint.npz", meta=np.array(json.dumps({"run": "aevb-large", "samples": 1000,
                                                                    "history": [record]})))
    runs = rep.collect(tmp_path)
    assert list(runs) == ["aevb-large"] and runs["aevb-large"]["training"]
    assert runs["aevb-large"]["history"] == [record]
    (folder / "history.json").write_text(json.dumps({"run": "aevb-large", "history": [record]}))
    assert "training" not in rep.collect(tmp_path)["aevb-large"]   # a finished command's file wins


def test_a_run_whose_folder_is_gone_is_shown_from_the_archive_and_marked(tmp_path):
    """The report keeps what an earlier report archived in figure3.json for every run whose
    folder is not there; a run in the folder replaces its archived record once it got as far;
    an archived run that had not finished says it stopped, not that it is still training."""
    def run(samples, training=False):
        r = {"run": "x", "history": [{"samples": samples, "train_log_px": -150.0, "test_log_px": -151.0}]}
        return {**r, "training": True} if training else r

    archive = tmp_path / "figure3.json"
    archive.write_text(json.dumps({"runs": {"mcem-small": run(5000, training=True), "aevb-large": run(100)},
                                   "estimator_check": {}}))
    merged = rep.with_archive({"aevb-large": run(200), "aevb-small": run(300)}, archive)
    assert list(merged) == ["aevb-small", "aevb-large", "mcem-small"]        # METHODS, SIZES order
    assert merged["aevb-large"]["history"][0]["samples"] == 200 and "archived" not in merged["aevb-large"]
    assert merged["mcem-small"]["archived"] and merged["mcem-small"]["history"][0]["samples"] == 5000
    assert rep.label("mcem-small", merged["mcem-small"]) == "mcem-small (stopped; from the archive)"
    assert rep.label("mcem-small", run(5000, training=True)) == "mcem-small (still training)"
    assert rep.with_archive({"aevb-small": run(1)}, tmp_path / "none.json").keys() == {"aevb-small"}
    # a rerun still short of the archived run does not hide it; once level with it, it is shown
    assert rep.with_archive({"mcem-small": run(4000, training=True)}, archive)["mcem-small"]["archived"]
    assert "archived" not in rep.with_archive({"mcem-small": run(5000, training=True)}, archive)["mcem-small"]
