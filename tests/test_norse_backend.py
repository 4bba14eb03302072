"""The Norse backend against numpy loops of Norse's documented neuron equations, and its refusals."""
from __future__ import annotations

import nir
import numpy as np
import pytest

import backends
from backends.nirext import neuron_metadata
from tests.graphs import avgpool_only, mlp


def _mlp_loop(x, w1, b1, w2, b2, theta, T, subtract):
    """Input -> Affine -> IF -> Affine -> I, in numpy: returns (hidden spike counts, outputs)."""
    v = np.zeros((len(x), w1.shape[0]))
    counts = np.zeros_like(v)
    out = np.zeros((len(x), w2.shape[0]))
    for _ in range(T):
        v = v + x @ w1.T + b1
        z = (v >= theta) if subtract else (v > theta)
        v = v - theta * z if subtract else np.where(z, 0.0, v)
        counts += z
        out += z @ w2.T + b2
    return counts, out


@pytest.fixture(scope="module")
def net():
    rng = np.random.default_rng(3)
    w1 = rng.integers(-4, 5, (6, 5)) / 8
    b1 = rng.integers(-2, 3, 6) / 8
    w2 = rng.integers(-4, 5, (3, 6)) / 8
    b2 = np.zeros(3)
    x = rng.integers(0, 9, (7, 5)) / 8     # dyadic values: float32 sums are exact, so both sides agree bit for bit
    return x, w1, b1, w2, b2


def test_reset_to_zero_graph_matches_numpy_loop(net):
    x, w1, b1, w2, b2 = net
    graph = mlp(w1, b1, w2, b2, threshold=1.0, reset="zero")
    run = backends.get("norse").run(graph, x, 12)
    counts, out = _mlp_loop(x, w1, b1, w2, b2, 1.0, 12, subtract=False)
    assert not run.approximate and run.ignored == []
    np.testing.assert_array_equal(run.spike_counts["if1"], counts.sum(1))
    np.testing.assert_allclose(run.outputs, out, rtol=0, atol=1e-5)


def test_reset_by_subtraction_is_refused_naming_node_and_cause(net):
    x, w1, b1, w2, b2 = net
    graph = mlp(w1, b1, w2, b2, threshold=1.0, reset="subtract")
    with pytest.raises(backends.Unsupported, match=r"node 'if1' \(IF\): reset 'subtract'.*resets to 0"):
        backends.get("norse").run(graph, x, 12)


def test_approximate_run_is_labelled_and_runs_norse_semantics(net):
    x, w1, b1, w2, b2 = net
    graph = mlp(w1, b1, w2, b2, threshold=1.0, reset="subtract")
    run = backends.get("norse").run(graph, x, 12, approximate=True)
    assert run.approximate and len(run.ignored) == 1 and "'if1'" in run.ignored[0]
    zero_counts, _ = _mlp_loop(x, w1, b1, w2, b2, 1.0, 12, subtract=False)
    sub_counts, _ = _mlp_loop(x, w1, b1, w2, b2, 1.0, 12, subtract=True)
    assert not np.array_equal(zero_counts, sub_counts)    # the inputs do expose the difference
    np.testing.assert_array_equal(run.neuron_counts["if1"], zero_counts.mean(0))


def test_lif_matches_forward_euler_loop():
    n, T, dt, tau = 4, 20, 1e-3, 4e-3
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([n])}),
               "fc": nir.Linear(weight=np.eye(n, dtype=np.float32)),
               "lif": nir.LIF(tau=np.full(n, tau, np.float32), r=np.ones(n, np.float32), v_leak=np.zeros(n, np.float32),
                              v_threshold=np.ones(n, np.float32), v_reset=np.zeros(n, np.float32),
                              metadata=neuron_metadata("zero")),
               "output": nir.Output(output_type={"output": np.array([n])})},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    x = np.array([[1.5, 3.0, 5.0, 9.0]])
    v, total = np.zeros(n), np.zeros(n)
    for _ in range(T):
        v = v + dt / tau * (-v + x[0])
        z = v > 1.0
        v = np.where(z, 0.0, v)
        total += z
    run = backends.get("norse").run(graph, x, T)
    np.testing.assert_array_equal(run.outputs[0], total)


def test_conv_flatten_graph_agrees_with_reference_core_semantics():
    rng = np.random.default_rng(0)
    w = (rng.integers(-3, 4, (2, 1, 3, 3)) / 4).astype(np.float32)
    ones = np.ones((2, 4, 4), np.float32)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
               "conv": nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding=1, dilation=1, groups=1,
                                  bias=np.zeros(2, np.float32)),
               "if": nir.IF(r=ones, v_threshold=ones, v_reset=0 * ones, metadata=neuron_metadata("zero")),
               "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1),
               "fc": nir.Affine(weight=(rng.integers(-2, 3, (3, 32)) / 4).astype(np.float32), bias=np.zeros(3, np.float32)),
               "out": nir.I(r=np.ones(3, np.float32)),
               "output": nir.Output(output_type={"output": np.array([3])})},
        edges=[("input", "conv"), ("conv", "if"), ("if", "flat"), ("flat", "fc"), ("fc", "out"), ("out", "output")],
        type_check=False)
    x = rng.integers(0, 5, (5, 1, 4, 4)) / 4
    ref = backends.get("reference").run(graph, x, 10, record=True)
    run = backends.get("norse").run(graph, x, 10, record=True)
    np.testing.assert_array_equal(run.spikes["if"], ref.spikes["if"])
    np.testing.assert_allclose(run.outputs, ref.outputs, atol=1e-5)


def test_node_types_norse_cannot_run_are_refused():
    with pytest.raises(backends.Unsupported, match="node 'pool' has type AvgPool2d"):
        backends.get("norse").run(avgpool_only(), np.zeros((1, 1, 4, 4)), 4)


def _pool_graph(padding):
    """Input -> Conv2d -> IF (reset to zero) -> SumPool2d -> Flatten -> Affine -> I -> Output, dyadic values."""
    from tests.graphs import if_node
    rng = np.random.default_rng(5)
    eighths = lambda *s: (rng.integers(-4, 5, s) / 8).astype(np.float32)  # noqa: E731
    pooled = 2 if padding == 0 else 3
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "conv": nir.Conv2d(input_shape=(4, 4), weight=eighths(2, 1, 3, 3), stride=1, padding=(1, 1), dilation=1,
                           groups=1, bias=eighths(2)),
        "if1": if_node((2, 4, 4), 0.5, reset="zero"),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([padding] * 2)),
        "flat": nir.Flatten(input_type={"input": np.array([2, pooled, pooled])}, start_dim=0),
        "fc": nir.Affine(weight=eighths(3, 2 * pooled * pooled), bias=np.zeros(3, np.float32)),
        "out": nir.I(r=np.ones(3, np.float32)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "conv"), ("conv", "if1"), ("if1", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "out"),
             ("out", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_sum_pooling_matches_a_numpy_loop():
    import torch
    import torch.nn.functional as F
    g = _pool_graph(padding=0)
    x = (np.random.default_rng(6).integers(0, 9, (5, 1, 4, 4)) / 8).astype(np.float32)
    run = backends.get("norse").run(g, x, 10)
    v = np.zeros((5, 2, 4, 4))
    current = F.conv2d(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(g.nodes["conv"].weight, dtype=torch.float64),
                       torch.as_tensor(g.nodes["conv"].bias, dtype=torch.float64), padding=1).numpy()
    out = np.zeros((5, 3))
    for _ in range(10):
        v = v + current
        z = v > 0.5
        v = np.where(z, 0.0, v)
        pooled = z.reshape(5, 2, 2, 2, 2, 2).sum((3, 5))
        out += pooled.reshape(5, -1) @ g.nodes["fc"].weight.T
    assert out.any()
    np.testing.assert_allclose(run.outputs, out, rtol=0, atol=1e-5)


def test_padded_sum_pooling_is_refused():
    with pytest.raises(backends.Unsupported, match=r"node 'pool' \(SumPool2d\): padding \[1, 1\].*without padding"):
        backends.get("norse").run(_pool_graph(padding=1), np.zeros((1, 1, 4, 4), np.float32), 4)


def test_scale_after_the_input_multiplies_the_inputs(net):
    """Input -> Scale(4) -> Affine -> IF -> Affine -> I (the form of a netx import) equals the numpy loop on
    4 x; a Scale elsewhere is refused, even when asked to approximate."""
    x, w1, b1, w2, b2 = net
    g = mlp(w1 / 4, b1, w2, b2, threshold=1.0, reset="zero")
    nodes = {**g.nodes, "in_scale": nir.Scale(scale=np.array([4.0], np.float32))}
    edges = [e for e in g.edges if e != ("input", "fc1")] + [("input", "in_scale"), ("in_scale", "fc1")]
    run = backends.get("norse").run(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), x, 12)
    counts, out = _mlp_loop(x, w1, b1, w2, b2, 1.0, 12, subtract=False)
    assert not run.approximate
    np.testing.assert_array_equal(run.spike_counts["if1"], counts.sum(1))
    np.testing.assert_allclose(run.outputs, out, rtol=0, atol=1e-5)
    nodes = {**g.nodes, "mid": nir.Scale(scale=np.full(w1.shape[0], 2.0, np.float32))}
    edges = [e for e in g.edges if e != ("fc1", "if1")] + [("fc1", "mid"), ("mid", "if1")]
    with pytest.raises(backends.Unsupported, match="node 'mid' \\(Scale\\): Norse has no scaling module"):
        backends.get("norse").run(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), x, 12, approximate=True)
