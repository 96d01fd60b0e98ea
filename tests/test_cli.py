"""The command line, run as a user would: real files in a temporary folder, real exit codes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scratchvae import backend
from scratchvae.training.checkpoint import load
from scratchvae.cli import build_parser, main
from scratchvae.training.trainer import CHECKPOINT, METRICS, read_metrics

TINY = ["--hidden-dim", "32", "--batch-size", "100", "--no-progress"]


def _run(capsys, *argv):
    """``main(argv)``: (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _one_clean_line(err):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["plot"], ["gradcheck"], ["data"]])
def test_help_of_every_command(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scratchvae")
    if command == ["train"]:
        for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--latent-dim", "--hidden-dim",
                     "--optimizer", "--device", "--data-dir", "--out", "--dataset", "--likelihood",
                     "--activation", "--samples", "--binarization", "--resume", "--no-progress"):
            assert flag in out


def test_every_command_is_listed():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert {"train", "evaluate", "plot", "gradcheck", "data"} <= set(choices)


def test_train_evaluate_plot_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capsys, "train", "--epochs", 3, *TINY)
    assert status == 0, err
    run = tmp_path / "runs" / "digits-z2"                    # the default --out
    assert "held-out elbo" in out and "figures:" in out
    for name in (CHECKPOINT, METRICS, "manifold.png", "samples.png", "latents.png",
                 "reconstructions.png", "curves.png"):
        assert (run / name).is_file(), name
    assert [r["epoch"] for r in read_metrics(run / METRICS)] == [1, 2, 3]

    status, out, err = _run(capsys, "evaluate", "--out", run, "--k", 20, "--n-images", 30)
    assert status == 0, err
    result = json.loads((run / "evaluation.json").read_text())
    assert result["n_test"] == 297 and result["k"] == 20 and result["n_images"] == 30
    assert result["test_elbo"] < 0 and result["L_k"] < 0 and "L_20" in out

    status, out, err = _run(capsys, "plot", "manifold", "--out", run, "--output", tmp_path / "m.png")
    assert status == 0 and (tmp_path / "m.png").is_file(), err
    status, out, err = _run(capsys, "plot", "all", "--out", run)
    assert status == 0, err

    status, out, err = _run(capsys, "train", "--epochs", 2, "--latent-dim", 3, *TINY)
    assert status == 0, err
    status, out, err = _run(capsys, "plot", "curves", "--runs", run, tmp_path / "runs" / "digits-z3",
                            "--labels", "z=2", "z=3", "--output", tmp_path / "c.png")
    assert status == 0 and (tmp_path / "c.png").stat().st_size > 10000, err
    status, out, err = _run(capsys, "plot", "manifold", "--out", tmp_path / "runs" / "digits-z3")
    assert status == 2 and "needs a 2-D latent space" in _one_clean_line(err)


def test_resume_continues_and_refuses_a_different_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, "train", "--epochs", 2, "--out", out, *TINY)[0] == 0

    status, _, err = _run(capsys, "train", "--epochs", 2, "--out", out, *TINY)
    line = _one_clean_line(err)
    assert status == 2 and "already holds a run" in line and "--resume" in line

    before = (out / CHECKPOINT).read_bytes()
    status, _, err = _run(capsys, "train", "--epochs", 4, "--out", out, "--resume", "--latent-dim", 3,
                          *TINY)
    line = _one_clean_line(err)
    assert status == 1 and "different model" in line and "z_dim: 2 -> 3" in line
    assert (out / CHECKPOINT).read_bytes() == before

    status, _, err = _run(capsys, "train", "--epochs", 4, "--out", out, "--resume", *TINY)
    assert status == 0, err
    assert len(read_metrics(out / METRICS)) == 4

    status, _, err = _run(capsys, "train", "--epochs", 1, "--out", tmp_path / "nothing", "--resume")
    assert status == 2 and "no checkpoint" in _one_clean_line(err)


def test_the_overlapped_step_trains_the_same_parameters_as_the_plain_one(tmp_path, capsys):
    """``--overlap on`` (the decoder's update on a worker thread) and ``--overlap off``: the
    same checkpoint parameters, bit for bit."""
    runs = {}
    for mode in ("on", "off"):
        out = tmp_path / mode
        status, _, err = _run(capsys, "train", "--epochs", 2, "--out", out, "--no-plots",
                              "--overlap", mode, "--weight-decay", "0.001", *TINY)
        assert status == 0, err
        runs[mode] = load(out / CHECKPOINT).params
    assert runs["on"].keys() == runs["off"].keys()
    assert all((runs["on"][k] == runs["off"][k]).all() for k in runs["on"])


def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(tmp_path, capsys):
    """A real SIGINT to a real training process."""
    out = tmp_path / "run"
    argv = ["train", "--epochs", "100000", "--out", str(out), "--no-plots", *TINY]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "scratchvae", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not ((out / METRICS).is_file() and len(read_metrics(out / METRICS)) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    line = _one_clean_line(err)
    assert proc.returncode == 130
    assert "interrupted at step" in line and "the last checkpoint" in line
    assert line.endswith("scratchvae " + " ".join(argv) + " --resume")
    kept = load(out / CHECKPOINT)          # saved at the step where Ctrl-C arrived, not 30 s earlier
    step = int(line.split("interrupted at step ")[1].split()[0])
    assert step > 0 and kept.meta["progress"]["step"] == step
    assert _run(capsys, *argv[:1], "--epochs", 1, *argv[3:], "--resume")[0] == 0
    assert load(out / CHECKPOINT).meta["progress"]["samples"] >= kept.meta["progress"]["samples"]


def test_unwritable_output_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("a file where the folder should be")
    status, _, err = _run(capsys, "train", "--out", tmp_path / "file" / "run", *TINY)
    assert status == 1 and "cannot write to the output folder" in _one_clean_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        status, _, err = _run(capsys, "train", "--out", folder, *TINY)
    finally:
        folder.chmod(0o700)
    assert status == 1 and "cannot write to the output folder" in _one_clean_line(err)


def test_missing_data_offline(tmp_path, capsys):
    status, _, err = _run(capsys, "train", "--dataset", "mnist", "--data-dir", tmp_path / "empty",
                          "--no-download", "--out", tmp_path / "run")
    assert status == 1 and "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith("scratchvae train: error:") and "mnist" in first
    assert "t10k-images-idx3-ubyte.gz" in err                # which file to put where


def test_corrupted_data_file(tmp_path, capsys):
    (tmp_path / "data" / "frey").mkdir(parents=True)
    (tmp_path / "data" / "frey" / "frey_rawface.mat").write_bytes(b"MATLAB 5.0 but not really")
    status, _, err = _run(capsys, "train", "--dataset", "frey", "--data-dir", tmp_path / "data",
                          "--out", tmp_path / "run")
    assert status == 1 and "frey_rawface.mat" in err and "Traceback" not in err
    assert (tmp_path / "data" / "frey" / "frey_rawface.mat").read_bytes().startswith(b"MATLAB 5.0 but")


def test_corrupted_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT).write_bytes(b"PK\x03\x04 truncated")
    for command in (["evaluate"], ["plot", "samples"]):
        status, _, err = _run(capsys, *command, "--out", run)
        assert status == 1 and "corrupted or truncated" in _one_clean_line(err)
    status, _, err = _run(capsys, "evaluate", "--out", tmp_path / "none")
    assert status == 1 and "no checkpoint at" in _one_clean_line(err)


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--batch-size", "many"],
                                  ["train", "--lr", "-1"], ["train", "--optimizer", "lbfgs"],
                                  ["train", "--overlap", "sometimes"],
                                  ["plot", "everything"], ["frobnicate"], []])
def test_bad_flags_are_one_line_on_stderr(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    line = _one_clean_line(capsys.readouterr().err)
    assert line.startswith("scratchvae") and ": error: " in line and "--help`)" in line
    assert "usage:" not in line


def test_a_bad_flag_of_a_nested_command_is_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "train", "--samples", "many"])
    assert exit_.value.code == 2
    assert "scratchvae reproduce train: error:" in _one_clean_line(capsys.readouterr().err)


def _blas_threads():
    from threadpoolctl import threadpool_info
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["plot", "samples"], ["gradcheck"],
                                     ["data", "verify"], ["bench"], ["reproduce", "train", "frey-z2"]])
def test_every_command_takes_threads(command):
    parser = build_parser()
    assert parser.parse_args(["--threads", "2", *command]).threads == 2
    if command[0] == "bench":   # the benchmark measures at each of its own list (default 1 2)
        assert parser.parse_args([*command, "--threads", "3"]).thread_counts == [3]
        assert parser.parse_args([*command, "--threads", "1", "2"]).thread_counts == [1, 2]
        assert parser.parse_args(command).thread_counts == [1, 2]
        return
    assert parser.parse_args([*command, "--threads", "3"]).threads == 3
    assert parser.parse_args(command).threads is None


def test_threads_are_applied(tmp_path, capsys):
    from scratchvae.backend import DEFAULT_THREADS, set_threads
    try:
        assert _run(capsys, "data", "verify", "--data-dir", tmp_path, "--threads", 2)[0] == 1
        assert _blas_threads() == {2}
        assert _run(capsys, "data", "verify", "--data-dir", tmp_path)[0] == 1
        assert _blas_threads() == {DEFAULT_THREADS}
    finally:
        set_threads()


def test_conflicting_flags(tmp_path, capsys):
    status, _, err = _run(capsys, "train", "--epochs", 1, "--samples", 10, "--out", tmp_path)
    assert status == 2 and "not both" in _one_clean_line(err)
    status, _, err = _run(capsys, "train", "--binarization", "dynamic", "--likelihood", "gaussian",
                          "--out", tmp_path / "g", *TINY)
    assert status == 1 and "needs a Bernoulli likelihood" in _one_clean_line(err)


@pytest.mark.skipif(backend.gpu_available(), reason="this machine has a usable GPU")
def test_gpu_without_a_gpu(tmp_path, capsys):
    status, _, err = _run(capsys, "train", "--device", "gpu", "--out", tmp_path, *TINY)
    assert status == 1 and "CuPy" in _one_clean_line(err)


def test_gradcheck_prints_a_table_and_passes(capsys):
    status, out, _ = _run(capsys, "gradcheck")
    assert status == 0
    assert out.splitlines()[0].startswith("check")
    assert "vae_gradient" in out and " NO" not in out
    assert out.rstrip().endswith("checks passed")


def test_data_verify_reports_missing_files_and_what_to_do(tmp_path, capsys):
    status, out, err = _run(capsys, "data", "verify", "--data-dir", tmp_path)
    assert status == 1
    assert "missing" in out and "frey_rawface.mat" in out and "t10k-images-idx3-ubyte.gz" in out
    line = _one_clean_line(err)
    assert str(tmp_path) in line and "scratchvae data fetch --dataset all" in line
    assert "--data-dir" in line and "SCRATCHVAE_DATA_DIR" in line
    status, _, err = _run(capsys, "data", "verify", "--dataset", "frey", "--data-dir", tmp_path)
    assert status == 1 and "scratchvae data fetch --dataset frey" in _one_clean_line(err)


def test_plot_curves_of_several_runs_writes_into_the_current_folder(tmp_path, capsys, monkeypatch):
    """Comparing runs draws no one run's figure: it goes to ./curves.png (or --output),
    never into the default run folder."""
    for z in (2, 3):
        assert _run(capsys, "train", "--epochs", 1, "--latent-dim", z, "--no-plots",
                    "--out", tmp_path / f"z{z}", *TINY)[0] == 0
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    status, out, err = _run(capsys, "plot", "curves", "--runs", tmp_path / "z2", tmp_path / "z3")
    assert status == 0, err
    assert (here / "curves.png").is_file() and not (here / "runs").exists()
    assert "written: curves.png" in out


def test_python_dash_m_runs_the_same_main(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-m", "scratchvae", "train", "--help"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and "--latent-dim" in result.stdout


README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language):
    text = README.read_text()
    return [block.split("```", 1)[0] for block in text.split(f"```{language}\n")[1:]]


def test_readme_python_example_runs(capsys):
    """The coursework example (the README's other python blocks run in their own tests)."""
    (code,) = [block for block in _blocks("python") if "# One training step by hand" in block]
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("loss ") and out[1].startswith("ELBO(elbo=")
    assert float(out[2]) > float(out[1].split("elbo=")[1].split(",")[0]) - 1   # L_1000 vs ELBO


def test_readme_commands_parse():
    """Every `scratchvae ...` line of the README uses options that exist."""
    parser = build_parser()
    commands = [line.split("#")[0].split() for block in _blocks("bash") for line in block.splitlines()
                if line.startswith("scratchvae ")]
    assert len(commands) >= 8
    for words in commands:
        parser.parse_args(words[1:])
    assert 'python3 -m pytest -m "not slow and not browser" -n auto -q' in README.read_text()
    assert 'python3 -m pytest -m "not slow and not browser" -n auto -q' in (README.parent / ".ci" / "run").read_text()


# -- bad files and numbers: one line naming what is wrong, a non-zero status, nothing changed ---
def _trained_run(tmp_path, capsys):
    run = tmp_path / "run"
    status, _, err = _run(capsys, "train", "--epochs", 1, "--out", run, "--no-plots", *TINY)
    assert status == 0, err
    return run


def _rewrite_checkpoint(path, change):
    """The checkpoint at ``path`` with its arrays and meta passed through ``change(arrays, meta)``."""
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(arrays, meta)
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))


@pytest.mark.parametrize("damage, words", [
    (lambda arrays, meta: meta.pop("model"), "does not hold its model's configuration (meta['model'])"),
    (lambda arrays, meta: meta.update(model="VAE"), "does not hold its model's configuration"),
    (lambda arrays, meta: meta.pop("optimizer"), "does not hold its optimizer's name and step count"),
    (lambda arrays, meta: arrays["param/decoder.net.0.W"].__setitem__((0, 0), float("nan")),
     "holds NaN or Inf in the parameter 'decoder.net.0.W'"),
])
def test_a_checkpoint_without_its_model_or_with_nan_weights_is_refused(tmp_path, capsys, damage, words):
    from scratchvae.training.checkpoint import CheckpointError, load_model

    run = _trained_run(tmp_path, capsys)
    _rewrite_checkpoint(run / CHECKPOINT, damage)
    before = (run / CHECKPOINT).read_bytes()
    for command in (["evaluate", "--k", "5", "--n-images", "5"], ["plot", "samples"], ["plot", "all"]):
        status, out, err = _run(capsys, *command, "--out", run)
        assert status == 1 and words in _one_clean_line(err), err
        assert "nats" not in out
    with pytest.raises(CheckpointError, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        load_model(run / CHECKPOINT)
    assert (run / CHECKPOINT).read_bytes() == before
    assert not (run / "evaluation.json").exists() and not (run / "samples.png").exists()


@pytest.mark.parametrize("line, words", [
    ('{"samples": 200, "train_elbo": -40.0, "test_elbo": -41.0, "wall_time": 1}',
     None),                                                                # a good one, for contrast
    ('{"samples": 200, "train_elbo": -40.0, "wall_time": 1}', "line 2: the record has no number 'test_elbo'"),
    ('{"samples": "200", "train_elbo": -40.0, "test_elbo": -41.0}', "line 2: the record has no number 'samples'"),
    ('{"samples": 0, "train_elbo": -40.0, "test_elbo": -41.0}', "line 2: samples must be > 0"),
    ('[200, -40.0, -41.0]', "line 2 is not a record (a JSON object): '[200, -40.0, -41.0]'"),
    ('{"samples": 200, "train_elbo": -40.0,', "line 2 is not valid JSON"),
])
def test_plot_curves_names_a_malformed_record_and_its_line(tmp_path, capsys, line, words):
    metrics = tmp_path / METRICS
    good = '{"samples": 100, "train_elbo": -50.0, "test_elbo": -51.0, "wall_time": 0.5}'
    metrics.write_text(f"{good}\n{line}\n{good.replace('100', '300')}\n")
    status, _, err = _run(capsys, "plot", "curves", "--runs", metrics, "--output", tmp_path / "c.png")
    if words is None:
        assert status == 0 and (tmp_path / "c.png").is_file(), err
        return
    message = _one_clean_line(err)
    assert status == 1 and str(metrics) in message and words in message, message
    assert not (tmp_path / "c.png").exists()


def test_a_last_line_cut_short_by_a_crash_is_not_a_record(tmp_path, capsys):
    metrics = tmp_path / METRICS
    metrics.write_text('{"samples": 100, "train_elbo": -50.0, "test_elbo": -51.0}\n{"samples": 2')
    assert read_metrics(metrics) == [{"samples": 100, "train_elbo": -50.0, "test_elbo": -51.0}]
    status, _, err = _run(capsys, "plot", "curves", "--runs", metrics, "--output", tmp_path / "c.png")
    assert status == 0, err


def test_threads_above_the_cores_are_refused_before_any_work(tmp_path, capsys):
    from scratchvae.backend import available_cores

    too_many = available_cores() + 1
    status, out, err = _run(capsys, "--threads", too_many, "train", "--out", tmp_path / "run", *TINY)
    line = _one_clean_line(err)
    assert status == 2 and f"--threads {too_many} is more than the {available_cores()} cores" in line
    assert f"give at most {available_cores()}" in line and out == ""
    assert not (tmp_path / "run").exists() and _blas_threads() == {backend.DEFAULT_THREADS}
    status, _, err = _run(capsys, "data", "verify", "--threads", 10**6, "--data-dir", tmp_path)
    assert status == 2 and "--threads 1000000" in _one_clean_line(err)
    with pytest.raises(ValueError, match=f"threads must be at most {available_cores()}"):
        backend.set_threads(too_many)


def test_reproduce_report_on_a_missing_runs_folder_is_an_error(tmp_path, capsys):
    status, out, err = _run(capsys, "reproduce", "report", "--runs-dir", tmp_path / "no-such-runs",
                            "--results-dir", tmp_path / "results", "--page", tmp_path / "results.md")
    line = _one_clean_line(err)
    assert status == 1 and f"--runs-dir: no such folder: {tmp_path / 'no-such-runs'}" in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "results.md").exists()
