"""Datasets as float32 arrays of pixel values in [0, 1], with their splits, binarization
and minibatches.

Three datasets, each an (N, D) array of flattened images, one row per image::

    name    image    train / held-out                              pixels   likelihood
    digits  8 x 8    1500 / 297 of scikit-learn's 1797             / 16     Bernoulli
    mnist   28 x 28  60000 / 10000, or without the train files     / 255    Bernoulli
                     9000 / 1000 of the test file                  (grey)
    frey    28 x 20  1600 / 365 of the 1965 video frames            / 256    Gaussian
                     (split="contiguous": first 1500 / last 465)

The random splits (digits, MNIST's test-file split and Frey Face's default) keep, as
held-out images, the first n_test entries of ``np.random.default_rng(seed).permutation(N)``;
both parts are then put back in file order. ``seed=0`` gives the documented split.

Frey Face's default split is the one of Kingma & Welling (2013): their experiment code
shuffles the 1965 frames and trains on 1600 of them, keeping 365 as held-out. The frames
are one video, so a random held-out frame usually has near copies among the training
frames. ``split="contiguous"`` holds out the last 465 frames instead: a stretch of the
video the model never saw, which measures something harder (generalization to new
poses and expressions) and gives a much lower held-out bound.

Bernoulli models read a pixel value x in [0, 1] as the probability that the pixel is on.
``binarize`` draws such binary images; ``batches`` does it per minibatch ("dynamic") or
once with a fixed seed ("fixed"), or leaves grey values ("none").
"""
import gzip
import importlib.util
import numbers
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .download import (  # noqa: F401  (re-exported: the public names live here)
    DATA_DIR_ENV, DATASETS, CorruptDataError, DataDirError, DataError, DataFile, FileStatus,
    MissingDataError, default_data_dir, download_file, fetch, files_for, manual_instructions,
    resolve_data_dir, verify, verify_present)
from ..validation import choice, float_array, in_unit_interval, positive_int

BINARIZATIONS = ("none", "fixed", "dynamic")
IDX_IMAGES, IDX_LABELS = 2051, 2049  # IDX magic numbers: unsigned bytes, 3-D and 1-D
DIGITS_TEST, MNIST_TEST_SPLIT_TEST = 297, 1000
FREY_HELDOUT, FREY_CONTIGUOUS_HELDOUT = 365, 465   # random (the paper's) and contiguous splits
FREY_SPLITS = ("random", "contiguous")
FREY_SHAPE = (28, 20)


@dataclass
class DataSplits:
    """A dataset split into a training part and a held-out part.

    ``train`` (N, D) and ``test`` (M, D) are float32 pixel values in [0, 1], one flattened
    image per row (D = prod(image_shape)); labels are int64 arrays, or None (Frey Face).
    ``likelihood`` is the decoder that suits the data; ``split`` says in one line how the
    parts were chosen.
    """
    name: str
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple
    likelihood: str
    split: str

    def __repr__(self):
        def show(a):
            return "None" if a is None else f"<{a.dtype} array {tuple(a.shape)}>"
        return (f"DataSplits(name={self.name!r}, train={show(self.train)}, test={show(self.test)}, "
                f"train_labels={show(self.train_labels)}, test_labels={show(self.test_labels)}, "
                f"image_shape={self.image_shape}, likelihood={self.likelihood!r}, "
                f"split={self.split!r})")


def load_dataset(name, data_dir=None, download=True, seed=0, split="random"):
    """Load ``"digits"``, ``"mnist"`` or ``"frey"`` as ``DataSplits``.

    Files are read from ``data_dir`` (default ``default_data_dir()``: ``$SCRATCHVAE_DATA_DIR``
    or ``data``) and downloaded there when missing and ``download`` is true. ``seed`` chooses
    the random splits (digits, MNIST's test-file split, Frey Face's); 0 is the documented
    split. ``split`` applies to Frey Face only: ``"random"`` (the paper's 1600/365) or
    ``"contiguous"`` (the last 465 frames held out).
    Raises ``MissingDataError`` (offline: says which files to put where),
    ``CorruptDataError`` (a file is truncated or not the published one) or
    ``DataDirError`` (the data directory cannot be written).
    """
    choice("name", name, DATASETS)
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    choice("split", split, FREY_SPLITS)
    if name != "frey" and split != "random":
        raise ValueError(f"split={split!r} applies to frey only; {name} has one split "
                         f"(leave split='random')")
    data_dir = resolve_data_dir(data_dir)
    if name == "digits":
        return _load_digits(int(seed))
    paths = _ensure_files(name, data_dir, download)
    if name == "mnist":
        return _load_mnist(paths, int(seed))
    return _load_frey(paths["frey_rawface.mat"], split, int(seed))


def _ensure_files(name, data_dir, download):
    """Paths (by file name) of the usable files of ``name``, each checked against its checksum.

    Missing required files are downloaded (when allowed) and must arrive; missing optional
    ones are fetched alongside them when possible, but never on their own: a folder that
    holds the required files is used as it is.
    """
    files = files_for(name)
    missing = [f for f in files if not (data_dir / f.path).is_file()]
    if any(f.required for f in missing):
        if not download:
            raise MissingDataError(f"the {name} files are not in {data_dir} and download=False.\n"
                                   + manual_instructions(data_dir, missing))
        failed = []
        for f in sorted(missing, key=lambda f: not f.required):  # required ones first
            try:
                download_file(f, data_dir)
            except MissingDataError as err:
                if f.required:
                    still_missing = [g for g in missing if not (data_dir / g.path).is_file()]
                    raise MissingDataError(
                        f"the {name} files are not in {data_dir} and could not be downloaded:\n"
                        + "\n".join(err.failures) + "\n"
                        + manual_instructions(data_dir, still_missing), err.failures) from err
                failed += err.failures
        if failed:  # only optional files, i.e. the MNIST train files
            warnings.warn("could not download the optional files, so the split of the test file "
                          "is used (DataSplits.split says so):\n" + "\n".join(failed),
                          RuntimeWarning, stacklevel=3)
    paths = {}
    for f in files:
        path = data_dir / f.path
        if path.is_file():
            verify_present(f, path)
            paths[f.name] = path
    return paths


def _random_split(n, n_test, seed):
    """Train and held-out row indices: the first ``n_test`` of a seeded permutation are held out;
    both sorted back into file order."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _digits_file():
    """scikit-learn's copy of the 8 x 8 digits (1,797 rows of 64 pixel counts 0..16 and the label),
    found without importing scikit-learn: its import costs more than a second, the file 0.05 s."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError("the 8 x 8 digits ship with scikit-learn: pip install scikit-learn")
    return path


def _load_digits(seed):
    table = np.loadtxt(_digits_file(), delimiter=",")
    x, y = table[:, :-1], table[:, -1]
    x = x.astype(np.float32) / np.float32(16)  # pixel counts 0..16 -> [0, 1]
    y = y.astype(np.int64)
    tr, te = _random_split(len(x), DIGITS_TEST, seed)
    return DataSplits("digits", x[tr], x[te], y[tr], y[te], (8, 8), "bernoulli",
                      f"scikit-learn digits {len(tr)}/{len(te)}: held-out = first {len(te)} of "
                      f"np.random.default_rng({seed}).permutation({len(x)})")


# --- MNIST -------------------------------------------------------------------------------

def read_idx(path, magic):
    """Read a gzip-compressed IDX file of unsigned bytes as a NumPy uint8 array.

    IDX layout (big-endian): a 4-byte magic number (0, 0, type 0x08 = unsigned byte, number
    of dimensions), one 4-byte size per dimension, then the values. ``magic`` is the number
    expected (2051 for images, 2049 for labels); it and the file length are checked against
    the header. The array is read with ``np.frombuffer``: no Python loop over pixels.
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        raise CorruptDataError(f"{path} is not a complete gzip file ({err}): it is truncated or "
                               f"corrupted; delete it and download it again") from err
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        got = int.from_bytes(data[:4], "big") if len(data) >= 4 else "missing"
        raise CorruptDataError(f"{path}: IDX magic number is {got}, expected {magic} "
                               f"({IDX_IMAGES} = images, {IDX_LABELS} = labels)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataError(f"{path}: IDX header cut short ({len(data)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise CorruptDataError(f"{path}: the IDX header announces shape {shape} ({expected} bytes) "
                               f"but the file holds {len(data)} bytes: truncated or corrupted")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_mnist(images_path, labels_path):
    """Images as float32 (N, 784) in [0, 1] (pixel / 255, grey values kept) and int64 labels."""
    images = read_idx(images_path, IDX_IMAGES)
    labels = read_idx(labels_path, IDX_LABELS)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise CorruptDataError(f"{images_path} holds images of shape {images.shape} and "
                               f"{labels_path} {labels.shape[0]} labels: expected (N, 28, 28) "
                               f"and N")
    x = np.divide(images.reshape(len(images), -1), np.float32(255), dtype=np.float32)  # one pass
    return x, labels.astype(np.int64)


def _load_mnist(paths, seed):
    def pair(prefix):
        return (paths.get(f"{prefix}-images-idx3-ubyte.gz"),
                paths.get(f"{prefix}-labels-idx1-ubyte.gz"))

    x_test, y_test = read_mnist(*pair("t10k"))
    if all(pair("train")):
        x_train, y_train = read_mnist(*pair("train"))
        split = f"MNIST standard split {len(x_train)}/{len(x_test)}"
    else:
        tr, te = _random_split(len(x_test), MNIST_TEST_SPLIT_TEST, seed)
        x_train, y_train, x_test, y_test = x_test[tr], y_test[tr], x_test[te], y_test[te]
        split = (f"MNIST test file split {len(tr)}/{len(te)} (train images not available): "
                 f"held-out = first {len(te)} of "
                 f"np.random.default_rng({seed}).permutation({len(tr) + len(te)})")
    return DataSplits("mnist", x_train, x_test, y_train, y_test, (28, 28), "bernoulli", split)


# --- Frey Face ---------------------------------------------------------------------------

def read_frey(path):
    """Frey Face frames as uint8 (N, 560): ``ff`` is (560, N), one 28 x 20 image per column
    stored row after row (rows of 20 pixels), so a row of ``ff.T`` is one flattened image."""
    import scipy.io

    path = Path(path)
    try:
        mat = scipy.io.loadmat(path, variable_names=["ff"])
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as err:  # scipy raises several kinds for a damaged file
        raise CorruptDataError(f"{path} cannot be read as a MATLAB file ({type(err).__name__}: "
                               f"{err}): truncated or corrupted") from err
    ff = mat.get("ff")
    n_pixels = FREY_SHAPE[0] * FREY_SHAPE[1]
    if ff is None or ff.dtype != np.uint8 or ff.ndim != 2 or ff.shape[0] != n_pixels:
        what = "no variable 'ff'" if ff is None else f"'ff' is {ff.dtype} of shape {ff.shape}"
        raise CorruptDataError(f"{path}: {what}; expected uint8 of shape ({n_pixels}, N)")
    return np.ascontiguousarray(ff.T)


def _load_frey(path, split, seed):
    x = read_frey(path).astype(np.float32) / np.float32(256)  # as in the original VAE code
    n = len(x)
    if split == "contiguous":
        n_train = n - FREY_CONTIGUOUS_HELDOUT
        return DataSplits("frey", x[:n_train], x[n_train:], None, None, FREY_SHAPE, "gaussian",
                          f"Frey Face contiguous split {n_train}/{n - n_train}: the last "
                          f"{n - n_train} video frames held out")
    tr, te = _random_split(n, FREY_HELDOUT, seed)
    return DataSplits("frey", x[tr], x[te], None, None, FREY_SHAPE, "gaussian",
                      f"Frey Face random split {len(tr)}/{len(te)}: held-out = first {len(te)} "
                      f"of np.random.default_rng({seed}).permutation({n})")


# --- binarization and minibatches --------------------------------------------------------

def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def _bernoulli(x, rng):
    """One draw per pixel: 1 with probability x (u ~ U[0, 1) is below x exactly that often)."""
    u = rng.random(x.shape, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
    return (u < x).astype(x.dtype)


def binarize(x, rng):
    """Stochastic binarization: a 0/1 array of x's float dtype (float32 for the datasets here)
    with each pixel drawn from Bernoulli(x). ``x`` is a NumPy float array in [0, 1]."""
    _check_rng(rng)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a NumPy array, got {type(x).__name__}")
    in_unit_interval("x", float_array("x", x))
    return _bernoulli(x, rng)


def batches(x, batch_size, rng, binarization="none", labels=None, drop_last=False, fixed_seed=0):
    """Iterate once over ``x`` (one epoch) in minibatches, in a random order drawn from ``rng``.

    Each call draws a fresh permutation from ``rng``, so successive calls (epochs) differ and
    the whole sequence is reproduced by reseeding ``rng``. Yields ``x_batch`` or, when
    ``labels`` is given, ``(x_batch, labels_batch)``.

    ``binarization``: ``"none"`` yields the pixel values as they are; ``"dynamic"`` draws a
    fresh binary image per batch from ``rng`` (new samples every epoch); ``"fixed"`` draws
    once with ``np.random.default_rng(fixed_seed)``, the same binary images every epoch.
    ``drop_last`` leaves out the last, smaller batch.
    """
    x = float_array("x", x, ndim=2)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a NumPy array, got {type(x).__name__}")
    batch_size = positive_int("batch_size", batch_size)
    _check_rng(rng)
    choice("binarization", binarization, BINARIZATIONS)
    if not isinstance(drop_last, bool):
        raise TypeError(f"drop_last must be True or False, got {drop_last!r}")
    if labels is not None and (not isinstance(labels, np.ndarray) or labels.ndim != 1
                               or len(labels) != len(x)):
        raise ValueError(f"labels must be a 1-D NumPy array with one entry per row of x "
                         f"({len(x)}), got {getattr(labels, 'shape', type(labels).__name__)}")
    if len(x) == 0:
        raise ValueError("x must hold at least one example, got 0 rows")
    if drop_last and batch_size > len(x):
        raise ValueError(f"batch_size={batch_size} exceeds the {len(x)} examples and "
                         f"drop_last=True: no batch would be produced")
    if binarization != "none":
        in_unit_interval("x", x)
    if binarization == "fixed":
        if isinstance(fixed_seed, bool) or not isinstance(fixed_seed, numbers.Integral):
            raise TypeError(f"fixed_seed must be an integer, got {fixed_seed!r}")
        x = _bernoulli(x, np.random.default_rng(fixed_seed))
    order = rng.permutation(len(x))  # drawn now, so the call alone fixes the epoch's order
    return _iterate(x, order, batch_size, rng, binarization == "dynamic", labels, drop_last)


def _iterate(x, order, batch_size, rng, dynamic, labels, drop_last):
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        xb = _bernoulli(x[idx], rng) if dynamic else x[idx]
        yield xb if labels is None else (xb, labels[idx])
