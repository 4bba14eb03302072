"""Direct SNN training methods by name (snn2ann, joint-asnn, stbp): each trains a spiking net on a data set
from an ANN's architecture; the trained net's `export(input_shape)` gives its NIR graph.

Conversion methods (an ANN in, a NIR graph out) have their own registry, `pipeline.conversion.registry`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from pipeline.errors import SpikeportError


@dataclass(frozen=True)
class TrainingMethod:
    """`train(ann, dataset, epochs, *, seed, device, progress, T, batch_size, lr, state_path, **options) -> net`;
    the net has `history` (per-epoch accuracies) and `export(input_shape, source=...) -> nir.NIRGraph`."""

    name: str
    summary: str
    train: Callable[..., nn.Module]

    def options(self) -> tuple[str, ...]:
        """The keyword options `train` takes beyond the common ones (checked by `check_options`)."""
        common = {"ann", "dataset", "epochs", "seed", "device", "progress", "T", "batch_size", "lr", "state_path",
                  "train_slice"}
        return tuple(p for p in inspect.signature(self.train).parameters if p not in common)


TRAINERS: dict[str, TrainingMethod] = {}


def register(method: TrainingMethod) -> TrainingMethod:
    """Add a method to TRAINERS (method modules call this at import)."""
    TRAINERS[method.name] = method
    return method


def _load() -> None:
    import pipeline.spiking.methods  # noqa: F401  (registers snn2ann, joint-asnn, stbp)


def trainer_names() -> list[str]:
    _load()
    return list(TRAINERS)


def get_trainer(name: str) -> TrainingMethod:
    _load()
    if name not in TRAINERS:
        hint = ""
        from pipeline.conversion.registry import method_names
        if name in method_names():
            hint = f" ({name} is a conversion method: use convert)"
        raise SpikeportError(f"unknown SNN training method {name!r}{hint}; choose one of: {', '.join(TRAINERS)}")
    return TRAINERS[name]


def check_options(method: TrainingMethod, options: dict) -> None:
    """A SpikeportError naming any option `method` does not take (an option is refused, never ignored)."""
    unknown = sorted(set(options) - set(method.options()))
    if unknown:
        takes = ", ".join(method.options()) or "none"
        raise SpikeportError(f"{method.name} does not take option(s) {', '.join(unknown)}; its options: {takes}")
