"""Quantized graphs on Lava's bit-accurate models (Loihi2SimCfg(select_tag="fixed_pt")) against the reference
simulator's fixed-point mode: the same spikes in every layer at every step, and the same outputs.

Lava's Dense and Conv are Lava's own fixed_pt models here (independent of backends/fixedpoint.py's mirror).
"""
from __future__ import annotations

import numpy as np
import pytest

import backends
from pipeline.conversion.registry import convert
from pipeline.hardware.quantize import quantize
from tests.graphs import assert_fixed_point_spike_for_spike, conv_snm, mlp

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
