"""Event-driven accumulation for Conv2d and Linear/Affine nodes fed by sparse input: numba scatter kernels (cost
proportional to the non-zero inputs) and the cost model that says, per step, whether they beat dense compute.

Each output is its bias plus w * s over the non-zero inputs s in input order (channel, row, column), in the
weights' dtype; every row (sample) is independent, so any split of the rows gives the same floats.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

from backends import kernels

# Cost model, ns on the 2-core machine of docs/benchmarks.md ("Event-driven accumulation against dense compute",
# 2 threads): the scatter kernels spend ~0.1 ns per weight added and 0.5-0.9 ns per input scanned or output
# written; oneDNN / MKL ~0.009 ns per multiply-accumulate on the digits CNN's and VGG-16's layer shapes.
EVENT_NS_PER_ADD = 0.1
EVENT_NS_PER_ELEMENT = 0.6
DENSE_NS_PER_MAC = 0.009
SPLIT_NS = 300_000   # predicted ns per thread below which splitting the rows over threads does not pay


@numba.njit(nogil=True, cache=True)
def _scatter_conv(x, wt, bias, tap_start, tap_out, tap_k, y, acc):  # pragma: no cover (compiled)
    """x (R, C*HW) inputs; wt (C, K, Opg) weights of each input channel's group; bias (O,); y (R, O*P) outputs;
    acc (P*O,) scratch. Input position i reaches output positions tap_out[tap_start[i]:tap_start[i+1]] through
    kernel offsets tap_k[...]."""
    rows, channels, opg = x.shape[0], wt.shape[0], wt.shape[2]
    outputs = bias.shape[0]
    positions = acc.shape[0] // outputs
    hw = x.shape[1] // channels
    cpg = channels // (outputs // opg)
    for r in range(rows):
        xr = x[r]
        for p in range(positions):
            acc[p * outputs:(p + 1) * outputs] = bias
        for c in range(channels):
            g0 = (c // cpg) * opg
            for i in range(hw):
                s = xr[c * hw + i]
                if s == 0:
                    continue
                for t in range(tap_start[i], tap_start[i + 1]):
                    base = tap_out[t] * outputs + g0
                    a = acc[base:base + opg]
                    w = wt[c, tap_k[t]]
                    for j in range(opg):
                        a[j] += w[j] * s
        yr = y[r]
        for o in range(outputs):
            for p in range(positions):
                yr[o * positions + p] = acc[p * outputs + o]


@numba.njit(nogil=True, cache=True)
def _scatter_linear(x, wt, bias, y):  # pragma: no cover (compiled)
    """x (R, N) inputs; wt (N, M) weights; bias (M,); y (R, M) outputs."""
    for r in range(x.shape[0]):
        yr = y[r]
        yr[:] = bias
        for i in range(x.shape[1]):
            s = x[r, i]
            if s != 0:
                w = wt[i]
                for j in range(yr.shape[0]):
                    yr[j] += w[j] * s


def conv_taps(in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
              dilation: tuple[int, int], out_hw: tuple[int, int]):
    """For each input position (row-major), the (output position, kernel offset) pairs it reaches, as CSR arrays
    (start, output position, offset): output (oy, ox) reads input oy*stride - padding + ky*dilation."""
    start, outs, offsets = [0], [], []
    for iy in range(in_hw[0]):
        for ix in range(in_hw[1]):
            for ky in range(kernel[0]):
                ny = iy + padding[0] - ky * dilation[0]
                if ny < 0 or ny % stride[0] or ny // stride[0] >= out_hw[0]:
                    continue
                for kx in range(kernel[1]):
                    nx = ix + padding[1] - kx * dilation[1]
                    if nx < 0 or nx % stride[1] or nx // stride[1] >= out_hw[1]:
                        continue
                    outs.append((ny // stride[0]) * out_hw[1] + nx // stride[1])
                    offsets.append(ky * kernel[1] + kx)
            start.append(len(outs))
    return np.array(start, np.int64), np.array(outs, np.int64), np.array(offsets, np.int64)


class _Scatter:
    """Shared by the two layer kinds: the cost model over `inputs`, `outputs`, `macs` (per row) and `adds` (mean
    weights added per non-zero input)."""

    inputs: int
    outputs: int
    macs: int
    adds: float
    out_shape: tuple[int, ...]

    def spike_limit(self, rows: int) -> float:
        """Non-zero inputs (over `rows` rows) below which the scatter kernel is predicted faster than dense."""
        saved = (DENSE_NS_PER_MAC * self.macs - EVENT_NS_PER_ELEMENT * (self.inputs + self.outputs)) * rows
        return saved / (EVENT_NS_PER_ADD * self.adds)

    def pays(self, nonzero, rows: int):
        """Whether event-driven is predicted faster for `nonzero` inputs over `rows` rows (an int, or a tensor of
        counts per step giving one answer per step)."""
        return nonzero < self.spike_limit(rows)

    def _shares(self, rows: int) -> float:
        """`rows` rows' work in SPLIT_NS shares (kernels.split_rows): the kernel is used where it is predicted
        faster than dense, so dense's predicted time bounds it."""
        return DENSE_NS_PER_MAC * self.macs * rows / SPLIT_NS


class EventConv(_Scatter):
    """A Conv2d node (weight (O, C/groups, KH, KW), bias (O,)) on inputs of shape (C, H, W), event-driven."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, in_shape, stride, padding, dilation, groups: int):
        out_ch, cpg, kh, kw = weight.shape
        channels, height, width = (int(s) for s in in_shape)
        out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        self.taps = conv_taps((height, width), (kh, kw), stride, padding, dilation, (out_h, out_w))
        opg = out_ch // groups
        # wt[c, k, j] = weight[group(c) * opg + j, c % cpg, k]
        w = weight.detach().cpu().reshape(groups, opg, cpg, kh * kw).permute(0, 2, 3, 1)
        self.wt = np.ascontiguousarray(w.reshape(channels, kh * kw, opg).numpy())
        self.bias = np.ascontiguousarray(bias.detach().cpu().numpy())
        self.out_shape = (out_ch, out_h, out_w)
        self.inputs, self.outputs = channels * height * width, out_ch * out_h * out_w
        self.macs = self.outputs * cpg * kh * kw
        self.adds = len(self.taps[1]) * opg / (height * width)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = len(x)
        x_, y = np.ascontiguousarray(x.numpy()).reshape(rows, -1), np.empty((rows, self.outputs), self.wt.dtype)
        kernels.split_rows(lambda r: _scatter_conv(x_[r], self.wt, self.bias, *self.taps, y[r],
                                           np.empty(self.outputs, self.wt.dtype)), rows, self._shares(rows))
        return torch.from_numpy(y).view(rows, *self.out_shape)


class EventLinear(_Scatter):
    """A Linear/Affine node (weight (M, N), bias (M,) or None) on inputs of shape (N,), event-driven."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.wt = np.ascontiguousarray(weight.detach().cpu().numpy().T)
        n_in, n_out = self.wt.shape
        bias = torch.zeros(n_out, dtype=weight.dtype) if bias is None else bias
        self.bias = np.ascontiguousarray(bias.detach().cpu().numpy())
        self.inputs, self.outputs, self.macs, self.adds = n_in, n_out, n_in * n_out, float(n_out)
        self.out_shape = (n_out,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x_, y = np.ascontiguousarray(x.numpy()), np.empty((len(x), self.outputs), self.wt.dtype)
        kernels.split_rows(lambda r: _scatter_linear(x_[r], self.wt, self.bias, y[r]), len(x), self._shares(len(x)))
        return torch.from_numpy(y)

