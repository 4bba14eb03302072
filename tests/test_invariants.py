"""Property tests (hypothesis) of simulator invariants on the reference backend.

Values lie on a grid of 1/8 so that every sum is exact in float64 and the invariants hold with equality.
"""
from __future__ import annotations

import nir
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backends
from backends.graph import analyse
from backends.reference import _Lowering
from pipeline.io.atomic import write_nir
from pipeline.io.nirio import read_graph
from tests.graphs import if_node

GRID = 8.0


def _grid(draw, shape, lo, hi):
    return np.array(draw(st.lists(st.integers(lo, hi), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
                    dtype=np.float64).reshape(shape) / GRID


@st.composite
def two_layer(draw, resets=("subtract", "signed-memory")):
    """Input -> Affine -> IF1 -> Affine -> IF2 -> Output with grid weights, thresholds, v_init; and inputs."""
    n_in, n1, n2 = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    reset = draw(st.sampled_from(resets))
    w1, b1 = _grid(draw, (n1, n_in), -16, 16), _grid(draw, (n1,), -8, 8)
    w2, b2 = _grid(draw, (n2, n1), -16, 16), _grid(draw, (n2,), -8, 8)
    th1, th2 = _grid(draw, (n1,), 1, 24), _grid(draw, (n2,), 1, 24)
    v1, v2 = _grid(draw, (n1,), -8, 8), _grid(draw, (n2,), -8, 8)
    x = _grid(draw, (draw(st.integers(1, 3)), n_in), -16, 16)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([n_in])}),
               "fc1": nir.Affine(weight=w1.astype(np.float32), bias=b1.astype(np.float32)),
               "if1": if_node(n1, th1, v1, reset),
               "fc2": nir.Affine(weight=w2.astype(np.float32), bias=b2.astype(np.float32)),
               "if2": if_node(n2, th2, v2, reset),
               "output": nir.Output(output_type={"output": np.array([n2])})},
        edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"), ("if2", "output")],
        type_check=False)
    return graph, x, draw(st.integers(1, 24)), dict(w2=w2, b2=b2, th2=th2, v2=v2, reset=reset)


def _final_state(graph, name, currents):
    """Step the reference backend's own lowering of neuron `name` through `currents` (T, N, n); return v(T)
    and the spike train."""
    op = _Lowering(analyse(graph), torch.device("cpu"), torch.float64).lower(name)
    state = op.init(currents.shape[1])
    train = []
    for x in torch.as_tensor(currents):
        state, z = op.step(state, x)
        train.append(z)
    v = state[0] if isinstance(state, tuple) else state
    return v.numpy(), torch.stack(train, 1).numpy()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_layer())
def test_membrane_balance_and_count_bounds(case):
    """v(T) = v(0) + sum_t input_t - theta * (net spike count) per neuron, for reset by subtraction and the
    signed neuron with memory; counts lie in [0, T] (net counts of signed neurons in [-T, T], and >= 0 since
    a negative spike needs memory > 0, DNISNM Eq. 20-21)."""
    graph, x, T, p = case
    for mode in ("layer", "step"):
        run = backends.get("reference").run(graph, x, T, record=True, dtype=torch.float64, mode=mode)
        z1, z2 = run.spikes["if1"], run.spikes["if2"]  # (N, T, n)
        assert z1.shape == (len(x), T, z1.shape[2])
        for z in (z1, z2):
            assert set(np.unique(z)) <= ({-1.0, 0.0, 1.0} if p["reset"] == "signed-memory" else {0.0, 1.0})
            net, total = z.sum(1), np.abs(z).sum(1)
            assert np.all((0 <= total) & (total <= T))
            assert np.all((-T <= net) & (net <= T))
            if p["reset"] == "signed-memory":
                assert np.all(np.cumsum(z, 1) >= 0)
        currents = np.einsum("ntj,kj->tnk", z1, p["w2"]) + p["b2"]  # IF2's input at every step (exact)
        v_T, train = _final_state(graph, "if2", currents)
        np.testing.assert_array_equal(train, z2)
        expected = p["v2"] + currents.sum(0) - p["th2"] * z2.sum(1)
        np.testing.assert_array_equal(v_T, expected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(two_layer(resets=("subtract", "signed-memory", "zero")))
def test_write_read_copy_gives_identical_spikes(tmp_path, case):
    """A graph and its .nir write/read copy give bit-identical spike trains and outputs."""
    graph, x, T, _ = case
    path = write_nir(tmp_path / "g.nir", graph)
    copy = read_graph(path)
    ref = backends.get("reference")
    a, b = ref.run(graph, x, T, record=True), ref.run(copy, x, T, record=True)
    for name in ("if1", "if2"):
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])
    np.testing.assert_array_equal(a.outputs, b.outputs)
