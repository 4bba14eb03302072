"""Quantized graphs on Lava's bit-accurate models (Loihi2SimCfg(select_tag="fixed_pt")) against the reference
simulator's fixed-point mode: the same spikes in every layer at every step, and the same outputs.

Lava's Dense, Sparse and Conv are Lava's own fixed_pt models here (independent of backends/fixedpoint.py's mirror).
"""
from __future__ import annotations

import nir
import numpy as np
import pytest

import backends
from pipeline.conversion.registry import convert
from pipeline.hardware.quantize import quantize
from tests.graphs import assert_fixed_point_spike_for_spike, conv_snm, if_node, mlp

REF, LAVA = backends.get("reference"), backends.get("lava")


def test_hand_built_graphs_spike_for_spike():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5, 1, 5, 5))
    snm = quantize(conv_snm(rng), "loihi2", x, weight_bits=6).graph
    ref = assert_fixed_point_spike_for_spike(snm, x, 24)
    assert (ref.spikes["snm"] < 0).any() and (ref.spikes["snm"] > 0).any()
    assert ref.spikes["drive"].any() and ref.spikes["if"].any()
    w1, w2 = rng.normal(0, 0.8, (7, 4)), rng.normal(0, 0.8, (3, 7))
    x = rng.uniform(-1, 1, (4, 4))
    subtract = quantize(mlp(w1, rng.normal(0, 0.2, 7), w2, np.zeros(3), v_init=0.5), "loihi", x, weight_bits=4).graph
    ref = assert_fixed_point_spike_for_spike(subtract, x, 24)
    assert ref.spikes["if1"].any()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["maxnorm", "dnisnm"])
def test_digits_test_split_spike_for_spike_at_T32(digits, digits_model, method):
    graph = convert(digits_model, digits.input_shape, digits.train_x, method=method)
    q = quantize(graph, "loihi2", digits.train_x.numpy()).graph
    ref = assert_fixed_point_spike_for_spike(q, digits.test_x.numpy(), 32)
    assert ref.accuracy(digits.test_y.numpy()) > 0.9


def two_convs(rng) -> nir.NIRGraph:
    """Input (2, 7, 5) -> Conv2d(2 -> 4, kernel 3x2, stride (2, 1), padding (1, 0)) -> IF (reset to zero) ->
    Conv2d(4 -> 4, 3x3, padding 1, 2 groups) -> IF (subtract) -> Flatten -> Affine(40 -> 3) -> I -> Output."""
    def conv(c_out, c_in, kernel, stride, padding, groups, scale):
        return nir.Conv2d(input_shape=None, weight=rng.normal(0, scale, (c_out, c_in // groups, *kernel)).astype(
            np.float32), stride=stride, padding=padding, dilation=1, groups=groups,
            bias=rng.normal(0, 0.1, c_out).astype(np.float32))
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2, 7, 5])}),
               "conv1": conv(4, 2, (3, 2), (2, 1), (1, 0), 1, 0.6),
               "if1": if_node((4, 4, 4), 1.0, reset="zero"),
               "conv2": conv(4, 4, (3, 3), (1, 1), (1, 1), 2, 0.8),
               "if2": if_node((4, 4, 4), 1.0),
               "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0),
               "fc": nir.Affine(weight=rng.normal(0, 0.3, (3, 64)).astype(np.float32), bias=np.zeros(3, np.float32)),
               "out": nir.I(r=np.ones(3, np.float32)),
               "output": nir.Output(output_type={"output": np.array([3])})},
        edges=[("input", "conv1"), ("conv1", "if1"), ("if1", "conv2"), ("conv2", "if2"), ("if2", "flat"),
               ("flat", "fc"), ("fc", "out"), ("out", "output")],
        type_check=False)


@pytest.mark.parametrize("conv", ["sparse", "conv"])
def test_conv_on_lavas_sparse_and_conv_models_spike_for_spike(conv):
    """Fixed-point Conv2d on Lava's bit-accurate Sparse (the default: the convolution as a matrix, weight_exp and
    num_weight_bits applied by Lava) and on its Conv process (+ Shift): identical spikes at every step, both equal
    to the reference (asymmetric kernel, stride and padding, a non-square input, groups, 6-bit mixed weights)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (3, 2, 7, 5))
    q = quantize(two_convs(rng), "loihi2", x, weight_bits=6).graph
    ref = assert_fixed_point_spike_for_spike(q, x, 12, conv=conv)
    assert ref.spikes["if1"].any() and ref.spikes["if2"].any()
    assert not ref.spikes["if1"].all() and not ref.spikes["if2"].all()
