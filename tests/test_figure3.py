"""The Figure-3 experiment end to end on a few steps of real MNIST: training with log p(x)
estimates at the evaluation points, the final bounds and the guided estimate, a resume that
adds nothing, and the report's figure and table."""
import json

import numpy as np
import pytest

from datafiles import SHARED_DATA, needs_shared
from scratchvae.experiments import figure3


@needs_shared
@pytest.mark.parametrize("method", ["aevb", "mcem"])
def test_a_short_run_records_estimates_final_bounds_and_resumes_to_the_same_record(tmp_path, method):
    name = f"{method}-small"
    out = tmp_path / name
    meta = figure3.train(name, 2000, out, data_dir=SHARED_DATA, n_eval=20, print_fn=lambda *a, **k: None)
    assert [r["samples"] for r in meta["history"]] == figure3.eval_points(2000) == [2000]
    final = meta["final"]
    assert final["samples"] == 2000
    for part in ("train", "test"):
        assert final[f"{part}_log_px"] < 0 and final[f"{part}_impossible"] == 0
        assert 0.5 < final[f"{part}_accept"] <= 1
        assert final["guided_start"][f"{part}_log_px"] < 0
    if method == "aevb":   # log p(x) >= L_k >= ELBO, within the estimates' noise
        b = final["bounds"]
        assert b["train_L_k"] >= b["train_elbo"] - 0.5
        # the same images: n_eval = 20 < FINAL_IMAGES, so "first 500" is all 20
        assert final["guided_start"]["train_log_px_first500"] >= b["train_L_k"] - 1.0
    else:
        assert final["bounds"] is None
    again = figure3.train(name, 2000, out, data_dir=SHARED_DATA, n_eval=20, print_fn=lambda *a, **k: None)
    assert again["history"] == meta["history"] and again["final"] == final
    saved = json.loads((out / "history.json").read_text())
    assert saved["final"]["guided_start"] == final["guided_start"]


@needs_shared
def test_the_report_draws_the_figure_and_a_row_per_run(tmp_path):
    runs = tmp_path / "runs"
    figure3.train("aevb-small", 1000, runs / "aevb-small", data_dir=SHARED_DATA, n_eval=10,
                  print_fn=lambda *a, **k: None)
    found = figure3.collect(runs)
    assert list(found) == ["aevb-small"]
    table = figure3.markdown_table(found)
    assert table.count("\n") == 2 and "| aevb-small | 1000 |" in table
    figure3.plot(found, tmp_path / "figure3.png")
    assert (tmp_path / "figure3.png").stat().st_size > 10000
