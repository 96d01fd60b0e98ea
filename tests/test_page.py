"""The results page's statements, each computed from the runs: which images each run used, the
wake-sleep step each ran, the spread of Frey Face over shuffles and seeds, and the same command
on another machine."""
import json

import pytest

from scratchvae.experiments import page, page_spread, reproduce, runs
from scratchvae.training.metrics import read_metrics

PLATFORM = [{"from_samples": 0, "cpu": "Some CPU", "numpy": "2.0", "blas": {"library": "openblas",
            "version": "0.3", "kernel": "Haswell", "threads": 1}}]


def _run(name, points, settings=None, platform=None):
    """A run as the report reads it: ``points`` is ``[(samples, train, held-out)]``."""
    return {"experiment": runs.experiment(name), "folder": None, "settings": settings or {},
            "records": [{"samples": n, "train_elbo": tr, "test_elbo": te} for n, tr, te in points],
            "evaluation": None, "platform": platform}


def _spread(values):
    """Nine Frey Face runs, shuffle s and seed r, held-out ``values[s][r]`` at 10^6."""
    return {runs.experiment("frey-z20", split_seed=s, seed=r).name:
            _run(runs.experiment("frey-z20", split_seed=s, seed=r).name,
                 [(10**4, -526.0, -526.0), (10**6, v + 40, v)], platform=PLATFORM)
            for s, row in enumerate(values) for r, v in enumerate(row)}


def test_the_spread_over_shuffles_and_seeds_is_computed_from_the_runs():
    spread = _spread([[1050, 1040, 1046], [1010, 1030, 1012], [1001, 1003, 1020]])
    text = page_spread.spread_text(spread, {})
    assert "trains Nz = 20 on 3 shuffles (`-s`, the held-out frames) with 3 seeds" in text
    assert "| 0 | 1050 (1090) | 1040 (1080) | 1046 (1086) | 10 |" in text
    assert "| 2 | 1001 (1041) | 1003 (1043) | 1020 (1060) | 19 |" in text
    # mean 1023.6, sample standard deviation 18.6; seeds of a shuffle span 10, 20, 19; shuffle means 1045.3, 1017.3, 1008
    assert ("All 9: held-out mean 1024, standard deviation 19, from 1001 to 1050 (49 nats). The seeds "
            "of one shuffle spread by 10 to 20 nats; the means of the 3 shuffles by 37.") in text
    assert "At 10^7: not reached yet (`scratchvae reproduce run spread`)." in text
    assert "ran on Some CPU, NumPy 2.0, openblas 0.3 (Haswell kernel), one thread each." in text
    assert page_spread.spread_text({}, {}).startswith("(The spread runs, `scratchvae reproduce run spread`")


def test_the_same_command_on_another_machine_says_where_the_runs_part():
    spread = _spread([[1049, 1041, 1045]])
    spread["frey-z20"]["records"] = [{"samples": 10**4, "train_elbo": -526.2334166, "test_elbo": -526.1},
                                     {"samples": 13300, "train_elbo": 518.75, "test_elbo": 498.3},
                                     {"samples": 10**6, "train_elbo": 1096.2, "test_elbo": 1049.0}]
    table = {"frey-z20": _run("frey-z20", [(10**4, -526.2334168, -526.1), (13300, 518.92, 498.38),
                                           (10**6, 1108.7, 1065.0), (10**7, 1404.0, 1273.0)])}
    text = page_spread.spread_text(spread, table)
    assert ("Its frey-z20 (shuffle 0, seed 0) is the command of the table's frey-z20 (made before runs "
            "recorded their machine) run again: 0 of the 3 evaluation points both reached are identical. "
            "At the first (1e+04 samples, before Adagrad's first update) the bounds differ by 2e-07 nats, "
            "the rounding of float32 matrix products; the training steps carry and grow it: 0.17 nats at "
            "1.3e+04 samples, and at 10^6 1096 / 1049 (train / held-out) against the table's 1109 / 1065. "
            "That held-out difference, 16 nats, is beyond the range of the seeds of one shuffle here "
            "(8 nats).") in text
    same = {"frey-z20": _run("frey-z20", [(n, tr, te) for n, tr, te in
                                          ((10**4, -526.0, -526.0), (10**6, 1089.0, 1049.0))])}
    assert "repeats the records of the table's frey-z20 (made before runs recorded their machine) bit " \
           "for bit at all 2 evaluation points both reached" in page_spread.spread_text(_spread([[1049, 1041, 1045]]), same)


def test_the_page_says_which_images_and_which_wake_sleep_step_each_run_used():
    mnist = {"split": "MNIST test file split 9000/1000", "n_train": 9000, "n_test": 1000}
    found = {"mnist-z3": _run("mnist-z3", [(10, 0, 0)], mnist),
             "mnist-z3-ws": _run("mnist-z3-ws", [(10, 0, 0)], mnist),
             "frey-z2-ws": _run("frey-z2-ws", [(10, 0, 0)], {"split": "Frey", "n_train": 1600, "n_test": 365,
                                                             "update_order": "decoder-first",
                                                             "logvar_init": "zero"})}
    table = page.splits_table(found)
    assert "| Frey | 1600 / 365 | frey-z2-ws |" in table
    assert "| MNIST test file split 9000/1000 | 9000 / 1000 | mnist-z3, mnist-z3-ws |" in table
    assert page.mnist_train(found) == "9000"
    versions = page.ws_versions(found)
    assert "frey-z2-ws: the authors' step (the decoder updated first" in versions
    assert "mnist-z3-ws: the earlier step (both gradients at the same parameters)" in versions


def test_report_archives_the_spread_runs_and_writes_their_section(tmp_path, capsys):
    spread_dir, results = tmp_path / "runs" / "spread", tmp_path / "results"
    for name in ("digits-z2", "digits-z2-r1"):
        exp = runs.experiment(name)
        runs.train(exp, runs.load_data(exp, None), spread_dir / name, 2000, seed=exp.seed,
                   print_fn=lambda *a: None)
    (tmp_path / "runs" / "frey-z20").mkdir()                  # not a run yet: ignored
    assert reproduce.main(["report", "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(results),
                           "--page", str(tmp_path / "results.md")]) == 0
    for name in ("digits-z2", "digits-z2-r1"):
        assert read_metrics(results / "spread" / f"{name}.metrics.jsonl") == \
            read_metrics(spread_dir / name / "metrics.jsonl")
        platform = json.loads((results / "spread" / f"{name}.platform.json").read_text())
        assert platform[0]["blas"]["threads"] >= 1 and platform[0]["from_samples"] == 0
    assert not (results / "digits-z2.metrics.jsonl").exists()       # not a run of the table
    text = (tmp_path / "results.md").read_text()
    assert "## Run to run: the spread of a Frey Face result" in text
    assert "on 1 shuffle (`-s`, the held-out frames) with 2 seeds" in text
    assert "At 10^6: not reached yet (`scratchvae reproduce run spread --samples 1000000`)." in text
    capsys.readouterr()
    assert reproduce.main(["report", "--runs-dir", str(tmp_path / "runs"), "--spread-dir",
                           str(tmp_path / "none"), "--results-dir", str(results)]) == 1
    assert "--spread-dir: no such folder" in capsys.readouterr().err


@pytest.mark.parametrize("name, seed", [("frey-z20-r2", 2), ("frey-z20-s1-r2", 2), ("frey-z20", 0)])
def test_a_runs_own_seed_is_in_its_name(name, seed):
    exp = runs.experiment(name)
    assert exp.seed == seed and exp.name == name
    assert runs.experiment("frey-z20", split_seed=1, seed=2).name == "frey-z20-s1-r2"
    with pytest.raises(ValueError, match="--seed 3 contradicts"):
        runs.experiment("frey-z20-r2", seed=3)
    assert runs.spread_names()[:4] == ["frey-z20", "frey-z20-r1", "frey-z20-r2", "frey-z20-s1"]


def test_the_step_size_note_names_the_step_used_and_every_model_whose_best_differs(tmp_path):
    rows = [{"experiment": name, "lr": lr, "train_elbo": v, "seconds": 1.0}
            for name, values in (("frey-z20", (711.0, 624.2, -3461.0)), ("frey-z20-ws", (664.9, 698.6, 305.9)))
            for lr, v in zip(runs.STEP_SIZES, values)]
    path = tmp_path / "stepsize.json"
    path.write_text(json.dumps(rows))
    note = page.stepsize_note(path)
    assert f"frey {runs.STEP_SIZE_CHOICE['frey']:g}" in note
    assert "differs from it for frey-z20-ws (0.02: 698.6 against 664.9)" in note
    assert "frey-z20 (" not in note                     # AEVB's best is the step used
    assert "**698.6**" in page.stepsize_table(path)
    assert page.stepsize_note(tmp_path / "none.json") == ""


def test_each_wake_sleep_run_says_the_scale_of_its_initial_weights():
    old = _run("frey-z2-ws", [(10**4, 1.0, 1.0)], settings={"update_order": "decoder-first", "logvar_init": "zero"})
    new = _run("frey-z5-ws", [(10**4, 1.0, 1.0)], settings={"update_order": "decoder-first", "logvar_init": "zero",
                                                             "init": "paper-variance"})
    text = page.ws_versions({"frey-z2-ws": old, "frey-z5-ws": new})
    assert "frey-z2-ws: the authors' step" in text and "N(0, 0.01^2), the authors' code" in text
    assert "frey-z5-ws: the authors' step" in text and "N(0, 0.1^2), the paper's N(0, 0.01) as a variance" in text


def test_a_rerun_is_set_beside_its_archive_only_when_both_ran_the_same_settings():
    from scratchvae.experiments.results import same_settings

    old = {"seed": 0, "algorithm": "wake-sleep"}                               # before the settings existed
    assert same_settings(old, {**old, "update_order": "together", "logvar_init": "drawn", "init": "paper"})
    assert not same_settings(old, {**old, "update_order": "decoder-first", "logvar_init": "zero",
                                   "init": "paper-variance"})
    assert not same_settings({"seed": 0}, {"seed": 1})


def test_the_table_shows_wake_sleep_at_every_point_it_reached():
    from scratchvae.experiments import figure2
    found = {"frey-z2": _run("frey-z2", [(10**6, 760.4, 740.2), (10**7, 843.0, 825.0), (10**8, 1003.0, 855.0)]),
             "frey-z2-ws": _run("frey-z2-ws", [(10**6, 779.0, 745.0), (10**7, 836.0, 809.0), (10**8, 901.0, 866.0)])}
    for run in found.values():
        run["records"] = [dict(r, wall_time=60.0) for r in run["records"]]
    table = figure2.markdown_table(figure2.table_rows(found)).splitlines()
    assert table[0].split(" | ")[6:9] == ["wake-sleep 10^6", "wake-sleep 10^7", "wake-sleep 10^8"]
    assert table[2].split(" | ")[6:9] == ["779 / 745", "836 / 809", "901 / 866"]


def test_the_contiguous_lesson_computes_every_number_it_states(tmp_path):
    def evaluation(z, elbo, blocks):
        ev = {"experiment": f"frey-z{z}", "samples_trained": 10**7, "n_images": 465, "elbo": elbo,
              "heldout_elbo_blocks": [{"images": list(ab), "elbo": e} for ab, e in blocks]}
        (tmp_path / f"frey-z{z}-contiguous.evaluation.json").write_text(json.dumps(ev))
    edges = [(0, 100), (100, 200), (200, 300), (300, 400), (400, 465)]
    evaluation(2, 744.8, zip(edges, [786.0, 795.0, 772.0, 583.0, 809.0]))
    evaluation(20, -275.2, zip(edges, [787.0, 693.0, 676.0, -3164.0, -408.0]))
    parts = page.contiguous_lesson(tmp_path)
    assert parts["contiguous_elbos"] == "Nz = 2, 20 at 10^7: 745, -275"
    assert parts["contiguous"].splitlines()[0].startswith("- frey-z2-contiguous, all held-out frames: ELBO 745;")
    # the other frames of Nz = 2: (786 + 795 + 772) * 100 + 809 * 65 over 365 = 788.7, so 205.7 below
    assert parts["contiguous_worst"] == ("Frames 300-400 of that held-out part (frames 1800-1899 of the video) "
                                         "score lowest in every run, far below the other held-out frames "
                                         "(by 206 nats for Nz = 2, 3682 for Nz = 20)")
    evaluation(20, -275.2, zip(edges, [787.0, -9000.0, 676.0, -3164.0, -408.0]))
    assert page.contiguous_lesson(tmp_path)["contiguous_worst"].startswith("The lowest-scoring block differs")


def test_the_mnist_gap_is_computed_from_the_aevb_runs():
    found = {"mnist-z5": _run("mnist-z5", [(10**6, -141.0, -141.2), (10**7, -121.0, -123.5)]),
             "mnist-z3": _run("mnist-z3", [(10**7, -139.0, -139.6)]),
             "mnist-z5-ws": _run("mnist-z5-ws", [(10**7, -128.0, -140.0)]),      # not AEVB
             "mnist-z20": _run("mnist-z20", [(10**6, -120.0, -120.0)])}          # not at 10^7
    assert page.mnist_gap(found) == "at 10^7 samples by 0.6, 2.5 nats (Nz = 3, 5)."
    assert page.mnist_gap({}) == "(no MNIST AEVB run has reached 10^7 samples yet)."


def test_the_page_says_on_which_machine_each_run_trained():
    """A wall time belongs to its run's machine: the table's runs are grouped by the machine they
    recorded, a run resumed elsewhere names both, and one without a record says so."""
    other = [{**PLATFORM[0], "from_samples": 10**6, "blas": {**PLATFORM[0]["blas"], "kernel": "SkylakeX"}}]
    table = {"frey-z2": _run("frey-z2", [(10**4, -526.0, -526.0)], platform=PLATFORM),
             "frey-z5": _run("frey-z5", [(10**4, -526.0, -526.0)]),
             "frey-z10": _run("frey-z10", [(10**4, -526.0, -526.0)], platform=PLATFORM),
             "frey-z20": _run("frey-z20", [(10**4, -526.0, -526.0)], platform=PLATFORM + other)}
    assert page.machines(table) == (
        "Where the runs on this page trained (a wall time is its machine's): frey-z2, frey-z10 on Some CPU, "
        "NumPy 2.0, openblas 0.3 (Haswell kernel); frey-z20 on Some CPU, NumPy 2.0, openblas 0.3 (Haswell "
        "kernel) then Some CPU, NumPy 2.0, openblas 0.3 (SkylakeX kernel); frey-z5: not recorded (made "
        "before runs recorded their machine).")
    # in the order of the names, whatever order the runs were read in (folders or archive)
    assert page.machines(dict(reversed(table.items()))) == page.machines(table)
