"""Fused IF neuron update over a chunk of time steps, compiled with numba: one pass over the input current.

The floats are exactly those of `backends.neurons.if_step` (no fast-math, so no contraction of r*x + v).
"""
from __future__ import annotations

import numba
import numpy as np
import torch


@numba.njit(nogil=True, cache=True)
def _if_chunk(v, x, r, threshold, v_reset, out, counts, unit_r, subtract):  # pragma: no cover (compiled)
    """v (B, S), x and out (T, B, S), r/threshold/v_reset (S,), counts (B, S): all steps of one chunk.
    Branch-free inner loops (selects), which LLVM vectorizes."""
    steps, batch, size = x.shape
    for t in range(steps):
        for b in range(batch):
            vb, xb, ob, cb = v[b], x[t, b], out[t, b], counts[b]
            if subtract:
                for s in range(size):
                    vv = vb[s] + (xb[s] if unit_r else r[s] * xb[s])
                    fired = vv >= threshold[s]
                    vb[s] = vv - threshold[s] if fired else vv
                    ob[s] = fired
                    cb[s] += fired
            else:
                for s in range(size):
                    vv = vb[s] + (xb[s] if unit_r else r[s] * xb[s])
                    fired = vv > threshold[s]
                    vb[s] = v_reset[s] if fired else vv
                    ob[s] = fired
                    cb[s] += fired


def applies(x: torch.Tensor, *written: torch.Tensor) -> bool:
    """Whether the kernel can run: every tensor on the CPU in float32 or float64, the written ones contiguous
    (the input current `x` may be a view, e.g. one step expanded over T)."""
    return all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in (x, *written)) \
        and all(t.is_contiguous() for t in written)


def if_steps_into(v: torch.Tensor, x: torch.Tensor, r: torch.Tensor, threshold: torch.Tensor,
                  v_reset: torch.Tensor, out: torch.Tensor, counts: torch.Tensor, *, unit_r: bool,
                  subtract: bool) -> None:
    """IF neurons over all steps of `x` (T, batch, *shape) at once: `v` (batch, *shape) updated in place,
    spikes written to `out` (like `x`), spike counts added to `counts` (batch, *shape); parameters are
    flat (prod(shape),) tensors of v's dtype. Reset by subtraction fires on v >= θ, reset to v_reset on v > θ.
    """
    steps, batch = len(x), len(v)
    size = int(np.prod(v.shape[1:]))
    _if_chunk(v.view(batch, size).numpy(), x.reshape(steps, batch, size).numpy(), r.numpy(), threshold.numpy(),
              v_reset.numpy(), out.view(steps, batch, size).numpy(), counts.view(batch, size).numpy(), unit_r,
              subtract)
