"""Fused neuron updates over a chunk of time steps, compiled with numba: one pass over the input current, for
IF neurons and the signed neuron with memory (DNISNM); and the input events of a weighted node counted in one pass.

The floats are exactly those of `backends.neurons.if_step` / `snm_step` (no fast-math, so no contraction of r*x + v).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch


@numba.njit(nogil=True, cache=True)
def _if_chunk(v, x, r, threshold, v_reset, out, counts, rows, unit_r, subtract):  # pragma: no cover (compiled)
    """v (B, S), x and out (T, B, S), r/threshold/v_reset (S,), counts (B, S), rows (T, B): all steps of one
    chunk; rows[t, b] gets the number of spikes of sample b at step t. Branch-free inner loops (selects),
    which LLVM vectorizes."""
    steps, batch, size = x.shape
    for t in range(steps):
        for b in range(batch):
            vb, xb, ob, cb = v[b], x[t, b], out[t, b], counts[b]
            n = 0
            if subtract:
                for s in range(size):
                    vv = vb[s] + (xb[s] if unit_r else r[s] * xb[s])
                    fired = vv >= threshold[s]
                    vb[s] = vv - threshold[s] if fired else vv
                    ob[s] = fired
                    cb[s] += fired
                    n += fired
            else:
                for s in range(size):
                    vv = vb[s] + (xb[s] if unit_r else r[s] * xb[s])
                    fired = vv > threshold[s]
                    vb[s] = v_reset[s] if fired else vv
                    ob[s] = fired
                    cb[s] += fired
                    n += fired
            rows[t, b] = n


@numba.njit(nogil=True, cache=True)
def _snm_chunk(v, m, x, r, threshold, out, counts, rows, unit_r):  # pragma: no cover (compiled)
    """`backends.neurons.snm_step` over all steps of one chunk; shapes as `_if_chunk`, m like v. out gets z in
    {-1, 0, +1}, counts |z|, rows[t, b] the number of non-zero z of sample b at step t."""
    steps, batch, size = x.shape
    for t in range(steps):
        for b in range(batch):
            vb, mb, xb, ob, cb = v[b], m[b], x[t, b], out[t, b], counts[b]
            n = 0
            for s in range(size):
                vv = vb[s] + (xb[s] if unit_r else r[s] * xb[s])
                pos = vv >= threshold[s]
                neg = (vv <= -threshold[s]) and (mb[s] > 0) and not pos
                z = 1.0 if pos else (-1.0 if neg else 0.0)
                vb[s] = vv - threshold[s] * z
                mb[s] += z
                ob[s] = z
                fired = pos or neg
                cb[s] += fired
                n += fired
            rows[t, b] = n


@numba.njit(nogil=True, cache=True)
def _nonzero_chunk(x, counts, rows):  # pragma: no cover (compiled)
    """x (T, B, S): counts (S,) gets the number of non-zero x[:, :, s], rows[t, b] the number of non-zero x[t, b]."""
    steps, batch, size = x.shape
    for t in range(steps):
        for b in range(batch):
            xb = x[t, b]
            n = 0
            for s in range(size):
                nz = xb[s] != 0
                counts[s] += nz
                n += nz
            rows[t, b] = n


def count_nonzero(x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Non-zero entries of `x` (T, batch, *shape; CPU, `supports`) added per element of *shape to `counts` (int64,
    contiguous) and returned per (step, sample) as a (T, batch) int32 tensor: one pass, no boolean copy of `x`."""
    rows = torch.empty(x.shape[:2], dtype=torch.int32)
    _nonzero_chunk(x.reshape(*x.shape[:2], -1).numpy(), counts.view(-1).numpy(), rows.numpy())
    return rows


def supports(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the kernel runs tensors of this device and dtype: the CPU, float32 or float64."""
    return device.type == "cpu" and dtype in (torch.float32, torch.float64)


MIN_PER_THREAD = 1 << 20   # neuron updates per thread (~0.3 ms) below which splitting cost more than it saved
_pool: tuple[tuple[int, int], ThreadPoolExecutor] | None = None   # ((pid, workers), pool)


def _threads() -> ThreadPoolExecutor:
    """A pool of torch.get_num_threads() - 1 threads (the caller is the other), made afresh in a forked child
    (threads do not survive fork)."""
    global _pool
    key = (os.getpid(), max(1, torch.get_num_threads() - 1))
    if _pool is None or _pool[0] != key:
        _pool = (key, ThreadPoolExecutor(key[1], thread_name_prefix="spikeport"))
    return _pool[1]


def _flat(shape, *params: torch.Tensor) -> list[np.ndarray]:
    """Node parameters broadcast to the node shape, flattened, as numpy arrays for a kernel."""
    return [t.expand(shape).contiguous().reshape(-1).cpu().numpy() for t in params]


class IFKernel:
    """IF neurons of one node over all steps of a chunk at once; the batch is split over torch's thread count
    (the kernel releases the GIL). Reset by subtraction fires on v >= θ, reset to v_reset on v > θ."""

    def __init__(self, r: torch.Tensor, threshold: torch.Tensor, v_reset: torch.Tensor, shape, *, subtract: bool):
        self.params, self.size = _flat(shape, r, threshold, v_reset), int(np.prod(shape))
        self.unit_r, self.subtract = bool((self.params[0] == 1).all()), subtract

    def __call__(self, v: torch.Tensor, x: torch.Tensor, out: torch.Tensor, counts: torch.Tensor,
                 rows: torch.Tensor) -> None:
        """`v` (batch, *shape) updated in place from `x` (T, batch, *shape), spikes written to `out` (like `x`),
        spike counts added to `counts` (batch, *shape), spikes per (step, sample) written to `rows` (T, batch,
        int32). Tensors on the CPU (`supports`), the written ones contiguous; `x` may be any view of its
        shape (e.g. one step expanded over T); parameters in v's dtype."""
        steps, batch, size = len(x), len(v), self.size
        v_, x_ = v.view(batch, size).numpy(), x.reshape(steps, batch, size).numpy()
        out_, counts_ = out.view(steps, batch, size).numpy(), counts.view(batch, size).numpy()
        rows_ = rows.numpy()
        split_rows(lambda b: _if_chunk(v_[b], x_[:, b], *self.params, out_[:, b], counts_[b], rows_[:, b],
                                       self.unit_r, self.subtract), batch, steps * batch * size / MIN_PER_THREAD)


class SNMKernel:
    """Signed neurons with memory (DNISNM Eq. 19-23) of one node over all steps of a chunk, as `IFKernel`."""

    def __init__(self, r: torch.Tensor, threshold: torch.Tensor, shape):
        self.params, self.size = _flat(shape, r, threshold), int(np.prod(shape))
        self.unit_r = bool((self.params[0] == 1).all())

    def __call__(self, state: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, out: torch.Tensor,
                 counts: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`state` (v, m), each (batch, *shape), updated in place; otherwise as `IFKernel.__call__`, with signed
        spikes in `out` and |z| added to `counts`."""
        v, m = state
        steps, batch, size = len(x), len(v), self.size
        v_, m_, x_ = v.view(batch, size).numpy(), m.view(batch, size).numpy(), x.reshape(steps, batch, size).numpy()
        out_, counts_ = out.view(steps, batch, size).numpy(), counts.view(batch, size).numpy()
        rows_ = rows.numpy()
        split_rows(lambda b: _snm_chunk(v_[b], m_[b], x_[:, b], *self.params, out_[:, b], counts_[b], rows_[:, b],
                                        self.unit_r), batch, steps * batch * size / MIN_PER_THREAD)
        return state


def split_rows(run, rows: int, shares: float) -> None:
    """`run(slice)` over `rows` independent rows, split over at most torch.get_num_threads() threads, each with
    at least one of the `shares` (work / the least worth a thread); `run` must release the GIL. The calling
    thread takes the first part."""
    parts = max(1, min(torch.get_num_threads(), int(shares), rows))
    cuts = [rows * i // parts for i in range(parts + 1)]
    others = [_threads().submit(run, slice(lo, hi)) for lo, hi in zip(cuts[1:-1], cuts[2:])]
    run(slice(0, cuts[1]))
    for done in others:
        done.result()
