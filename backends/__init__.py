"""Everything that executes a NIR graph: one interface, several implementations chosen by name.

`backends.get(name)` returns a backend; each backend's `run(graph, inputs, T)` returns a `RunResult`.
This package never imports `pipeline` (a backend only knows NIR graphs and arrays).
"""
from __future__ import annotations

import importlib

from backends.result import RunResult, Unsupported

__all__ = ["RunResult", "Unsupported", "get", "names"]

_REGISTRY = {
    "reference": "backends.reference:ReferenceBackend",
    "norse": "backends.norse:NorseBackend",
    "netx": "backends.netx:NetxBackend",
    "lava": "backends.lava:LavaBackend",
}


def names() -> list[str]:
    """Names accepted by `get`."""
    return sorted(_REGISTRY)


def get(name: str):
    """The backend registered under `name` (imported on first use, so Lava loads only when asked)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(names())}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)()
