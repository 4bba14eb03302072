"""Atomic file output: a file spikeport writes appears complete or not at all, also under SIGKILL, disk full
or Ctrl-C; it never replaces an input of the running command, a device, a FIFO or a folder.

Writers serialise into memory, the bytes go to a hidden temporary file (named with the writer's pid) beside the
target, are fsynced and `os.replace`d into place; the next write to the same target removes temporaries of
dead writers. A set of outputs (`output_set`) is built in a hidden sibling folder and renamed into place when
complete, under a lock file that refuses a second writer.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import fnmatch
import glob
import io
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import nir

from pipeline.errors import SpikeportError

# the inputs of the running command (set by `protect`): no output may resolve to one of them
_INPUTS: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("spikeport_inputs", default=())
SYSTEM_TREES = ("/proc", "/sys", "/dev")
MARKER = ".spikeport-output"   # written into every output set; a folder holding it may be replaced


class OutputError(SpikeportError):
    """An output path spikeport refuses to write, or a write the system refused (disk full, permissions)."""


@contextlib.contextmanager
def protect(paths: Iterable) -> Iterator[None]:
    """While the block runs, refuse outputs that resolve (by real path or as the same file) to one of `paths`."""
    token = _INPUTS.set(_INPUTS.get() + tuple(Path(p) for p in paths if p is not None))
    try:
        yield
    finally:
        _INPUTS.reset(token)


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _under(path: Path, folder: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _check_place(path: Path, what: str) -> None:
    """Refuse system trees and a parent that is not a writable folder."""
    real = os.path.realpath(path)
    if any(_under(Path(real), Path(tree)) for tree in SYSTEM_TREES):
        raise OutputError(f"{what} {path} is in a system folder ({real}); choose a path in your own folders")
    ancestor = Path(real).parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{what} {path}: {ancestor} is a file, not a folder; choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: folder {ancestor} is not writable; choose a location you may write to")


def check_target(target: str | os.PathLike, what: str = "output") -> Path:
    """`target` as a Path if spikeport may replace it with a regular file, else an OutputError naming why."""
    target = Path(target)
    if target.name in ("", ".", "..") or str(target).endswith(os.sep):
        raise OutputError(f"{what} {str(target)!r} names a folder; give a file name")
    for source in _INPUTS.get():
        if _same_file(target, source):
            raise OutputError(f"{what} {target} is the input {source} of this command; writing it would destroy "
                              "the input: choose another output path")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        mode = None   # a parent is a file: named by _check_place
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError(f"{what} {target} is an existing folder; give a file path")
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(f"{what} {target} exists and is not a regular file (a device, FIFO or socket); spikeport "
                          "replaces only regular files: choose another path")
    _check_place(target, what)
    return target


def _os_failure(target: Path, err: OSError) -> OutputError:
    hint = {errno.ENOSPC: "free disk space or choose another location",
            errno.EDQUOT: "free disk space or choose another location",
            errno.EROFS: "the file system is read-only: choose another location"}.get(
        err.errno, "choose a location you may write to")
    return OutputError(f"cannot write {target}: {err.strerror or err}; {hint}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it is removed.
    For streaming writers; `write_with` serialises in memory first and checks free space."""
    target = check_target(target)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; the result should read like any other file
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except OSError as err:
        raise _os_failure(target, err) from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `target` atomically, after checking the device has room for it."""
    target = check_target(target)
    with atomic_path(target) as tmp:
        free = shutil.disk_usage(tmp.parent).free
        if len(data) > free:
            raise OutputError(f"cannot write {target}: it needs {len(data) / 2**20:.2f} MB and its device has "
                              f"{free / 2**20:.2f} MB free; free disk space or choose another location")
        with open(tmp, "wb") as fh:
            fh.write(data)
    return target


def write_with(target: str | os.PathLike, writer: Callable[[io.BytesIO], None]) -> Path:
    """Call `writer(buffer)` on an in-memory buffer, then write its bytes to `target` atomically. Serialising in
    memory keeps libraries (HDF5, torch, matplotlib) away from disk errors: on a full disk HDF5 fails in its
    close and crashes the interpreter later (SIGSEGV at exit), torch raises an opaque RuntimeError."""
    check_target(target)
    buffer = io.BytesIO()
    writer(buffer)
    return write_bytes(target, buffer.getvalue())


def write_text(target, text: str) -> Path:
    return write_bytes(target, text.encode("utf-8"))


def write_json(target, data) -> Path:
    return write_text(target, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_nir(target, graph: nir.NIRGraph) -> Path:
    """`nir.write` into memory, then to `target` atomically: a failed write leaves no partial .nir behind."""
    return write_with(target, lambda buffer: nir.write(buffer, graph))


def temporaries(target: str | os.PathLike) -> list[Path]:
    """Temporary files of writers to `target` (left behind only by a writer that was killed)."""
    target = Path(target)
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*.part"))


def remove_stale(target: str | os.PathLike) -> None:
    """Delete the temporaries of `target` whose writing process no longer exists."""
    for part in temporaries(target):
        if not _alive(_writer_pid(part, target)):
            _remove(part)


def _writer_pid(part: Path, target: Path) -> int:
    pid = part.name[len(f".{target.name}."):].split(".", 1)[0]
    return int(pid) if pid.isdigit() else -1


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# ---- output sets: a folder of outputs that appears complete or not at all ----

def lock_path(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


def check_folder(folder: str | os.PathLike, expected: Iterable[str]) -> Path:
    """`folder` as a Path if spikeport may replace it with a new output set: absent, empty, or holding only
    names matching `expected` (fnmatch patterns) or the marker; never holding an input or the current folder."""
    folder = Path(folder)
    _check_place(folder, "output folder")
    if _under(Path.cwd(), folder):
        raise OutputError(f"output folder {folder} is or contains the current folder; choose a new folder for --out")
    for source in _INPUTS.get():
        if _under(source, folder):
            raise OutputError(f"output folder {folder} holds the input {source}; the folder is replaced as a whole, "
                              "which would destroy the input: choose another --out")
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise OutputError(f"output folder {folder} exists and is not a folder; choose another --out")
    if folder.is_dir():
        patterns = [MARKER, *expected]
        foreign = sorted(e.name for e in folder.iterdir() if not any(fnmatch.fnmatch(e.name, p) for p in patterns))
        if foreign and not (folder / MARKER).is_file():
            raise OutputError(f"output folder {folder} holds files spikeport did not write ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); it would be replaced: choose a new folder")
    return folder


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """A lock file beside `folder` holding our pid; a live holder is refused, a dead one's lock is taken over."""
    path = lock_path(folder)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                holder = int(path.read_text().strip() or -1)
            except (OSError, ValueError):
                holder = -1
            if holder != os.getpid() and _alive(holder):
                raise OutputError(f"output folder {folder} is being written by another spikeport (pid {holder}, "
                                  f"lock {path}); wait for it to finish or choose another --out") from None
            path.unlink(missing_ok=True)
    else:
        raise OutputError(f"cannot take the lock {path} of output folder {folder}; remove it if no spikeport runs")
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)


def set_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Hidden sibling folders of output-set writers to `folder` (left behind only by a killed writer)."""
    folder = Path(folder)
    return sorted(folder.parent.glob(f".{glob.escape(folder.name)}.*.part")) + \
        sorted(folder.parent.glob(f".{glob.escape(folder.name)}.*.old"))


def _recover(folder: Path) -> None:
    """After a writer died: restore a previous complete set it had moved aside, remove its partial set."""
    for old in sorted(folder.parent.glob(f".{glob.escape(folder.name)}.*.old")):
        if not _alive(_writer_pid(old, folder)):
            if folder.exists():
                _remove(old)
            else:
                os.rename(old, folder)
    remove_stale(folder)


@contextlib.contextmanager
def output_set(folder: str | os.PathLike, expected: Iterable[str], command: str) -> Iterator[Path]:
    """Yield a hidden sibling folder to fill; when the block succeeds it replaces `folder` (complete or absent,
    also under SIGKILL); on error it is removed. A lock file refuses a concurrent writer to the same folder."""
    folder = check_folder(folder, expected)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _os_failure(folder, err) from None
    with _lock(folder):
        _recover(folder)
        tmp = folder.parent / f".{folder.name}.{os.getpid()}.part"
        try:
            tmp.mkdir()
        except OSError as err:
            raise _os_failure(folder, err) from None
        try:
            yield tmp
            write_text(tmp / MARKER, f"{command}\n")
            _swap_in(tmp, folder)
        finally:
            _remove(tmp)


def _swap_in(tmp: Path, folder: Path) -> None:
    """Move the complete set `tmp` to `folder`; a previous set is moved aside first and removed after."""
    old = folder.parent / f".{folder.name}.{os.getpid()}.old"
    try:
        if folder.exists():
            os.rename(folder, old)
        os.rename(tmp, folder)
        _fsync_dir(folder.parent)
    except OSError as err:
        raise _os_failure(folder, err) from None
    _remove(old)


def check_outputs(files: dict[str, str | os.PathLike | None], folder: tuple[str, str | os.PathLike,
                  Iterable[str]] | None = None) -> None:
    """Before a command runs: its output files (by option name) are distinct writable targets and its output
    folder (option name, path, expected names) may be replaced; raises an OutputError naming the option."""
    given = {name: Path(p) for name, p in files.items() if p is not None}
    names = list(given)
    for i, a in enumerate(names):
        check_target(given[a], a)
        for b in names[i + 1:]:
            if _same_file(given[a], given[b]):
                raise OutputError(f"{a} and {b} name the same file {given[a]}; give each its own path")
    if folder is not None:
        name, path, expected = folder
        for a, p in given.items():
            if _under(p, Path(path)):
                raise OutputError(f"{a} {p} lies inside the output folder {name} {path}, which is replaced as a "
                                  "whole; choose a path outside it")
        check_folder(path, expected)
