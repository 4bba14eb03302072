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
    `t_dependent` marks methods whose graph depends on the time budget T (e.g. a bias shift of 1/2T).
    `resets` lists the neuron resets a caller may choose with `reset=` (the first is the default); empty
    when the method fixes its own reset (its summary says which)."""

    name: str
    summary: str
    convert: Callable[..., nir.NIRGraph]
    train: Callable[..., torch.nn.Module] | None = None
    t_dependent: bool = False
    resets: tuple[str, ...] = ()


BALANCED_RESETS = ("subtract", "zero")


def _balanced(statistic: str):
    """Threshold balancing: IF neurons whose threshold sits at the calibrated activation scale.

    `reset="subtract"` (default) keeps the surplus v - threshold after a spike and fires on v >= threshold
    (Rueckauer et al. 2017: the reset whose firing rate approaches the ANN activation);
    `reset="zero"` sets v to 0 after v > threshold (core NIR), the reset of Diehl et al. 2015's data-based
    normalization, which every framework runs (Norse, lava-dl netx) but which loses the surplus at each spike.
    """
    def run(model: torch.nn.Module, input_shape, calib_x: torch.Tensor, *, percentile: float = 99.9,
            granularity: str = "layer", source: str = "", progress: bool = False, method: str = "",
            T: int | None = None, reset: str = "subtract") -> nir.NIRGraph:
        traced = trace(model, tuple(input_shape), method=method, source=source, reset=reset)
        scales = activation_scales(traced.module, traced.activations, calib_x, statistic=statistic,
                                   percentile=percentile, granularity=granularity, progress=progress)
        return normalize(traced.graph, scales, form="thresholds" if granularity == "neuron" else "weights")
    return run


METHODS: dict[str, Method] = {
    "maxnorm": Method("maxnorm", "threshold balancing at the maximum activation (layer, channel or neuron), "
                      "reset by subtraction unless reset='zero'", _balanced("max"), resets=BALANCED_RESETS),
    "robustnorm": Method("robustnorm", "balancing at the 99.9th percentile of activations (Rueckauer et al. "
                         "2017), reset by subtraction unless reset='zero'", _balanced("percentile"),
                         resets=BALANCED_RESETS),
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
    """Spiking NIR graph of `model` by `method` (see METHODS), calibrated on `calib_x`; `reset=` only for the
    methods that offer a choice (`Method.resets`)."""
    spec = get_method(method)
    if options.get("reset") is not None:
        check_reset(spec, options["reset"])
    else:
        options.pop("reset", None)
    return spec.convert(model, input_shape, calib_x, method=method, **options)


def check_reset(method: Method, reset: str) -> None:
    """A SpikeportError unless `method` lets the caller choose neuron reset `reset`."""
    if not method.resets:
        offering = ", ".join(m.name for m in METHODS.values() if m.resets)
        raise SpikeportError(f"{method.name} fixes its own neuron reset (its summary: {method.summary}); "
                             f"a reset (--reset) can be chosen only for {offering}")
    if reset not in method.resets:
        raise SpikeportError(f"reset {reset!r} is not available for {method.name}; choose one of: "
                             f"{', '.join(method.resets)}")
