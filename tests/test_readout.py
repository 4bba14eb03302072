"""The linear readout run once on spike counts (backends.reference._Readout): which graphs it applies to, and
its output against a step-by-step sum computed here independently."""
from __future__ import annotations

from unittest import mock

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import backends
from backends.graph import analyse
from backends.nirext import neuron_metadata
from backends.reference import SUPPORTED, _Lowering, _Readout
from tests.graphs import if_node, mlp

REF = backends.get("reference")


def _readout_of(graph: nir.NIRGraph) -> _Readout | None:
    view = analyse(graph, SUPPORTED)
    low = _Lowering(view, torch.device("cpu"), torch.float32)
    return _Readout.find(view, {n: low.lower(n) for n in view.order})


def _conv_head(integrator=None, source_reset="subtract", between=None) -> nir.NIRGraph:
    """Input(1,4,4) -> Conv2d(2) -> IF -> [between] -> Flatten -> Affine(32 -> 3) -> integrator -> Output."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "conv": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 1, (2, 1, 3, 3)).astype(np.float32), stride=1,
                           padding=1, dilation=1, groups=1, bias=np.zeros(2, np.float32)),
        "spk": if_node((2, 4, 4), 1.0, reset=source_reset),
        "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 1, (3, 32)).astype(np.float32), bias=np.zeros(3, np.float32)),
        "out": integrator if integrator is not None else nir.I(r=np.ones(3, np.float32)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    chain = ["input", "conv", "spk", "flat", "fc", "out", "output"]
    if between is not None:
        nodes["between"] = between
        chain.insert(3, "between")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), type_check=False)


def test_found_on_spikes_flatten_weighted_integrator():
    found = _readout_of(_conv_head())
    assert (found.source, found.weighted, found.integrator, found.chain) == ("spk", "fc", "out", ("flat", "fc", "out"))


@pytest.mark.parametrize("graph", [
    _conv_head(integrator=nir.LI(tau=np.full(3, 0.01, np.float32), r=np.ones(3, np.float32),
                                 v_leak=np.zeros(3, np.float32))),      # a leak weights the steps unequally
    _conv_head(source_reset="signed-memory"),                           # counts are |z|, not z
    _conv_head(between=nir.Scale(scale=np.float32(0.5))),              # not spikes into the weighted node
    nir.NIRGraph(                                                       # two inputs to the integrator
        nodes={**mlp(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2)).nodes,
               "fc_b": nir.Linear(weight=np.eye(2, dtype=np.float32))},
        edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "out"), ("if1", "fc_b"), ("fc_b", "out"),
               ("out", "output")], type_check=False),
], ids=["leaky-integrator", "signed-source", "scale-between", "two-inputs"])
def test_not_found_where_the_sum_over_steps_does_not_commute(graph):
    assert _readout_of(graph) is None


def _dyadic(rng, *shape):
    return (rng.integers(-8, 9, shape) / 8).astype(np.float32)


@pytest.mark.parametrize("mode", ["step", "layer"])
def test_output_equals_an_independent_per_step_sum_on_dyadic_values(mode):
    """All values are multiples of 1/64 and small, so every float sum below is exact in any order: the readout's
    one call on counts must give the per-step loop's output bit for bit, v0 and r of the integrator included."""
    rng = np.random.default_rng(3)
    w1, b1, w2, b2, x = _dyadic(rng, 6, 4), _dyadic(rng, 6), _dyadic(rng, 3, 6), _dyadic(rng, 3), _dyadic(rng, 5, 4)
    graph = mlp(w1, b1, w2, b2, threshold=1.0, v_init=0.5)
    r, v0_out = np.float32([0.5, 1.0, 2.0]), np.float32([0.25, -0.5, 0.0])
    graph.nodes["out"] = nir.I(r=r, metadata=neuron_metadata("zero", v0_out))
    T = 20
    cur, v, out = x @ w1.T + b1, np.full((5, 6), 0.5), np.broadcast_to(v0_out, (5, 3)).astype(np.float64)
    fired = 0
    for _ in range(T):
        v = v + cur
        s = (v >= 1.0).astype(np.float64)
        v -= s
        fired = fired + s.sum(0)   # per hidden neuron, over the batch
        out = out + r * (s @ w2.T + b2)
    assert 0 < fired.sum() < 5 * 6 * T, "some, not all, neurons must fire for the test to mean anything"
    with mock.patch.object(F, "linear", wraps=F.linear) as linear:
        run = REF.run(graph, x, T, mode=mode)
    np.testing.assert_array_equal(run.outputs, out)
    np.testing.assert_array_equal(run.input_events["fc2"], fired / 5)
    # fc1 once (its input is constant), fc2 twice (on the counts and on zeros for T x bias) instead of T times
    assert linear.call_count == 3


def test_spikes_events_unchanged_and_outputs_close_to_the_per_step_graph():
    """On float weights the readout is compared with the same graph run step by step to its end (the readout
    disabled): identical spikes and input events, outputs equal up to float rounding of the sums."""
    rng = np.random.default_rng(5)
    graph = _conv_head()
    x = rng.uniform(0, 1, (9, 1, 4, 4)).astype(np.float32)
    with_readout = [REF.run(graph, x, 24, mode=m, record=True) for m in ("step", "layer")]
    with mock.patch.object(_Readout, "find", return_value=None):
        per_step = REF.run(graph, x, 24, mode="step", record=True)
    assert per_step.spike_counts["spk"].sum() > 0
    for run in with_readout:
        np.testing.assert_array_equal(run.spikes["spk"], per_step.spikes["spk"])
        np.testing.assert_array_equal(run.input_events["fc"], per_step.input_events["fc"])
        np.testing.assert_allclose(run.outputs, per_step.outputs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(with_readout[0].outputs, with_readout[1].outputs)
