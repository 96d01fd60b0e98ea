"""Small real data files and a loopback HTTP server for the dataset and download tests.

Everything here is built in temporary folders: the tests never use the internet.
"""
import gzip
import hashlib
import http.server
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from scratchvae.data import download

# The real data files, where the library itself looks for them: $SCRATCHVAE_DATA_DIR, else a
# shared/data folder beside the checkout's folder. Tests that need them skip without them.
SHARED_DATA = Path(os.environ.get(download.DATA_DIR_ENV)
                   or Path(__file__).resolve().parents[2] / "shared" / "data").expanduser()
needs_shared = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(),
                                  reason=f"no reference data folder at {SHARED_DATA} "
                                  f"(set {download.DATA_DIR_ENV})")


def idx_bytes(array, magic):
    """An IDX file (uncompressed) of uint8 ``array``: magic, one big-endian size per axis, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def write_gz(path, payload, level=6):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, compresslevel=level))
    return path


def mnist_like(n, seed):
    """``n`` uint8 images (n, 28, 28) with a few bright strokes, and labels 0..9."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    rows = rng.integers(4, 24, size=n)
    images[np.arange(n), rows, 4:24] = rng.integers(1, 256, size=(n, 20), dtype=np.uint8)
    return images, rng.integers(0, 10, size=n).astype(np.uint8)


def write_mnist(folder, n_test, n_train=0, seed=0):
    """MNIST-format files under ``folder/mnist``; returns {file name: (images or labels)}."""
    arrays = {}
    for prefix, n in (("t10k", n_test), ("train", n_train)):
        if n:
            images, labels = mnist_like(n, seed + n)
            write_gz(folder / "mnist" / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(images, 2051))
            write_gz(folder / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(labels, 2049))
            arrays[prefix] = (images, labels)
    return arrays


def spec_for(path, file):
    """``file`` (a registry entry) with the size and checksums of the bytes at ``path``."""
    data = Path(path).read_bytes()
    return download.DataFile(file.dataset, file.path, len(data),
                             sha256=hashlib.sha256(data).hexdigest(),
                             md5=hashlib.md5(data).hexdigest(), required=file.required)


def register(monkeypatch, name, folder):
    """Make the registry of dataset ``name`` publish the files found in ``folder``."""
    specs = tuple(spec_for(folder / f.path, f) if (folder / f.path).is_file() else f
                  for f in download.FILES[name])
    monkeypatch.setitem(download.FILES, name, specs)
    return specs


def closed_port_url():
    """A loopback URL on which nothing listens: connecting is refused, as when offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body, announced, stall = route
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) if announced is None else announced))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if stall:
            time.sleep(stall)

    def log_message(self, *args):  # keep test output clean
        pass


class Loopback:
    """An HTTP server on 127.0.0.1 (port chosen by the OS) serving bytes from memory.

    ``serve(path, body, announced=None, stall=0)``: answer GET ``path`` with ``body``,
    announcing ``announced`` bytes (more than sent = a truncated transfer) and then
    waiting ``stall`` seconds before closing (a stalled connection).
    """

    def __init__(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.server.routes, self.server.requests = {}, []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.server.requests

    def serve(self, path, body, announced=None, stall=0):
        self.server.routes[path] = (body, announced, stall)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")  # a proxy must never see loopback requests
    monkeypatch.setenv("NO_PROXY", "*")
    server = Loopback()
    yield server
    server.close()
