"""Event-driven accumulation (backends.events): the scatter kernels against torch's dense conv2d/linear, and the
reference simulator's per-step choice between the two, which every execution mode makes alike."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import events
import backends
from tests.test_reference_modes import MODES, assert_same, residual_graph


def _dyadic(gen, *shape):
    """Values on a grid of 1/8 in [-2, 2]: every sum of a few hundred of them is exact in float32, in any order,
    so the scatter kernel must equal dense compute bit for bit."""
    return torch.randint(-16, 17, shape, generator=gen).float() / 8


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), groups=st.sampled_from([1, 2]), kernel=st.integers(1, 3),
       stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2), size=st.integers(3, 7),
       rate=st.floats(0, 1), binary=st.booleans(), split_ns=st.sampled_from([1e-9, 1e12]))
def test_scatter_conv_equals_dense_conv(seed, groups, kernel, stride, padding, dilation, size, rate, binary, split_ns):
    gen = torch.Generator().manual_seed(seed)
    cin, cout, rows = 2 * groups, 3 * groups, 5
    x = (torch.rand(rows, cin, size, size, generator=gen) < rate).float()
    if not binary:   # the kernel adds w * s for any non-zero s (pooled spikes, graded input)
        x = x * _dyadic(gen, rows, cin, size, size)
    w, b = _dyadic(gen, cout, cin // groups, kernel, kernel), _dyadic(gen, cout)
    kw = dict(stride=(stride, stride), padding=(padding, padding), dilation=(dilation, dilation), groups=groups)
    if (size + 2 * padding - dilation * (kernel - 1) - 1) < 0:
        return   # no output position
    want = F.conv2d(x, w, b, **kw)
    with mock.patch.object(events, "SPLIT_NS", split_ns), mock.patch.object(torch, "get_num_threads", lambda: 2):
        got = events.EventConv(w, b, (cin, size, size), **kw)(x)
    assert got.shape == want.shape and torch.equal(got, want)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rate=st.floats(0, 1), bias=st.booleans())
def test_scatter_linear_equals_dense_linear(seed, rate, bias):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(6, 20, generator=gen) < rate).float()
    w, b = _dyadic(gen, 7, 20), (_dyadic(gen, 7) if bias else None)
    assert torch.equal(events.EventLinear(w, b)(x), F.linear(x, w, b))


def test_scatter_adds_in_input_order():
    """Where float32 rounding depends on order, the kernel's sum is the one taken in input order (channel, row,
    column): 1 + 2^-24 + 2^-24 is 1 from left to right, 1 + 2^-23 the other way."""
    w = torch.tensor([[[[1.0]], [[2.0 ** -24]], [[2.0 ** -24]]]])   # (1 output, 3 input channels, 1x1)
    x = torch.ones(1, 3, 1, 1)
    kw = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)
    assert events.EventConv(w, torch.zeros(1), (3, 1, 1), **kw)(x).item() == 1.0
    assert events.EventConv(w.flip(1), torch.zeros(1), (3, 1, 1), **kw)(x).item() == 1.0 + 2.0 ** -23


def test_cost_model_keeps_small_layers_dense_and_picks_sparse_steps_of_large_ones():
    """Per row, a 16x8x8 -> 32 stride-2 conv (the digits CNN's conv2) costs less dense than scanning its input
    and writing its output, so it never runs event-driven; a 256x8x8 -> 256 conv (VGG-16) does below a rate."""
    kw = dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1)
    small = events.EventConv(torch.zeros(32, 16, 3, 3), torch.zeros(32), (16, 8, 8), **kw)
    assert small.spike_limit(1) <= 0
    kw["stride"] = (1, 1)
    large = events.EventConv(torch.zeros(256, 256, 3, 3), torch.zeros(256), (256, 8, 8), **kw)
    dense_ns = events.DENSE_NS_PER_MAC * 256 * 64 * 256 * 9
    fixed_ns = events.EVENT_NS_PER_ELEMENT * 2 * 256 * 64
    adds = 256 * (8 * 8 * 9 - 4 * 8 * 3 + 4) / 64   # weights added per spike: 3x3 taps, fewer at the border
    assert large.adds == pytest.approx(adds)
    assert large.spike_limit(32) == pytest.approx(32 * (dense_ns - fixed_ns) / (events.EVENT_NS_PER_ADD * adds))
    assert large.pays(0, 32) and not large.pays(256 * 64 * 32, 32)


def _reference(kind, x, limit, **kw):
    with mock.patch.object(events._Scatter, "spike_limit", limit):
        return backends.get("reference").run(residual_graph(kind), x, 13, batch_size=4, **kw)


@pytest.mark.parametrize("kind", ["if-subtract", "snm", "lif"])
@pytest.mark.parametrize("share", ["half", "all"])
def test_modes_identical_when_steps_run_event_driven(kind, share):
    """With the cost model's limit set so that about half of conv_c's (batch, step) inputs (or all of them) are
    sparse enough, step and layer modes (any chunking) make the same choice per step and give identical
    results, which differ from all-dense compute by float32 rounding only."""
    x = np.random.default_rng(1).uniform(-1, 1.5, (7, 2, 6, 6)).astype(np.float32)
    dense = _reference(kind, x, lambda self, rows: 0.0, mode="step", record=True)
    n1 = np.abs(dense.spikes["n1"]).reshape(7, 13, -1) != 0          # conv_c's input, (sample, step, 144)
    fractions = [n1[lo:lo + 4, t].mean() for lo in (0, 4) for t in range(13)]
    fraction = float(np.median(fractions)) if share == "half" else 2.0
    calls = []
    real_conv = events.EventConv.__call__

    def counted(self, x):
        calls.append(len(x))
        return real_conv(self, x)
    with mock.patch.object(events.EventConv, "__call__", counted):
        runs = [_reference(kind, x, lambda self, rows: fraction * self.inputs * rows, mode=mode, record=True,
                           **({} if size is None else {"max_elements": size})) for mode, size in MODES]
    for other in runs[1:]:
        assert_same(runs[0], other)
    sparse = sum(f < fraction for f in fractions)
    assert (0 < sparse < 26) if share == "half" else sparse == 26
    assert calls[:sparse] == [4 if i < 13 else 3 for i in range(26) if fractions[i] < fraction], \
        "step mode: one event-driven call of conv_c per sparse (batch, step)"
    np.testing.assert_allclose(runs[0].outputs, dense.outputs, rtol=1e-4, atol=1e-4)
