"""lava-dl netx: export NIR graphs to netx HDF5, import netx HDF5 as NIR graphs, run them on Lava via netx.

The exporter and importer need only h5py; `NetxBackend` loads Lava (with spikeport's fixes) when used.
"""
import tempfile
from pathlib import Path

import nir

from backends.netx.reader import import_netx
from backends.netx.writer import export_netx, export_quantized


def netx_equivalent(graph: nir.NIRGraph, input_scale: float = 1.0) -> tuple[nir.NIRGraph, list[str]]:
    """The graph netx computes for `graph` (export, approximately where needed, then import: integer weights
    and thresholds, reset to zero), taking the same inputs, and the list of approximations made on the way.
    Every backend that runs this graph exactly can be compared with netx without a declared cause."""
    with tempfile.TemporaryDirectory(prefix="spikeport-netx-") as tmp:
        path = Path(tmp) / "net.h5"
        gaps = export_netx(graph, path, input_scale=input_scale, approximate=True)
        return import_netx(path), gaps


def __getattr__(name):
    if name == "NetxBackend":   # Lava is imported only when the backend is asked for
        from backends.netx.backend import NetxBackend
        return NetxBackend
    raise AttributeError(name)


__all__ = ["NetxBackend", "export_netx", "export_quantized", "import_netx", "netx_equivalent"]
