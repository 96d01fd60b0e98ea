"""The training loop: minibatches in, parameters out, with metrics and checkpoints on the way.

Each step is :func:`~scratchvae.training.step.train_step` (Algorithm 1 of Kingma & Welling
2013 on one minibatch), or the same step with the decoder's weight gradients and update on
a second core (``overlap``, off by default; bit for bit the same). Around it,
:class:`Trainer` counts the training samples seen (the x-axis of the paper's Figure 2); at
every evaluation point (each epoch by default) it measures the ELBO on the held-out images
and on as many training images and appends a line to ``metrics.jsonl`` (``metrics``); it
saves a checkpoint at such a point every ``checkpoint_every`` seconds, and at the end
(``folder``). A checkpoint holds everything
the rest of the run depends on (:class:`Progress`, parameters, optimizer state, the
model's eps generator), so resuming from it continues the very same run: on the CPU the
parameters at the end are bitwise identical to those of a run never interrupted.

Ctrl-C finishes the step, saves a checkpoint there and stops with
:class:`TrainingInterrupted` (``interrupt``). A loss that turns NaN or Inf stops the run
with :class:`TrainingDiverged` and writes nothing: the last checkpoint stays the last good one.
"""
import sys
import time

import numpy as np

from . import checkpoint as ckpt
from .. import validation
from .folder import CHECKPOINT, RunFolder
from .images import RunImages, heldout_images, seed_streams   # noqa: F401 (part of this API)
from .interrupt import deferred_ctrl_c
from .metrics import METRICS, EvaluationSchedule, measure, non_finite, read_metrics  # noqa: F401
from .overlap import DEFAULT as OVERLAP_DEFAULT, MODES as OVERLAP_MODES, make_overlap
from .step import train_step


class TrainingDiverged(RuntimeError):
    """The loss (or a parameter) became NaN or Inf; nothing was saved after it."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. ``str()`` says which checkpoint is kept and how to resume."""


class Progress:
    """Where a run stands. All of it goes into a checkpoint (``meta()``, ``load(meta)``).

    ``epoch`` completed epochs; ``batch_in_epoch`` steps taken in the current one; ``step``
    and ``samples`` steps taken and training images seen; ``wall_time`` seconds spent in
    ``fit``, over all sessions; ``loss_sum / loss_count`` the mean training loss since the
    last evaluation; ``order_state`` the batch-order generator at the start of the epoch;
    ``history`` one record per evaluation point."""
    COUNTERS = ("epoch", "batch_in_epoch", "step", "samples", "wall_time", "loss_sum", "loss_count")

    def __init__(self, n_train, order_state):
        self.n_train, self.order_state, self.history = n_train, order_state, []
        self.epoch = self.batch_in_epoch = self.step = self.samples = self.loss_count = 0
        self.wall_time = self.loss_sum = 0.0

    def count(self, batch, loss, per_epoch, order_rng):
        """Count a step on ``batch`` images; returns True when it completed the epoch."""
        self.step, self.samples, self.batch_in_epoch = self.step + 1, self.samples + batch, self.batch_in_epoch + 1
        self.loss_sum, self.loss_count = self.loss_sum + loss, self.loss_count + 1
        if self.batch_in_epoch < per_epoch:
            return False
        self.epoch, self.batch_in_epoch, self.order_state = self.epoch + 1, 0, ckpt.rng_state(order_rng)
        return True

    def meta(self):
        counters = {name: getattr(self, name) for name in self.COUNTERS}
        counters["loss_sum"] = float(counters["loss_sum"])     # a 0-d device array on the GPU
        return {"progress": counters, "rng": {"data": self.order_state}, "history": self.history}

    def load(self, meta):
        self.loss_sum, self.loss_count = 0.0, 0       # absent from older checkpoints
        for name, value in meta["progress"].items():
            setattr(self, name, value)
        self.order_state, self.history = meta["rng"]["data"], list(meta["history"])


class Trainer:
    """Train ``model`` with ``optimizer`` on the rows of ``train_x``, evaluating on ``test_x``.

    ``train_x, test_x``: float arrays (N, D), values in [0, 1] (host or device).
    ``batch_size``: images per step (B). ``binarization``: ``'none'`` (grey values),
    ``'fixed'`` (x_d ~ Bernoulli(pixel), drawn once) or ``'dynamic'`` (drawn every batch);
    held-out images are binarized once unless ``'none'``. ``seed``: the data order, the
    binarizations and the evaluation noise (the model seeds its own eps). ``out``: folder for
    ``checkpoint.npz`` and ``metrics.jsonl`` (``None``: in memory); the model's class must then
    be registered (:func:`scratchvae.register_model`), so that the checkpoint can rebuild it. ``run_info``: JSON-ready
    facts saved with each checkpoint (dataset, image shape, ...); a resume must match them.
    ``progress``: a tqdm bar on a terminal. ``eval_size``: at most this many held-out images
    per evaluation, and as many training images. ``overwrite``: a fresh run may replace a
    checkpoint in ``out``. ``checkpoint_every``: seconds between checkpoints (0: every
    evaluation point; the last one always saves). ``overlap``: ``'on'`` runs the
    decoder's weight gradients and update on a second core during the encoder's backward,
    ``'auto'`` where a core is idle, ``'off'`` (the default: it has not been shown to pay)
    never (:mod:`~scratchvae.training.overlap`; the parameters are the same bit for bit)."""

    def __init__(self, model, optimizer, train_x, test_x, batch_size=100, binarization="none",
                 seed=0, out=None, run_info=None, progress=True, eval_size=10000,
                 overwrite=False, checkpoint_every=30.0, overlap=OVERLAP_DEFAULT):
        validation.seed("seed", seed)
        self.batch_size = validation.positive_int("batch_size", batch_size)
        eval_size = validation.positive_int("eval_size", eval_size)
        if not (isinstance(checkpoint_every, (int, float)) and checkpoint_every >= 0):
            raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
        if out is not None:
            ckpt.model_class_name(model)   # a class a checkpoint could not rebuild: say so now
        self.images = RunImages(model, train_x, test_x, binarization, seed, eval_size)
        self.model, self.optimizer, self.binarization, self.seed = model, optimizer, binarization, seed
        self.folder = RunFolder(out)
        self.run_info, self.progress, self.overwrite = dict(run_info or {}), progress, overwrite
        self.checkpoint_every, self._started = checkpoint_every, False
        self.overlap = validation.choice("overlap", overlap, OVERLAP_MODES)
        self.state = Progress(self.images.n_train, ckpt.rng_state(self.images.order_rng))

    # where the run stands (kept in self.state, which checkpoints save)
    epoch = property(lambda self: self.state.epoch)
    batch_in_epoch = property(lambda self: self.state.batch_in_epoch)
    step_count = property(lambda self: self.state.step)
    samples = property(lambda self: self.state.samples)
    history = property(lambda self: self.state.history)
    checkpoint_path = property(lambda self: self.folder.checkpoint_path)

    def settings(self):
        """What a resumed run must share with the run it continues (besides the model and the
        kind of optimizer; the learning rate may change)."""
        return {"batch_size": self.batch_size, "binarization": self.binarization, "seed": self.seed,
                "n_train": self.images.n_train, "n_test": self.images.n_test, **self.run_info}

    def fit(self, epochs=None, samples=None, eval_every=None, callback=None, log=None):
        """Train until ``epochs`` epochs or ``samples`` training images in all (counting those of
        a resumed run), whichever is given. Returns ``history``.

        Evaluates at the end of every epoch, or every ``eval_every`` training samples if given,
        and when the target is reached; saves a checkpoint at the first evaluation point
        ``checkpoint_every`` seconds after the last save, at the end, and at Ctrl-C.
        ``callback(trainer)`` runs after every step, ``log(record)`` after every evaluation."""
        target = samples_to_train(epochs, samples, self.images.n_train)
        if eval_every is not None:
            eval_every = validation.positive_int("eval_every", eval_every)
        if not self._started:                  # a fresh run: a first checkpoint, so one always exists
            self.folder.start(self.overwrite)
            self.save()
            self._started = self.folder.out is not None
        # decided at each fit: the threads BLAS may use can have changed since the last one
        overlap = make_overlap(self.model, self.optimizer, self.overlap)
        try:
            return Session(self, target, eval_every, callback, log, overlap).run()
        finally:
            if overlap is not None:
                overlap.close()

    def evaluate(self):
        """What an evaluation point would record now (ELBO, rec and kl on the training and
        held-out evaluation images, same noise as every evaluation), without recording it."""
        return measure(self.model, self.images.eval_sets, self.images.eval_seed, self.state)

    def save(self):
        """Write a checkpoint now (at a step boundary, as every save)."""
        self.folder.save(self.model, self.optimizer, self.settings(), self.state)

    def resume(self, path=None):
        """Continue from a checkpoint (``out/checkpoint.npz`` by default). Everything is checked
        first (file intact, same model, optimizer and settings); only then are parameters,
        optimizer state, generators and progress restored and ``metrics.jsonl`` rewritten
        to match the checkpoint's history."""
        self.folder.restore(path, self.model, self.optimizer, self.settings(), self.state)
        self._started = True
        return self


class Session:
    """One call of :meth:`Trainer.fit`: steps from where the run stands to ``target`` training
    samples, with the evaluation points of ``schedule``, a progress bar, and Ctrl-C."""

    def __init__(self, trainer, target, eval_every, callback, log, overlap=None):
        self.trainer, self.state, self.target, self.overlap = trainer, trainer.state, target, overlap
        self.schedule = EvaluationSchedule(eval_every, trainer.samples, target)
        self.callback, self.log, self.bar = callback, log, None

    def run(self):
        """Train, then return the history. NumPy's overflow warnings are off: a divergence is
        reported once, by :class:`TrainingDiverged`."""
        t = self.trainer
        if t.samples >= self.target:
            return t.history
        self.bar = progress_bar(t.progress, self.target, t.samples)
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                    deferred_ctrl_c() as ctrl_c:
                self._train(ctrl_c)
        except KeyboardInterrupt:
            raise TrainingInterrupted(f"interrupted at step {t.step_count} ({t.samples} training "
                                      f"samples seen); {t.folder.last_checkpoint()}; resume to "
                                      f"continue from it") from None
        finally:
            if self.bar is not None:
                self.bar.close()
        return t.history

    def _train(self, ctrl_c):
        """Epoch after epoch: step, count, evaluate when due, stop at Ctrl-C or the target."""
        t, state = self.trainer, self.state
        clock = time.perf_counter() - state.wall_time
        per_epoch = -(-t.images.n_train // t.batch_size)     # the last batch may be short
        while True:
            ckpt.set_rng_state(t.images.order_rng, state.order_state)
            for x in t.images.epoch_batches(t.batch_size, skip=state.batch_in_epoch):
                loss = self._step(x)
                epoch_ended = state.count(x.shape[0], loss, per_epoch, t.images.order_rng)
                self._show(x.shape[0])
                if self.callback is not None:
                    self.callback(t)
                state.wall_time = time.perf_counter() - clock
                if self.schedule.due(state.samples, epoch_ended):
                    self._evaluation_point()
                if state.samples >= self.target:      # done and saved, Ctrl-C or not
                    return
                if ctrl_c.requested:
                    t.save()
                    raise KeyboardInterrupt

    def _step(self, x):
        try:
            if self.overlap is not None:
                return self.overlap.step(x)
            return train_step(self.trainer.model, self.trainer.optimizer, x)
        except FloatingPointError as e:
            raise self._diverged(str(e), self.state.step + 1) from None

    def _evaluation_point(self):
        """Measure, check, record; save a checkpoint at the end or when one is due."""
        t, state = self.trainer, self.state
        record = measure(t.model, t.images.eval_sets, t.images.eval_seed, state)
        problem = non_finite(record, t.model)
        if problem:
            raise self._diverged(problem, state.step)
        state.loss_sum, state.loss_count = 0.0, 0
        state.history.append(record)
        t.folder.append(record)
        if self.bar is not None:
            self.bar.set_postfix(test_elbo=f"{record['test_elbo']:.2f}", epoch=state.epoch, refresh=False)
        if state.samples >= self.target or t.folder.seconds_since_save() >= t.checkpoint_every:
            t.save()
        if self.log is not None:
            self.log(record)

    def _show(self, batch):
        if self.bar is None:
            return
        self.bar.update(batch)
        if self.state.step % 20 == 0 and self.trainer.model.device == "cpu":   # no GPU sync
            self.bar.set_postfix(loss=f"{self.state.loss_sum / self.state.loss_count:.2f}",
                                 epoch=self.state.epoch + 1, refresh=False)

    def _diverged(self, what, step):
        return TrainingDiverged(f"{what} at step {step} ({self.state.samples} training samples "
                                f"seen); training stopped and {self.trainer.folder.last_checkpoint()}. "
                                f"Try a smaller learning rate.")


def samples_to_train(epochs, samples, n_train):
    """The target of ``fit``: training images in all, from exactly one of its two arguments."""
    if (epochs is None) == (samples is None):
        raise ValueError("give exactly one of epochs and samples")
    if samples is None:
        return validation.positive_int("epochs", epochs) * n_train
    return validation.positive_int("samples", samples)


def progress_bar(show, target, initial):
    """A tqdm bar counting training images, or ``None`` (not asked for, or not a terminal)."""
    if not show or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm
    return tqdm(total=target, initial=initial, unit="img", unit_scale=True, dynamic_ncols=True,
                desc="training")
