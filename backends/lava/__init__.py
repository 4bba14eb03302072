"""Lava backend package: makes lava-nc importable here (Python 3.11, a fixed start method), then
exposes `LavaBackend`.

`py311.install()` must run before the first import of any lava module, hence its place here.
"""
from backends.lava import py311, startmethod

py311.install()
startmethod.import_lava_runtime()

from backends.lava.backend import SUPPORTED_TYPES, LavaBackend  # noqa: E402  (needs the fixes above)

__all__ = ["LavaBackend", "SUPPORTED_TYPES"]
