"""Reading NIR files as a user hands them to spikeport: every failure is one line naming the file and the node.

Writing goes through `pipeline.atomic.write_nir`, so a .nir file is complete or absent.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import nir
from nir.serialization import hdf2dict

from backends.graph import KNOWN_TYPES, GraphError, analyse
from backends.nirext import ExtensionError
from pipeline.errors import SpikeportError

_FIX = "the file is damaged or was not written by a NIR 1.x tool; re-export it (e.g. `spikeport convert`)"


def read_graph(path) -> nir.NIRGraph:
    """Read and validate a NIR file (node types, edges, shapes, parameters, spikeport metadata), or raise
    a SpikeportError naming the file, the node and the fix."""
    path = Path(path)
    if not path.is_file():
        raise SpikeportError(f"{path}: no such NIR file")
    if not h5py.is_hdf5(path):
        raise SpikeportError(f"{path}: not a NIR file (not HDF5); write one with `spikeport convert`")
    _check_nodes(path)
    try:
        graph = nir.read(path, type_check=False)
    except Exception as err:  # nir/h5py raise many types for malformed content
        raise SpikeportError(f"{path}: cannot be read as a NIR graph ({type(err).__name__}: {_first_line(err)}); "
                             f"{_FIX}") from None
    try:
        analyse(graph)
    except (GraphError, ExtensionError) as err:
        raise SpikeportError(f"{path}: {err}") from None
    return graph


def _check_nodes(path: Path) -> None:
    """Read node by node, so a node whose type spikeport cannot run, or whose content is broken, is named
    before nir.read fails on it obscurely."""
    known = {t.__name__ for t in KNOWN_TYPES}
    try:
        with h5py.File(path, "r") as f:
            nodes = f["node/nodes"]
            names = list(nodes)
            for name in names:
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


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else "no detail"
