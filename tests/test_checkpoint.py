"""Checkpoints: a faithful round trip, atomic writes, and clear refusals that change nothing."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import scratchvae as sv
from scratchvae.training import checkpoint as ckpt


def _model(z_dim=2, seed=0, **kw):
    return sv.VAE(6, z_dim=z_dim, hidden_dims=(5,), seed=seed, **kw)


def _trained(steps=3, seed=0):
    """A model and Adam after a few real steps, so every state array is non-zero."""
    model = _model(seed=seed)
    opt = sv.Adam(model.named_parameters(), lr=1e-2)
    x = np.random.default_rng(1).uniform(0, 1, (8, 6)).astype(np.float32)
    for _ in range(steps):
        model.loss_and_grads(x)
        opt.step()
    return model, opt, x


def _snapshot(model):
    return {k: p.copy() for k, p in model.parameters().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_round_trip_continues_the_same_run(tmp_path):
    """Parameters, Adam's m, v and t, and the eps generator come back exactly: one more
    step from the restored copy equals one more step of the original."""
    model, opt, x = _trained()
    meta = {"rng": {"model": ckpt.rng_state(model.rng)}, "note": [1, 2.5, "three"]}
    ckpt.save(tmp_path / "c.npz", model, opt, meta)

    copy = _model(seed=99)                      # other initial weights, other eps stream
    copy_opt = sv.Adam(copy.named_parameters(), lr=1e-2)
    c = ckpt.load(tmp_path / "c.npz")
    ckpt.restore(c, copy, copy_opt)
    assert ckpt.set_rng_state(copy.rng, c.meta["rng"]["model"])
    assert c.meta["note"] == [1, 2.5, "three"] and c.meta["model"] == model.config()
    assert _same(_snapshot(copy), _snapshot(model))
    assert copy_opt.t == opt.t == 3

    for m, o in ((model, opt), (copy, copy_opt)):
        m.loss_and_grads(x)
        o.step()
    assert _same(_snapshot(copy), _snapshot(model))


def test_load_model_rebuilds_the_trained_vae(tmp_path):
    model, opt, x = _trained()
    ckpt.save(tmp_path / "c.npz", model, opt, {})
    rebuilt, c = ckpt.load_model(tmp_path / "c.npz")
    assert rebuilt.config() == model.config()
    np.testing.assert_array_equal(rebuilt.reconstruct(x), model.reconstruct(x))


def test_files_are_replaced_atomically_with_ordinary_permissions(tmp_path):
    model, opt, _ = _trained()
    path = tmp_path / "c.npz"
    ckpt.save(path, model, opt, {"n": 1})
    ckpt.save(path, model, opt, {"n": 2})
    assert ckpt.load(path).meta["n"] == 2
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]          # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path, fault):
    path = tmp_path / "c.bin"
    path.write_bytes(b"old content")
    with pytest.raises(fault):
        with ckpt.atomic_write(path) as f:
            f.write(b"half of the new")
            raise fault("stopped in the middle of writing")
    assert path.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["c.bin"]


def _corruptions(good):
    middle = len(good) // 2
    flipped = bytearray(good)
    flipped[middle] ^= 0xFF
    return {"truncated": good[:middle], "bit flipped": bytes(flipped), "empty": b"",
            "not a zip": b"this is not a checkpoint at all" * 10}


@pytest.mark.parametrize("kind", ["truncated", "bit flipped", "empty", "not a zip"])
def test_corrupted_checkpoint_is_refused_and_changes_nothing(tmp_path, kind):
    model, opt, _ = _trained()
    good = tmp_path / "good.npz"
    ckpt.save(good, model, opt, {})
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_corruptions(good.read_bytes())[kind])

    target = _model(seed=5)
    target_opt = sv.Adam(target.named_parameters())
    before = _snapshot(target)
    with pytest.raises(ckpt.CheckpointError, match="corrupted or truncated"):
        ckpt.restore(ckpt.load(bad), target, target_opt)
    assert _same(_snapshot(target), before) and target_opt.t == 0


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint at"):
        ckpt.load(tmp_path / "nothing.npz")


class _Planted:
    """An object whose unpickling would create a file: loading must never run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_loading_runs_no_code(tmp_path):
    """A checkpoint carrying a pickled object is refused (allow_pickle=False) and the
    object's code never runs."""
    marker = tmp_path / "code-ran"
    obj = np.empty(1, dtype=object)
    obj[0] = _Planted(marker)
    pickle.dumps(obj)  # the payload is real
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array(json.dumps({"format": ckpt.FORMAT, "version": ckpt.VERSION})),
             **{"param/encoder.0.W": obj})
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load(path)
    assert not marker.exists()


def test_an_npz_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, meta=np.array(json.dumps({"format": "something else"})))
    with pytest.raises(ckpt.CheckpointError, match="not a scratchvae checkpoint"):
        ckpt.load(path)
    with zipfile.ZipFile(tmp_path / "nometa.npz", "w") as z:
        z.writestr("a.npy", b"")
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load(tmp_path / "nometa.npz")


@pytest.mark.parametrize("other, expected", [
    (dict(z_dim=3), "z_dim: 2 -> 3"),
    (dict(activation="tanh"), "activation: 'relu' -> 'tanh'"),
    (dict(dtype="float64"), "dtype: 'float32' -> 'float64'"),
])
def test_checkpoint_of_a_different_model_is_refused(tmp_path, other, expected):
    model, opt, _ = _trained()
    ckpt.save(tmp_path / "c.npz", model, opt, {})
    target = _model(**{"z_dim": 2, **other})
    target_opt = sv.Adam(target.named_parameters())
    before = _snapshot(target)
    with pytest.raises(ckpt.CheckpointError, match="different model") as err:
        ckpt.restore(ckpt.load(tmp_path / "c.npz"), target, target_opt)
    assert expected in str(err.value)
    assert _same(_snapshot(target), before) and target_opt.t == 0


def test_checkpoint_of_another_optimizer_is_refused(tmp_path):
    model, opt, _ = _trained()
    ckpt.save(tmp_path / "c.npz", model, opt, {})
    target = _model()
    before = _snapshot(target)
    with pytest.raises(ckpt.CheckpointError, match="trained with adam, not adagrad"):
        ckpt.restore(ckpt.load(tmp_path / "c.npz"), target, sv.Adagrad(target.named_parameters()))
    assert _same(_snapshot(target), before)


def test_rng_state_round_trip_through_json():
    rng = np.random.default_rng(7)
    rng.standard_normal(5)
    state = json.loads(json.dumps(ckpt.rng_state(rng)))
    expected = rng.standard_normal(5)
    other = np.random.default_rng(0)
    assert ckpt.set_rng_state(other, state)
    np.testing.assert_array_equal(other.standard_normal(5), expected)
    with pytest.raises(ckpt.CheckpointError, match="random generator"):
        ckpt.set_rng_state(np.random.Generator(np.random.MT19937(0)), state)


def test_writable_dir_reports_a_folder_that_cannot_be_made(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    with pytest.raises(OSError, match="cannot write to the output folder"):
        ckpt.writable_dir(blocker / "run")
    assert ckpt.writable_dir(tmp_path / "new" / "run").is_dir()
