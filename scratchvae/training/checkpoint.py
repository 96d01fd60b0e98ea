"""Checkpoints that run no code when loaded and are never half-written.

A checkpoint is one ``.npz`` file (a zip of ``.npy`` arrays, read with
``allow_pickle=False``) holding::

    param/<name>    every model parameter, e.g. ``param/encoder.0.W``
    optim/<key>     every optimizer state array, e.g. ``optim/m/encoder.0.W``
    meta            one JSON string: the model's registered class name and configuration
                    (``model_class``, ``model``), the optimizer's name, learning rate and
                    step count, the random generators' states, the training progress and
                    its metrics history

Loading runs no code from the file: :func:`load_model` looks the class name up among the
classes registered with :func:`scratchvae.register_model` and calls
``cls(**config, device=...)``. A checkpoint without a class name (written before classes
were recorded) is a VAE's.

It is written atomically: into a temporary file in the same folder, flushed to
disk (fsync), then renamed over the old one with ``os.replace``. A crash or a
Ctrl-C at any moment therefore leaves either the old checkpoint or the new one,
never a mixture. The zip format keeps a CRC-32 of every array, so a corrupted
or truncated file is detected when it is read, before anything is changed.
"""
import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..backend import as_numpy, device_of, to_device

FORMAT = "scratchvae-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the model it is loaded into."""


# ---------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path`` for writing; on success, fsync it and rename
    it to ``path``. On any error (or Ctrl-C) the temporary file is removed and ``path``
    keeps its previous content."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp's 0600 -> what open() would have given
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def writable_dir(path):
    """Create the folder ``path`` if needed and prove it is writable by writing a probe
    file; raise ``OSError`` with one clear sentence otherwise. Returns ``Path(path)``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OSError(f"cannot write to the output folder {str(path)!r}: "
                      f"{e.strerror or e}") from None
    return path


# ---------------------------------------------------------------------------------------
# Random generators
# ---------------------------------------------------------------------------------------
def rng_state(rng):
    """The state of a NumPy ``Generator`` as JSON-ready data (``None`` for a CuPy
    generator, whose state lives on the GPU and cannot be exported)."""
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    return None


def set_rng_state(rng, state):
    """Put a NumPy ``Generator`` back into the state :func:`rng_state` returned."""
    if state is None or not isinstance(rng, np.random.Generator):
        return False
    if state.get("bit_generator") != type(rng.bit_generator).__name__:
        raise CheckpointError(f"the checkpoint's random generator is {state.get('bit_generator')}, "
                              f"not {type(rng.bit_generator).__name__}")
    rng.bit_generator.state = state
    return True


# ---------------------------------------------------------------------------------------
# Save and load
# ---------------------------------------------------------------------------------------
def optimizer_name(optimizer):
    return type(optimizer).__name__.lower()


def model_class_name(model):
    """The registered name a checkpoint of ``model`` records; :class:`CheckpointError` with
    the how-to for a class that is not registered (it could be saved, but never rebuilt)."""
    from ..vae import registered_name, unregistered_hint

    name = registered_name(type(model))
    if name is None:
        raise CheckpointError(f"cannot save a checkpoint of a {type(model).__name__}: "
                              + unregistered_hint(type(model)))
    return name


def save(path, model, optimizer, meta):
    """Write ``model``'s parameters, ``optimizer``'s state and the JSON-ready dict
    ``meta`` (progress, generator states, ...) atomically to ``path``. The model's class
    must be registered (:func:`scratchvae.register_model`)."""
    class_name = model_class_name(model)
    arrays = {f"param/{name}": as_numpy(p) for name, p in model.parameters().items()}
    state = optimizer.state_dict()
    t = state.pop("t")
    arrays.update({f"optim/{key}": a for key, a in state.items()})
    header = {"format": FORMAT, "version": VERSION, "model_class": class_name, "model": model.config(),
              "optimizer": {"name": optimizer_name(optimizer), "lr": optimizer.lr, "t": t}}
    arrays["meta"] = np.array(json.dumps({**header, **meta}))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


class Checkpoint:
    """What :func:`load` read: ``params`` and ``optimizer_state`` (host arrays by name)
    and ``meta`` (the JSON dict: ``model``, ``optimizer``, ``progress``, ...)."""

    def __init__(self, path, params, optimizer_state, meta):
        self.path, self.params, self.optimizer_state, self.meta = path, params, optimizer_state, meta

    @property
    def config(self):
        return self.meta["model"]

    @property
    def model_class(self):
        """The registered name of the saved model's class (``'VAE'`` for a checkpoint written
        before class names were recorded)."""
        return self.meta.get("model_class", "VAE")


def load(path):
    """Read and verify a checkpoint completely (every array, every CRC) into memory.

    Raises :class:`CheckpointError` for a file that is missing, truncated, corrupted, not a
    scratchvae checkpoint, without its model's configuration or optimizer in its meta, or with
    NaN or Inf in a parameter or the optimizer's state. Nothing outside the returned object is
    touched."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {key: z[key] for key in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"the checkpoint {str(path)!r} is corrupted or truncated "
                              f"({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a scratchvae checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {meta.get('version')}, "
                              f"this scratchvae reads version {VERSION}")
    for key, what in (("model", "model's configuration"), ("optimizer", "optimizer's name and step count")):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"the checkpoint {str(path)!r} does not hold its {what} "
                                  f"(meta[{key!r}]): it cannot be rebuilt or continued")
    if "t" not in meta["optimizer"]:
        raise CheckpointError(f"the checkpoint {str(path)!r} does not hold its optimizer's step "
                              f"count (meta['optimizer']['t']): it cannot be continued")
    params = {k[len("param/"):]: a for k, a in arrays.items() if k.startswith("param/")}
    opt = {k[len("optim/"):]: a for k, a in arrays.items() if k.startswith("optim/")}
    for kind, group in (("parameter", params), ("optimizer state", opt)):
        for name, a in group.items():
            if a.dtype.kind in "fc" and not np.isfinite(a).all():
                raise CheckpointError(f"the checkpoint {str(path)!r} holds NaN or Inf in the {kind} "
                                      f"{name!r}: a model with it computes nothing but NaN, so it "
                                      f"is not loaded (train again from an earlier checkpoint)")
    opt["t"] = meta["optimizer"]["t"]
    return Checkpoint(path, params, opt, meta)


def differences(saved, current):
    """``['key: saved -> current', ...]`` for the keys where two flat dicts differ."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys
            if saved.get(k) != current.get(k)]


def check_compatible(ckpt, model, optimizer=None):
    """Raise :class:`CheckpointError` unless ``ckpt`` was written by a model with the same
    configuration (and, if given, the same kind of optimizer), with matching shapes."""
    from ..vae import registered_name

    if "model_class" in ckpt.meta and ckpt.model_class != registered_name(type(model)):
        raise CheckpointError(f"the checkpoint {str(ckpt.path)!r} holds a {ckpt.model_class}, "
                              f"not a {registered_name(type(model)) or type(model).__name__}")
    diff = differences(ckpt.config, model.config())
    if diff:
        raise CheckpointError(f"the checkpoint {str(ckpt.path)!r} is from a different model ("
                              + "; ".join(diff) + ")")
    current = {name: p for name, p in model.parameters().items()}
    if set(ckpt.params) != set(current):
        raise CheckpointError(f"the checkpoint {str(ckpt.path)!r} holds parameters "
                              f"{sorted(ckpt.params)}, the model has {sorted(current)}")
    for name, p in current.items():
        if ckpt.params[name].shape != p.shape or ckpt.params[name].dtype != p.dtype:
            raise CheckpointError(f"parameter {name!r} in the checkpoint has shape "
                                  f"{ckpt.params[name].shape} ({ckpt.params[name].dtype}), "
                                  f"the model's is {p.shape} ({p.dtype})")
    if optimizer is not None and ckpt.meta["optimizer"]["name"] != optimizer_name(optimizer):
        raise CheckpointError(f"the checkpoint was trained with {ckpt.meta['optimizer']['name']}, "
                              f"not {optimizer_name(optimizer)}")


def restore(ckpt, model, optimizer=None):
    """Copy the checkpoint's parameters (and optimizer state) into ``model`` (and
    ``optimizer``) in place, after checking that everything fits."""
    check_compatible(ckpt, model, optimizer)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(ckpt.optimizer_state)
        except ValueError as e:
            raise CheckpointError(f"the checkpoint's optimizer state does not fit: {e}") from None
    for name, p in model.parameters().items():
        p[...] = to_device(ckpt.params[name], device_of(p))


def load_model(path, device="cpu"):
    """Rebuild the trained model saved in the checkpoint at ``path`` (on ``device``): an
    instance of the class that was saved, looked up by its registered name
    (:func:`scratchvae.register_model`; a class of your own must be registered, and its module
    imported, before loading), built from its ``config()`` and given the saved parameters.

    Returns ``(model, checkpoint)``; ``checkpoint.meta`` holds the run's settings
    (dataset, image shape, ...), progress and metrics history."""
    from .. import models  # noqa: F401  (registers the library's other models)
    from ..vae import model_class

    c = load(path)
    try:
        cls = model_class(c.model_class)
    except KeyError as e:
        raise CheckpointError(f"the checkpoint {str(path)!r} holds a model of class "
                              f"{c.model_class!r}, which cannot be rebuilt: {e.args[0]}") from None
    try:
        model = cls(**c.config, device=device)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint {str(path)!r} holds a model configuration "
                              f"this scratchvae cannot build: {e}") from None
    restore(c, model)
    return model, c
