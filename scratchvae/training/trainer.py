"""The training loop: minibatches in, parameters out, with metrics and checkpoints on the way.

One step is the whole algorithm of Kingma & Welling (2013), Algorithm 1:

    x     = a minibatch of B images
    loss  = -1/B sum_b elbo(x_b)      with one eps ~ N(0, I) per image   (VAE.loss_and_grads)
    theta = theta - (optimizer's update of d loss / d theta)              (optimizer.step)

Around it, :class:`Trainer` keeps count of the training samples seen (the x-axis of
the paper's Figure 2) and, at every evaluation point (each epoch by default),
measures the ELBO on the held-out images and on as many training images and
appends a line to ``metrics.jsonl``; it saves a checkpoint at such a point every
``checkpoint_every`` seconds, and at the end. A checkpoint holds everything
the rest of the run depends on: parameters, optimizer state, the model's eps
generator, the generator that orders the data, and the progress inside the
epoch. Resuming from it therefore continues the very same run: on the CPU the
parameters at the end are bitwise identical to those of a run never interrupted.

Faults leave the last checkpoint alone: a loss that turns NaN or Inf stops the run
with :class:`TrainingDiverged`, Ctrl-C with :class:`TrainingInterrupted`, and
neither writes anything.
"""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from .. import validation
from ..backend import as_numpy, make_rng, to_device
from ..data.datasets import BINARIZATIONS, batches, binarize
from .evaluate import evaluate_elbo

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"


class TrainingDiverged(RuntimeError):
    """The loss (or a parameter) became NaN or Inf; nothing was saved after it."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the last checkpoint is untouched. ``str()`` says how to resume."""


def read_metrics(path):
    """The records of a ``metrics.jsonl`` file, oldest first. A last line cut short by a
    crash is ignored; any other unreadable line raises ``ValueError`` naming it."""
    lines = Path(path).read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
    return records


def seed_streams(seed):
    """Independent seeds, all from ``seed``, for each random choice a run makes besides eps:
    the data order, the two binarizations, the evaluation noise, the training subset
    that is evaluated."""
    names = ("order", "binarize_train", "binarize_test", "eval", "subset")
    return dict(zip(names, np.random.SeedSequence(seed).spawn(len(names))))


def heldout_images(test_x, binarization="none", seed=0):
    """The held-out images a run evaluates on: ``test_x`` itself for grey values, else
    one binarization of it drawn from the run's seed (the same at every evaluation)."""
    test_x = as_numpy(test_x)
    if binarization == "none":
        return test_x
    return binarize(test_x, np.random.default_rng(seed_streams(seed)["binarize_test"]))


class Trainer:
    """Train ``model`` with ``optimizer`` on the rows of ``train_x``, evaluating on ``test_x``.

    Args:
        model: a :class:`scratchvae.VAE`.
        optimizer: an optimizer over ``model.named_parameters()`` (``scratchvae.optim``).
        train_x, test_x: float arrays (N, D) with values in [0, 1] (host or device).
        batch_size: images per step (B).
        binarization: ``'none'`` (grey values), ``'fixed'`` (one random binarization,
            x_d ~ Bernoulli(pixel), drawn once) or ``'dynamic'`` (a new one every batch).
            The held-out images are binarized once, with their own seed, unless ``'none'``.
        seed: seeds the data order, the binarizations and the evaluation noise.
            (The model's eps generator is seeded by the model.)
        out: folder for ``checkpoint.npz`` and ``metrics.jsonl``; ``None`` keeps
            everything in memory.
        run_info: JSON-ready facts saved with each checkpoint (dataset name, image
            shape, ...); a resumed run must have the same.
        progress: show a tqdm bar (only when stderr is a terminal).
        eval_size: at most this many held-out images for each evaluation, and as many
            training images (a fixed random subset).
        overwrite: allow a fresh run to replace a checkpoint already in ``out``.
        checkpoint_every: seconds between checkpoints (taken at evaluation points; the
            last evaluation always saves one). 0 saves at every evaluation point.
    """

    def __init__(self, model, optimizer, train_x, test_x, batch_size=100, binarization="none",
                 seed=0, out=None, run_info=None, progress=True, eval_size=10000,
                 overwrite=False, checkpoint_every=30.0):
        self.batch_size = validation.positive_int("batch_size", batch_size)
        self.binarization = validation.choice("binarization", binarization, BINARIZATIONS)
        if binarization != "none" and model.likelihood != "bernoulli":
            raise ValueError(f"binarization={binarization!r} needs a Bernoulli likelihood; "
                             f"the model's is {model.likelihood!r}")
        eval_size = validation.positive_int("eval_size", eval_size)
        for name, x in (("train_x", train_x), ("test_x", test_x)):   # checked once, here,
            validation.float_array(name, x, shape=(None, model.x_dim))   # so steps skip it
            if model.likelihood == "bernoulli":
                validation.in_unit_interval(name, x)
            if x.shape[0] == 0:
                raise ValueError(f"{name} holds no images")
        self.model, self.optimizer = model, optimizer
        self.seed = seed
        self.out = None if out is None else ckpt.writable_dir(out)
        self.run_info = dict(run_info or {})
        self.progress = progress
        self.overwrite = overwrite
        if not (isinstance(checkpoint_every, (int, float)) and checkpoint_every >= 0):
            raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
        self.checkpoint_every = checkpoint_every

        streams = seed_streams(seed)
        self.data_rng = np.random.default_rng(streams["order"])
        self.eval_seed = int(streams["eval"].generate_state(1)[0])
        host = {"train": as_numpy(train_x).astype(model.dtype, copy=False),
                "test": heldout_images(test_x, binarization, seed).astype(model.dtype, copy=False)}
        eval_train = host["train"]
        if binarization != "none":
            eval_train = binarize(host["train"], np.random.default_rng(streams["binarize_train"]))
            if binarization == "fixed":
                host["train"] = eval_train
        pick = np.random.default_rng(streams["subset"])
        n_train, n_test = host["train"].shape[0], host["test"].shape[0]
        # as many training images as held-out ones: comparable noise, bounded cost
        train_idx = np.sort(pick.permutation(n_train)[:min(eval_size, n_test)])
        device = model.device
        self.train_x = host["train"]
        if device != "cpu":   # the images live on the device: a step then copies nothing in
            self.train_x_device = to_device(host["train"], device)
            self.device_rng = make_rng(int(streams["binarize_train"].generate_state(1)[0]), device)
        self.eval_sets = {"train": to_device(eval_train[train_idx], device),
                          "test": to_device(host["test"][:eval_size], device)}
        self.n_train, self.n_test = n_train, n_test

        self.epoch = 0              # completed epochs
        self.batch_in_epoch = 0     # steps taken in the current epoch
        self.step_count = 0
        self.samples = 0            # training images seen: the x-axis of Figure 2
        self.wall_time = 0.0        # seconds spent in fit(), over all sessions
        self.history = []           # one dict per evaluation point
        self._epoch_rng_state = ckpt.rng_state(self.data_rng)
        self._started = False
        self._loss_sum, self._loss_count = 0.0, 0
        self._saved_at, self._saved_clock = (0, 0), time.perf_counter()

    # -- paths -----------------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return None if self.out is None else self.out / CHECKPOINT

    @property
    def metrics_path(self):
        return None if self.out is None else self.out / METRICS

    def settings(self):
        """What a resumed run must share with the run it continues (besides the model and the
        kind of optimizer; the learning rate may change)."""
        return {"batch_size": self.batch_size, "binarization": self.binarization, "seed": self.seed,
                "n_train": self.n_train, "n_test": self.n_test, **self.run_info}

    # -- one step --------------------------------------------------------------------------
    def step(self, x):
        """One gradient step on the minibatch ``x``; returns the loss (a float).

        Raises :class:`TrainingDiverged` *before* the update if the loss is not finite.
        The values of ``x`` are not checked again (the constructor checked the data).

        On the GPU the step neither reads anything back nor copies anything in: it returns
        the mean -ELBO as a 0-d device array (without the weight penalty, which would need a
        sum over every parameter), and a non-finite loss or parameter is caught at the next
        evaluation point instead, still before any checkpoint is written."""
        if self.model.device != "cpu":
            terms = self.model.elbo(x, check=False)
            self.model.backward()
            self.optimizer.step()
            return -terms.elbo.mean()
        loss, _ = self.model.loss_and_grads(x, check=False)
        if not math.isfinite(loss):
            raise TrainingDiverged(self._diverged_message(f"the loss became {loss}",
                                                          self.step_count + 1))
        self.optimizer.step()
        return loss

    # -- the loop --------------------------------------------------------------------------
    def fit(self, epochs=None, samples=None, eval_every=None, callback=None, log=None):
        """Train until ``epochs`` epochs or ``samples`` training images in all (counting
        those of a resumed run), whichever is given. Returns ``history``.

        Evaluates at the end of every epoch, or every ``eval_every`` training samples if
        given, and when the target is reached; saves a checkpoint at the first evaluation
        point ``checkpoint_every`` seconds after the last one, and at the end.
        ``callback(trainer)`` runs after every step, ``log(record)`` after every evaluation."""
        if (epochs is None) == (samples is None):
            raise ValueError("give exactly one of epochs and samples")
        target = (validation.positive_int("epochs", epochs) * self.n_train if samples is None
                  else validation.positive_int("samples", samples))
        if eval_every is not None:
            eval_every = validation.positive_int("eval_every", eval_every)
        path = self.checkpoint_path
        if path is not None and not self._started and path.exists() and not self.overwrite:
            raise FileExistsError(f"{str(self.out)!r} already holds a training run "
                                  f"({CHECKPOINT}); resume it, or allow overwriting it, "
                                  f"or choose another output folder")
        if path is not None and not self._started:
            self._start_metrics()
            self._save()                      # so that a checkpoint always exists
            self._started = True
        if self.samples >= target:
            return self.history

        bar = self._progress_bar(target)
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._run(target, eval_every, bar, callback, log)
        except KeyboardInterrupt:
            raise TrainingInterrupted(self._interrupted_message()) from None
        finally:
            if bar is not None:
                bar.close()
        return self.history

    def _run(self, target, eval_every, bar, callback, log):
        """The steps of :meth:`fit`. NumPy's overflow warnings are off here: a run that
        diverges is reported once, clearly, by :class:`TrainingDiverged`."""
        started = time.perf_counter() - self.wall_time
        next_eval = None if eval_every is None else (self.samples // eval_every + 1) * eval_every
        per_epoch = -(-self.n_train // self.batch_size)        # batches per epoch, the last one short
        while self.samples < target:
            for x in self._epoch_batches():
                loss = self.step(x)
                self.samples += x.shape[0]
                self.step_count += 1
                self.batch_in_epoch += 1
                self._loss_sum += loss
                self._loss_count += 1
                due = self.samples >= target or (next_eval is not None and self.samples >= next_eval)
                if self.batch_in_epoch == per_epoch:          # the epoch is complete
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self._epoch_rng_state = ckpt.rng_state(self.data_rng)
                    due = due or eval_every is None
                if bar is not None:
                    bar.update(x.shape[0])
                    if self.step_count % 20 == 0 and self.model.device == "cpu":  # no GPU sync
                        bar.set_postfix(loss=f"{self._loss_sum / self._loss_count:.2f}",
                                        epoch=self.epoch + 1, refresh=False)
                if callback is not None:
                    callback(self)
                if due:
                    self.wall_time = time.perf_counter() - started
                    self._evaluation_point(bar, final=self.samples >= target)
                    if log is not None:
                        log(self.history[-1])
                    if next_eval is not None:
                        next_eval = (self.samples // eval_every + 1) * eval_every
                if self.samples >= target:
                    return

    def _epoch_batches(self):
        """The batches of the current epoch, continuing after ``batch_in_epoch`` of them.

        The data generator is rewound to its state at the start of the epoch and the
        batches already trained on are drawn again and dropped, so the rest of the
        epoch (order and dynamic binarization alike) is what it would have been."""
        ckpt.set_rng_state(self.data_rng, self._epoch_rng_state)
        if self.model.device != "cpu":
            return self._device_batches()
        binarization = "dynamic" if self.binarization == "dynamic" else "none"
        it = batches(self.train_x, self.batch_size, self.data_rng, binarization=binarization)
        for _ in range(self.batch_in_epoch):
            next(it)
        return it

    def _device_batches(self):
        """The epoch's batches sliced from the images on the device. The order is drawn on
        the host as on the CPU and copied over once per epoch; a dynamic binarization draws
        its noise on the device. (So a GPU run is reproducible, but its stream of binary
        images differs from the CPU's.)"""
        xp = self.model.xp
        order = xp.asarray(self.data_rng.permutation(self.n_train))
        for start in range(self.batch_in_epoch * self.batch_size, self.n_train, self.batch_size):
            x = self.train_x_device[order[start:start + self.batch_size]]
            if self.binarization == "dynamic":
                x = (self.device_rng.random(x.shape, dtype=x.dtype) < x).astype(x.dtype)
            yield x

    # -- evaluation points: metrics and checkpoints ------------------------------------------
    def evaluate(self):
        """ELBO, rec and kl on the held-out images and on a fixed subset of training images
        (the same noise each time, so successive values differ only through theta)."""
        record = {"epoch": round(self.samples / self.n_train, 4), "step": self.step_count,
                  "samples": self.samples}
        if self._loss_count:
            record["loss"] = float(self._loss_sum / self._loss_count)   # one GPU read per evaluation
        for split, x in self.eval_sets.items():
            terms = evaluate_elbo(self.model, x, seed=self.eval_seed)
            record.update({f"{split}_{name}": value for name, value in terms._asdict().items()})
        record["wall_time"] = round(self.wall_time, 3)
        return record

    def _evaluation_point(self, bar=None, final=False):
        record = self.evaluate()
        bad = [k for k, v in record.items() if not math.isfinite(v)]
        if bad or not all(bool(self.model.xp.isfinite(p).all()) for p in self.model.parameters().values()):
            what = f"{', '.join(bad)} became non-finite" if bad else "a parameter became non-finite"
            raise TrainingDiverged(self._diverged_message(what, self.step_count))
        self._loss_sum, self._loss_count = 0.0, 0
        self.history.append(record)
        if self.metrics_path is not None:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if bar is not None:
            bar.set_postfix(test_elbo=f"{record['test_elbo']:.2f}", epoch=self.epoch, refresh=False)
        if final or time.perf_counter() - self._saved_clock >= self.checkpoint_every:
            self._save()

    def _start_metrics(self):
        with ckpt.atomic_write(self.metrics_path, "w"):
            pass

    def _save(self):
        if self.checkpoint_path is None:
            return
        meta = {"settings": self.settings(),
                "rng": {"model": ckpt.rng_state(self.model.rng), "data": self._epoch_rng_state},
                "progress": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                             "step": self.step_count, "samples": self.samples,
                             "wall_time": self.wall_time},
                "history": self.history}
        ckpt.save(self.checkpoint_path, self.model, self.optimizer, meta)
        self._saved_at = (self.step_count, self.samples)
        self._saved_clock = time.perf_counter()

    # -- resuming --------------------------------------------------------------------------
    def resume(self, path=None):
        """Continue from a checkpoint (``out/checkpoint.npz`` by default).

        Everything is checked first (file intact, same model, optimizer and settings);
        only then are parameters, optimizer state, generators and progress restored
        and ``metrics.jsonl`` rewritten to match the checkpoint's history."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("resume() needs a path when the trainer has no output folder")
        c = ckpt.load(path)
        ckpt.check_compatible(c, self.model, self.optimizer)
        diff = ckpt.differences(c.meta["settings"], json.loads(json.dumps(self.settings())))
        if diff:
            raise ckpt.CheckpointError(f"the checkpoint {str(path)!r} is from a run with other "
                                       f"settings (" + "; ".join(diff) + ")")
        ckpt.restore(c, self.model, self.optimizer)
        if not ckpt.set_rng_state(self.model.rng, c.meta["rng"]["model"]):
            # CuPy's generator state cannot be saved: continue with a fresh, seeded stream.
            from ..backend import make_rng
            self.model.rng = make_rng(self.seed + c.meta["progress"]["step"], self.model.device)
        self._epoch_rng_state = c.meta["rng"]["data"]
        ckpt.set_rng_state(self.data_rng, self._epoch_rng_state)
        p = c.meta["progress"]
        self.epoch, self.batch_in_epoch = p["epoch"], p["batch_in_epoch"]
        self.step_count, self.samples, self.wall_time = p["step"], p["samples"], p["wall_time"]
        self.history = list(c.meta["history"])
        self._saved_at, self._saved_clock = (self.step_count, self.samples), time.perf_counter()
        self._started = True
        if self.metrics_path is not None and path == self.checkpoint_path:
            with ckpt.atomic_write(self.metrics_path, "w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in self.history))
        return self

    # -- messages --------------------------------------------------------------------------
    def _progress_bar(self, target):
        if not self.progress or not sys.stderr.isatty():
            return None
        from tqdm.auto import tqdm
        return tqdm(total=target, initial=self.samples, unit="img", unit_scale=True,
                    dynamic_ncols=True, desc="training")

    def _last_checkpoint(self):
        if self.checkpoint_path is None:
            return "no checkpoint is kept (no output folder)"
        step, samples = self._saved_at
        return (f"the last checkpoint ({samples} samples, step {step}) is kept at "
                f"{str(self.checkpoint_path)!r}")

    def _diverged_message(self, what, step):
        return (f"{what} at step {step} ({self.samples} training samples seen); "
                f"training stopped and {self._last_checkpoint()}. Try a smaller learning rate.")

    def _interrupted_message(self):
        return (f"interrupted at step {self.step_count} ({self.samples} training samples seen); "
                f"{self._last_checkpoint()}; resume to continue from it")
