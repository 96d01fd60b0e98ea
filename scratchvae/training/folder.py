"""A run's folder: ``checkpoint.npz`` and ``metrics.jsonl``, kept in agreement.

A folder of ``None`` keeps everything in memory: the same calls then write nothing.
"""
import json
import time
from pathlib import Path

from . import checkpoint as ckpt
from ..backend import make_rng
from .metrics import METRICS, write_metrics

CHECKPOINT = "checkpoint.npz"


class RunFolder:
    """The files of one run in ``out`` (created if needed, and proven writable)."""

    def __init__(self, out):
        self.out = None if out is None else ckpt.writable_dir(out)
        self.saved_step, self.saved_samples, self.saved_clock = 0, 0, time.perf_counter()

    @property
    def checkpoint_path(self):
        return None if self.out is None else self.out / CHECKPOINT

    @property
    def metrics_path(self):
        return None if self.out is None else self.out / METRICS

    def start(self, overwrite):
        """Begin a fresh run: refuse to replace another one unless ``overwrite``, and empty
        the metrics file."""
        if self.out is None:
            return
        if self.checkpoint_path.exists() and not overwrite:
            raise FileExistsError(f"{str(self.out)!r} already holds a training run "
                                  f"({CHECKPOINT}); resume it, or allow overwriting it, "
                                  f"or choose another output folder")
        write_metrics(self.metrics_path, [])

    def append(self, record):
        if self.out is not None:
            write_metrics(self.metrics_path, [record], append=True)

    def save(self, model, optimizer, settings, progress):
        """Write the checkpoint (atomically): parameters, optimizer state, ``settings``,
        ``progress`` (a :class:`~scratchvae.training.trainer.Progress`) and the model's
        eps generator. Remembers where it stands."""
        meta = {"settings": settings, **progress.meta()}
        meta["rng"]["model"] = ckpt.rng_state(model.rng)
        if self.out is not None:
            ckpt.save(self.checkpoint_path, model, optimizer, meta)
        self.saved_step, self.saved_samples = progress.step, progress.samples
        self.saved_clock = time.perf_counter()

    def seconds_since_save(self):
        return time.perf_counter() - self.saved_clock

    def restore(self, path, model, optimizer, settings, progress):
        """Check the checkpoint at ``path`` (this folder's by default) against the model, the
        optimizer and ``settings`` first; only then restore parameters, optimizer state, the
        eps generator and ``progress``, and rewrite ``metrics.jsonl`` to match its history."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("resume() needs a path when the trainer has no output folder")
        c = ckpt.load(path)
        ckpt.check_compatible(c, model, optimizer)
        diff = ckpt.differences(c.meta["settings"], json.loads(json.dumps(settings)))
        if diff:
            raise ckpt.CheckpointError(f"the checkpoint {str(path)!r} is from a run with other "
                                       f"settings (" + "; ".join(diff) + ")")
        ckpt.restore(c, model, optimizer)
        if not ckpt.set_rng_state(model.rng, c.meta["rng"]["model"]):
            # CuPy's generator state cannot be saved: continue with a fresh, seeded stream.
            model.rng = make_rng(settings["seed"] + c.meta["progress"]["step"], model.device)
        progress.load(c.meta)
        self.saved_step, self.saved_samples = c.meta["progress"]["step"], c.meta["progress"]["samples"]
        self.saved_clock = time.perf_counter()
        if path == self.checkpoint_path:
            write_metrics(self.metrics_path, c.meta["history"])

    def last_checkpoint(self):
        """Where the last checkpoint is, in words."""
        if self.out is None:
            return "no checkpoint is kept (no output folder)"
        return (f"the last checkpoint ({self.saved_samples} samples, step {self.saved_step}) "
                f"is kept at {str(self.checkpoint_path)!r}")
