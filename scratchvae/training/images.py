"""The images of one training run, prepared once: the stream of minibatches and the two
evaluation sets.

Every random choice besides the model's eps comes from one seed, split into independent
streams (:func:`seed_streams`), so that changing how often a run evaluates, or stopping
and resuming it, never changes the batches it trains on.
"""
import numpy as np

from .. import validation
from ..backend import as_numpy, make_rng, to_device
from ..data.datasets import BINARIZATIONS, batches, binarize


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


def check_images(model, binarization, **arrays):
    """Raise ValueError unless each array is (N >= 1, model.x_dim) of floats, in [0, 1] for a
    Bernoulli likelihood, and ``binarization`` fits the likelihood. Checked once, before
    training, so that the steps can skip it."""
    validation.choice("binarization", binarization, BINARIZATIONS)
    if binarization != "none" and model.likelihood != "bernoulli":
        raise ValueError(f"binarization={binarization!r} needs a Bernoulli likelihood; "
                         f"the model's is {model.likelihood!r}")
    for name, x in arrays.items():
        validation.float_array(name, x, shape=(None, model.x_dim))
        if model.likelihood == "bernoulli":
            validation.in_unit_interval(name, x)
        if x.shape[0] == 0:
            raise ValueError(f"{name} holds no images")


class RunImages:
    """Training images and evaluation sets of a run on ``model``'s device and dtype.

    ``eval_sets``: ``{'test': at most eval_size held-out images, 'train': as many training
    images (a fixed random subset)}``, binarized once unless ``binarization='none'``;
    ``order_rng``: the generator that orders the batches (its state is checkpointed)."""

    def __init__(self, model, train_x, test_x, binarization, seed, eval_size):
        check_images(model, binarization, train_x=train_x, test_x=test_x)
        self.binarization, self.device, self.xp = binarization, model.device, model.xp
        streams = seed_streams(seed)
        self.order_rng = np.random.default_rng(streams["order"])
        self.eval_seed = int(streams["eval"].generate_state(1)[0])
        train = as_numpy(train_x).astype(model.dtype, copy=False)
        test = heldout_images(test_x, binarization, seed).astype(model.dtype, copy=False)
        eval_train = train
        if binarization != "none":
            eval_train = binarize(train, np.random.default_rng(streams["binarize_train"]))
            if binarization == "fixed":
                train = eval_train
        self.n_train, self.n_test = train.shape[0], test.shape[0]
        pick = np.random.default_rng(streams["subset"])
        # as many training images as held-out ones: comparable noise, bounded cost
        train_idx = np.sort(pick.permutation(self.n_train)[:min(eval_size, self.n_test)])
        self.eval_sets = {"train": to_device(eval_train[train_idx], self.device),
                          "test": to_device(test[:eval_size], self.device)}
        self.train_x = train
        if self.device != "cpu":   # the images live on the device: a step then copies nothing in
            self.train_x_device = to_device(train, self.device)
            self.device_rng = make_rng(int(streams["binarize_train"].generate_state(1)[0]), self.device)

    def epoch_batches(self, batch_size, skip=0):
        """The batches of one epoch, drawn from ``order_rng`` as it stands, without the first
        ``skip`` (drawn and dropped, so the rest of the epoch is what it would have been)."""
        if self.device != "cpu":
            return self._device_batches(batch_size, skip)
        binarization = "dynamic" if self.binarization == "dynamic" else "none"
        it = batches(self.train_x, batch_size, self.order_rng, binarization=binarization)
        for _ in range(skip):
            next(it)
        return it

    def _device_batches(self, batch_size, skip):
        """The epoch's batches sliced from the images on the device. The order is drawn on
        the host as on the CPU and copied over once per epoch; a dynamic binarization draws
        its noise on the device. (So a GPU run is reproducible, but its stream of binary
        images differs from the CPU's.)"""
        order = self.xp.asarray(self.order_rng.permutation(self.n_train))
        for start in range(skip * batch_size, self.n_train, batch_size):
            x = self.train_x_device[order[start:start + batch_size]]
            if self.binarization == "dynamic":
                x = (self.device_rng.random(x.shape, dtype=x.dtype) < x).astype(x.dtype)
            yield x
