"""Hand-built NIR graphs shared by the backend tests (each test computes its expected answer itself)."""
from __future__ import annotations

import nir
import numpy as np

import backends
from backends.nirext import neuron_metadata


def if_node(shape, threshold=1.0, v_init=None, reset="subtract") -> nir.IF:
    shape = tuple(np.atleast_1d(shape))
    theta = np.broadcast_to(np.asarray(threshold, dtype=np.float32), shape).copy()
    v0 = None if v_init is None else np.broadcast_to(np.asarray(v_init, dtype=np.float32), shape).copy()
    return nir.IF(r=np.ones(shape, np.float32), v_threshold=theta, v_reset=np.zeros(shape, np.float32),
                  metadata=neuron_metadata(reset, v0))


def mlp(w1, b1, w2, b2, threshold=1.0, v_init=None, reset="subtract") -> nir.NIRGraph:
    """Input -> Affine -> IF -> Affine -> I -> Output."""
    w1, w2 = np.asarray(w1, np.float32), np.asarray(w2, np.float32)
    n_in, n_hid, n_out = w1.shape[1], w1.shape[0], w2.shape[0]
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n_in])}),
            "fc1": nir.Affine(weight=w1, bias=np.asarray(b1, np.float32)),
            "if1": if_node(n_hid, threshold, v_init, reset),
            "fc2": nir.Affine(weight=w2, bias=np.asarray(b2, np.float32)),
            "out": nir.I(r=np.ones(n_out, np.float32)),
            "output": nir.Output(output_type={"output": np.array([n_out])}),
        },
        edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "out"), ("out", "output")],
        type_check=False,
    )


def avgpool_only() -> nir.NIRGraph:
    """Input (1, 4, 4) -> AvgPool2d 2x2 -> Output: a node type the netx and Norse backends refuse."""
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
               "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
               "output": nir.Output(output_type={"output": np.array([1, 2, 2])})},
        edges=[("input", "pool"), ("pool", "output")], type_check=False)


def single_if(n: int, threshold, v_init=None, reset="subtract") -> nir.NIRGraph:
    """Input -> Linear(identity) -> IF -> Output: the IF layer sees the input as its current."""
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n])}),
            "fc": nir.Linear(weight=np.eye(n, dtype=np.float32)),
            "if": if_node(n, threshold, v_init, reset),
            "output": nir.Output(output_type={"output": np.array([n])}),
        },
        edges=[("input", "fc"), ("fc", "if"), ("if", "output")],
        type_check=False,
    )


def conv_snm(rng: np.random.Generator) -> nir.NIRGraph:
    """Input(1,5,5) -> Conv2d(3, 3x3, pad 1) -> IF 'drive' (subtract) -> Conv2d(3 -> 3) -> signed neuron with memory
    'snm' (per-neuron θ, v(0) = θ/2) -> Scale(θ) -> Flatten -> Affine(75 -> 6) -> IF 'if' (reset to zero) ->
    Linear(6 -> 3) -> I -> Output. The drive layer's spikes make the SNM's input change sign over time."""
    theta = rng.uniform(0.2, 1.5, (3, 5, 5)).astype(np.float32)
    snm = nir.IF(r=np.ones_like(theta), v_threshold=theta, v_reset=np.zeros_like(theta),
                 metadata=neuron_metadata("signed-memory", theta / 2))

    def conv(c_in, scale):
        return nir.Conv2d(input_shape=(5, 5), weight=rng.normal(0, scale, (3, c_in, 3, 3)).astype(np.float32),
                          stride=1, padding=1, dilation=1, groups=1, bias=rng.normal(0, 0.2, 3).astype(np.float32))
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 5, 5])}),
            "conv1": conv(1, 0.8),
            "drive": if_node((3, 5, 5), 1.0),
            "conv2": conv(3, 0.6),
            "snm": snm,
            "amp": nir.Scale(scale=theta.copy()),
            "flat": nir.Flatten(input_type={"input": np.array([3, 5, 5])}, start_dim=0, end_dim=-1),
            "fc": nir.Affine(weight=rng.normal(0, 0.3, (6, 75)).astype(np.float32),
                             bias=rng.normal(0, 0.1, 6).astype(np.float32)),
            "if": if_node(6, 1.0, reset="zero"),
            "head": nir.Linear(weight=rng.normal(0, 0.5, (3, 6)).astype(np.float32)),
            "out": nir.I(r=np.ones(3, np.float32)),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "conv1"), ("conv1", "drive"), ("drive", "conv2"), ("conv2", "snm"), ("snm", "amp"),
               ("amp", "flat"), ("flat", "fc"), ("fc", "if"), ("if", "head"), ("head", "out"), ("out", "output")],
        type_check=False,
    )


def netx_exact_cnn(rng: np.random.Generator) -> nir.NIRGraph:
    """Input(1,6,6) -> Conv2d(4, 3x3, pad 1) -> IF 'if1' -> Conv2d(4 -> 6, 3x3, stride 2, pad 1) -> IF 'if2' ->
    Flatten -> Affine(54 -> 5) -> IF 'if3' -> Output, reset to zero, threshold 1 (16384 units on loihi2, so one
    unit is 1/16384 and one v unit 1/2^20), whose loihi2 integers netx holds exactly: weight exponents >= 0
    (large conv weights), dense weights m << E within [-256, 254] (even multiples of 1/16384 up to 252/16384:
    E = 0) and biases k/16384, i.e. 2^6 k v units."""
    def conv(c_out, c_in, scale, stride):
        return nir.Conv2d(input_shape=(6, 6),
                          weight=rng.normal(0, scale, (c_out, c_in, 3, 3)).astype(np.float32), stride=stride,
                          padding=1, dilation=1, groups=1,
                          bias=(rng.integers(-40, 40, c_out) / 16384).astype(np.float32))
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 6, 6])}),
            "conv1": conv(4, 1, 2.0, 1),
            "if1": if_node((4, 6, 6), 1.0, reset="zero"),
            "conv2": conv(6, 4, 0.1, 2),
            "if2": if_node((6, 3, 3), 1.0, reset="zero"),
            "flat": nir.Flatten(input_type={"input": np.array([6, 3, 3])}, start_dim=0, end_dim=-1),
            "fc": nir.Affine(weight=(2 * rng.integers(20, 127, (5, 54)) / 16384).astype(np.float32),
                             bias=(rng.integers(-40, 40, 5) / 16384).astype(np.float32)),
            "if3": if_node(5, 1.0, reset="zero"),
            "output": nir.Output(output_type={"output": np.array([5])}),
        },
        edges=[("input", "conv1"), ("conv1", "if1"), ("if1", "conv2"), ("conv2", "if2"), ("if2", "flat"),
               ("flat", "fc"), ("fc", "if3"), ("if3", "output")],
        type_check=False,
    )


def assert_fixed_point_spike_for_spike(graph, x, T, **lava_options):
    """Lava fixed_pt (with `LavaBackend.run`'s `lava_options`) and the reference's fixed-point mode on quantized
    `graph`: the same spikes in every layer at every step, the same input events and the same outputs; returns the
    reference run."""
    ref = backends.get("reference").run(graph, x, T, fixed_point=True, record=True)
    lava = backends.get("lava").run(graph, x, T, record=True, **lava_options)
    assert set(ref.spikes) == set(lava.spikes)
    for name in ref.spikes:
        np.testing.assert_array_equal(lava.spikes[name], ref.spikes[name], err_msg=name)
    np.testing.assert_array_equal(lava.outputs, ref.outputs)
    for name in ref.input_events:
        np.testing.assert_array_equal(lava.input_events[name], ref.input_events[name], err_msg=name)
    return ref
