"""Fused IF neuron update over a chunk of time steps, compiled with numba: one pass over the input current.

The floats are exactly those of `backends.neurons.if_step` (no fast-math, so no contraction of r*x + v).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

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


MIN_PER_THREAD = 1 << 16   # neuron updates below which a second thread costs more than it saves
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _threads() -> ThreadPoolExecutor:
    """A pool of torch.get_num_threads() threads, made afresh in a forked child (threads do not survive fork)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid() or _pool[1]._max_workers != torch.get_num_threads():
        _pool = (os.getpid(), ThreadPoolExecutor(torch.get_num_threads(), thread_name_prefix="spikeport-if"))
    return _pool[1]


class IFKernel:
    """IF neurons of one node over all steps of a chunk at once; the batch is split over torch's thread count
    (the kernel releases the GIL). Reset by subtraction fires on v >= θ, reset to v_reset on v > θ."""

    def __init__(self, r: torch.Tensor, threshold: torch.Tensor, v_reset: torch.Tensor, shape, *, subtract: bool):
        flat = [t.expand(shape).contiguous().reshape(-1).cpu().numpy() for t in (r, threshold, v_reset)]
        self.params, self.size = flat, int(np.prod(shape))
        self.unit_r, self.subtract = bool((flat[0] == 1).all()), subtract

    def __call__(self, v: torch.Tensor, x: torch.Tensor, out: torch.Tensor, counts: torch.Tensor) -> None:
        """`v` (batch, *shape) updated in place from `x` (T, batch, *shape), spikes written to `out` (like `x`),
        spike counts added to `counts` (batch, *shape); parameters in v's dtype."""
        steps, batch, size = len(x), len(v), self.size
        arrays = (v.view(batch, size).numpy(), x.reshape(steps, batch, size).numpy(),
                  out.view(steps, batch, size).numpy(), counts.view(batch, size).numpy())
        parts = max(1, min(torch.get_num_threads(), steps * batch * size // MIN_PER_THREAD, batch))
        bounds = np.linspace(0, batch, parts + 1).astype(int)
        slices = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
        run = lambda b: _if_chunk(arrays[0][b], arrays[1][:, b], *self.params, arrays[2][:, b],  # noqa: E731
                                  arrays[3][b], self.unit_r, self.subtract)
        if parts == 1:
            run(slices[0])
            return
        for done in [_threads().submit(run, b) for b in slices]:
            done.result()
