"""Conversion methods: a torch model and calibration data in, a spiking `nir.NIRGraph` out.

Each method is a short pipeline of passes (trace, calibrate, normalize); later methods register here.
"""
from __future__ import annotations

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
    name: str
    summary: str
    run: Callable[..., nir.NIRGraph]


def _balanced(statistic: str):
    def run(model: torch.nn.Module, input_shape, calib_x: torch.Tensor, *, percentile: float = 99.9,
            source: str = "", progress: bool = False, method: str = "") -> nir.NIRGraph:
        traced = trace(model, tuple(input_shape), method=method, source=source)
        scales = activation_scales(traced.module, traced.activations, calib_x, statistic=statistic,
                                   percentile=percentile, progress=progress)
        return normalize(traced.graph, scales)
    return run


METHODS = {
    "maxnorm": Method("maxnorm", "layer-wise threshold balancing at the maximum activation, reset by subtraction",
                      _balanced("max")),
    "robustnorm": Method("robustnorm", "layer-wise balancing at the 99.9th percentile of non-zero activations "
                         "(Rueckauer et al. 2017), reset by subtraction", _balanced("percentile")),
}


def convert(model: torch.nn.Module, input_shape, calib_x: torch.Tensor, method: str = "robustnorm",
            **options) -> nir.NIRGraph:
    """Spiking NIR graph of `model` by `method` (see METHODS), calibrated on `calib_x`."""
    if method not in METHODS:
        raise SpikeportError(f"unknown conversion method {method!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[method].run(model, input_shape, calib_x, method=method, **options)
