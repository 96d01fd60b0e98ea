"""The training loop: it learns, it resumes bit for bit, and faults lose nothing."""
import json
import math
import os
import signal

import numpy as np
import pytest

import scratchvae as sv
from scratchvae.training import checkpoint as ckpt
from scratchvae.data.datasets import load_dataset
from scratchvae.training.trainer import (CHECKPOINT, METRICS, Trainer, TrainingDiverged, TrainingInterrupted,
                              read_metrics)


@pytest.fixture(scope="module")
def digits():
    """The embedded 8 x 8 digits, cut down so that each test trains in a blink."""
    d = load_dataset("digits")
    return d.train[:300], d.test[:100]


def _trainer(data, out=None, binarization="none", batch_size=64, seed=3, z_dim=2, opt="adam",
             lr=3e-3, **kw):
    model = sv.VAE(64, z_dim=z_dim, hidden_dims=(32,), seed=1)
    optimizer = sv.optim.OPTIMIZERS[opt](model.named_parameters(), lr=lr)
    kw.setdefault("checkpoint_every", 0)
    trainer = Trainer(model, optimizer, *data, batch_size=batch_size, binarization=binarization,
                      seed=seed, out=out, progress=False, **kw)
    return trainer


def _params(trainer):
    return {k: p.copy() for k, p in trainer.model.parameters().items()}


def _identical(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_training_raises_the_elbo_and_writes_metrics(digits, tmp_path):
    t = _trainer(digits, tmp_path)
    history = t.fit(epochs=6)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert [r["samples"] for r in history] == [300 * e for e in range(1, 7)]
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 3
    for r in history:
        # elbo = rec - kl per image in float32, then averaged: equal up to float32 rounding
        assert math.isclose(r["test_elbo"], r["test_rec"] - r["test_kl"], rel_tol=1e-6)
        assert r["train_kl"] > 0 and r["wall_time"] >= 0
    assert read_metrics(tmp_path / METRICS) == history
    assert ckpt.load(tmp_path / CHECKPOINT).meta["history"] == history


def test_training_by_a_budget_of_samples(digits):
    t = _trainer(digits)
    t.fit(samples=250)                       # 4 batches of 64 = 256 >= 250
    assert (t.samples, t.step_count, t.epoch, t.batch_in_epoch) == (256, 4, 0, 4)
    assert [r["samples"] for r in t.history] == [256]
    t.fit(samples=700, eval_every=200)       # continues the same run
    # epochs of 300 images are 4 batches of 64 and one of 44: 256, 300, 364, 428, ...
    # evaluated at the first step reaching 400, 600, and the target 700
    assert [r["samples"] for r in t.history] == [256, 428, 600, 728]


@pytest.mark.parametrize("binarization", ["none", "fixed", "dynamic"])
def test_resumed_run_is_bitwise_identical(digits, tmp_path, binarization):
    """N epochs straight, against N/2 epochs, a new process's worth of fresh objects, and
    a resume to N: same parameters, bit for bit, and the same metrics."""
    straight = _trainer(digits, tmp_path / "a", binarization)
    straight.fit(epochs=4)

    _trainer(digits, tmp_path / "b", binarization).fit(epochs=2)
    resumed = _trainer(digits, tmp_path / "b", binarization, seed=3).resume()
    assert resumed.epoch == 2
    resumed.fit(epochs=4)
    assert _identical(_params(resumed), _params(straight))
    strip = [{k: v for k, v in r.items() if k != "wall_time"} for r in straight.history]
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in resumed.history] == strip


def test_resume_in_the_middle_of_an_epoch(digits, tmp_path):
    """A run stopped mid-epoch (by a sample budget) continues with the rest of that epoch's
    batches; evaluating more often does not change the training either."""
    straight = _trainer(digits, None, "dynamic")
    straight.fit(epochs=3)
    _trainer(digits, tmp_path, "dynamic").fit(samples=400, eval_every=150)
    resumed = _trainer(digits, tmp_path, "dynamic").resume()
    assert resumed.batch_in_epoch == 2 and resumed.samples == 428    # 300 + 2 batches of 64
    resumed.fit(epochs=3)
    assert _identical(_params(resumed), _params(straight))


def _plant_nan_at(step):
    def callback(trainer):
        if trainer.step_count == step:
            trainer.model.decoder.net.layers[0].params["W"][0, 0] = np.nan
    return callback


def test_nan_mid_training_stops_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    t = _trainer(digits, tmp_path)
    t.fit(epochs=2)
    good = (tmp_path / CHECKPOINT).read_bytes()
    good_params = _params(t)
    with pytest.raises(TrainingDiverged) as err:
        t.fit(epochs=4, callback=_plant_nan_at(13))     # inside epoch 3 (steps 11 to 15)
    message = str(err.value)
    assert "the loss became nan at step 14" in message and "smaller learning rate" in message
    assert str(tmp_path / CHECKPOINT) in message and "600 samples" in message
    assert (tmp_path / CHECKPOINT).read_bytes() == good
    assert len(read_metrics(tmp_path / METRICS)) == 2
    restored = _trainer(digits, tmp_path).resume()
    assert _identical(_params(restored), good_params)


def test_an_absurd_learning_rate_is_caught_before_anything_is_saved(digits, tmp_path):
    t = _trainer(digits, tmp_path, opt="sgd", lr=1e6)
    with pytest.raises(TrainingDiverged, match="became"):
        t.fit(epochs=3)
    saved = ckpt.load(tmp_path / CHECKPOINT)
    assert saved.meta["progress"]["samples"] == 0     # only the starting point was good
    assert all(np.isfinite(p).all() for p in saved.params.values())


def test_a_parameter_gone_bad_at_the_end_of_an_epoch_is_not_saved(digits, tmp_path):
    """NaN planted after the last step of an epoch never reaches a checkpoint."""
    t = _trainer(digits, tmp_path)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        t.fit(epochs=2, callback=_plant_nan_at(5))      # 5 steps = the whole first epoch
    assert ckpt.load(tmp_path / CHECKPOINT).meta["progress"]["samples"] == 0


def _sigint_at(step, times=1):
    """A callback that sends this process a real SIGINT (Ctrl-C) ``times`` times at ``step``."""
    def callback(trainer):
        if trainer.step_count == step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
    return callback


@pytest.mark.parametrize("binarization", ["none", "dynamic"])
def test_ctrl_c_saves_at_the_step_boundary_and_the_resumed_run_is_identical(digits, tmp_path,
                                                                             binarization):
    """Ctrl-C in the middle of an epoch, long before a timed checkpoint is due: the state
    after the step is saved, and resuming from it finishes the very same run."""
    straight = _trainer(digits, None, binarization)
    straight.fit(epochs=3)

    t = _trainer(digits, tmp_path, binarization, checkpoint_every=3600)
    with pytest.raises(TrainingInterrupted) as err:
        t.fit(epochs=3, callback=_sigint_at(8))
    assert "interrupted at step 8" in str(err.value) and "492 samples, step 8" in str(err.value)
    kept = ckpt.load(tmp_path / CHECKPOINT)
    assert kept.meta["progress"]["step"] == 8 and kept.meta["progress"]["batch_in_epoch"] == 3
    assert not list(tmp_path.glob("*.tmp"))
    resumed = _trainer(digits, tmp_path, binarization, checkpoint_every=3600).resume()
    resumed.fit(epochs=3)
    assert _identical(_params(resumed), _params(straight))
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in resumed.history] == \
        [{k: v for k, v in r.items() if k != "wall_time"} for r in straight.history]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler given back


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(digits, tmp_path):
    t = _trainer(digits, tmp_path)
    with pytest.raises(TrainingInterrupted) as err:
        t.fit(epochs=3, callback=_sigint_at(8, times=2))
    assert "300 samples, step 5" in str(err.value)
    assert ckpt.load(tmp_path / CHECKPOINT).meta["progress"]["step"] == 5


def test_an_exception_inside_a_step_keeps_the_checkpoint_and_resuming_finishes_the_same_run(
        digits, tmp_path):
    """A KeyboardInterrupt that is not a Ctrl-C caught by the trainer (raised by a callback)
    may leave a step half done: nothing is saved after it."""
    straight = _trainer(digits, None)
    straight.fit(epochs=3)

    def interrupt(trainer):
        if trainer.step_count == 8:
            raise KeyboardInterrupt

    t = _trainer(digits, tmp_path)
    with pytest.raises(TrainingInterrupted) as err:
        t.fit(epochs=3, callback=interrupt)
    assert isinstance(err.value, KeyboardInterrupt)
    assert "interrupted at step 8" in str(err.value) and "resume" in str(err.value)
    assert "300 samples, step 5" in str(err.value)
    kept = ckpt.load(tmp_path / CHECKPOINT)
    assert kept.meta["progress"]["samples"] == 300
    resumed = _trainer(digits, tmp_path).resume()
    resumed.fit(epochs=3)
    assert _identical(_params(resumed), _params(straight))


def test_resume_refuses_other_settings_and_changes_nothing(digits, tmp_path):
    _trainer(digits, tmp_path).fit(epochs=1)
    other = _trainer(digits, tmp_path, batch_size=32)
    before = _params(other)
    with pytest.raises(ckpt.CheckpointError, match="batch_size: 64 -> 32"):
        other.resume()
    assert _identical(_params(other), before) and other.samples == 0
    with pytest.raises(ckpt.CheckpointError, match="different model"):
        _trainer(digits, tmp_path, z_dim=3).resume()


def test_a_fresh_run_does_not_overwrite_an_existing_one(digits, tmp_path):
    _trainer(digits, tmp_path).fit(epochs=1)
    kept = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(FileExistsError, match="already holds a training run"):
        _trainer(digits, tmp_path).fit(epochs=1)
    assert (tmp_path / CHECKPOINT).read_bytes() == kept
    _trainer(digits, tmp_path, overwrite=True).fit(epochs=2)
    assert len(read_metrics(tmp_path / METRICS)) == 2


def test_resume_rewrites_metrics_written_after_the_checkpoint(digits, tmp_path):
    t = _trainer(digits, tmp_path)
    t.fit(epochs=2)
    with open(tmp_path / METRICS, "a") as f:             # a line the checkpoint never saw,
        f.write(json.dumps({"samples": 900}) + "\n{\"cut")  # and a line cut short by a crash
    _trainer(digits, tmp_path).resume()
    assert read_metrics(tmp_path / METRICS) == t.history


def test_unwritable_output_folder(digits, tmp_path):
    (tmp_path / "file").write_text("a file where the folder should be")
    with pytest.raises(OSError, match="cannot write to the output folder"):
        _trainer(digits, tmp_path / "file" / "run")


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one of epochs and samples"),
    (dict(epochs=1, samples=10), "exactly one of epochs and samples"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(samples=10, eval_every=0), "eval_every must be a positive integer"),
])
def test_fit_rejects_bad_targets(digits, kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        _trainer(digits).fit(**kwargs)


def test_trainer_rejects_bad_arguments(digits):
    model = sv.VAE(64, 2, (8,), likelihood="gaussian")
    opt = sv.Adam(model.named_parameters())
    with pytest.raises(ValueError, match="needs a Bernoulli likelihood"):
        Trainer(model, opt, *digits, binarization="dynamic")
    with pytest.raises(ValueError, match="binarization must be one of"):
        Trainer(model, opt, *digits, binarization="sometimes")
    with pytest.raises(ValueError, match=r"train_x must have shape \(any, 64\)"):
        Trainer(model, opt, digits[0][:, :10], digits[1])
    with pytest.raises(ValueError, match="checkpoint_every"):
        Trainer(model, opt, *digits, checkpoint_every=-1)


def test_read_metrics_rejects_a_broken_line_in_the_middle(tmp_path):
    path = tmp_path / METRICS
    path.write_text('{"samples": 1}\nnot json\n{"samples": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_metrics(path)


def test_train_step_is_the_hand_written_step(digits):
    """train_step = loss_and_grads + optimizer.step, and refuses a non-finite loss before the
    update, leaving every parameter as it was."""
    from scratchvae.training.step import train_step

    x = digits[0][:32]
    by_hand, stepped = (sv.VAE(64, 2, (16,), seed=5) for _ in range(2))
    opt_hand, opt_step = sv.Adam(by_hand.named_parameters()), sv.Adam(stepped.named_parameters())
    for _ in range(3):
        expected, _ = by_hand.loss_and_grads(x)
        opt_hand.step()
        assert train_step(stepped, opt_step, x) == expected
    assert _identical(by_hand.parameters(), stepped.parameters())

    stepped.decoder.net.layers[0].params["W"][0, 0] = np.inf
    before = {k: p.copy() for k, p in stepped.parameters().items()}
    with pytest.raises(FloatingPointError, match="the loss became nan"), np.errstate(all="ignore"):
        train_step(stepped, opt_step, x)
    assert all(np.array_equal(before[k], p, equal_nan=True) for k, p in stepped.parameters().items())
