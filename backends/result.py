"""What every backend returns from a run, and the error a backend raises for a graph it cannot run.

Shared by all backends so that the parity, energy and report code reads one structure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class Unsupported(ValueError):
    """A backend cannot run a graph faithfully; the message names the node and the missing semantics."""


def first_reason(reasons: list[str], *, list_all: bool = False) -> str:
    """The first of `reasons` for an error message, with how many more there are (`list_all`: and what they are)."""
    if len(reasons) < 2:
        return reasons[0]
    return f"{reasons[0]} (and {len(reasons) - 1} more" + (f": {'; '.join(reasons[1:])})" if list_all else ")")


@dataclass
class RunResult:
    """Outputs of running a graph on `N` samples for `T` steps.

    outputs: (N, n_out) network output after T steps (docs/nir-extensions.md, "Time step semantics").
    spike_counts: per spiking node, (N,) number of spikes emitted per sample over all T steps.
    neuron_counts: per spiking node, spikes per neuron per sample, averaged over samples (node shape).
    input_events: per weighted node (Affine, Linear, Conv2d), non-zero input elements per sample summed
        over T, averaged over samples (shape of the node's input); None when the backend does not record.
    spikes: per spiking node, (N, T, *shape) spike trains when the run was asked to record them.
    """

    backend: str
    T: int
    outputs: np.ndarray
    spike_counts: dict[str, np.ndarray]
    neuron_counts: dict[str, np.ndarray] = field(default_factory=dict)
    input_events: dict[str, np.ndarray] | None = None
    spikes: dict[str, np.ndarray] | None = None
    seconds: float = 0.0
    approximate: bool = False
    ignored: list[str] = field(default_factory=list)

    @property
    def predictions(self) -> np.ndarray:
        return np.asarray(self.outputs).argmax(axis=1)

    def accuracy(self, labels) -> float:
        return float((self.predictions == np.asarray(labels)).mean())

    def agreement(self, other: "RunResult") -> float:
        """Fraction of samples whose prediction equals `other`'s."""
        return float((self.predictions == other.predictions).mean())

    @property
    def spikes_per_sample(self) -> float:
        if not self.spike_counts:
            return 0.0
        return float(sum(np.asarray(c, dtype=np.float64) for c in self.spike_counts.values()).mean())
