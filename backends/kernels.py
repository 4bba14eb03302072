"""Fused neuron updates over a chunk of time steps, compiled with numba: one pass over the input current, for
IF neurons and the signed neuron with memory (DNISNM), optionally with a following Scale and pooling folded in
(`Fold`); and the input events of a weighted node counted in one pass.

The floats are exactly those of `backends.neurons.if_step` / `snm_step` (no fast-math, so no contraction of r*x + v)
and of torch's Scale and avg_pool2d on their spikes.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch


@numba.njit(inline="always")
def _if_fire(vb, s, vv, threshold, v_reset, subtract):  # pragma: no cover (compiled)
    """IF neuron `s` after integration to `vv`: reset by subtraction (fires on vv >= θ) or to v_reset (fires on
    vv > θ), its new potential written to vb[s]; returns whether it fired."""
    if subtract:
        fired = vv >= threshold[s]
        vb[s] = vv - threshold[s] if fired else vv
    else:
        fired = vv > threshold[s]
        vb[s] = v_reset[s] if fired else vv
    return fired


@numba.njit(inline="always")
def _snm_fire(vb, mb, s, vv, threshold, one):  # pragma: no cover (compiled)
    """Signed neuron with memory `s` (`backends.neurons.snm_step`) after integration to `vv`: new potential and
    memory written to vb[s], mb[s]; returns z in {-1, 0, +1}. `one` is 1 in the arrays' dtype: the arithmetic
    stays in that dtype (numba would widen float32 with a float64 or int constant), which LLVM then vectorizes."""
    t = threshold[s]
    pos = vv >= t
    neg = (vv <= -t) & (mb[s] > 0) & (vv < t)   # & not `and`: selects, no branches
    zero = one - one
    z = one if pos else (-one if neg else zero)
    vb[s] = vv - (t if pos else (-t if neg else zero))   # v - θz: θz is exact
    mb[s] += z
    return z


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
            for s in range(size):
                fired = _if_fire(vb, s, vb[s] + (xb[s] if unit_r else r[s] * xb[s]), threshold, v_reset, subtract)
                ob[s] = fired
                cb[s] += fired
                n += fired
            rows[t, b] = n


@numba.njit(nogil=True, cache=True)
def _snm_chunk(v, m, x, r, threshold, out, counts, rows, unit_r):  # pragma: no cover (compiled)
    """`backends.neurons.snm_step` over all steps of one chunk; shapes as `_if_chunk`, m like v. out gets z in
    {-1, 0, +1}, counts |z|, rows[t, b] the number of non-zero z of sample b at step t."""
    steps, batch, size = x.shape
    one = threshold.dtype.type(1)
    for t in range(steps):
        for b in range(batch):
            vb, mb, xb, ob, cb = v[b], m[b], x[t, b], out[t, b], counts[b]
            for s in range(size):
                ob[s] = _snm_fire(vb, mb, s, vb[s] + (xb[s] if unit_r else r[s] * xb[s]), threshold, one)
            n = 0
            for s in range(size):   # a second loop: with counts in the first, LLVM did not vectorize it
                fired = ob[s] != 0
                cb[s] += fired
                n += fired
            rows[t, b] = n


IF_SUBTRACT, IF_ZERO, SNM = 0, 1, 2   # the neuron kinds of `_folded_chunk`


@numba.njit(nogil=True, cache=True)
def _folded_chunk(v, m, x, r, threshold, v_reset, out, counts, rows, unit_r, kind, dest, scale,
                  divisor):  # pragma: no cover (compiled)
    """A neuron node of `kind` over all steps of one chunk (shapes as `_if_chunk`; m unused but for SNM) with what
    follows it folded in (`Fold`): out (T, B, O) gets, per output o, the sum of z[s] * scale[s] over the neurons s
    with dest[s] == o in increasing s, then divided by `divisor` (skipped where it is 1); counts and rows as in
    `_if_chunk`. Zero terms are added too (no branch on the spike): adding ±0 to a sum started at +0 never
    changes it. Neuron update, counting and folding are separate loops over a row's spikes, so that LLVM
    vectorizes the first two."""
    steps, batch, size = x.shape
    z, one = np.empty(size, v.dtype), threshold.dtype.type(1)   # z: the spikes of one (step, sample)
    for t in range(steps):
        for b in range(batch):
            vb, mb, xb, ob, cb = v[b], m[b], x[t, b], out[t, b], counts[b]
            if kind == SNM:
                for s in range(size):
                    z[s] = _snm_fire(vb, mb, s, vb[s] + (xb[s] if unit_r else r[s] * xb[s]), threshold, one)
            else:
                for s in range(size):
                    z[s] = _if_fire(vb, s, vb[s] + (xb[s] if unit_r else r[s] * xb[s]), threshold, v_reset,
                                    kind == IF_SUBTRACT)
            rows[t, b] = _count_row(z, cb)
            ob[:] = 0
            for s in range(size):
                if dest[s] >= 0:
                    ob[dest[s]] += z[s] * scale[s]
            if divisor != 1:
                for o in range(len(ob)):
                    ob[o] = ob[o] / divisor


@numba.njit(nogil=True, cache=True)
def _count_row(row, counts):  # pragma: no cover (compiled)
    """Add 1 to counts[s] where row[s] is non-zero; return how many are."""
    n = 0
    for s in range(len(row)):
        nz = row[s] != 0
        counts[s] += nz
        n += nz
    return n


@numba.njit(nogil=True, cache=True)
def _nonzero_chunk(x, counts, rows):  # pragma: no cover (compiled)
    """x (T, B, S): counts (S,) gets the number of non-zero x[:, :, s], rows[t, b] the number of non-zero x[t, b]."""
    steps, batch, _ = x.shape
    for t in range(steps):
        for b in range(batch):
            rows[t, b] = _count_row(x[t, b], counts)


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


class Fold:
    """What a neuron kernel computes in the same pass as the spikes, instead of writing them: z times a per-neuron
    `scale` (a following Scale node; 1 if none), summed over the windows of a following pooling node whose windows
    tile its input (kernel = stride, no padding; `window` = kernel (kh, kw), None if none) and divided by
    `divisor` (kh*kw for AvgPool2d, 1 for SumPool2d). The floats are those of torch's CPU `x * scale` then
    `avg_pool2d`: products exact (z in {-1, 0, 1}), each window summed from +0 in row-major order, then one
    division."""

    def __init__(self, shape, dtype: np.dtype, scale=None, window: tuple[int, int] | None = None,
                 divisor: float = 1.0):
        shape = tuple(shape)
        index = np.arange(int(np.prod(shape))).reshape(shape)
        if window is None:
            dest, self.out_shape = index, shape
        else:
            (c, h, w), (kh, kw) = shape, window
            oh, ow = h // kh, w // kw
            rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
            tile = (rows // kh) * ow + cols // kw + np.arange(c)[:, None, None] * (oh * ow)
            dest, self.out_shape = np.where((rows < oh * kh) & (cols < ow * kw), tile, -1), (c, oh, ow)
        self.dest = np.ascontiguousarray(dest.reshape(-1), dtype=np.int64)
        self.scale = np.ascontiguousarray(np.broadcast_to(np.ones((), dtype) if scale is None else
                                                          np.asarray(scale, dtype), shape).reshape(-1))
        self.divisor = float(divisor)


class IFKernel:
    """IF neurons of one node over all steps of a chunk at once; the batch is split over torch's thread count
    (the kernel releases the GIL). Reset by subtraction fires on v >= θ, reset to v_reset on v > θ."""

    def __init__(self, r: torch.Tensor, threshold: torch.Tensor, v_reset: torch.Tensor, shape, *, subtract: bool):
        self.params, self.size = _flat(shape, r, threshold, v_reset), int(np.prod(shape))
        self.unit_r, self.subtract = bool((self.params[0] == 1).all()), subtract

    def __call__(self, v: torch.Tensor, x: torch.Tensor, out: torch.Tensor, counts: torch.Tensor,
                 rows: torch.Tensor, fold: Fold | None = None) -> torch.Tensor:
        """`v` (batch, *shape) updated in place from `x` (T, batch, *shape), spikes written to `out` (like `x`),
        spike counts added to `counts` (batch, *shape), spikes per (step, sample) written to `rows` (T, batch,
        int32); returns `v`. Given a `fold`, `out` (T, batch, *fold.out_shape) gets the folded spikes instead.
        Tensors on the CPU (`supports`), the written ones contiguous; `x` may be any view of its shape (e.g. one
        step expanded over T); parameters in v's dtype."""
        run, v_ = _chunked(v, x, out, counts, rows), v.view(len(v), self.size).numpy()
        if fold is None:
            run(lambda b, x_, out_, counts_, rows_: _if_chunk(v_[b], x_, *self.params, out_, counts_, rows_,
                                                             self.unit_r, self.subtract))
        else:
            kind = IF_SUBTRACT if self.subtract else IF_ZERO
            run(lambda b, x_, out_, counts_, rows_: _folded_chunk(v_[b], v_[b], x_, *self.params, out_, counts_,
                                                                 rows_, self.unit_r, kind, fold.dest, fold.scale,
                                                                 fold.divisor))
        return v


class SNMKernel:
    """Signed neurons with memory (DNISNM Eq. 19-23) of one node over all steps of a chunk, as `IFKernel`."""

    def __init__(self, r: torch.Tensor, threshold: torch.Tensor, shape):
        self.params, self.size = _flat(shape, r, threshold), int(np.prod(shape))
        self.unit_r = bool((self.params[0] == 1).all())

    def __call__(self, state: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, out: torch.Tensor,
                 counts: torch.Tensor, rows: torch.Tensor, fold: Fold | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`state` (v, m), each (batch, *shape), updated in place and returned; otherwise as `IFKernel.__call__`,
        with signed spikes in `out` and |z| added to `counts`."""
        v, m = state
        run = _chunked(v, x, out, counts, rows)
        v_, m_ = v.view(len(v), self.size).numpy(), m.view(len(m), self.size).numpy()
        if fold is None:
            run(lambda b, x_, out_, counts_, rows_: _snm_chunk(v_[b], m_[b], x_, *self.params, out_, counts_, rows_,
                                                              self.unit_r))
        else:
            r, threshold = self.params
            run(lambda b, x_, out_, counts_, rows_: _folded_chunk(v_[b], m_[b], x_, r, threshold, threshold, out_,
                                                                 counts_, rows_, self.unit_r, SNM, fold.dest,
                                                                 fold.scale, fold.divisor))
        return state


def _chunked(v: torch.Tensor, x: torch.Tensor, out: torch.Tensor, counts: torch.Tensor, rows: torch.Tensor):
    """A runner of a chunk kernel over the batch split in row ranges (`split_rows`): it calls
    `kernel(rows b, x[:, b], out[:, b], counts[b], rows[:, b])` with numpy views, flattened past (step, sample)."""
    steps, batch = len(x), len(v)
    x_, out_ = x.reshape(steps, batch, -1).numpy(), out.view(steps, batch, -1).numpy()
    counts_, rows_ = counts.view(batch, -1).numpy(), rows.numpy()
    shares = x_.size / MIN_PER_THREAD

    def run(kernel):
        split_rows(lambda b: kernel(b, x_[:, b], out_[:, b], counts_[b], rows_[:, b]), batch, shares)
    return run


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
