"""Quantization to a fixed-point target: the shared exponent against brute force over all exponents, the bias
and input formats against hand-worked values, and the quantized graph's metadata read back exactly."""
from __future__ import annotations

import nir
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import backends
from backends import fixedpoint as fx
from pipeline.io.atomic import write_nir
from pipeline.io.nirio import read_graph
from pipeline.hardware.quantize import QuantizeError, choose_exponent, quantize, quantize_bias, quantize_weights
from tests.graphs import mlp

REF = backends.get("reference")


def _brute_force(w: np.ndarray, bits: int, lo_exp: int, hi_exp: int) -> tuple[int, float]:
    """Over every exponent: the squared error of round-to-nearest without clipping, for the exponents at
    which no weight leaves the mantissa range; the smallest best one."""
    positive, negative = (w > 0).any(), (w < 0).any()
    if positive and negative:
        lo, hi = -2 ** (bits - 1), 2 ** (bits - 1) - 1
    else:
        lo, hi = (0, 2 ** bits - 1) if not negative else (-(2 ** bits - 1), 0)
    best = None
    for exp in range(lo_exp, hi_exp + 1):
        m = np.round(w / 2.0 ** exp)
        if m.min() < lo or m.max() > hi:
            continue
        err = float(((m * 2.0 ** exp - w) ** 2).sum())
        if best is None or err < best[1]:
            best = (exp, err)
    return best if best is not None else (hi_exp, float("nan"))


magnitudes = st.lists(st.floats(-6, 3), min_size=1, max_size=40)   # log10 |w|: nine orders of magnitude


@settings(max_examples=300, deadline=None)
@given(magnitudes, st.lists(st.booleans(), min_size=40, max_size=40), st.sampled_from([2, 4, 6, 8]),
       st.sampled_from([(-8, 7), (-30, 30)]))
def test_exponent_is_the_brute_force_optimum_without_overflow(logs, signs, bits, span):
    w = np.array([(-1) ** s * 10.0 ** e for e, s in zip(logs, signs)])
    exp = choose_exponent(w, bits, *span)
    best, err = _brute_force(w, bits, *span)
    assert exp == best
    if not np.isnan(err):
        m, e, clipped = quantize_weights(w, bits, *span)
        assert (e, clipped) == (exp, 0)
        assert float(((m * 2.0 ** e - w) ** 2).sum()) == pytest.approx(err, rel=1e-12, abs=0)


def test_exponent_example_by_hand():
    # 8-bit mixed mantissas [-128, 127]: 1000 / 2^3 = 125 fits, 1000 / 2^2 = 250 does not -> E = 3;
    # 0.001 / 8 rounds to 0 there, the price of sharing one exponent with 1000.
    w = np.array([1000.0, -3.0, 0.001])
    m, exp, clipped = quantize_weights(w, 8, -8, 7)
    assert (exp, clipped) == (3, 0) and m.tolist() == [125, 0, 0]
    # nothing fits even at the largest exponent: E = max and the big weight is clipped
    m, exp, clipped = quantize_weights(np.array([1e6, -1.0]), 8, -8, 7)
    assert (exp, clipped, m[0]) == (7, 1, 127)


def test_bias_mantissa_and_exponent_by_hand():
    # 13-bit signed mantissa (max 4095), exponent 0..7: 5000 -> exp 1, mantissa 2500 -> 5000;
    # 4095 -> exp 0; 1e6 -> exp 7: round(1e6/128) = 7812 > 4095, clipped to 4095 << 7 = 524160
    assert quantize_bias(np.array([5000.0, 4095.0, -3.4, 1e6]), 13, 7).tolist() == [5000, 4095, -3, 524160]


def test_input_quantization_by_hand():
    x = np.array([0.0, 0.5, 1.0, 1.2, -0.1])
    assert fx.quantize_input(x, 1 / 255, 8, signed=False).tolist() == [0, 128, 255, 255, 0]  # 127.5 -> 128 (even)
    assert fx.quantize_input(x, 1 / 127, 8, signed=True).tolist() == [0, 64, 127, 127, -13]


def test_quantized_graph_round_trips_and_keeps_integer_values(tmp_path):
    rng = np.random.default_rng(0)
    g = mlp(rng.normal(0, 0.5, (6, 4)), rng.normal(0, 0.1, 6), rng.normal(0, 0.5, (3, 6)), np.zeros(3),
            threshold=1.0, v_init=0.5)
    x = rng.uniform(0, 1, (32, 4))
    q = quantize(g, "loihi2", x).graph
    back = read_graph(write_nir(tmp_path / "q.nir", q))
    unit = float(back.nodes["if1"].metadata["spikeport"]["fixed_point"]["unit"])
    np.testing.assert_array_equal(np.rint(back.nodes["if1"].v_threshold / unit), 2 ** 14)  # the largest threshold
    step = float(back.nodes["fc1"].metadata["spikeport"]["fixed_point"]["weight_step"])
    m = back.nodes["fc1"].weight / step
    np.testing.assert_allclose(m, np.rint(m), atol=1e-4)
    a = REF.run(q, x, 16, fixed_point=True, record=True)
    b = REF.run(back, x, 16, fixed_point=True, record=True)
    np.testing.assert_array_equal(a.spikes["if1"], b.spikes["if1"])
    np.testing.assert_array_equal(a.outputs, b.outputs)


def test_float_graph_is_refused_by_fixed_point_mode():
    g = mlp(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    with pytest.raises(backends.Unsupported, match="not quantized"):
        REF.run(g, np.zeros((1, 2)), 4, fixed_point=True)


def test_unsupported_nodes_and_formats_are_named():
    g = mlp(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    # dt = 1e-3: tau = 2e-4 would need dv = 4096 dt / tau = 20480, beyond the 12-bit decay
    g.nodes["if1"] = nir.LIF(tau=np.full(2, 2e-4), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                             v_reset=np.zeros(2))
    with pytest.raises(QuantizeError, match=r"node 'if1': dt/tau x 4096 must round into 1..4095"):
        quantize(g, "loihi2", np.ones((4, 2)))
    g = mlp(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    with pytest.raises(QuantizeError, match="weight_bits must be in 2..8"):
        quantize(g, "loihi2", np.ones((4, 2)), weight_bits=9)
    with pytest.raises(Exception, match="formats.weight_bits"):
        quantize(g, "cmos45nm", np.ones((4, 2)))


def test_netx_formats_by_hand():
    """`quantize(..., netx=True)` on Input(2) -> fc1 -> IF(θ 1, reset to 0) -> fc2 -> I, input calibrated to max 1
    (unit 1/255), readout peak 10, worked by hand. Each layer's unit is the largest of: θ / 2^14 (spiking), the
    readout's range max(L1 1.5, 2 x peak 10) / 2^17, the weights' max|w| x unit_in / 127 (exponent 0) and the
    biases' max|b| / 4095 (13-bit mantissa at netx's fixed bias_exp 6), so:
    fc1: θ/2^14 = 6.10e-5, 1/255/127 = 3.09e-5, 0.5/4095 = 1.22e-4 -> unit 0.5/4095: vth 8190, m = round(w 8190/255)
    = [[16, -8], [32, 4]], biases round(b 8190) = [2457, -4095] units (<< 6 in v);
    fc2: 20/2^17 = 1.53e-4, 1/127, 0.25/4095 -> unit 1/127: m = round(w 127) = [[64, -127]] (63.5 to even), bias 32.
    netx holds them as they are (export plan); loihi2's own formats give fc2 m << 6 beyond [-256, 254]."""
    from backends.graph import analyse
    from backends.netx.layout import NEVER_FIRES
    from backends.netx.writer import plan_quantized
    graph = mlp([[0.5, -0.25], [1.0, 0.125]], [0.3, -0.5], [[0.5, -1.0]], [0.25], reset="zero")
    calib = np.array([[1.0, 0.0], [0.2, 0.7]])
    q = quantize(graph, "loihi2", calib, peak=10.0, netx=True)
    assert [q.layers[n]["weight_exp"] for n in ("fc1", "fc2")] == [0, 0]
    assert q.graph.metadata["spikeport"]["fixed_point"]["target"] == "loihi2 (netx formats)"
    layers = plan_quantized(q.graph).layers
    assert layers[0].weight.tolist() == [[16, -8], [32, 4]] and layers[0].bias.tolist() == [2457, -4095]
    assert layers[0].v_th_mant == 8190
    assert layers[1].weight.tolist() == [[64, -127]] and layers[1].bias.tolist() == [32]
    assert layers[1].v_th_mant == NEVER_FIRES
    view = analyse(q.graph)
    assert fx.layer_params(view, "if1").bias.tolist() == [2457 * 64, -4095 * 64]
    chip = quantize(graph, "loihi2", calib, peak=10.0)
    with pytest.raises(backends.Unsupported, match=r"node 'fc2': weights m << 6 span"):
        plan_quantized(chip.graph)
