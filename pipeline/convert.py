"""Conversion methods: a torch model and calibration data in, a spiking `nir.NIRGraph` out.

Each method is a `Method` in METHODS: an optional training step (methods that change the ANN, e.g. a
clipped activation) and a conversion built from passes (trace, calibrate, normalize).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import nir
import torch

from pipeline.calibrate import activation_scales
from pipeline.errors import SpikeportError
from pipeline.normalize import normalize
from pipeline.trace import trace


@dataclass(frozen=True)
class Method:
    """`convert(model, input_shape, calib_x, *, T, method, source, progress, **options) -> NIRGraph`;
    `train(ann, dataset, epochs, *, seed, device, progress) -> model`, or None when the ANN is used as is.
    `t_dependent` marks methods whose graph depends on the time budget T (e.g. a bias shift of 1/2T)."""

    name: str
    summary: str
    convert: Callable[..., nir.NIRGraph]
    train: Callable[..., torch.nn.Module] | None = None
    t_dependent: bool = False


def _balanced(statistic: str):
    def run(model: torch.nn.Module, input_shape, calib_x: torch.Tensor, *, percentile: float = 99.9,
            granularity: str = "layer", source: str = "", progress: bool = False, method: str = "",
            T: int | None = None) -> nir.NIRGraph:
        traced = trace(model, tuple(input_shape), method=method, source=source)
        scales = activation_scales(traced.module, traced.activations, calib_x, statistic=statistic,
                                   percentile=percentile, granularity=granularity, progress=progress)
        return normalize(traced.graph, scales, form="thresholds" if granularity == "neuron" else "weights")
    return run


METHODS: dict[str, Method] = {
    "maxnorm": Method("maxnorm", "threshold balancing at the maximum activation (layer, channel or neuron), "
                      "reset by subtraction", _balanced("max")),
    "robustnorm": Method("robustnorm", "balancing at the 99.9th percentile of activations (Rueckauer et al. "
                         "2017), reset by subtraction", _balanced("percentile")),
}


def register(method: Method) -> Method:
    """Add a method to METHODS (method modules call this at import)."""
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    _load_methods()
    if name not in METHODS:
        raise SpikeportError(f"unknown conversion method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def method_names() -> list[str]:
    _load_methods()
    return list(METHODS)


def _load_methods() -> None:
    import pipeline.methods  # noqa: F401  (registers the paper methods)


def prepare(name: str, ann: torch.nn.Module, dataset, epochs: int, **options) -> torch.nn.Module:
    """The model a method converts: the ANN itself, or a copy trained the method's way."""
    method = get_method(name)
    if method.train is None:
        return ann
    return method.train(copy.deepcopy(ann), dataset, epochs, **options)


def convert(model: torch.nn.Module, input_shape, calib_x: torch.Tensor, method: str = "robustnorm",
            **options) -> nir.NIRGraph:
    """Spiking NIR graph of `model` by `method` (see METHODS), calibrated on `calib_x`."""
    return get_method(method).convert(model, input_shape, calib_x, method=method, **options)
