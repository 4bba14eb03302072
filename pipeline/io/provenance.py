"""Run provenance: the seed and the versions of Python and every library a result depends on.

`provenance(seed)` is the one helper behind the "environment" entry of every results.json spikeport writes.
"""
from __future__ import annotations

import platform
from importlib import metadata

import torch

LIBRARIES = ("spikeport", "torch", "numpy", "nir", "nirtorch", "norse", "lava-nc", "lava-dl", "h5py", "scikit-learn")


def library_versions() -> dict[str, str | None]:
    """Installed version of each of LIBRARIES (None when it is not installed)."""
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return versions


def provenance(seed: int) -> dict:
    """Seed, Python, machine, torch threads and library versions: what makes a CPU run repeat bit for bit."""
    return {"seed": int(seed), "python": platform.python_version(), "machine": platform.machine(),
            "torch_threads": torch.get_num_threads(), "libraries": library_versions()}
