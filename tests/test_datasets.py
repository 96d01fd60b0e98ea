"""Datasets: file parsing, splits, binarization and minibatches.

Parsing is tested on small IDX and MATLAB files built here; the real MNIST and Frey Face
files are tested when the reference data folder sits beside the project.
"""
import gzip
import time

import numpy as np
import pytest
import scipy.io
from datafiles import (SHARED_DATA, idx_bytes, mnist_like, needs_shared, register, write_gz,
                       write_mnist)

from scratchvae.data.datasets import (BINARIZATIONS, CorruptDataError, DataSplits, MissingDataError,
                                 batches, binarize, default_data_dir, load_dataset, read_frey,
                                 read_idx, read_mnist)


# --- IDX files -----------------------------------------------------------------------------

def test_read_idx_returns_the_stored_array(tmp_path):
    images, labels = mnist_like(12, seed=1)
    ip = write_gz(tmp_path / "i.gz", idx_bytes(images, 2051))
    lp = write_gz(tmp_path / "l.gz", idx_bytes(labels, 2049))
    np.testing.assert_array_equal(read_idx(ip, 2051), images)
    np.testing.assert_array_equal(read_idx(lp, 2049), labels)
    x, y = read_mnist(ip, lp)
    assert x.dtype == np.float32 and x.shape == (12, 784) and y.dtype == np.int64
    np.testing.assert_array_equal(x, images.reshape(12, 784).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, labels)


def test_read_idx_checks_the_magic_number(tmp_path):
    _, labels = mnist_like(3, seed=2)
    lp = write_gz(tmp_path / "labels.gz", idx_bytes(labels, 2049))
    with pytest.raises(CorruptDataError, match=r"magic number is 2049, expected 2051"):
        read_idx(lp, 2051)
    empty = write_gz(tmp_path / "empty.gz", b"")
    with pytest.raises(CorruptDataError, match="magic number is missing"):
        read_idx(empty, 2049)


@pytest.mark.parametrize("cut", [1, 100, 784])
def test_read_idx_checks_the_size_against_the_header(tmp_path, cut):
    images, _ = mnist_like(4, seed=3)
    p = write_gz(tmp_path / "short.gz", idx_bytes(images, 2051)[:-cut])
    with pytest.raises(CorruptDataError, match=r"announces shape \(4, 28, 28\) \(3152 bytes\)"):
        read_idx(p, 2051)
    long = write_gz(tmp_path / "long.gz", idx_bytes(images, 2051) + b"\0")
    with pytest.raises(CorruptDataError, match="3153 bytes"):
        read_idx(long, 2051)
    header_only = write_gz(tmp_path / "header.gz", idx_bytes(images, 2051)[:10])
    with pytest.raises(CorruptDataError, match="header cut short"):
        read_idx(header_only, 2051)


def test_read_idx_rejects_truncated_corrupted_and_non_gzip_files(tmp_path):
    images, _ = mnist_like(50, seed=4)
    good = gzip.compress(idx_bytes(images, 2051))
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    (tmp_path / "flipped.gz").write_bytes(bytes(flipped))
    (tmp_path / "plain").write_bytes(idx_bytes(images, 2051))
    for name in ("cut.gz", "flipped.gz", "plain"):
        with pytest.raises(CorruptDataError, match="not a complete gzip file") as err:
            read_idx(tmp_path / name, 2051)
        assert str(tmp_path / name) in str(err.value)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.gz", 2051)


def test_read_mnist_checks_that_images_and_labels_match(tmp_path):
    images, labels = mnist_like(5, seed=5)
    ip = write_gz(tmp_path / "i.gz", idx_bytes(images, 2051))
    lp = write_gz(tmp_path / "l.gz", idx_bytes(labels[:4], 2049))
    with pytest.raises(CorruptDataError, match="4 labels"):
        read_mnist(ip, lp)
    odd = write_gz(tmp_path / "odd.gz", idx_bytes(np.zeros((5, 28, 20)), 2051))
    with pytest.raises(CorruptDataError, match=r"\(5, 28, 20\)"):
        read_mnist(odd, write_gz(tmp_path / "l5.gz", idx_bytes(labels, 2049)))


# --- Frey Face files -------------------------------------------------------------------------

def test_read_frey_puts_one_28_by_20_image_per_row(tmp_path):
    n = 7
    images = np.random.default_rng(6).integers(0, 256, size=(n, 28, 20), dtype=np.uint8)
    ff = images.reshape(n, 560).T  # MATLAB layout: one image per column, row after row
    scipy.io.savemat(tmp_path / "f.mat", {"ff": ff})
    x = read_frey(tmp_path / "f.mat")
    assert x.shape == (n, 560) and x.dtype == np.uint8 and x.flags.c_contiguous
    np.testing.assert_array_equal(x.reshape(n, 28, 20), images)


def test_read_frey_rejects_bad_files(tmp_path):
    scipy.io.savemat(tmp_path / "other.mat", {"faces": np.zeros((560, 3), np.uint8)})
    with pytest.raises(CorruptDataError, match="no variable 'ff'"):
        read_frey(tmp_path / "other.mat")
    scipy.io.savemat(tmp_path / "float.mat", {"ff": np.zeros((560, 3))})
    with pytest.raises(CorruptDataError, match="'ff' is float64 of shape"):
        read_frey(tmp_path / "float.mat")
    scipy.io.savemat(tmp_path / "shape.mat", {"ff": np.zeros((28, 20), np.uint8)})
    with pytest.raises(CorruptDataError, match=r"expected uint8 of shape \(560, N\)"):
        read_frey(tmp_path / "shape.mat")
    scipy.io.savemat(tmp_path / "good.mat", {"ff": np.zeros((560, 300), np.uint8)})
    data = (tmp_path / "good.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.mat").write_bytes(b"\x00" * 300)
    for name in ("cut.mat", "junk.mat"):
        with pytest.raises(CorruptDataError, match="cannot be read as a MATLAB file") as err:
            read_frey(tmp_path / name)
        assert str(tmp_path / name) in str(err.value)


# --- load_dataset ----------------------------------------------------------------------------

def test_digits_need_no_download(tmp_path):
    d = load_dataset("digits", data_dir=tmp_path / "nowhere", download=False)
    assert isinstance(d, DataSplits)
    assert (d.train.shape, d.test.shape, d.image_shape) == ((1500, 64), (297, 64), (8, 8))
    assert d.train.dtype == np.float32 and d.likelihood == "bernoulli"
    assert d.train.min() == 0 and d.train.max() == 1  # 16 / 16
    assert set(np.unique(d.train * 16)) <= set(range(17))
    assert set(d.train_labels) == set(range(10)) and d.train_labels.dtype == np.int64
    assert not (tmp_path / "nowhere").exists()
    again = load_dataset("digits", seed=0)
    np.testing.assert_array_equal(again.test, d.test)
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(other.test, d.test)
    # a split, not a resampling: both parts together are the whole dataset, once each
    from sklearn.datasets import load_digits
    whole = load_digits().data.astype(np.float32) / 16
    both = np.concatenate([other.train, other.test])
    assert len(both) == len(whole)
    np.testing.assert_array_equal(np.unique(both, axis=0), np.unique(whole, axis=0))


def test_digits_are_scikit_learns_rows_and_labels_in_its_order():
    """The digits are read from scikit-learn's file without importing it: the same pixels and
    labels as ``sklearn.datasets.load_digits``, row for row, in the documented split."""
    from sklearn.datasets import load_digits

    from scratchvae.data.datasets import DIGITS_TEST, _random_split
    oracle = load_digits()
    d = load_dataset("digits", seed=3)
    tr, te = _random_split(len(oracle.data), DIGITS_TEST, 3)
    np.testing.assert_array_equal(d.train, oracle.data[tr].astype(np.float32) / np.float32(16))
    np.testing.assert_array_equal(d.test, oracle.data[te].astype(np.float32) / np.float32(16))
    np.testing.assert_array_equal(d.train_labels, oracle.target[tr])
    np.testing.assert_array_equal(d.test_labels, oracle.target[te])
    assert d.train.dtype == np.float32 and d.train_labels.dtype == np.int64


def test_mnist_standard_split_when_the_train_files_exist(tmp_path, monkeypatch):
    arrays = write_mnist(tmp_path, n_test=20, n_train=30)
    register(monkeypatch, "mnist", tmp_path)
    d = load_dataset("mnist", tmp_path, download=False)
    assert d.split == "MNIST standard split 30/20" and d.image_shape == (28, 28)
    np.testing.assert_array_equal(d.train, arrays["train"][0].reshape(30, 784) / np.float32(255))
    np.testing.assert_array_equal(d.test_labels, arrays["t10k"][1])


def test_mnist_test_file_split_without_the_train_images(tmp_path, monkeypatch):
    images, labels = write_mnist(tmp_path, n_test=1200)["t10k"]
    register(monkeypatch, "mnist", tmp_path)
    d = load_dataset("mnist", tmp_path, download=False)
    assert d.train.shape == (200, 784) and d.test.shape == (1000, 784)
    assert d.split == ("MNIST test file split 200/1000 (train images not available): held-out "
                       "= first 1000 of np.random.default_rng(0).permutation(1200)")
    held_out = np.sort(np.random.default_rng(0).permutation(1200)[:1000])
    train = np.setdiff1d(np.arange(1200), held_out)
    np.testing.assert_array_equal(d.test * 255, images[held_out].reshape(1000, 784))
    np.testing.assert_array_equal(d.train_labels, labels[train])
    assert not np.array_equal(load_dataset("mnist", tmp_path, download=False, seed=3).test_labels,
                              d.test_labels)


def test_mnist_missing_files_without_download(tmp_path):
    with pytest.raises(MissingDataError) as err:
        load_dataset("mnist", tmp_path, download=False)
    message = str(err.value)
    assert "download=False" in message and "t10k-images-idx3-ubyte.gz" in message
    assert "--data-dir" in message and "SCRATCHVAE_DATA_DIR" in message
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_file_is_named_even_when_its_checksum_is_not_the_problem(tmp_path,
                                                                         monkeypatch):
    write_mnist(tmp_path, n_test=20)
    p = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_gz(p, idx_bytes(np.zeros(19, np.uint8), 2049))  # 19 labels for 20 images
    register(monkeypatch, "mnist", tmp_path)  # ... and published as such
    with pytest.raises(CorruptDataError, match="19 labels"):
        load_dataset("mnist", tmp_path, download=False)


def test_a_file_that_differs_from_the_published_one_is_refused(tmp_path, monkeypatch):
    write_mnist(tmp_path, n_test=20)
    register(monkeypatch, "mnist", tmp_path)
    p = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    before = p.read_bytes()
    write_gz(p, gzip.decompress(before), level=1)  # same images, other bytes
    after = p.read_bytes()
    with pytest.raises(CorruptDataError) as err:
        load_dataset("mnist", tmp_path, download=False)
    assert str(p) in str(err.value) and "left untouched" in str(err.value)
    assert p.read_bytes() == after


def _write_frey(tmp_path, monkeypatch, n=1965):
    ff = np.random.default_rng(8).integers(0, 256, size=(560, n), dtype=np.uint8)
    (tmp_path / "frey").mkdir()
    scipy.io.savemat(tmp_path / "frey" / "frey_rawface.mat", {"ff": ff})
    register(monkeypatch, "frey", tmp_path)
    return ff.T


def test_frey_default_split_is_the_papers_random_1600_365(tmp_path, monkeypatch):
    frames = _write_frey(tmp_path, monkeypatch)
    d = load_dataset("frey", tmp_path, download=False)
    assert (d.train.shape, d.test.shape) == ((1600, 560), (365, 560))
    assert d.train_labels is None and d.test_labels is None
    assert d.image_shape == (28, 20) and d.likelihood == "gaussian"
    held_out = np.sort(np.random.default_rng(0).permutation(1965)[:365])   # the documented rule
    np.testing.assert_array_equal(d.test * 256, frames[held_out])         # pixels / 256, exactly
    np.testing.assert_array_equal(d.train * 256, np.delete(frames, held_out, axis=0))
    assert d.split == ("Frey Face random split 1600/365: held-out = first 365 of "
                       "np.random.default_rng(0).permutation(1965)")
    assert "train=<float32 array (1600, 560)>" in repr(d)  # a short repr, not the pixels
    # the held-out frames come from the whole video, not from one stretch of it
    assert held_out.min() < 100 and held_out.max() > 1865
    other = load_dataset("frey", tmp_path, download=False, seed=1)
    assert other.test.shape == (365, 560) and not np.array_equal(other.test, d.test)
    assert "default_rng(1)" in other.split


def test_frey_contiguous_split_holds_out_the_last_465_frames(tmp_path, monkeypatch):
    frames = _write_frey(tmp_path, monkeypatch)
    d = load_dataset("frey", tmp_path, download=False, split="contiguous")
    assert (d.train.shape, d.test.shape) == ((1500, 560), (465, 560))
    np.testing.assert_array_equal(d.train * 256, frames[:1500])
    np.testing.assert_array_equal(d.test * 256, frames[1500:])
    assert d.split == "Frey Face contiguous split 1500/465: the last 465 video frames held out"


def test_default_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("SCRATCHVAE_DATA_DIR", raising=False)
    assert str(default_data_dir()) == "data"
    monkeypatch.setenv("SCRATCHVAE_DATA_DIR", "")
    assert str(default_data_dir()) == "data"
    monkeypatch.setenv("SCRATCHVAE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    write_mnist(tmp_path, n_test=30, n_train=10)
    register(monkeypatch, "mnist", tmp_path)
    assert load_dataset("mnist", download=False).split == "MNIST standard split 10/30"


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(name="cifar"), ValueError, "name must be one of"),
    (dict(name="mnist", download="no"), TypeError, "download must be True or False"),
    (dict(name="digits", seed=-1), ValueError, "seed must be a non-negative integer"),
    (dict(name="digits", seed=1.5), ValueError, "seed must be a non-negative integer"),
    (dict(name="digits", seed=True), ValueError, "seed must be a non-negative integer"),
    (dict(name="mnist", data_dir=3), TypeError, "data_dir must be a path"),
    (dict(name="frey", split="shuffled"), ValueError, "split must be one of"),
    (dict(name="frey", split=None), ValueError, "split must be one of"),
    (dict(name="mnist", split="contiguous"), ValueError, "split='contiguous' applies to frey only"),
    (dict(name="frey", seed="0"), ValueError, "seed must be a non-negative integer"),
])
def test_load_dataset_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        load_dataset(**kwargs)


# --- the real files ------------------------------------------------------------------------

@needs_shared
def test_real_mnist_test_file_split():
    t = time.perf_counter()
    d = load_dataset("mnist", SHARED_DATA, download=False)
    seconds = time.perf_counter() - t
    print(f"\nMNIST test file (10,000 images): loaded and verified in {seconds:.3f} s")
    assert (d.train.shape, d.test.shape) == ((9000, 784), (1000, 784))
    assert d.train.dtype == d.test.dtype == np.float32
    assert 0 == d.train.min() and d.train.max() == 1 and 0 == d.test.min()
    for labels in (d.train_labels, d.test_labels):
        assert set(np.unique(labels)) == set(range(10))
    # every digit is represented in the held-out part about as often as in the file
    counts = np.bincount(d.test_labels, minlength=10)
    assert counts.min() > 70 and counts.max() < 130, counts
    assert d.split.startswith("MNIST test file split 9000/1000")


@needs_shared
def test_real_frey_face():
    d = load_dataset("frey", SHARED_DATA, download=False)
    assert (d.train.shape, d.test.shape) == ((1600, 560), (365, 560))
    d = load_dataset("frey", SHARED_DATA, download=False, split="contiguous")
    assert (d.train.shape, d.test.shape) == ((1500, 560), (465, 560))
    assert d.image_shape == (28, 20)
    x = np.concatenate([d.train, d.test])                # the video in its order
    assert x.min() >= 0 and x.max() <= 255 / 256 and x.dtype == np.float32
    # upright faces: consecutive frames of one video are close, unrelated rows are not
    step = np.abs(np.diff(x, axis=0)).mean()
    shuffled = np.abs(x - x[np.random.default_rng(0).permutation(len(x))]).mean()
    assert step < 0.7 * shuffled


@pytest.mark.slow
def test_seventy_thousand_images_load(tmp_path, monkeypatch):
    """The full MNIST's size (60,000 + 10,000 images) loads; the time is printed (run with -s),
    not asserted: speed belongs to benchmarks, and a shared machine would make it flaky."""
    images, labels = mnist_like(10_000, seed=9)
    if (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        images = read_idx(SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz", 2051)
    for prefix, reps in (("t10k", 1), ("train", 6)):
        write_gz(tmp_path / "mnist" / f"{prefix}-images-idx3-ubyte.gz",
                 idx_bytes(np.concatenate([images] * reps), 2051), level=1)
        write_gz(tmp_path / "mnist" / f"{prefix}-labels-idx1-ubyte.gz",
                 idx_bytes(np.concatenate([labels] * reps), 2049))
    register(monkeypatch, "mnist", tmp_path)
    t = time.perf_counter()
    d = load_dataset("mnist", tmp_path, download=False)
    seconds = time.perf_counter() - t
    print(f"\n70,000 MNIST-sized images: loaded and verified in {seconds:.3f} s")
    assert d.train.shape == (60_000, 784) and d.test.shape == (10_000, 784)


# --- binarization --------------------------------------------------------------------------

def test_binarize_draws_bernoulli_pixels():
    rng = np.random.default_rng(0)
    x = np.full((200, 500), 0.3, np.float32)
    x[:, :10], x[:, 10:20] = 0, 1
    b = binarize(x, rng)
    assert b.dtype == np.float32 and b.shape == x.shape
    assert set(np.unique(b)) == {0.0, 1.0}
    assert (b[:, :10] == 0).all() and (b[:, 10:20] == 1).all()
    # mean of 96,000 Bernoulli(0.3) draws: standard error 0.0015
    assert abs(b[:, 20:].mean() - 0.3) < 0.01
    np.testing.assert_array_equal(binarize(x, np.random.default_rng(0)), b)
    assert binarize(x.astype(np.float64), rng).dtype == np.float64


@pytest.mark.parametrize("x, rng, error, words", [
    (np.zeros((2, 3), np.float32), 0, TypeError, "rng must be a numpy.random.Generator"),
    (np.zeros((2, 3), np.float32), np.random.RandomState(0), TypeError, "rng must be"),
    ([[0.5]], np.random.default_rng(0), TypeError, "x must be a NumPy array"),
    (np.zeros((2, 3), np.uint8), np.random.default_rng(0), TypeError, "float dtype"),
    (np.full((2, 3), 1.5), np.random.default_rng(0), ValueError, r"must lie in \[0, 1\]"),
    (np.full((2, 3), np.nan), np.random.default_rng(0), ValueError, "NaN"),
])
def test_binarize_rejects_bad_arguments(x, rng, error, words):
    with pytest.raises(error, match=words):
        binarize(x, rng)


# --- minibatches ---------------------------------------------------------------------------

def indexed(n=103, d=6, seed=0):
    """Rows in [0, 1] and labels that are the row numbers, to follow each example."""
    return np.random.default_rng(seed).random((n, d)).astype(np.float32), np.arange(n)


def test_an_epoch_visits_every_example_once_in_a_random_order():
    x, idx = indexed()
    out = list(batches(x, 10, np.random.default_rng(1), labels=idx))
    assert [len(xb) for xb, _ in out] == [10] * 10 + [3]
    order = np.concatenate([yb for _, yb in out])
    assert sorted(order) == list(range(103)) and not np.array_equal(order, idx)
    for xb, yb in out:
        np.testing.assert_array_equal(xb, x[yb])  # rows stay with their labels
    assert [len(xb) for xb in batches(x, 10, np.random.default_rng(1), drop_last=True)] == [10] * 10
    assert [len(xb) for xb in batches(x, 200, np.random.default_rng(1))] == [103]


def test_shuffling_is_seeded_and_changes_every_epoch():
    x, idx = indexed()

    def two_epochs(seed):
        rng = np.random.default_rng(seed)
        return [np.concatenate([y for _, y in batches(x, 16, rng, labels=idx)]) for _ in range(2)]

    a, b = two_epochs(5), two_epochs(5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(two_epochs(6)[0], a[0])


def per_example(x, idx, rng, binarization, **kwargs):
    """One epoch's batches put back in row order."""
    out = np.empty_like(x)
    for xb, yb in batches(x, 16, rng, binarization=binarization, labels=idx, **kwargs):
        out[yb] = xb
    return out


def test_dynamic_binarization_resamples_every_epoch():
    x, idx = indexed()
    rng = np.random.default_rng(2)
    e1, e2 = per_example(x, idx, rng, "dynamic"), per_example(x, idx, rng, "dynamic")
    assert set(np.unique(e1)) == {0.0, 1.0} and e1.dtype == np.float32
    assert (e1 != e2).mean() > 0.2  # 2 x(1 - x) = 1/3 on average for uniform x
    np.testing.assert_array_equal(per_example(x, idx, np.random.default_rng(2), "dynamic"), e1)


def test_fixed_binarization_is_the_same_every_epoch():
    x, idx = indexed()
    rng = np.random.default_rng(3)
    e1, e2 = per_example(x, idx, rng, "fixed"), per_example(x, idx, rng, "fixed")
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(e1, binarize(x, np.random.default_rng(0)))
    assert not np.array_equal(per_example(x, idx, rng, "fixed", fixed_seed=1), e1)
    # already binary data passes through unchanged
    np.testing.assert_array_equal(per_example(e1, idx, rng, "fixed", fixed_seed=9), e1)


def test_no_binarization_keeps_grey_values():
    x, idx = indexed()
    np.testing.assert_array_equal(per_example(x, idx, np.random.default_rng(4), "none"), x)
    assert BINARIZATIONS == ("none", "fixed", "dynamic")


@pytest.mark.parametrize("change, error, words", [
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
    (dict(batch_size=-3), ValueError, "batch_size must be a positive integer"),
    (dict(batch_size=2.0), TypeError, "batch_size must be a positive integer"),
    (dict(batch_size=True), TypeError, "batch_size must be a positive integer"),
    (dict(rng=7), TypeError, "rng must be a numpy.random.Generator"),
    (dict(binarization="static"), ValueError, "binarization must be one of"),
    (dict(x=np.zeros(10, np.float32)), ValueError, "x must be 2-D"),
    (dict(x=np.zeros((10, 2), np.int64)), TypeError, "float dtype"),
    (dict(x=[[0.0, 1.0]]), TypeError, "x must be a NumPy or CuPy array"),
    (dict(x=np.zeros((0, 4), np.float32)), ValueError, "at least one example"),
    (dict(x=np.full((10, 2), np.inf, np.float32)), ValueError, "NaN or Inf"),
    (dict(x=np.full((10, 2), 2, np.float32), binarization="dynamic"), ValueError, r"\[0, 1\]"),
    (dict(x=np.full((10, 2), -1, np.float32), binarization="fixed"), ValueError, r"\[0, 1\]"),
    (dict(labels=np.arange(9)), ValueError, "one entry per row of x"),
    (dict(labels=np.zeros((10, 1))), ValueError, "labels must be a 1-D NumPy array"),
    (dict(labels=list(range(10))), ValueError, "labels must be a 1-D NumPy array"),
    (dict(drop_last="yes"), TypeError, "drop_last must be True or False"),
    (dict(batch_size=11, drop_last=True), ValueError, "no batch would be produced"),
    (dict(binarization="fixed", fixed_seed="a"), TypeError, "fixed_seed must be an integer"),
])
def test_batches_rejects_bad_arguments_at_the_call_without_touching_rng(change, error, words):
    rng = np.random.default_rng(0)
    args = dict(x=np.full((10, 2), 0.5, np.float32), batch_size=4, rng=rng) | change
    state = rng.bit_generator.state
    with pytest.raises(error, match=words):
        batches(**args)  # raised by the call itself, before any batch is asked for
    assert rng.bit_generator.state == state


def test_grey_values_outside_unit_interval_are_fine_without_binarization():
    x = np.full((10, 2), 3.0, np.float32)  # e.g. standardized features
    assert sum(len(b) for b in batches(x, 4, np.random.default_rng(0))) == 10

