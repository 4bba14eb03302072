"""Activation statistics of a traced ANN on training data: the scale each IF layer is balanced to.

`max` is Max Norm (Diehl et al. 2015); `percentile` is Robust Norm (Rueckauer et al. 2017, 99.9th
percentile of a layer's non-zero activations). Per layer, per channel, or per neuron (DNISNM's DNI).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.fx
from tqdm.auto import tqdm

GRANULARITIES = ("layer", "channel", "neuron")
# Samples kept for percentiles; beyond this a seeded uniform subsample of samples is used.
MAX_PERCENTILE_SAMPLES = 4096


class _Recorder(torch.fx.Interpreter):
    """Runs the traced model, handing the outputs of the watched fx nodes to `sink`."""

    def __init__(self, gm, watch, sink):
        super().__init__(gm)
        self.watch, self.sink = watch, sink

    def run_node(self, n):
        out = super().run_node(n)
        if n.name in self.watch:
            self.sink(n.name, out)
        return out


def _reduce_dims(granularity: str, ndim: int) -> tuple[int, ...]:
    """Dimensions of a (N, C, ...) activation that one scale covers."""
    if granularity == "layer":
        return tuple(range(ndim))
    if granularity == "channel":
        return (0,) + tuple(range(2, ndim))
    return (0,)


def activation_scales(gm: torch.fx.GraphModule, activations: dict[str, str], x: torch.Tensor,
                      statistic: str = "max", percentile: float = 99.9, granularity: str = "layer",
                      batch_size: int = 256, seed: int = 0, progress: bool = False) -> dict:
    """Per IF node: max, or `percentile` of the non-zero values, of its ANN activation over `x`.

    Returns a float per node (layer), an array (C,) (channel) or an array of the node's shape (neuron).
    """
    if statistic not in ("max", "percentile"):
        raise ValueError(f"statistic must be 'max' or 'percentile', got {statistic!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if statistic == "percentile" and len(x) > MAX_PERCENTILE_SAMPLES:
        idx = np.random.default_rng(seed).choice(len(x), MAX_PERCENTILE_SAMPLES, replace=False)
        x = x[np.sort(idx)]
    watch = {fx_name: node for node, fx_name in activations.items()}
    maxima: dict[str, torch.Tensor] = {}
    values: dict[str, list[torch.Tensor]] = {node: [] for node in activations}

    def sink(fx_name, out):
        node = watch[fx_name]
        dims = _reduce_dims(granularity, out.ndim)
        m = out.amax(dim=dims) if dims else out
        maxima[node] = m if node not in maxima else torch.maximum(maxima[node], m)
        if statistic == "percentile":
            values[node].append(out.detach().cpu())

    gm.eval()
    with torch.no_grad():
        for lo in tqdm(range(0, len(x), batch_size), desc="calibrating", disable=not progress, leave=False):
            _Recorder(gm, watch, sink).run(x[lo:lo + batch_size])
    if statistic == "max":
        return {n: _positive(m.numpy().astype(np.float64)) for n, m in maxima.items()}
    return {n: _positive(_percentile(torch.cat(v).numpy(), percentile, granularity)) for n, v in values.items()}


def _percentile(act: np.ndarray, q: float, granularity: str):
    """`q`-th percentile of the non-zero entries, over the dimensions one scale covers."""
    if granularity == "layer":
        nz = act[act > 0]
        return np.float64(np.percentile(nz, q)) if nz.size else np.float64(0.0)
    moved = np.moveaxis(act, 1, 0).reshape(act.shape[1], -1) if granularity == "channel" else act.reshape(len(act), -1).T
    masked = np.where(moved > 0, moved, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: a channel that never activates
        out = np.nanpercentile(masked, q, axis=1)
    out = np.nan_to_num(out, nan=0.0)
    return out if granularity == "channel" else out.reshape(act.shape[1:])


def _positive(scale):
    """A layer, channel or neuron that never activates keeps scale 1 (it never fires either way)."""
    scale = np.asarray(scale, dtype=np.float64)
    scale = np.where(scale > 0, scale, 1.0)
    return float(scale) if scale.ndim == 0 else scale
