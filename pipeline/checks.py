"""Checks of user-supplied values shared by the Python API and the CLI: devices, time steps, learning rates,
seeds, input arrays against a graph's input; each failure is a one-line SpikeportError naming the fix.
"""
from __future__ import annotations

import math
import os

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


def percentile(value) -> float:
    """A percentile in (0, 100]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SpikeportError(f"percentile must be a number in (0, 100], got {value!r}") from None
    if not math.isfinite(v) or not 0 < v <= 100:
        raise SpikeportError(f"percentile must be a number in (0, 100], got {value!r}")
    return v


def dataset_samples(dataset) -> None:
    """Refuse a data set with an empty training or test split (an empty IDX file, a filtered-out set)."""
    if len(dataset.train_x) == 0 or len(dataset.test_x) == 0:
        raise SpikeportError(f"data set {dataset.name} has {len(dataset.train_x)} training and {len(dataset.test_x)} "
                             "test samples; both must be non-empty (check the files under --data-root)")


def graph_for_dataset(graph: nir.NIRGraph, dataset, encoding: str | None = None) -> None:
    """Refuse a graph whose Input shape or number of outputs does not match `dataset` as `encoding` (default: the
    graph's own) delivers it (another data set's graph would otherwise be fed reshaped data or scored against
    labels it has no output for)."""
    from backends.nirext import graph_info
    from pipeline.data import encoding as enc
    name = enc.check(encoding if encoding is not None else graph_info(graph)["encoding"])
    expected = tuple(enc.input_shape(name, tuple(dataset.input_shape)))
    shape, outputs = graph_input_shape(graph), graph_output_size(graph)
    if shape is not None and shape != expected:
        raise SpikeportError(f"the graph's Input is {shape} but {dataset.name} samples under {name} encoding are "
                             f"{expected}: the graph was converted for another data set or encoding (check "
                             "--dataset, --encoding)")
    if outputs is not None and outputs != dataset.num_classes:
        raise SpikeportError(f"the graph has {outputs} outputs but {dataset.name} has {dataset.num_classes} classes: "
                             "the graph was converted for another data set (check --dataset)")


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory(what: str, needed: float, limit_gb: float | None = None) -> None:
    """Refuse a run estimated to need `needed` bytes when that exceeds `limit_gb` (default: the memory available
    now); the message says how to shrink the run or raise the limit (max_memory_gb=, CLI --max-memory)."""
    limit = available_memory() if limit_gb is None else finite_positive("max_memory_gb", limit_gb) * 2**30
    if needed > limit:
        raise SpikeportError(f"{what} needs about {needed / 2**30:.1f} GB of memory, more than the "
                             f"{limit / 2**30:.1f} GB {'allowed' if limit_gb else 'available'}; reduce it (e.g. --T, "
                             "--batch-size, --limit) or raise the bound with --max-memory GB (max_memory_gb=)")


def activations_per_sample(model: torch.nn.Module, input_shape) -> int:
    """Values the leaf modules of `model` produce for one sample, counted on a forward pass of one sample."""
    counts = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: counts.append(out.numel() if isinstance(out, torch.Tensor)
                                                                        else 0))
             for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return int(sum(counts))


def input_size(input_shape, limit: int = 2**26) -> tuple[int, ...]:
    """A per-sample input shape of positive ints whose size (values) is at most `limit` (a damaged checkpoint
    would otherwise make model construction allocate terabytes)."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise SpikeportError(f"input shape {input_shape!r} is not a tuple of integers") from None
    if not shape or min(shape) < 1:
        raise SpikeportError(f"input shape {shape} must have dimensions >= 1")
    if math.prod(shape) > limit:
        raise SpikeportError(f"input shape {shape} has {math.prod(shape):,} values per sample, above the limit of "
                             f"{limit:,}; the checkpoint is damaged or not for these data")
    return shape
