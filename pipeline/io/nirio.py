"""Reading NIR files as a user hands them to spikeport: every failure is one line naming the file and the node.

HDF5 parsing runs in a forked child with a time limit that dies with its parent: a damaged file can make the
HDF5 library loop forever or crash, and that must end in a SpikeportError, not a hung or dead CLI. Writing goes through
`pipeline.io.atomic.write_nir`, so a .nir file is complete or absent.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import stat
from pathlib import Path

import h5py
import nir
from nir.serialization import hdf2dict

from backends.graph import KNOWN_TYPES, GraphError
from backends.nirext import ExtensionError
from pipeline.errors import SpikeportError

_FIX = "the file is damaged or was not written by a NIR 1.x tool; re-export it (e.g. `spikeport convert`)"
MIN_READ_SECONDS = 30.0   # time limit for parsing a file, plus one second per MB
MAX_EXPANSION = 1000      # declared data may exceed the file size this many times (NIR compresses), plus 1 GB
PR_SET_PDEATHSIG = 1      # linux/prctl.h

def read_graph(path, convention: str = "auto", timeout: float | None = None) -> nir.NIRGraph:
    """Read and validate a NIR file (node types, edges, shapes, parameters, spikeport metadata), or raise
    a SpikeportError naming the file, the node and the fix. A graph written by another tool is read in that
    tool's `convention`; "auto" takes it from the file's metadata or its writer's fingerprint and refuses a
    file that shows neither (pipeline/io/nirimport.py). `timeout` bounds the HDF5 parsing (seconds; default
    MIN_READ_SECONDS plus one per MB)."""
    return read_graph_notes(path, convention, timeout)[0]


def read_graph_notes(path, convention: str = "auto", timeout: float | None = None) -> tuple[nir.NIRGraph, list[str]]:
    """`read_graph`, plus the notes of the conventions translated (empty for a spikeport file)."""
    from pipeline.io.nirimport import detect, read
    path = Path(path)
    _check_regular(path)
    if not h5py.is_hdf5(path):
        raise SpikeportError(f"{path}: not a NIR file (not HDF5); write one with `spikeport convert`")
    if timeout is None:
        timeout = MIN_READ_SECONDS + path.stat().st_size / 2**20
    graph = _parse_isolated(path, timeout)
    try:
        return read(graph, convention)
    except (GraphError, ExtensionError, SpikeportError) as err:
        hint = detect(graph) if convention in ("spikeport", "nir") else None
        if hint:
            raise SpikeportError(f"{path}: {err}; it looks written by {hint[0]} ({hint[1]}): read it with "
                                 f"--from {hint[0]}") from None
        raise SpikeportError(f"{path}: {err}") from None


def _parse(path: Path) -> nir.NIRGraph:
    _check_nodes(path)
    try:
        return nir.read(path, type_check=False)
    except Exception as err:  # nir/h5py raise many types for malformed content
        raise SpikeportError(f"{path}: cannot be read as a NIR graph ({type(err).__name__}: {_first_line(err)}); "
                             f"{_FIX}") from None


def _check_regular(path: Path) -> None:
    """A missing path, a folder, a device or a FIFO each get their own message (h5py would block on a FIFO)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SpikeportError(f"{path}: no such NIR file") from None
    except OSError as err:
        raise SpikeportError(f"{path}: cannot be read ({err.strerror}); check the path and its permissions") from None
    if stat.S_ISDIR(mode):
        raise SpikeportError(f"{path} is a folder, not a NIR file; give the path of a .nir file")
    if not stat.S_ISREG(mode):
        raise SpikeportError(f"{path} is a device, FIFO or socket, not a NIR file; give the path of a .nir file")


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when its parent dies (Linux), so a killed CLI leaves no parser behind
    (blocked on a pipe nobody reads, holding the caller's terminal); elsewhere, exit if already orphaned.
    Ctrl-C reaches the whole process group: the child ignores it and the parent, interrupted, kills it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def _parse_child(path: Path, conn, parent: int) -> None:
    _die_with_parent(parent)
    try:
        conn.send(("graph", _parse(path)))
    except SpikeportError as err:
        conn.send(("error", str(err)))


def _parse_isolated(path: Path, timeout: float) -> nir.NIRGraph:
    """`_parse` in a forked child bounded by `timeout`; in-process where fork is unavailable or not allowed."""
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return _parse(path)
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_parse_child, args=(path, sender, os.getpid()), daemon=True)
    proc.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise SpikeportError(f"{path}: parsing took longer than {timeout:.0f} s (the HDF5 library loops on a "
                                 f"damaged structure); {_FIX}")
        try:
            kind, value = receiver.recv()
        except EOFError:
            proc.join()
            raise SpikeportError(f"{path}: the HDF5 library failed while parsing it (exit code {proc.exitcode}); "
                                 f"{_FIX}") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receiver.close()
    if kind == "error":
        raise SpikeportError(value)
    return value


def _check_nodes(path: Path) -> None:
    """Read node by node, so a node whose type spikeport cannot run, or whose content is broken, is named
    before nir.read fails on it obscurely."""
    known = {t.__name__ for t in KNOWN_TYPES}
    try:
        with h5py.File(path, "r") as f:
            _check_sizes(path, f)
            nodes = f["node/nodes"]
            for name in list(nodes):
                raw = nodes[name]["type"][()] if "type" in nodes[name] else b"?"
                kind = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                if kind not in known:
                    raise SpikeportError(f"{path}: node {name!r} has type {kind!r}, which spikeport cannot run "
                                         f"(known: {', '.join(sorted(known))})")
                try:
                    nir.dict2NIRNode(hdf2dict(nodes[name]))
                except Exception as err:  # nir raises many types for malformed content
                    raise SpikeportError(f"{path}: node {name!r} ({kind}) cannot be read ({type(err).__name__}: "
                                         f"{_first_line(err)}); {_FIX}") from None
    except SpikeportError:
        raise
    except Exception as err:  # h5py raises many types for damaged files
        raise SpikeportError(f"{path}: not a readable NIR graph file ({type(err).__name__}: {_first_line(err)}); "
                             f"{_FIX}") from None


def _check_sizes(path: Path, f: h5py.File) -> None:
    """Refuse datasets whose declared size no real file of this length holds (a damaged header would make
    h5py allocate and read gigabytes)."""
    declared = []
    f.visititems(lambda name, obj: declared.append(obj.size * obj.dtype.itemsize)
                 if isinstance(obj, h5py.Dataset) else None)
    limit = MAX_EXPANSION * path.stat().st_size + 2**30
    if sum(declared) > limit:
        raise SpikeportError(f"{path}: its datasets declare {sum(declared) / 2**30:.1f} GB of data in a "
                             f"{path.stat().st_size / 2**20:.1f} MB file; {_FIX}")


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else "no detail"
