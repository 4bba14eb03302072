"""The reference simulator against closed forms and hand computations (docs/nir-extensions.md)."""
from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import backends
from backends.graph import GraphError
from tests.graphs import if_node, mlp, single_if

REF = backends.get("reference")


@settings(max_examples=40, deadline=None)
@given(current_frac=st.floats(0.01, 1.0), theta=st.floats(0.1, 3.0), v0_frac=st.floats(0.0, 0.99),
       T=st.integers(1, 40))
def test_if_subtract_constant_input_closed_form(current_frac, theta, v0_frac, T):
    """Reset by subtraction under constant input I <= theta fires floor((v0 + t*I)/theta) spikes by step t."""
    v0, current = v0_frac * theta, current_frac * theta
    x = np.array([[current]], dtype=np.float64)
    run = REF.run(single_if(1, theta, v0), x, T, record=True, dtype=torch.float64)
    cum = np.cumsum(run.spikes["if"][0, :, 0])
    theta32, v0_32 = float(np.float32(theta)), float(np.float32(v0))   # the graph stores them in float32
    for t in range(1, T + 1):
        exact = (v0_32 + t * current) / theta32
        if abs(exact - round(exact)) < 1e-9:
            continue  # float rounding at exact equality is not what this law is about
        assert cum[t - 1] == math.floor(exact), (t, cum[t - 1], exact)


def test_if_hard_reset_fires_strictly_above_threshold_and_resets_to_v_reset():
    """Core NIR IF: v=0.5, 1.0 (no spike: not > 1), 1.5 -> spike, reset to 0, 0.5, 1.0, 1.5 -> spike."""
    run = REF.run(single_if(1, 1.0, reset="zero"), np.array([[0.5]]), 6, record=True, dtype=torch.float64)
    assert run.spikes["if"][0, :, 0].tolist() == [0, 0, 1, 0, 0, 1]


def test_mlp_spikes_match_hand_loop_and_samples_are_independent():
    rng = np.random.default_rng(1)
    w1, b1 = rng.normal(0, 0.7, (5, 3)), rng.normal(0, 0.1, 5)
    w2, b2 = rng.normal(0, 0.7, (2, 5)), rng.normal(0, 0.1, 2)
    x = rng.uniform(0, 1, (4, 3))
    T = 20
    run = REF.run(mlp(w1, b1, w2, b2, threshold=0.8, v_init=0.4), x, T, record=True, dtype=torch.float64)
    w1, b1, w2, b2 = (np.asarray(a, np.float32).astype(np.float64) for a in (w1, b1, w2, b2))
    for i in range(len(x)):
        v, acc = np.full(5, np.float32(0.4)), np.zeros(2)
        for t in range(T):
            v = v + w1 @ x[i] + b1
            z = (v >= np.float32(0.8)).astype(float)
            v = v - np.float32(0.8) * z
            acc += w2 @ z + b2
            np.testing.assert_array_equal(run.spikes["if1"][i, t], z)
        np.testing.assert_allclose(run.outputs[i], acc, rtol=1e-12, atol=1e-12)
    assert run.spike_counts["if1"].tolist() == run.spikes["if1"].sum(axis=(1, 2)).tolist()


def test_batching_does_not_change_results():
    rng = np.random.default_rng(2)
    g = mlp(rng.normal(size=(6, 4)), np.zeros(6), rng.normal(size=(3, 6)), np.zeros(3))
    x = rng.uniform(size=(10, 4))
    a = REF.run(g, x, 16, batch_size=3)
    b = REF.run(g, x, 16, batch_size=10)
    np.testing.assert_allclose(a.outputs, b.outputs, rtol=1e-6)
    np.testing.assert_array_equal(a.spike_counts["if1"], b.spike_counts["if1"])


def test_conv_fan_in_and_pooling_match_torch_ops():
    """Conv2d (asymmetric kernel, stride, padding) + identity skip summed into one IF, then avg-pool."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.5, (2, 2, 2, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 2).astype(np.float32)
    x = rng.uniform(0, 1, (3, 2, 5, 7)).astype(np.float32)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 5, 7])}),
        "conv": nir.Conv2d(input_shape=(5, 7), weight=w, stride=1, padding=(1, 1), dilation=1, groups=1, bias=b),
        "crop": nir.AvgPool2d(kernel_size=np.array([2, 1]), stride=np.array([1, 1]), padding=np.array([1, 0])),
        "if": if_node((2, 6, 7), 0.7),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "output": nir.Output(output_type={"output": np.array([2, 3, 3])}),
    }
    edges = [("input", "conv"), ("conv", "if"), ("input", "crop"), ("crop", "if"), ("if", "pool"), ("pool", "output")]
    run = REF.run(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), x, 5, record=True)
    xt = torch.from_numpy(x)
    current = F.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), padding=1) + F.avg_pool2d(xt, (2, 1), 1, padding=(1, 0))
    v, total = torch.zeros_like(current), 0
    for t in range(5):
        v = v + current
        z = (v >= 0.7).float()
        v = v - 0.7 * z
        np.testing.assert_array_equal(run.spikes["if"][:, t], z.numpy())
        total = total + F.avg_pool2d(z, 2, 2, divisor_override=1)
    np.testing.assert_allclose(run.outputs.reshape(total.shape), total.numpy())


def test_lif_first_spike_time_follows_forward_euler_closed_form():
    """From v=0 under constant input, v_k = R I (1 - (1 - dt/tau)^k); the first spike is at the smallest k
    with v_k > theta, and after the reset to 0 the same interval repeats."""
    tau, r, current, dt, theta = 0.01, 2.0, 0.3, 1e-3, 0.5
    node = nir.LIF(tau=np.array([tau]), r=np.array([r]), v_leak=np.array([0.0]), v_threshold=np.array([theta]),
                   v_reset=np.array([0.0]))
    nodes = {"input": nir.Input(input_type={"input": np.array([1])}), "fc": nir.Linear(weight=np.eye(1)),
             "lif": node, "output": nir.Output(output_type={"output": np.array([1])})}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    run = REF.run(nir.NIRGraph(nodes=nodes, edges=edges), np.array([[current]]), 60, record=True, dtype=torch.float64)
    k = math.floor(math.log(1 - theta / (r * current)) / math.log(1 - dt / tau)) + 1
    expected = [1.0 if (t + 1) % k == 0 else 0.0 for t in range(60)]
    assert run.spikes["lif"][0, :, 0].tolist() == expected


def test_rejects_bad_T_bad_inputs_cycles_and_unknown_nodes():
    g = single_if(2, 1.0)
    with pytest.raises(ValueError, match="T must be at least 1"):
        REF.run(g, np.zeros((1, 2)), 0)
    with pytest.raises(ValueError, match=r"inputs have shape \(3,\)"):
        REF.run(g, np.zeros((1, 3)), 4)
    cyclic = nir.NIRGraph(nodes=dict(g.nodes), edges=g.edges + [("if", "fc")], type_check=False)
    with pytest.raises(GraphError, match="cycle through node"):
        REF.run(cyclic, np.zeros((1, 2)), 4)
    odd = dict(g.nodes)
    odd["thr"] = nir.Threshold(threshold=np.ones(2))
    weird = nir.NIRGraph(nodes=odd, edges=[("input", "fc"), ("fc", "thr"), ("thr", "if"), ("if", "output")])
    with pytest.raises(GraphError, match="node 'thr' has type Threshold"):
        REF.run(weird, np.zeros((1, 2)), 4)
