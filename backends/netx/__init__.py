"""lava-dl netx: export NIR graphs to netx HDF5, import netx HDF5 as NIR graphs, run them on Lava via netx.

The exporter and importer need only h5py; `NetxBackend` loads Lava (with spikeport's fixes) when used.
"""
from backends.netx.reader import import_netx
from backends.netx.writer import export_netx


def __getattr__(name):
    if name == "NetxBackend":   # Lava is imported only when the backend is asked for
        from backends.netx.backend import NetxBackend
        return NetxBackend
    raise AttributeError(name)


__all__ = ["NetxBackend", "export_netx", "import_netx"]
