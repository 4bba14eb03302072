"""The signed neuron with memory (DNISNM Eq. 19-23, `reset: signed-memory` in docs/nir-extensions.md):
the step function, the NIR extension, the reference backend and Lava against hand-derived spike trains.

Every value is a multiple of 1/4, so float32 and float64 agree exactly and threshold equalities are exact.
"""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import backends
from backends import neurons
from backends.nirext import ExtensionError, neuron_metadata, neuron_semantics
from tests.graphs import if_node

REF = backends.get("reference")
T = 8

# Driver layer (reset by subtraction, threshold 1, v(0) = 0) on the constant input (1, 1/4):
# neuron 0 fires every step, neuron 1 fires when its potential reaches 1, at t = 3 and t = 7.
DRIVE = np.array([[1, 1, 1, 1, 1, 1, 1, 1],
                  [0, 0, 0, 1, 0, 0, 0, 1]], dtype=np.float64).T          # (T, 2)
# The SNM layer: current x(t) = W @ drive(t); thresholds θ and v(0) per neuron.
W = np.array([[1.0, -3.0],     # Fig. 3 of the paper: the negative input arrives late (t = 3, 7)
              [0.0, -1.0],     # only negative input, memory 0: never fires
              [0.5, -3.0],     # one positive spike, then one negative, then memory 0 blocks the next
              [1.0, -3.0]])    # θ = 2, v(0) = θ/2 = 1
THETA = np.array([1.0, 1.0, 1.0, 2.0])
V0 = np.array([0.0, 0.0, 0.0, 1.0])

# The spike trains Eq. 19-23 give, worked by hand (v~ = v + x; z; v = v~ - θz; m = m + z):
EXPECTED = np.array([
    # n0, x = 1,1,1,-2,1,1,1,-2; θ = 1, v0 = 0
    #   t0 v~=1 -> +1 (m=1) v=0; t1 +1 (m=2); t2 +1 (m=3); t3 v~=-2 <= -1, m=3>0 -> -1 (m=2) v=-1;
    #   t4 v~=0 -> 0; t5 v~=1 -> +1 (m=3) v=0; t6 +1 (m=4); t7 v~=-2 -> -1 (m=3) v=-1
    [+1, +1, +1, -1, 0, +1, +1, -1],
    # n1, x = 0,0,0,-1,0,0,0,-1: t3 v~=-1 <= -1 but m=0 -> 0 (v=-1); t7 v~=-2, m=0 -> 0
    [0, 0, 0, 0, 0, 0, 0, 0],
    # n2, x = .5,.5,.5,-2.5,.5,.5,.5,-2.5: t0 v~=.5; t1 v~=1 -> +1 (m=1) v=0; t2 v~=.5;
    #   t3 v~=-2 -> -1 (m=0) v=-1; t4 -.5; t5 0; t6 .5; t7 v~=-2, m=0 -> 0
    [0, +1, 0, -1, 0, 0, 0, 0],
    # n3, x as n0, θ = 2, v0 = 1: t0 v~=2 -> +1 (m=1) v=0; t1 1; t2 v~=2 -> +1 (m=2) v=0;
    #   t3 v~=-2 <= -2 -> -1 (m=1) v=0; t4 1; t5 2 -> +1 (m=2) v=0; t6 1; t7 v~=-1 > -2 -> 0
    [+1, 0, +1, -1, 0, +1, 0, 0],
], dtype=np.float64).T                                                     # (T, 4)


def snm_node(theta, v_init) -> nir.IF:
    theta = np.asarray(theta, np.float32)
    return nir.IF(r=np.ones_like(theta), v_threshold=theta, v_reset=np.zeros_like(theta),
                  metadata=neuron_metadata("signed-memory", np.asarray(v_init, np.float32)))


def snm_graph() -> nir.NIRGraph:
    """Input(2) -> Linear(I) -> IF(subtract) 'drive' -> Linear(W) -> SNM 'snm' -> Output."""
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "fc0": nir.Linear(weight=np.eye(2, dtype=np.float32)),
            "drive": if_node(2, 1.0),
            "fc1": nir.Linear(weight=W.astype(np.float32)),
            "snm": snm_node(THETA, V0),
            "output": nir.Output(output_type={"output": np.array([4])}),
        },
        edges=[("input", "fc0"), ("fc0", "drive"), ("drive", "fc1"), ("fc1", "snm"), ("snm", "output")],
        type_check=False,
    )


INPUT = np.array([[1.0, 0.25]], dtype=np.float32)


def test_step_function_gives_the_hand_derived_trains():
    p = neurons.SNMParams(torch.ones(4, dtype=torch.float64), torch.as_tensor(THETA))
    state = (torch.as_tensor(V0), torch.zeros(4, dtype=torch.float64))
    out = []
    for x in DRIVE @ W.T:
        state, z = neurons.snm_step(state, torch.as_tensor(x), p)
        out.append(z.numpy())
    np.testing.assert_array_equal(np.array(out), EXPECTED)
    np.testing.assert_array_equal(state[1].numpy(), EXPECTED.sum(0))  # memory = net spikes sent


def check_run(run) -> None:
    np.testing.assert_array_equal(run.spikes["drive"][0], DRIVE)
    np.testing.assert_array_equal(run.spikes["snm"][0], EXPECTED)
    np.testing.assert_array_equal(run.outputs[0], EXPECTED.sum(0))         # signed sum reaches Output
    np.testing.assert_array_equal(run.neuron_counts["snm"], np.abs(EXPECTED).sum(0))  # counts use |s|
    assert run.spike_counts["snm"][0] == np.abs(EXPECTED).sum()


def test_reference_backend_runs_the_hand_derived_trains():
    check_run(REF.run(snm_graph(), INPUT, T, record=True, dtype=torch.float64))
    check_run(REF.run(snm_graph(), INPUT, T, record=True))


@pytest.mark.lava
def test_lava_runs_the_hand_derived_trains():
    check_run(backends.get("lava").run(snm_graph(), INPUT, T, record=True))


def random_snm_mlp(rng, n_in=5, n_hid=6, n_out=3) -> nir.NIRGraph:
    """Input -> Affine -> SNM -> Affine -> SNM -> Affine -> I: mixed-sign weights, so negative spikes flow."""
    q = lambda *shape: (rng.integers(-8, 9, shape) / 4).astype(np.float32)  # noqa: E731
    th1 = (rng.integers(2, 6, n_hid) / 4).astype(np.float32)
    th2 = (rng.integers(2, 6, n_hid) / 4).astype(np.float32)
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n_in])}),
            "fc1": nir.Affine(weight=q(n_hid, n_in), bias=q(n_hid) / 4),
            "snm1": snm_node(th1, th1 / 2),
            "fc2": nir.Affine(weight=q(n_hid, n_hid), bias=q(n_hid) / 4),
            "snm2": snm_node(th2, th2 / 2),
            "fc3": nir.Affine(weight=q(n_out, n_hid), bias=np.zeros(n_out, np.float32)),
            "out": nir.I(r=np.ones(n_out, np.float32)),
            "output": nir.Output(output_type={"output": np.array([n_out])}),
        },
        edges=[("input", "fc1"), ("fc1", "snm1"), ("snm1", "fc2"), ("fc2", "snm2"), ("snm2", "fc3"),
               ("fc3", "out"), ("out", "output")],
        type_check=False,
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 24))
def test_signed_counts_stay_in_range_and_memory_never_goes_negative(seed, steps):
    """Net signed count per neuron in [0, T] (m >= 0), |spikes| <= 1 per step, so counts in [-T, T]."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(-8, 9, (4, 5)) / 4).astype(np.float32)
    run = REF.run(random_snm_mlp(rng), x, steps, record=True, dtype=torch.float64)
    for name in ("snm1", "snm2"):
        s = run.spikes[name]
        assert set(np.unique(s)) <= {-1.0, 0.0, 1.0}
        net = np.cumsum(s, axis=1)
        assert net.min() >= 0 and net.max() <= steps   # memory = running net count, never below 0
        assert np.all(np.abs(s).sum(1) <= steps)


@pytest.mark.lava
def test_lava_matches_reference_on_a_two_layer_snm_net():
    rng = np.random.default_rng(7)  # a seed whose second layer sends negative spikes (7 of them)
    g = random_snm_mlp(rng)
    x = (rng.integers(-8, 9, (3, 5)) / 4).astype(np.float32)
    ref = REF.run(g, x, 12, record=True, dtype=torch.float64)
    assert np.any(ref.spikes["snm2"] < 0), "the test net should produce negative spikes"
    lava = backends.get("lava").run(g, x, 12, record=True)
    for name in ("snm1", "snm2"):
        np.testing.assert_array_equal(lava.spikes[name], ref.spikes[name])
    np.testing.assert_allclose(lava.outputs, ref.outputs, atol=1e-9)


def test_extension_parses_and_validates_signed_memory():
    sem = neuron_semantics("snm", snm_node([1.0, 2.0], [0.5, 1.0]))
    assert sem.signed and sem.fires_at_equality and sem.reset == "signed-memory"
    assert not neuron_semantics("if", if_node(2, 1.0)).signed
    lif = nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                  metadata=neuron_metadata("signed-memory"))
    with pytest.raises(ExtensionError, match="IF nodes only"):
        neuron_semantics("lif", lif)
    bad = snm_node([1.0, 2.0], [0.5, 1.0])
    bad.metadata["spikeport"]["reset"] = "signed"
    with pytest.raises(ExtensionError, match="reset must be one of"):
        neuron_semantics("bad", bad)
