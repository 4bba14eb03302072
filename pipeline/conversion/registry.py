"""Conversion methods by name: a torch model and calibration data in, a spiking `nir.NIRGraph` out.

Each method is a `Method` in METHODS: an optional training step (methods that change the ANN, e.g. a
clipped activation) and a conversion built from passes (trace, calibrate, normalize). The options a method
takes are the keyword parameters of its functions; any other option is refused, never ignored.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Callable

import nir
import torch

from pipeline.conversion.calibrate import activation_scales
from pipeline.conversion.normalize import normalize
from pipeline.conversion.trace import trace
from pipeline.errors import SpikeportError

# keyword parameters every conversion function receives from `convert`, not options a user chooses
_CONVERT_COMMON = {"method", "source", "progress", "T"}
# keyword parameters every training step receives from `prepare`
_TRAIN_COMMON = {"ann", "dataset", "epochs", "seed", "device", "progress"}


def _keywords(fn: Callable, common: set[str]) -> tuple[str, ...]:
    params = list(inspect.signature(fn).parameters.values())[3:]   # after (model, input_shape, calib_x) / (ann, ...)
    return tuple(p.name for p in params if p.kind is not p.VAR_KEYWORD and p.name not in common)


@dataclass(frozen=True)
class Method:
    """`convert(model, input_shape, calib_x, *, method, source, progress, [T], **options) -> NIRGraph`;
    `train(ann, dataset, epochs, *, seed, device, progress, **options) -> model`, or None when the ANN is used
    as is. `t_dependent` marks methods whose graph depends on the time budget T (e.g. a bias shift of 1/2T):
    only they receive T. `resets` lists the neuron resets a caller may choose with `reset=` (the first is the
    default); empty when the method fixes its own reset (its summary says which)."""

    name: str
    summary: str
    convert: Callable[..., nir.NIRGraph]
    train: Callable[..., torch.nn.Module] | None = None
    t_dependent: bool = False
    resets: tuple[str, ...] = ()

    def options(self) -> tuple[str, ...]:
        """Conversion options this method takes (e.g. granularity, percentile, reset)."""
        return _keywords(self.convert, _CONVERT_COMMON)

    def train_options(self) -> tuple[str, ...]:
        """Options of the method's training step (empty when it has none)."""
        return () if self.train is None else _keywords(self.train, _TRAIN_COMMON)


BALANCED_RESETS = ("subtract", "zero")


def _balance(model, input_shape, calib_x, *, statistic: str, percentile: float, granularity: str, source: str,
             progress: bool, method: str, reset: str) -> nir.NIRGraph:
    """Threshold balancing: IF neurons whose threshold sits at the calibrated activation scale.

    `reset="subtract"` (default) keeps the surplus v - threshold after a spike and fires on v >= threshold
    (Rueckauer et al. 2017: the reset whose firing rate approaches the ANN activation);
    `reset="zero"` sets v to 0 after v > threshold (core NIR), the reset of Diehl et al. 2015's data-based
    normalization, which every framework runs (Norse, lava-dl netx) but which loses the surplus at each spike.
    """
    traced = trace(model, tuple(input_shape), method=method, source=source, reset=reset)
    scales = activation_scales(traced.module, traced.activations, calib_x, statistic=statistic,
                               percentile=percentile, granularity=granularity, progress=progress)
    return normalize(traced.graph, scales, form="thresholds" if granularity == "neuron" else "weights")


def _maxnorm(model, input_shape, calib_x, *, granularity: str = "layer", reset: str = "subtract", source: str = "",
             progress: bool = False, method: str = "maxnorm") -> nir.NIRGraph:
    return _balance(model, input_shape, calib_x, statistic="max", percentile=100.0, granularity=granularity,
                    source=source, progress=progress, method=method, reset=reset)


def _robustnorm(model, input_shape, calib_x, *, percentile: float = 99.9, granularity: str = "layer",
                reset: str = "subtract", source: str = "", progress: bool = False,
                method: str = "robustnorm") -> nir.NIRGraph:
    if not 0.0 < percentile <= 100.0:   # also refuses nan
        raise SpikeportError(f"robustnorm: percentile must be in (0, 100], got {percentile}")
    return _balance(model, input_shape, calib_x, statistic="percentile", percentile=percentile,
                    granularity=granularity, source=source, progress=progress, method=method, reset=reset)


METHODS: dict[str, Method] = {
    "maxnorm": Method("maxnorm", "threshold balancing at the maximum activation (layer, channel or neuron), "
                      "reset by subtraction unless reset='zero'", _maxnorm, resets=BALANCED_RESETS),
    "robustnorm": Method("robustnorm", "balancing at the 99.9th percentile of activations (Rueckauer et al. "
                         "2017), reset by subtraction unless reset='zero'", _robustnorm, resets=BALANCED_RESETS),
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
    import pipeline.conversion.methods  # noqa: F401  (registers the paper methods)


def _refuse_unknown(what: str, given: dict, takes: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(takes))
    if unknown:
        raise SpikeportError(f"{what} does not take option(s) {', '.join(unknown)}; it takes: "
                             f"{', '.join(takes) or 'none'}")


def prepare(name: str, ann: torch.nn.Module, dataset, epochs: int, **options) -> torch.nn.Module:
    """The model a method converts: the ANN itself, or a copy trained the method's way (`options` go to the
    training step; refused for a method that does not train)."""
    method = get_method(name)
    if method.train is None:
        _refuse_unknown(f"{name} (no training step)", {k: v for k, v in options.items()
                                                        if k not in ("seed", "device", "progress")}, ())
        return ann
    _refuse_unknown(f"{name}'s training step", {k: v for k, v in options.items() if k not in _TRAIN_COMMON},
                    method.train_options())
    return method.train(copy.deepcopy(ann), dataset, epochs, **options)


def convert(model: torch.nn.Module, input_shape, calib_x: torch.Tensor | None, method: str = "robustnorm", *,
            source: str = "", progress: bool = False, T: int | None = None, **options) -> nir.NIRGraph:
    """Spiking NIR graph of `model` by `method` (see METHODS), calibrated on `calib_x`.

    `options` must be ones the method takes (`Method.options()`; None means the default); `T` only for methods
    whose graph depends on it (`Method.t_dependent`); `reset=` only for the methods that offer a choice.
    """
    spec = get_method(method)
    options = {k: v for k, v in options.items() if v is not None}
    if "reset" in options:
        check_reset(spec, options["reset"])
    _refuse_unknown(method, options, spec.options())
    if T is not None and not spec.t_dependent:
        raise SpikeportError(f"{method}'s graph does not depend on T (choose T when simulating); drop T / --T")
    if spec.t_dependent and T is not None:
        options["T"] = T
    return spec.convert(model, input_shape, calib_x, method=method, source=source, progress=progress, **options)


def check_reset(method: Method, reset: str) -> None:
    """A SpikeportError unless `method` lets the caller choose neuron reset `reset`."""
    if not method.resets:
        offering = ", ".join(m.name for m in METHODS.values() if m.resets)
        raise SpikeportError(f"{method.name} fixes its own neuron reset (its summary: {method.summary}); "
                             f"a reset (--reset) can be chosen only for {offering}")
    if reset not in method.resets:
        raise SpikeportError(f"reset {reset!r} is not available for {method.name}; choose one of: "
                             f"{', '.join(method.resets)}")
