"""Checks of user-supplied values shared by the Python API and the CLI: devices, time steps, learning rates,
seeds, input arrays against a graph's input; each failure is a one-line SpikeportError naming the fix.
"""
from __future__ import annotations

import math

import nir
import numpy as np
import torch

from pipeline.errors import SpikeportError

# time steps above which a run is refused unless the caller raises the bound (max_T=, --max-T)
DEFAULT_MAX_T = 100_000


def device(name: str) -> str:
    """`name` if torch can run on it here (cpu, or cuda when a GPU is visible)."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise SpikeportError(f"device {name!r} is not a torch device ({err}); use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpikeportError(f"device {name!r}: no CUDA GPU is visible to torch here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise SpikeportError(f"device {name!r}: spikeport runs on cpu or cuda")
    return name


def positive_int(what: str, value, *, limit: int | None = None, override: str = "") -> int:
    """`value` as an int >= 1 (and <= `limit` when given; `override` names how to raise the limit)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpikeportError(f"{what} must be a positive integer, got {value!r}")
    if limit is not None and value > limit:
        raise SpikeportError(f"{what} = {value} is above the limit of {limit}{'; ' + override if override else ''}")
    return int(value)


def time_steps(T, limit: int = DEFAULT_MAX_T) -> int:
    """A time-step count in [1, limit]."""
    return positive_int("T", T, limit=limit, override="pass max_T= (CLI: --max-T) to run longer")


def finite_positive(what: str, value) -> float:
    """`value` as a finite float > 0 (learning rates, tolerances)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SpikeportError(f"{what} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise SpikeportError(f"{what} must be a finite number > 0, got {value!r}")
    return v


def seed(value) -> int:
    """A seed numpy and torch both accept: an integer in [0, 2**32)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**32:
        raise SpikeportError(f"seed must be an integer in [0, 2**32), got {value!r}")
    return int(value)


def graph_input_shape(graph: nir.NIRGraph) -> tuple[int, ...] | None:
    """The per-sample input shape of `graph`'s single Input node (None when it declares none)."""
    inputs = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        return None
    shape = np.asarray(inputs[0].input_type.get("input", ())).ravel()
    return tuple(int(d) for d in shape) if shape.size else None


def graph_output_size(graph: nir.NIRGraph) -> int | None:
    """Number of output values per sample of `graph`'s single Output node (None when it declares none)."""
    outputs = [n for n in graph.nodes.values() if isinstance(n, nir.Output)]
    if len(outputs) != 1:
        return None
    shape = np.asarray(outputs[0].output_type.get("output", ())).ravel()
    return int(np.prod(shape)) if shape.size else None


def inputs_for(graph: nir.NIRGraph, inputs, *, what: str = "inputs", T: int | None = None) -> np.ndarray:
    """`inputs` as an array (N, *input shape) that `graph` accepts (floats as float32/float64), or, given `T`,
    also time-varying (N, T, *input shape), whose bool and integer arrays are kept as they are (compact spike
    trains); a SpikeportError naming the shapes otherwise."""
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    try:
        raw = np.asarray(inputs)
        compact = T is not None and raw.dtype.kind in "biu"
        x = raw if compact else np.asarray(raw, dtype=np.float64 if raw.dtype == np.float64 else np.float32)
    except (TypeError, ValueError) as err:
        raise SpikeportError(f"{what} cannot be read as a numeric array ({err})") from None
    shape = graph_input_shape(graph)
    if x.ndim == 0 or len(x) == 0:
        raise SpikeportError(f"{what} hold no samples (shape {x.shape}); pass an array (N, *input shape) with N >= 1")
    per_sample = tuple(x.shape[1:])
    if shape is not None and per_sample != shape and not (T is not None and per_sample == (T, *shape)):
        steps = f" or ({T}, {', '.join(map(str, shape))}) per sample (time-varying, T={T})" if T is not None else ""
        raise SpikeportError(f"{what} have per-sample shape {per_sample} but the graph's Input is {shape}{steps}: "
                             "the graph was converted for another data set or encoding (check --dataset, "
                             "--encoding)")
    if not compact and not np.isfinite(x).all():
        raise SpikeportError(f"{what} contain NaN or Inf values")
    return x


def labels_for(labels, n: int, num_outputs: int | None) -> np.ndarray:
    """Integer labels for `n` samples, each a valid output index of a graph with `num_outputs` outputs."""
    y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    if y.shape != (n,):
        raise SpikeportError(f"labels have shape {y.shape}, expected ({n},) for {n} samples")
    if num_outputs is not None and n and (int(y.max()) >= num_outputs or int(y.min()) < 0):
        raise SpikeportError(f"labels reach class {int(y.max())} but the graph has {num_outputs} outputs: the graph "
                             "was converted for another data set (check --dataset)")
    return y.astype(np.int64)
