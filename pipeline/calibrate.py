"""Activation statistics of a traced ANN on training data: the scale each IF layer is balanced to.

`max` is Max Norm (Diehl et al. 2015); `percentile` is Robust Norm (Rueckauer et al. 2017, 99.9th
percentile of the non-zero activations of a layer, as in their SNN toolbox).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.fx
from tqdm.auto import tqdm

# Values kept per layer for the percentile; beyond this a seeded uniform subsample is used.
MAX_PERCENTILE_SAMPLES = 4_000_000


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


def activation_scales(gm: torch.fx.GraphModule, activations: dict[str, str], x: torch.Tensor,
                      statistic: str = "max", percentile: float = 99.9, batch_size: int = 256,
                      seed: int = 0, progress: bool = False) -> dict[str, float]:
    """Per IF node: max, or `percentile` of non-zero values, of its ANN activation over `x` (layer-wise)."""
    if statistic not in ("max", "percentile"):
        raise ValueError(f"statistic must be 'max' or 'percentile', got {statistic!r}")
    watch = {fx_name: node for node, fx_name in activations.items()}
    maxima = {node: 0.0 for node in activations}
    values: dict[str, list[torch.Tensor]] = {node: [] for node in activations}

    def sink(fx_name, out):
        node = watch[fx_name]
        maxima[node] = max(maxima[node], float(out.max()))
        if statistic == "percentile":
            values[node].append(out[out > 0].flatten().cpu())

    gm.eval()
    with torch.no_grad():
        for lo in tqdm(range(0, len(x), batch_size), desc="calibrating", disable=not progress, leave=False):
            _Recorder(gm, watch, sink).run(x[lo:lo + batch_size])
    if statistic == "max":
        return _nonzero(maxima)
    gen = np.random.default_rng(seed)
    scales = {}
    for node, parts in values.items():
        v = torch.cat(parts).numpy() if parts else np.zeros(0, np.float32)
        if len(v) > MAX_PERCENTILE_SAMPLES:
            v = gen.choice(v, MAX_PERCENTILE_SAMPLES, replace=False)
        scales[node] = float(np.percentile(v, percentile)) if len(v) else 0.0
    return _nonzero(scales)


def _nonzero(scales: dict[str, float]) -> dict[str, float]:
    """A layer that never activates keeps scale 1 (its neurons never fire either way)."""
    return {k: (v if v > 0 else 1.0) for k, v in scales.items()}
