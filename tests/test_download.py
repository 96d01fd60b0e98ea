"""Downloads: mirrors in order, checksums, atomic placement, clear messages offline.

Files are served by a loopback HTTP server from memory; no test touches the internet.
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datafiles import loopback  # noqa: F401  (a fixture)
from datafiles import SHARED_DATA, closed_port_url, needs_shared, register, write_mnist

from scratchvae.data import download
from scratchvae.data.datasets import load_dataset
from scratchvae.data.download import (CorruptDataError, DataDirError, DataFile, MissingDataError,
                                 download_file, fetch, verify)

PAYLOAD = np.random.default_rng(7).integers(0, 256, size=50_000, dtype=np.uint8).tobytes()


def spec(payload=PAYLOAD, path="mnist/fake-idx.gz", sha256=True):
    return DataFile("mnist", path, len(payload),
                    sha256=hashlib.sha256(payload).hexdigest() if sha256 else None,
                    md5=hashlib.md5(payload).hexdigest())


def leftovers(folder):
    """Anything in ``folder`` besides the final files: temporary downloads must be gone."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def corrupted(payload):
    b = bytearray(payload)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


def test_first_good_mirror_wins_after_missing_and_corrupt_ones(loopback, tmp_path):
    f = spec()
    loopback.serve("/b/fake-idx.gz", corrupted(PAYLOAD))
    loopback.serve("/c/fake-idx.gz", PAYLOAD)
    loopback.serve("/d/fake-idx.gz", PAYLOAD)
    mirrors = [closed_port_url(), loopback.url + "/a", loopback.url + "/b/", loopback.url + "/c",
               loopback.url + "/d"]
    path = download_file(f, tmp_path, mirrors=mirrors, progress=False)
    assert path == tmp_path / "mnist" / "fake-idx.gz"
    assert path.read_bytes() == PAYLOAD
    # the closed port, the 404 and the corrupt copy were tried in order; /d was never needed
    assert loopback.requests == ["/a/fake-idx.gz", "/b/fake-idx.gz", "/c/fake-idx.gz"]
    assert leftovers(path.parent) == []


def test_md5_is_checked_when_no_sha256_is_published(loopback, tmp_path):
    f = spec(sha256=False)
    loopback.serve("/bad/fake-idx.gz", corrupted(PAYLOAD))
    loopback.serve("/good/fake-idx.gz", PAYLOAD)
    with pytest.raises(MissingDataError, match="md5"):
        download_file(f, tmp_path, mirrors=[loopback.url + "/bad"], progress=False)
    path = download_file(f, tmp_path, mirrors=[loopback.url + "/bad", loopback.url + "/good"],
                         progress=False)
    assert path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "short-but-announced-short", "longer"])
def test_a_wrong_download_leaves_no_file(loopback, tmp_path, kind):
    body, announced = {"corrupt": (corrupted(PAYLOAD), None),
                       "truncated": (PAYLOAD[:20_000], len(PAYLOAD)),
                       "short-but-announced-short": (PAYLOAD[:20_000], None),
                       "longer": (PAYLOAD + b"extra", None)}[kind]
    loopback.serve("/m/fake-idx.gz", body, announced=announced)
    with pytest.raises(MissingDataError) as err:
        download_file(spec(), tmp_path, mirrors=[loopback.url + "/m"], progress=False)
    message = str(err.value)
    assert loopback.url + "/m/fake-idx.gz" in message
    expect = {"corrupt": "sha256", "truncated": "closed after 20000 of 50000 bytes",
              "short-but-announced-short": "truncated: 20000 bytes instead of 50000",
              "longer": "50005 bytes, expected 50000"}[kind]
    assert expect in message
    folder = tmp_path / "mnist"
    assert not (folder / "fake-idx.gz").exists()
    assert leftovers(folder) == []


def test_a_stalled_connection_times_out_and_leaves_no_file(loopback, tmp_path):
    loopback.serve("/m/fake-idx.gz", PAYLOAD[:1000], announced=len(PAYLOAD), stall=3)
    with pytest.raises(MissingDataError, match="timed out"):
        download_file(spec(), tmp_path, mirrors=[loopback.url + "/m"], timeout=0.3, progress=False)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_offline_message_says_which_files_to_put_where(tmp_path):
    with pytest.raises(MissingDataError) as err:
        download_file(spec(), tmp_path, mirrors=[closed_port_url(), closed_port_url()],
                      progress=False)
    message = str(err.value)
    assert "refused" in message.lower()
    assert str(tmp_path.resolve()) in message and "mnist/fake-idx.gz" in message
    assert "--data-dir" in message and "SCRATCHVAE_DATA_DIR" in message
    assert leftovers(tmp_path / "mnist") == []


def test_an_unwritable_data_directory_is_named(tmp_path, loopback, monkeypatch):
    loopback.serve("/m/fake-idx.gz", PAYLOAD)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataDirError) as err:
        download_file(spec(), blocker / "data", mirrors=[loopback.url + "/m"], progress=False)
    assert str(blocker / "data" / "mnist") in str(err.value)
    assert "--data-dir" in str(err.value)
    monkeypatch.setitem(download.MIRRORS, "frey", (loopback.url + "/m",))
    with pytest.raises(DataDirError, match="cannot write into the data folder"):
        load_dataset("frey", blocker / "data")
    assert loopback.requests == []  # nothing fetched that could not be stored


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_data_directory_is_named(tmp_path, loopback):
    loopback.serve("/m/fake-idx.gz", PAYLOAD)
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist").chmod(0o500)
    try:
        with pytest.raises(DataDirError, match="cannot write"):
            download_file(spec(), tmp_path, mirrors=[loopback.url + "/m"], progress=False)
    finally:
        (tmp_path / "mnist").chmod(0o700)


def test_fetch_downloads_missing_files_and_never_overwrites_a_bad_one(loopback, tmp_path,
                                                                     monkeypatch):
    served = tmp_path / "served"
    write_mnist(served, n_test=30, n_train=40)
    specs = register(monkeypatch, "mnist", served)
    for f in specs:
        loopback.serve("/mnist/" + f.name, (served / f.path).read_bytes())
    mirrors = [loopback.url + "/mnist"]
    data = tmp_path / "data"
    # one file already present and right, one present and damaged, two missing
    (data / "mnist").mkdir(parents=True)
    good, bad = specs[2], specs[3]
    (data / good.path).write_bytes((served / good.path).read_bytes())
    damaged = (served / bad.path).read_bytes()[:-10]
    (data / bad.path).write_bytes(damaged)

    statuses = fetch("mnist", data, mirrors=mirrors, progress=False)
    by_name = {s.file.name: s for s in statuses}
    assert [s.status for s in statuses] == ["downloaded", "downloaded", "ok", "corrupt"]
    assert by_name[bad.name].ok is False and by_name[good.name].ok
    assert "left untouched" in by_name[bad.name].detail and "truncated" in by_name[bad.name].detail
    assert (data / bad.path).read_bytes() == damaged
    assert sorted(loopback.requests) == sorted("/mnist/" + f.name for f in specs[:2])
    for f in specs[:3]:
        assert (data / f.path).read_bytes() == (served / f.path).read_bytes()
    assert str(by_name[bad.name]).startswith("   corrupt")

    # verify reads only: the same picture, nothing fetched
    loopback.requests.clear()
    assert [s.status for s in verify("mnist", data)] == ["ok", "ok", "ok", "corrupt"]
    assert loopback.requests == []


def test_fetch_reports_failures_per_file_offline(tmp_path, monkeypatch):
    statuses = fetch("frey", tmp_path, mirrors=[closed_port_url()], progress=False)
    assert [s.status for s in statuses] == ["failed"]
    assert "frey/frey_rawface.mat" in statuses[0].detail
    assert not (tmp_path / "frey" / "frey_rawface.mat").exists()
    assert fetch("digits", tmp_path) == []  # embedded in scikit-learn: nothing to fetch


def test_load_dataset_downloads_on_first_use(loopback, tmp_path, monkeypatch):
    served = tmp_path / "served"
    arrays = write_mnist(served, n_test=1100, n_train=300)
    specs = register(monkeypatch, "mnist", served)
    for f in specs:
        loopback.serve("/mnist/" + f.name, (served / f.path).read_bytes())
    monkeypatch.setitem(download.MIRRORS, "mnist", (closed_port_url(), loopback.url + "/mnist"))
    data = load_dataset("mnist", tmp_path / "data")
    assert data.split == "MNIST standard split 300/1100"
    np.testing.assert_array_equal(data.train * 255, arrays["train"][0].reshape(300, -1))
    np.testing.assert_array_equal(data.test_labels, arrays["t10k"][1])
    assert len(loopback.requests) == 4
    # second use: everything is local, nothing is downloaded again
    load_dataset("mnist", tmp_path / "data")
    assert len(loopback.requests) == 4


def test_load_dataset_falls_back_to_the_test_split_when_train_files_fail(loopback, tmp_path,
                                                                         monkeypatch):
    served = tmp_path / "served"
    write_mnist(served, n_test=1100, n_train=300)
    specs = register(monkeypatch, "mnist", served)
    for f in specs:
        if f.required:  # the mirror lacks the train files
            loopback.serve("/mnist/" + f.name, (served / f.path).read_bytes())
    monkeypatch.setitem(download.MIRRORS, "mnist", (loopback.url + "/mnist",))
    with pytest.warns(RuntimeWarning, match="train-images-idx3-ubyte.gz: HTTP 404 Not Found"):
        data = load_dataset("mnist", tmp_path / "data")
    assert data.train.shape == (100, 784) and data.test.shape == (1000, 784)
    assert data.split.startswith("MNIST test file split 100/1000")


def test_load_dataset_offline_names_every_missing_file(tmp_path, monkeypatch):
    monkeypatch.setitem(download.MIRRORS, "mnist", (closed_port_url(),))
    with pytest.raises(MissingDataError) as err:
        load_dataset("mnist", tmp_path)
    message = str(err.value)
    for f in download.FILES["mnist"]:
        assert f.path in message
    assert "--data-dir" in message and "SCRATCHVAE_DATA_DIR" in message and "refused" in message
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_present_bad_file_is_reported_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setitem(download.MIRRORS, "frey", (closed_port_url(),))
    path = tmp_path / "frey" / "frey_rawface.mat"
    path.parent.mkdir()
    path.write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
    with pytest.raises(CorruptDataError) as err:
        load_dataset("frey", tmp_path)
    assert str(path) in str(err.value) and "delete it" in str(err.value)
    assert path.read_bytes() == b"MATLAB 5.0 MAT-file, but cut short"


@needs_shared
def test_the_reference_files_match_the_published_checksums():
    statuses = {s.file.name: s.status for s in verify("mnist", SHARED_DATA) + verify("frey",
                                                                                     SHARED_DATA)}
    expected = {f.name: "ok" for f in download.FILES["mnist"] + download.FILES["frey"]
                if (SHARED_DATA / f.path).is_file()}
    assert len(expected) >= 4  # the test files, train labels and Frey Face
    assert {k: v for k, v in statuses.items() if k in expected} == expected
    # sha256 and md5 from the registry agree with each other on these files
    for f in download.FILES["mnist"] + download.FILES["frey"]:
        path = SHARED_DATA / f.path
        if path.is_file():
            assert download.file_digest(path, "md5") == f.md5
            assert path.stat().st_size == f.size


def test_registry_urls_are_one_per_mirror():
    f = download.FILES["mnist"][2]
    urls = download.urls_for(f)
    assert len(urls) == len(download.MIRRORS["mnist"]) >= 2
    assert all(u.endswith("/t10k-images-idx3-ubyte.gz") and "//" not in u.split("://")[1]
               for u in urls)
    assert download.urls_for(f, ["http://x/a/", "http://x/b"]) == (
        "http://x/a/t10k-images-idx3-ubyte.gz", "http://x/b/t10k-images-idx3-ubyte.gz")


def test_the_reference_data_folder_follows_scratchvae_data_dir(tmp_path):
    """The tests look for the real data files where the library does: $SCRATCHVAE_DATA_DIR."""
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)]),
           download.DATA_DIR_ENV: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", "import datafiles; print(datafiles.SHARED_DATA)"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path)
