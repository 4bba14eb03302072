"""Reading NIR files as a user hands them to spikeport: every failure is one line naming the file.

Writing goes through `pipeline.atomic.write_nir`, so a .nir file is complete or absent.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import nir

from backends.graph import KNOWN_TYPES, GraphError, analyse
from backends.nirext import ExtensionError
from pipeline.errors import SpikeportError


def read_graph(path, convention: str = "spikeport") -> nir.NIRGraph:
    """Read and check a NIR file (structure, shapes, spikeport metadata), or raise SpikeportError.

    A graph written by another tool is read in that tool's `convention` (pipeline/nirimport.py).
    """
    path = Path(path)
    if not path.is_file():
        raise SpikeportError(f"{path}: no such NIR file")
    if not h5py.is_hdf5(path):
        raise SpikeportError(f"{path}: not a NIR file (not HDF5); write one with `spikeport convert`")
    _check_node_types(path)
    try:
        graph = nir.read(path, type_check=False)
    except Exception as err:  # nir/h5py raise many types for malformed content
        raise SpikeportError(f"{path}: cannot be read as a NIR graph ({type(err).__name__}: {_first_line(err)})") from None
    try:
        if convention != "spikeport":
            from pipeline.nirimport import adopt
            return adopt(graph, convention)[0]
        analyse(graph)
    except (GraphError, ExtensionError, SpikeportError) as err:
        from pipeline.nirimport import guess
        hint = guess(graph) if convention == "spikeport" else None
        if hint:
            raise SpikeportError(f"{path}: {err}; it looks written by {hint[0]} ({hint[1]}): read it with "
                                 f"--from {hint[0]}") from None
        raise SpikeportError(f"{path}: {err}") from None
    return graph


def _check_node_types(path: Path) -> None:
    """Name the node whose type this spikeport cannot run, before nir.read fails on it obscurely."""
    known = {t.__name__ for t in KNOWN_TYPES}
    try:
        with h5py.File(path, "r") as f:
            nodes = f["node/nodes"]
            for name in nodes:
                raw = nodes[name]["type"][()] if "type" in nodes[name] else b"?"
                kind = raw.decode() if isinstance(raw, bytes) else str(raw)
                if kind not in known:
                    raise SpikeportError(f"{path}: node {name!r} has type {kind!r}, which spikeport cannot run "
                                         f"(known: {', '.join(sorted(known))})")
    except (KeyError, OSError) as err:
        raise SpikeportError(f"{path}: not a NIR graph file ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else "no detail"
