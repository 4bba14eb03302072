"""Lets lava-nc's runtime be imported after something else has fixed multiprocessing's start method.

Lava's `message_infrastructure.multiprocessing` calls `multiprocessing.set_start_method('fork')` when
imported, which raises "context has already been set" once the start method is fixed (torch training
can do that first, e.g. in `spikeport` runs that train and then run Lava).
"""
from __future__ import annotations

import importlib
import multiprocessing
import sys

MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"


def import_lava_runtime() -> None:
    """Import Lava's multiprocessing layer; an already chosen 'fork' is accepted, another method is an error."""
    if MODULE in sys.modules:
        return
    current = multiprocessing.get_start_method(allow_none=True)
    if current is None:
        importlib.import_module(MODULE)
        return
    if current != "fork":
        raise ImportError(
            f"{MODULE}: Lava runs its processes with the 'fork' start method, but this Python process already "
            f"uses {current!r}; import backends.lava before choosing another start method",
            name=MODULE,
        )
    original = multiprocessing.set_start_method

    def keep_fork(method, force=False):
        if method != "fork":
            original(method, force)

    multiprocessing.set_start_method = keep_fork
    try:
        importlib.import_module(MODULE)
    finally:
        multiprocessing.set_start_method = original
