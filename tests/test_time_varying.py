"""Time-varying input (N, T, *input shape), step t receiving x[:, t]: reference layer mode against step mode, against
an independent numpy loop, fixed point against an integer numpy loop, Norse against the reference, on random binary,
signed and graded inputs and on the digits `rate` and `event` encodings."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import backends
from backends import inputs as feed
from backends.nirext import neuron_metadata
from pipeline.data.encoding import encode
from pipeline.hardware.quantize import quantize
from tests.graphs import mlp
from tests.test_reference_modes import assert_same, residual_graph, run_all

REF = backends.get("reference")
KINDS = ("binary", "signed", "graded")


def spikes_in(kind: str, shape, seed: int) -> np.ndarray:
    """Random time-varying input: 0/1 (bool), -1/0/1 (int8), or multi-valued signed dyadic floats."""
    rng = np.random.default_rng(seed)
    if kind == "binary":
        return rng.random(shape) < 0.3
    if kind == "signed":
        return rng.choice(np.array([-1, 0, 0, 1], np.int8), shape)
    return (rng.integers(-6, 7, shape) * (rng.random(shape) < 0.5) / 4).astype(np.float32)


def image_mlp(in_shape, hidden: int, seed: int, reset: str = "subtract", threshold: float = 1.0) -> nir.NIRGraph:
    """Input (C, H, W) -> Flatten -> Affine -> IF -> Affine -> I -> Output, dyadic weights (exact float sums)."""
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(in_shape))
    w1 = (rng.integers(-4, 5, (hidden, n_in)) / 16).astype(np.float32)
    w2 = (rng.integers(-4, 5, (10, hidden)) / 8).astype(np.float32)
    ones = np.ones(hidden, np.float32)
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array(in_shape)}),
               "flat": nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1),
               "fc1": nir.Affine(weight=w1, bias=(rng.integers(-2, 3, hidden) / 16).astype(np.float32)),
               "if1": nir.IF(r=ones, v_threshold=threshold * ones, v_reset=0 * ones, metadata=neuron_metadata(reset)),
               "fc2": nir.Affine(weight=w2, bias=np.zeros(10, np.float32)),
               "out": nir.I(r=np.ones(10, np.float32)),
               "output": nir.Output(output_type={"output": np.array([10])})},
        edges=[("input", "flat"), ("flat", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "out"), ("out", "output")],
        type_check=False)


def mlp_loop(x, w1, b1, w2, b2, theta, subtract: bool):
    """Input -> Affine -> IF -> Affine -> I in float64 numpy on x (N, T, n_in): (spikes (N, T, hidden), outputs)."""
    n, T = x.shape[:2]
    v = np.zeros((n, w1.shape[0]))
    out = np.zeros((n, w2.shape[0]))
    trains = np.zeros((n, T, w1.shape[0]))
    for t in range(T):
        v = v + x[:, t].reshape(n, -1) @ w1.T.astype(np.float64) + b1
        z = (v >= theta) if subtract else (v > theta)
        v = v - theta * z if subtract else np.where(z, 0.0, v)
        trains[:, t] = z
        out += z @ w2.T.astype(np.float64) + b2
    return trains, out


def _weights(g):
    return (g.nodes["fc1"].weight, g.nodes["fc1"].bias.astype(np.float64), g.nodes["fc2"].weight,
            g.nodes["fc2"].bias.astype(np.float64))


@pytest.fixture(scope="module")
def digits_encoded(digits):
    """The first 48 digits test images, rate- and event-encoded for T = 24 (seeded), with their labels."""
    x = digits.test_x[:48].numpy()
    return {"rate": encode(x, "rate", 24, seed=5), "event": encode(x, "event", 24)}


# --- reference: layer mode against step mode --------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(KINDS), neuron=st.sampled_from(["if-subtract", "if-zero", "snm", "lif"]),
       T=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_layer_and_step_modes_identical_on_time_varying_input(kind, neuron, T, seed):
    x = spikes_in(kind, (5, T, 2, 6, 6), seed)
    runs = run_all(residual_graph(neuron, seed=seed % 7, integrate_output=seed % 2 == 0), x, T, batch_size=3)
    for other in runs[1:]:
        assert_same(runs[0], other)


@pytest.mark.parametrize("encoding", ["rate", "event"])
def test_modes_identical_on_digits_encodings(digits_graphs, digits_encoded, encoding):
    x = digits_encoded[encoding]
    graph = digits_graphs["robustnorm"]
    if encoding == "event":   # the digits CNN has one input channel: ON - OFF as signed graded events
        x = (x[:, :, :1] - x[:, :, 1:]).astype(np.int8)
    runs = run_all(graph, x, 24, batch_size=32)
    assert sum(runs[0].spike_counts.values()).sum() > 0
    for other in runs[1:]:
        assert_same(runs[0], other)


def test_constant_time_varying_input_equals_direct_input_bit_for_bit():
    """The same image at every step, given as (N, T, ...), gives the direct run's spikes, outputs and events."""
    x = np.random.default_rng(4).uniform(-1, 1.5, (5, 2, 6, 6)).astype(np.float32)
    g = residual_graph("if-subtract", integrate_output=True)
    for mode in ("step", "layer"):
        direct = REF.run(g, x, 7, record=True, mode=mode)
        varying = REF.run(g, np.repeat(x[:, None], 7, 1), 7, record=True, mode=mode)
        assert_same(direct, varying)


# --- reference against an independent loop; compact forms; input events -----------------------------------------

@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(KINDS), subtract=st.booleans(), T=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_reference_equals_numpy_loop_on_time_varying_input(kind, subtract, T, seed):
    g = image_mlp((2, 3, 3), 7, seed % 97, reset="subtract" if subtract else "zero")
    x = spikes_in(kind, (6, T, 2, 3, 3), seed)
    trains, out = mlp_loop(x.astype(np.float64), *_weights(g), 1.0, subtract)
    for mode in ("step", "layer"):
        run = REF.run(g, x, T, record=True, mode=mode)
        np.testing.assert_array_equal(run.spikes["if1"], trains)
        np.testing.assert_allclose(run.outputs, out, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(run.input_events["fc1"], (x != 0).sum((0, 1)).reshape(-1) / len(x))


def test_bool_int8_and_sparse_inputs_equal_their_float_form():
    x = spikes_in("signed", (7, 10, 2, 6, 6), 3)
    g = residual_graph("if-subtract", integrate_output=True)
    as_float = REF.run(g, x.astype(np.float32), 10, record=True, batch_size=4)
    for form in (x, torch.from_numpy(x).to_sparse()):
        assert_same(as_float, REF.run(g, form, 10, record=True, batch_size=4, max_elements=500))
    assert_same(REF.run(g, x != 0, 10, record=True), REF.run(g, (x != 0).astype(np.float32), 10, record=True))


def test_time_varying_shape_rule():
    assert feed.time_varying((4, 3, 5), (3, 5), 9) is False          # the Input's own shape: direct
    assert feed.time_varying((4, 9, 3, 5), (3, 5), 9) is True
    # an Input whose own shape starts with T (sinabs writes time there): the ranks still tell the forms apart
    assert feed.time_varying((4, 9, 3), (9, 3), 9) is False
    assert feed.time_varying((4, 9, 9, 3), (9, 3), 9) is True
    with pytest.raises(ValueError, match="8 steps per sample, the run has T=9"):
        feed.time_varying((4, 8, 3, 5), (3, 5), 9)
    with pytest.raises(ValueError, match=r"Input expects \(3, 5\) \(direct\) or \(9, 3, 5\)"):
        feed.time_varying((4, 5, 3), (3, 5), 9)


def test_input_events_of_the_first_layer_follow_the_actual_inputs():
    x = spikes_in("binary", (6, 5, 2, 6, 6), 8)
    g = residual_graph("if-subtract")
    for mode in ("step", "layer"):
        run = REF.run(g, x, 5, mode=mode)
        np.testing.assert_array_equal(run.input_events["conv_a"], (x != 0).sum((0, 1)) / len(x))


# --- fixed point against an integer numpy loop ---------------------------------------------------------------------

def fixed_loop(q, x):
    """The quantized image MLP in plain integer numpy (Lava's conventions, docs/nir-extensions.md "Fixed point"):
    returns (spikes (N, T, hidden), outputs)."""
    meta = {n: q.nodes[n].metadata["spikeport"]["fixed_point"] for n in ("fc1", "fc2", "if1", "out")}
    fmt = q.metadata["spikeport"]["fixed_point"]
    lo, hi = (-(2 ** 7), 2 ** 7 - 1) if fmt["input_signed"] else (0, 255)
    xi = np.clip(np.rint(x.astype(np.float64) / fmt["input_scale"]), lo, hi).astype(np.int64)
    ints = {n: np.rint(q.nodes[n].weight / meta[n]["weight_step"]).astype(np.int64) for n in ("fc1", "fc2")}
    u1, u2 = meta["if1"]["unit"], meta["out"]["unit"]
    vth = np.rint(q.nodes["if1"].v_threshold / u1).astype(np.int64) * 64
    b1 = np.rint(q.nodes["fc1"].bias * 64 / u1).astype(np.int64)
    b2 = np.rint(q.nodes["fc2"].bias * 64 / u2).astype(np.int64)
    limit = 2 ** 23 - 1
    n, T = x.shape[:2]
    v1, v2 = np.zeros((n, len(b1)), np.int64), np.zeros((n, len(b2)), np.int64)
    trains = np.zeros((n, T, len(b1)), np.int64)
    for t in range(T):
        a = np.floor((xi[:, t].reshape(n, -1) @ ints["fc1"].T) * 2.0 ** meta["fc1"]["weight_exp"]).astype(np.int64)
        v1 = np.clip(v1 + a * 64 + b1, -limit, limit)
        z = (v1 >= vth).astype(np.int64)
        v1 = v1 - vth * z
        trains[:, t] = z
        a2 = np.floor((z @ ints["fc2"].T) * 2.0 ** meta["fc2"]["weight_exp"]).astype(np.int64)
        v2 = np.clip(v2 + a2 * 64 + b2, -limit, limit)
    return trains, v2 * u2 / 64


def _fixed_case(x, seed):
    g = image_mlp(x.shape[2:], 9, seed, threshold=2.0)
    q = quantize(g, "loihi2", x[:, 0].astype(np.float32)).graph
    run = REF.run(q, x, x.shape[1], fixed_point=True, record=True)
    trains, out = fixed_loop(q, x)
    np.testing.assert_array_equal(run.spikes["if1"], trains)
    np.testing.assert_allclose(run.outputs, out, rtol=1e-12)
    np.testing.assert_array_equal(run.input_events["fc1"], (x != 0).sum((0, 1)).reshape(-1) / len(x))
    return run


@settings(max_examples=8, deadline=None)
@given(kind=st.sampled_from(KINDS), T=st.integers(1, 10), seed=st.integers(0, 2**31 - 1))
def test_fixed_point_equals_integer_loop_on_time_varying_input(kind, T, seed):
    x = spikes_in(kind, (5, T, 2, 3, 3), seed)
    x[:, 0, 0, 0, 0] = 1   # the input format's scale comes from calibration data holding the largest event
    _fixed_case(x, seed % 101)


@pytest.mark.parametrize("encoding", ["rate", "event"])
def test_fixed_point_equals_integer_loop_on_digits_encodings(digits_encoded, encoding):
    run = _fixed_case(digits_encoded[encoding], 11)
    assert run.spike_counts["if1"].sum() > 0


# --- Norse against the reference on reset-to-zero graphs -----------------------------------------------------------

@settings(max_examples=6, deadline=None)
@given(kind=st.sampled_from(KINDS), T=st.integers(1, 10), seed=st.integers(0, 2**31 - 1))
def test_norse_equals_reference_on_time_varying_input(kind, T, seed):
    g = image_mlp((2, 3, 3), 7, seed % 89, reset="zero")
    x = spikes_in(kind, (5, T, 2, 3, 3), seed)
    ref = REF.run(g, x, T, record=True)
    nor = backends.get("norse").run(g, x, T, record=True)
    np.testing.assert_array_equal(nor.spikes["if1"], ref.spikes["if1"])
    np.testing.assert_allclose(nor.outputs, ref.outputs, rtol=0, atol=1e-4)


@pytest.mark.parametrize("encoding", ["rate", "event"])
def test_norse_equals_reference_on_digits_encodings(digits_graphs, digits_encoded, encoding):
    x = digits_encoded[encoding]
    graph = digits_graphs["maxnorm-zero"] if encoding == "rate" else image_mlp(x.shape[2:], 16, 2, reset="zero")
    ref = REF.run(graph, x, 24, record=True)
    nor = backends.get("norse").run(graph, x, 24, record=True)
    assert sum(ref.spike_counts.values()).sum() > 0
    for k in ref.spikes:
        np.testing.assert_array_equal(nor.spikes[k], ref.spikes[k], err_msg=k)
    np.testing.assert_allclose(nor.outputs, ref.outputs, rtol=1e-5, atol=1e-4)
