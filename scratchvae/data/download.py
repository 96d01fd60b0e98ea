"""Data files: where they live, where they come from, and how they are checked.

Every file has a path inside the data directory, the checksum published for it
and a list of mirrors. A download is streamed into a temporary file beside its
final place, checked, and only then moved into place with ``os.replace`` (an
atomic rename): a failed, interrupted or wrong download never leaves a partial
or bad file where a loader would read it. A file that is already there but does
not match its checksum is never overwritten: the error names it and says what
to do.

Layout of the data directory (``data/`` by default, see ``default_data_dir``)::

    mnist/train-images-idx3-ubyte.gz   mnist/train-labels-idx1-ubyte.gz
    mnist/t10k-images-idx3-ubyte.gz    mnist/t10k-labels-idx1-ubyte.gz
    frey/frey_rawface.mat
"""
import hashlib
import http.client
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..validation import choice

DATA_DIR_ENV = "SCRATCHVAE_DATA_DIR"
DATASETS = ("digits", "mnist", "frey")
TIMEOUT_S = 30  # per connection attempt; an offline machine fails at once (no DNS)
_CHUNK = 1 << 20


class DataError(RuntimeError):
    """A dataset cannot be used; the message says which file and what to do."""


class MissingDataError(DataError):
    """Files are missing and could not be downloaded (offline, or ``download=False``).

    ``failures`` holds one line per mirror tried: the URL and why it failed.
    """

    def __init__(self, message, failures=()):
        super().__init__(message)
        self.failures = list(failures)


class CorruptDataError(DataError):
    """A file is present but truncated, corrupted or not the published one."""


class DataDirError(DataError):
    """The data directory cannot be created or written to."""


@dataclass(frozen=True)
class DataFile:
    """One published file: its place in the data directory and its checksum.

    ``sha256`` is checked when known, otherwise ``md5`` (the digest the usual
    loaders publish); ``size`` in bytes makes a truncated file easy to name.
    """
    dataset: str
    path: str  # relative to the data directory, with "/" separators
    size: int
    sha256: str = None
    md5: str = None
    required: bool = True  # False: the loader manages without it (MNIST train files)

    @property
    def name(self):
        return self.path.rsplit("/", 1)[-1]


# Base URLs tried in order; the file name is appended.
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",  # the PyTorch mirror
              "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the TensorFlow mirror
              "http://yann.lecun.com/exdb/mnist/"),  # the original page
    "frey": ("https://cs.nyu.edu/~roweis/data/",  # Sam Roweis' data page
             "http://www.cs.nyu.edu/~roweis/data/"),
}

FILES = {
    "digits": (),  # embedded in scikit-learn
    "mnist": (
        DataFile("mnist", "mnist/train-images-idx3-ubyte.gz", 9912422,
                 sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                 md5="f68b3c2dcbeaaa9fbdd348bbdeb94873", required=False),
        DataFile("mnist", "mnist/train-labels-idx1-ubyte.gz", 28881,
                 sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                 md5="d53e105ee54ea40749a09fcbcd1e9432", required=False),
        DataFile("mnist", "mnist/t10k-images-idx3-ubyte.gz", 1648877,
                 sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                 md5="9fb629c4189551a2d022fa330f9573f3"),
        DataFile("mnist", "mnist/t10k-labels-idx1-ubyte.gz", 4542,
                 sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                 md5="ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    "frey": (
        DataFile("frey", "frey/frey_rawface.mat", 1100584,
                 sha256="265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64",
                 md5="5aeb024d42b8a6091f30e5eb18c8a48d"),
    ),
}


@dataclass(frozen=True)
class FileStatus:
    """What ``fetch`` or ``verify`` found for one file.

    ``status`` is one of ``"ok"`` (present, checksum matches), ``"downloaded"``,
    ``"missing"``, ``"corrupt"`` (present, wrong checksum: left untouched) or
    ``"failed"`` (could not be downloaded); ``detail`` says why, in a sentence.
    """
    file: DataFile
    path: Path
    status: str
    detail: str = ""

    @property
    def ok(self):
        return self.status in ("ok", "downloaded")

    def __str__(self):
        note = "" if self.file.required else " (optional)"
        return f"{self.status:>10}  {self.path}{note}" + (f": {self.detail}" if self.detail else "")


def default_data_dir():
    """The data directory: ``$SCRATCHVAE_DATA_DIR`` if set, else ``data`` (relative to the
    current directory)."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data").expanduser()


def resolve_data_dir(data_dir):
    if data_dir is None:
        return default_data_dir()
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path (str or os.PathLike) or None, "
                        f"got {type(data_dir).__name__}")
    return Path(data_dir).expanduser()


def urls_for(file, mirrors=None):
    """The URLs of ``file``, one per mirror (``mirrors``: base URLs, default ``MIRRORS``)."""
    if isinstance(mirrors, str):
        raise TypeError("mirrors must be a list of base URLs, not one string")
    bases = MIRRORS[file.dataset] if mirrors is None else tuple(mirrors)
    if not bases:
        raise ValueError("mirrors must list at least one base URL")
    return tuple(base.rstrip("/") + "/" + file.name for base in bases)


def file_digest(path, algorithm):
    """Hex digest of a file, read in chunks so memory stays small."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected(file):
    return ("sha256", file.sha256) if file.sha256 else ("md5", file.md5)


def _mismatch(file, size, algorithm, digest):
    """A sentence saying how ``size``/``digest`` differ from the published file, or None."""
    _, want = _expected(file)
    if digest == want:
        return None
    if size < file.size:
        return f"truncated: {size} bytes instead of {file.size}"
    return (f"{algorithm} {digest} instead of the published {want} "
            f"({size} bytes, expected {file.size})")


def check_file(file, path):
    """None when ``path`` holds the published ``file``, else a sentence saying what is wrong."""
    algorithm, _ = _expected(file)
    return _mismatch(file, path.stat().st_size, algorithm, file_digest(path, algorithm))


def corrupt_message(file, path, problem):
    return (f"{path} is not the published {file.name} ({problem}). It was left untouched: "
            f"delete it and run `scratchvae data fetch` (or load the dataset again) to download "
            f"it afresh, or replace it with the file from {urls_for(file)[0]}")


def verify_present(file, path):
    """Raise ``CorruptDataError`` unless ``path`` holds the published ``file``."""
    problem = check_file(file, path)
    if problem:
        raise CorruptDataError(corrupt_message(file, path, problem))


def manual_instructions(data_dir, files):
    """The sentence an offline user needs: which files to put where, and the options."""
    lines = [f"Put these files into {Path(data_dir).resolve()} (keep the sub-folders):"]
    for file in files:
        note = "" if file.required else "  (optional)"
        lines.append(f"  {file.path:<34} from {urls_for(file)[0]}{note}")
    lines.append(f"or point scratchvae at a folder that already holds them: the --data-dir option "
                 f"on the command line, data_dir= in Python, or the {DATA_DIR_ENV} environment "
                 f"variable.")
    return "\n".join(lines)


def _unwritable(folder, err):
    return DataDirError(f"cannot write into the data folder {folder} ({err.strerror or err}). "
                        f"Choose a writable data directory (--data-dir or {DATA_DIR_ENV}) or put "
                        f"the files there yourself.")


def _download_once(file, url, folder, timeout, progress):
    """Stream ``url`` into a temporary file in ``folder``; return its path once it is checked.

    Raises ``OSError``/``HTTPException`` for network failures and ``ValueError`` for a
    download that is complete but wrong. The temporary file is removed on any failure.
    """
    import urllib.request  # only needed when downloading

    algorithm, _ = _expected(file)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{file.name}.", suffix=".part")
    except OSError as err:
        raise _unwritable(folder, err) from err
    try:
        h, size = hashlib.new(algorithm), 0
        request = urllib.request.Request(url, headers={"User-Agent": "scratchvae"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            announced = resp.headers.get("Content-Length")
            with tqdm(total=file.size, unit="B", unit_scale=True, desc=file.name, leave=False,
                      disable=None if progress else True) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if announced is not None and size < int(announced):
            raise ValueError(f"connection closed after {size} of {announced} bytes")
        problem = _mismatch(file, size, algorithm, h.hexdigest())
        if problem:
            raise ValueError(f"downloaded file does not match: {problem}")
        return tmp
    except BaseException:  # KeyboardInterrupt included: never leave the .part file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _describe(err):
    """A short reason for a failed download (urllib wraps the interesting part)."""
    import urllib.error

    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def download_file(file, data_dir, mirrors=None, timeout=TIMEOUT_S, progress=True):
    """Download ``file`` into ``data_dir`` from the first mirror that serves the published bytes.

    Returns the final path. Raises ``MissingDataError`` (listing each mirror's failure and
    the manual instructions) when no mirror works, ``DataDirError`` when the folder is not
    writable. Nothing is left at the final path unless it passed the checksum.
    """
    data_dir = resolve_data_dir(data_dir)
    final = data_dir / file.path
    failures = []
    for url in urls_for(file, mirrors):
        if progress:
            print(f"downloading {file.path} from {url}", file=sys.stderr)
        try:
            tmp = _download_once(file, url, final.parent, timeout, progress)
        except (OSError, http.client.HTTPException, ValueError) as err:
            failures.append(f"  {url}: {_describe(err)}")
            continue
        os.replace(tmp, final)  # atomic: the final path only ever holds a checked file
        return final
    raise MissingDataError(f"could not download {file.path}; every mirror failed:\n"
                           + "\n".join(failures) + "\n" + manual_instructions(data_dir, [file]),
                           failures)


def files_for(name):
    """The ``DataFile`` entries of dataset ``name`` (empty for the embedded digits)."""
    return FILES[choice("name", name, DATASETS)]


def verify(name, data_dir=None):
    """Check the files of dataset ``name`` without downloading: a list of ``FileStatus``
    (``ok``, ``missing`` or ``corrupt``), one per file."""
    data_dir = resolve_data_dir(data_dir)
    statuses = []
    for file in files_for(name):
        path = data_dir / file.path
        if not path.is_file():
            statuses.append(FileStatus(file, path, "missing", "" if file.required else
                                       "without the train files MNIST uses a 9000/1000 split "
                                       "of the test file"))
            continue
        problem = check_file(file, path)
        statuses.append(FileStatus(file, path, "corrupt", corrupt_message(file, path, problem))
                        if problem else FileStatus(file, path, "ok"))
    return statuses


def fetch(name, data_dir=None, mirrors=None, timeout=TIMEOUT_S, progress=True):
    """Download the missing files of dataset ``name`` and verify the present ones.

    Returns a list of ``FileStatus`` (``ok``, ``downloaded``, ``corrupt`` or ``failed``);
    problems are reported there, not raised, so every file gets a line. A corrupt file
    is never overwritten. ``mirrors`` replaces the built-in base URLs.
    """
    data_dir = resolve_data_dir(data_dir)
    statuses = []
    for status in verify(name, data_dir):
        if status.status == "missing":
            try:
                download_file(status.file, data_dir, mirrors, timeout, progress)
                status = FileStatus(status.file, status.path, "downloaded")
            except DataError as err:
                status = FileStatus(status.file, status.path, "failed", str(err))
        statuses.append(status)
    return statuses
