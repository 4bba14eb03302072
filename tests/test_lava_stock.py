"""Lava's own LIF process (lava.proc.lif LIFReset) against spikeport's NeuronLayer: where a node's semantics are
the stock model's (reset to zero, v_init = v_reset = 0, one threshold and decay per layer), the same graph and input
give the same spikes at every step on both, in floating point and in bit-accurate fixed point. This is the
independent check of the custom models, which otherwise run the same functions as the reference simulator.

Float graphs use dyadic weights, inputs and time constants, on which both arithmetics are exact (on other values
they round differently: docs/nir-extensions.md, "Lava processes", and benchmarks/lava_stock.py).
"""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backends
from backends.graph import analyse
from backends.lava import LavaBackend, SUPPORTED_TYPES
from backends.lava import stock
from backends.nirext import graph_metadata, neuron_metadata
from pipeline.hardware.quantize import quantize
from tests.graphs import if_node

LAVA, REF = LavaBackend(), backends.get("reference")
FEW = settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def eighths(rng, *shape, lo=-6, hi=7) -> np.ndarray:
    return (rng.integers(lo, hi, shape) / 8).astype(np.float32)


def ones(k, value=1.0) -> np.ndarray:
    return np.full(k, value, np.float32)


def stock_chain(rng, n_in=4, hidden=(6, 5), dt=0.25) -> nir.NIRGraph:
    """Input -> Affine -> IF -> Affine -> LIF -> Linear -> CubaLIF -> Linear -> I -> Output, all reset to zero,
    with dt/tau in {1/4, 1/2} and r, w_in powers of two: every node the stock LIF can run, in exact arithmetic."""
    h1, h2 = hidden
    zero = lambda k: np.zeros(k, np.float32)  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc1": nir.Affine(weight=eighths(rng, h1, n_in), bias=eighths(rng, h1, lo=-1, hi=3)),
        "if": if_node(h1, 0.75, reset="zero"),
        "fc2": nir.Affine(weight=eighths(rng, h2, h1), bias=eighths(rng, h2, lo=-1, hi=2)),
        "lif": nir.LIF(tau=ones(h2, dt * 4), r=ones(h2, 2.0), v_leak=ones(h2, 0.125), v_threshold=ones(h2, 0.5),
                       v_reset=zero(h2), metadata=neuron_metadata("zero")),
        "fc3": nir.Linear(weight=eighths(rng, 4, h2)),
        "cuba": nir.CubaLIF(tau_syn=ones(4, dt * 2), tau_mem=ones(4, dt * 4), r=ones(4), v_leak=zero(4),
                            v_threshold=ones(4, 0.25), v_reset=zero(4), w_in=ones(4, 2.0)),
        "fc4": nir.Linear(weight=eighths(rng, 3, 4)),
        "out": nir.I(r=ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "fc1"), ("fc1", "if"), ("if", "fc2"), ("fc2", "lif"), ("lif", "fc3"), ("fc3", "cuba"),
             ("cuba", "fc4"), ("fc4", "out"), ("out", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata=graph_metadata("test", dt=dt))


def assert_identical(a, b) -> None:
    assert set(a.spikes) == set(b.spikes)
    for name in a.spikes:
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name], err_msg=name)
    np.testing.assert_array_equal(a.outputs, b.outputs)


def check_float(seed: int, varying: bool) -> None:
    rng = np.random.default_rng(seed)
    g = stock_chain(rng)
    assert LAVA.neuron_processes(g) == {"if": "LIFReset", "lif": "LIFReset", "cuba": "LIFReset",
                                        "out": "NeuronLayer (Lava's LIF has no I)"}
    T = int(rng.integers(4, 12))
    x = eighths(rng, 3, T, 4, lo=-8, hi=9) if varying else eighths(rng, 3, 4, lo=0, hi=9)
    a, b = LAVA.run(g, x, T, record=True), LAVA.run(g, x, T, record=True, neurons="custom")
    assert_identical(a, b)
    assert sum(int(np.abs(z).sum()) for z in a.spikes.values()) > 0


def fixed_chain(rng, dt=1e-3) -> nir.NIRGraph:
    """Input -> Affine -> IF -> Affine -> LIF -> Linear -> CubaLIF -> Linear -> LI -> Output, reset to zero,
    random weights, r, w_in and time constants (dt/tau between 1/32 and 3/4): after quantization every spiking
    layer has Loihi's 12-bit decays and runs on the stock LIF."""
    def const(k, lo, hi):
        return np.full(k, rng.uniform(lo, hi), np.float32)
    def normal(*shape, sd=0.8):
        return rng.normal(0, sd, shape).astype(np.float32)
    zero = lambda k: np.zeros(k, np.float32)  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc1": nir.Affine(weight=normal(7, 4), bias=normal(7, sd=0.3)),
        "if1": if_node(7, 1.0, reset="zero"),
        "fc2": nir.Affine(weight=normal(6, 7), bias=normal(6, sd=0.3)),
        "lif": nir.LIF(tau=dt / const(6, 1 / 32, 0.75), r=const(6, 0.5, 2), v_leak=zero(6),
                       v_threshold=const(6, 0.2, 0.6), v_reset=zero(6), metadata=neuron_metadata("zero")),
        "fc3": nir.Linear(weight=normal(5, 6, sd=1.5)),
        "cuba": nir.CubaLIF(tau_syn=dt / const(5, 1 / 32, 0.75), tau_mem=dt / const(5, 1 / 32, 0.75),
                            r=const(5, 0.5, 2), v_leak=const(5, -0.2, 0.2), v_threshold=const(5, 0.05, 0.2),
                            v_reset=zero(5), w_in=const(5, 0.5, 2)),
        "fc4": nir.Linear(weight=normal(3, 5)),
        "out": nir.LI(tau=dt / const(3, 1 / 32, 0.75), r=ones(3), v_leak=zero(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "lif"), ("lif", "fc3"), ("fc3", "cuba"),
             ("cuba", "fc4"), ("fc4", "out"), ("out", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata=graph_metadata("test", dt=dt))


def check_fixed(seed: int, bits: int):
    """A quantized chain of IF, LIF and CubaLIF layers with reset to zero and an LI readout (`fixed_chain`): the
    spiking layers on Lava's bit-accurate LIF (Loihi's CUBA neuron: du, dv from the quantized taus) and on
    NeuronLayer's fixed_pt model, and the reference's fixed-point mode, give the same spikes at every step."""
    rng = np.random.default_rng(seed)
    g = fixed_chain(rng)
    x = rng.uniform(-1, 1, (4, 4))
    q = quantize(g, "loihi2", x, weight_bits=bits, peak=10.0).graph
    assert LAVA.neuron_processes(q) == {"if1": "LIFReset", "lif": "LIFReset", "cuba": "LIFReset",
                                        "out": "NeuronLayer (Lava's LIF has no LI)"}
    view = analyse(q, SUPPORTED_TYPES)
    assert 0 < stock.fixed_params(view, "lif").dv < 4095 and 0 <= stock.fixed_params(view, "cuba").du < 4095
    T = 16
    a, b = LAVA.run(q, x, T, record=True), LAVA.run(q, x, T, record=True, neurons="custom")
    assert_identical(a, b)
    ref = REF.run(q, x, T, record=True, fixed_point=True)
    assert_identical(a, ref)
    assert a.spikes["if1"].any()
    return a


@pytest.mark.lava
def test_float_stock_and_custom_give_identical_spikes():
    check_float(0, varying=True)


@pytest.mark.lava
def test_fixed_point_stock_and_custom_give_identical_spikes_and_equal_the_reference():
    spikes = check_fixed(0, bits=6).spikes
    assert spikes["lif"].any() and spikes["cuba"].any()


@pytest.mark.lava
@pytest.mark.slow
@FEW
@given(seed=st.integers(0, 2**16), varying=st.booleans())
def test_float_stock_and_custom_give_identical_spikes_on_random_graphs(seed, varying):
    check_float(seed, varying)


@pytest.mark.lava
@pytest.mark.slow
@FEW
@given(seed=st.integers(0, 2**16), bits=st.sampled_from([4, 6, 8]))
def test_fixed_point_stock_and_custom_identical_on_random_graphs(seed, bits):
    check_fixed(seed, bits)


@pytest.mark.lava
@pytest.mark.slow
def test_digits_cnn_with_reset_to_zero_on_stock_lif_equals_the_reference(digits, digits_graphs):
    """The converted digits CNN (maxnorm, reset to zero): both IF layers on Lava's LIFReset; float counts and
    outputs equal the reference in float64 on 60 test images, and the 8-bit quantized graph's spikes equal the
    reference's fixed-point mode at every step on 20 (measured: about 7 s and 10 s)."""
    g = digits_graphs["maxnorm-zero"]
    assert set(LAVA.neuron_processes(g).values()) == {"LIFReset", "NeuronLayer (Lava's LIF has no I)"}
    x, T = digits.test_x.numpy()[:60], 32
    ours, ref = LAVA.run(g, x, T), REF.run(g, x, T, dtype=torch.float64)
    for name, counts in ref.spike_counts.items():
        np.testing.assert_array_equal(ours.spike_counts[name], counts, err_msg=name)
    np.testing.assert_allclose(ours.outputs, ref.outputs, rtol=0, atol=1e-9)
    q = quantize(g, "loihi2", digits.train_x.numpy()).graph
    assert set(LAVA.neuron_processes(q).values()) == {"LIFReset", "NeuronLayer (Lava's LIF has no I)"}
    ours, ref = LAVA.run(q, x[:20], T, record=True), REF.run(q, x[:20], T, record=True, fixed_point=True)
    assert_identical(ours, ref)


def test_which_nodes_the_stock_lif_takes_and_why_not():
    """The decision without Lava: only reset to zero from 0, with one threshold and decay per layer."""
    g = stock_chain(np.random.default_rng(0))
    view = analyse(g, SUPPORTED_TYPES)
    lif = stock.float_params(view, "lif", None)
    # LIF: dv = dt/tau = 0.25, v' = v / (dv r) = v / 0.5, so vth = 0.5 / 0.5 and bias = v_leak / r
    assert (lif.du, lif.dv, lif.vth) == (1.0, 0.25, 1.0) and np.all(lif.bias_mant == 0.0625)
    cuba = stock.float_params(view, "cuba", None)
    # CubaLIF: du = 0.25/0.5, dv = 0.25/1, scale = dv r du w_in = 0.25, vth = 0.25 / 0.25
    assert (cuba.du, cuba.dv, cuba.vth) == (0.5, 0.25, 1.0)
    assert "bias on v, not on u" in stock.float_params(view, "cuba", np.ones(4))
    assert stock.float_params(view, "if", np.full(6, 0.5)).bias_mant.tolist() == [0.5] * 6
    assert "no I" in stock.float_params(view, "out", None)
    for change, reason in [
        (dict(metadata=neuron_metadata("subtract")), "reset 'subtract'"),
        (dict(metadata=neuron_metadata("signed-memory")), "reset 'signed-memory'"),
        (dict(metadata=neuron_metadata("zero", ones(6, 0.25))), "v_init"),
        (dict(v_reset=ones(6, -0.5)), "v_reset"),
        (dict(v_threshold=np.linspace(0.5, 1, 6).astype(np.float32)), "threshold"),
        (dict(r=-ones(6)), "non-positive"),
    ]:
        node = g.nodes["if"]
        g.nodes["if"] = nir.IF(**{"r": node.r, "v_threshold": node.v_threshold, "v_reset": node.v_reset,
                                  "metadata": node.metadata, **change})
        assert reason in stock.float_params(analyse(g, SUPPORTED_TYPES), "if", None), reason
        g.nodes["if"] = node
    g.nodes["lif"].tau[0] = 2.0
    assert "tau" in stock.float_params(analyse(g, SUPPORTED_TYPES), "lif", None)


def test_bias_splits_into_lavas_13_bit_mantissa_and_3_bit_exponent():
    mant_exp = stock.bias_mant_exp(np.array([4095, -4096, 4096, 444160, -6, 0]))
    assert mant_exp[0].tolist() == [4095, -4096, 2048, 3470, -6, 0]
    assert mant_exp[1].tolist() == [0, 0, 1, 7, 0, 0]
    assert stock.bias_mant_exp(np.array([4097])) is None            # odd and beyond 12 bits
    assert stock.bias_mant_exp(np.array([4096 << 7])) is None       # beyond 13 bits even at exponent 7
