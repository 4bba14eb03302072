"""lava-dl netx: export/import round trips, refusals, and Lava runs against numpy loops and lava-dl's own netx."""
from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import backends
from backends.netx import export_netx, import_netx
from tests.graphs import avgpool_only, mlp


def _int_mlp(seed: int, threshold=6.0, reset="zero"):
    """An MLP netx expresses exactly: integer weights and biases, one integer threshold, reset to zero."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.integers(-5, 6, (6, 4)), rng.integers(-2, 3, 6)
    w2, b2 = rng.integers(-5, 6, (3, 6)), rng.integers(-1, 2, 3)
    return mlp(w1, b1, w2, b2, threshold=threshold, reset=reset), (w1, b1, w2, b2)


def _numpy_netx(x, w1, b1, w2, b2, theta, T):
    """netx's CUBA layers with iDecay=4096, vDecay=0 in integer numpy (backends/netx/layout.py):
    v += W s + b; z = v > vThMant; v = 0 where z; the readout layer integrates without firing. `x` is (N, n_in),
    held for T steps, or (N, T, n_in), step t at step t."""
    v = np.zeros((len(x), len(b1)), np.int64)
    out = np.zeros((len(x), len(b2)), np.int64)
    counts = np.zeros_like(v)
    for t in range(T):
        v = v + (x[:, t] if x.ndim == 3 else x) @ w1.T + b1
        z = v > theta
        v[z] = 0
        counts += z
        out += z.astype(np.int64) @ w2.T + b2
    return counts, out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 20))
def test_exact_graph_round_trips_with_identical_spikes(tmp_path_factory, seed, T):
    graph, _ = _int_mlp(seed)
    path = tmp_path_factory.mktemp("netx") / "net.h5"
    assert export_netx(graph, path) == []
    back = import_netx(path)
    x = np.random.default_rng(seed).integers(0, 4, (5, 4))
    ref = backends.get("reference")
    a, b = ref.run(graph, x, T, record=True), ref.run(back, x, T, record=True)
    np.testing.assert_array_equal(b.spikes["neuron1"], a.spikes["if1"])
    np.testing.assert_allclose(b.outputs, a.outputs, rtol=1e-6)


def test_reset_by_subtraction_is_refused_or_labelled(tmp_path):
    graph, _ = _int_mlp(0, reset="subtract")
    with pytest.raises(backends.Unsupported, match=r"node 'if1' \(IF\): reset 'subtract'.*reset to 0"):
        export_netx(graph, tmp_path / "a.h5")
    assert not (tmp_path / "a.h5").exists()
    gaps = export_netx(graph, tmp_path / "a.h5", approximate=True)
    assert len(gaps) == 1 and "'if1'" in gaps[0]


def test_inexpressible_graphs_are_refused_naming_the_node(tmp_path):
    graph, _ = _int_mlp(0)
    graph.nodes["extra"] = nir.Affine(weight=np.eye(3, dtype=np.float32), bias=np.zeros(3, np.float32))
    graph.edges = [("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "out"), ("fc2", "extra"),
                   ("extra", "out"), ("out", "output")]
    with pytest.raises(backends.Unsupported, match="node 'fc2' has fan-in or fan-out"):
        export_netx(graph, tmp_path / "b.h5")
    with pytest.raises(backends.Unsupported, match="node 'pool' has type AvgPool2d"):
        export_netx(avgpool_only(), tmp_path / "c.h5")


def _leaky_netx(tmp_path):
    """A netx file whose CUBA layer has vDecay = 128, imported; inputs, T, and the spike counts per sample of
    that layer from the integer loop of Lava's fixed-point LIF (v = v (4096 - 128) >> 12 toward zero, + W s << 6)."""
    graph, (w1, b1, w2, b2) = _int_mlp(1)
    path = tmp_path / "leaky.h5"
    export_netx(graph, path)
    with h5py.File(path, "r+") as f:
        del f["layer/1/neuron/vDecay"]
        f["layer/1/neuron"].create_dataset("vDecay", data=128)
    back = import_netx(path)
    x = np.random.default_rng(1).integers(0, 4, (5, 4))
    T = 30
    v = np.zeros((5, 6), np.int64)
    counts = np.zeros_like(v)
    theta = int(np.asarray(back.nodes["neuron1"].v_threshold).flat[0]) << 6
    for _ in range(T):
        y = v * (4096 - 128)
        v = np.sign(y) * (np.abs(y) >> 12) + ((x @ w1.T + b1) << 6)
        z = v > theta
        v[z] = 0
        counts += z
    assert counts.sum() > 10
    return back, x.astype(np.float32), T, counts.sum(1)


def test_leaky_netx_neurons_run_with_lavas_12_bit_decay(tmp_path):
    """A CUBA layer with vDecay = 128 is imported as a LIF carrying Lava's decay; the reference backend gives
    the integer loop of Lava's fixed-point LIF; the float LIF it states (forward Euler, no rounding) fires
    differently, which is why Norse refuses it."""
    back, x, T, counts = _leaky_netx(tmp_path)
    assert back.nodes["neuron1"].metadata["spikeport"]["lava_cuba"] == {"i_decay": 4096, "v_decay": 128}
    run = backends.get("reference").run(back, x, T)
    np.testing.assert_array_equal(run.spike_counts["neuron1"], counts)
    with pytest.raises(backends.Unsupported, match="node 'neuron1': Lava's 12-bit CUBA decays"):
        backends.get("norse").run(back, x, T)


@pytest.mark.slow
@pytest.mark.lava
def test_leaky_netx_neurons_run_on_lavas_own_fixed_point_lif(tmp_path):
    """The same graph on the Lava backend: a netx graph runs on Lava's stock bit-accurate LIF (du = iDecay - 1,
    dv = vDecay, the bias as bias_mant << 6), with the counts of the integer loop."""
    back, x, T, counts = _leaky_netx(tmp_path)
    lava = backends.get("lava")
    assert lava.neuron_processes(back)["neuron1"] == "LIFReset"
    run = lava.run(back, x, T)
    np.testing.assert_array_equal(run.spike_counts["neuron1"], counts)


def test_input_neuron_layers_are_imported_driven_by_their_bias(tmp_path):
    """netx feeds an input layer with neurons through their bias (lava-dl's Input block leaves `inp`
    unconnected): the graph's input is that bias, entering v like the synaptic input of an IF."""
    graph, _ = _int_mlp(1)
    path = tmp_path / "input_neurons.h5"
    export_netx(graph, path)
    with h5py.File(path, "r+") as f:
        f["layer/0"].copy(f["layer/1/neuron"], "neuron")
    back = import_netx(path)
    assert [type(back.nodes[n]).__name__ for n in ("neuron0", "dense1")] == ["IF", "Affine"]
    assert ("input", "neuron0") in back.edges and ("neuron0", "dense1") in back.edges


def test_netx_backend_matches_integer_numpy_loop():
    graph, (w1, b1, w2, b2) = _int_mlp(7)
    x = np.random.default_rng(7).integers(0, 4, (6, 4))
    run = backends.get("netx").run(graph, x, 9, record=True)
    counts, out = _numpy_netx(x, w1, b1, w2, b2, 6, 9)
    assert not run.approximate
    np.testing.assert_array_equal(run.spikes["if1"].sum(1), counts)
    np.testing.assert_allclose(run.outputs, out, rtol=0, atol=1e-9)


def test_netx_backend_matches_integer_numpy_loop_on_time_varying_input():
    graph, (w1, b1, w2, b2) = _int_mlp(8)
    rng = np.random.default_rng(8)
    x = rng.integers(-2, 4, (5, 9, 4)) * (rng.random((5, 9, 4)) < 0.5)   # graded, signed, sparse events
    run = backends.get("netx").run(graph, x, 9, record=True)
    counts, out = _numpy_netx(x, w1, b1, w2, b2, 6, 9)
    ref = backends.get("reference").run(graph, x, 9, record=True)
    assert not run.approximate and counts.sum() > 0
    np.testing.assert_array_equal(run.spikes["if1"].sum(1), counts)
    np.testing.assert_array_equal(run.spikes["if1"], ref.spikes["if1"])
    np.testing.assert_allclose(run.outputs, out, rtol=0, atol=1e-9)


def test_time_varying_conv_input_streams_in_lavas_layout(tmp_path):
    """A slayer-built conv network on non-constant binary input: netx spikes equal the reference's step by step
    (a (C, H, W) / (W, H, C) mix-up of the per-step frames would change them)."""
    path = tmp_path / "slayer.net"
    _slayer_file(path, seed=2)
    graph = import_netx(path, input_shape=(1, 6, 6))
    x = np.random.default_rng(2).integers(0, 2, (3, 8, 1, 6, 6))
    ref = backends.get("reference").run(graph, x, 8, record=True)
    from backends.netx.backend import run_file
    streamed = run_file(path, x, 8, record=True, varying=True)
    assert ref.spike_counts["neuron0"].sum() > 0
    np.testing.assert_array_equal(streamed.spikes["neuron0"], ref.spikes["neuron0"])
    np.testing.assert_array_equal(streamed.outputs, ref.outputs)


def _slayer_file(path, seed=0):
    """A conv -> flatten -> dense network built and exported by lava-dl's slayer (not by spikeport)."""
    import torch
    import backends.lava  # noqa: F401  (Lava's Python 3.11 fix before lava-dl imports)
    import lava.lib.dl.slayer as slayer
    torch.manual_seed(seed)
    p = {"threshold": 0.5, "current_decay": 1.0, "voltage_decay": 0.0, "requires_grad": False}
    blocks = [slayer.block.cuba.Conv(p, 1, 4, 3, padding=1, stride=1, weight_scale=4),
              slayer.block.cuba.Flatten(),
              slayer.block.cuba.Dense(p, 4 * 6 * 6, 5, weight_scale=4)]
    with torch.no_grad():   # slayer sets the neuron shapes on a first forward pass
        y = torch.zeros(1, 1, 6, 6, 2)
        for b in blocks:
            y = b(y)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(str(i)))


def _plain_netx_counts(path, x, T):
    """lava-dl's netx Network run the plain way (no reset, one sample): output-layer spike counts over the
    T steps after the two one-step synaptic delays."""
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    lava_x = x.transpose(2, 1, 0)
    net = Network(net_config=str(path), input_shape=lava_x.shape, input_message_bits=16)
    steps = T + len(net.layers)
    source = Source(data=np.repeat(lava_x[..., None], steps, axis=-1).astype(np.int32))
    sink = Sink(shape=net.out.shape, buffer=steps)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        data = sink.data.get()
    finally:
        net.stop()
    return data[:, len(net.layers):].sum(1)


def test_slayer_built_network_imports_and_matches_lava_dl_netx(tmp_path):
    path = tmp_path / "slayer.h5"
    _slayer_file(path)
    graph = import_netx(path, input_shape=(1, 6, 6))
    assert [type(graph.nodes[n]).__name__ for n in ("conv0", "neuron0", "flatten1", "dense2", "neuron2")] == \
        ["Conv2d", "IF", "Flatten", "Affine", "IF"]
    x = np.random.default_rng(1).integers(0, 2, (3, 1, 6, 6))
    T = 12
    ref = backends.get("reference").run(graph, x, T, record=True)
    assert ref.spike_counts["neuron2"].sum() > 0          # the output layer does fire
    plain = _plain_netx_counts(path, x[0], T)
    np.testing.assert_array_equal(ref.outputs[0], plain)
    from backends.netx.backend import run_file
    streamed = run_file(path, x, T, record=True)
    np.testing.assert_array_equal(streamed.outputs, ref.outputs)
    np.testing.assert_array_equal(streamed.spikes["neuron0"], ref.spikes["neuron0"])


def test_digits_graph_round_trip_and_netx_import_identity(tmp_path, digits, digits_graphs):
    """maxnorm digits: the approximate export's import round-trips exactly, and differs from the original
    only as labelled (reset to zero, 8-bit weights)."""
    graph = digits_graphs["maxnorm"]
    gaps = export_netx(graph, tmp_path / "a.h5", input_scale=16, approximate=True)
    assert sum("reset 'subtract'" in g for g in gaps) == 2 and sum("quantized" in g for g in gaps) == 3
    once = import_netx(tmp_path / "a.h5")
    assert export_netx(once, tmp_path / "b.h5", input_scale=16) == []
    twice = import_netx(tmp_path / "b.h5")
    x = digits.test_x.numpy()[:64]
    ref = backends.get("reference")
    a, b = ref.run(once, x, 32, record=True), ref.run(twice, x, 32, record=True)
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k])



def test_netx_equivalent_is_the_float_graph_on_netx_integer_grid(tmp_path):
    """A float MLP (reset to zero, threshold 0.75): `netx_equivalent` gives the graph of netx's integers, which
    exports exactly; its spikes and outputs equal an integer loop of the writer's documented rule, worked
    here by hand: K = floor(min(127 / max|W1/theta|, 4095 / max|b1/theta|)) is the hidden threshold,
    W1_int = round(W1 K / theta); the readout's K2 = min(127 / max|W2|, 4095 / max|b2|), output / K2."""
    from backends.netx import netx_equivalent
    rng = np.random.default_rng(4)
    w1, b1 = rng.normal(0, 0.5, (6, 4)), rng.normal(0, 0.1, 6)
    w2, b2 = rng.normal(0, 0.5, (3, 6)), rng.normal(0, 0.1, 3)
    theta = 0.75
    g, gaps = netx_equivalent(mlp(w1, b1, w2, b2, threshold=theta, reset="zero"))
    assert len(gaps) == 2 and all("quantized to 8-bit mantissas" in s for s in gaps)
    assert export_netx(g, tmp_path / "g.h5") == []
    w1, b1, w2, b2 = (np.asarray(a, np.float32).astype(np.float64) for a in (w1, b1, w2, b2))
    K = np.floor(min(127 / np.abs(w1 / theta).max(), 4095 / np.abs(b1 / theta).max()))
    K2 = min(127 / np.abs(w2).max(), 4095 / np.abs(b2).max())
    ints = [np.round(a).astype(np.int64) for a in (w1 * K / theta, b1 * K / theta, w2 * K2, b2 * K2)]
    x = rng.integers(0, 4, (20, 4))
    counts, out = _numpy_netx(x, *ints, K, 16)
    assert 0 < counts.mean() < 16
    run = backends.get("reference").run(g, x.astype(np.float64), 16)
    np.testing.assert_array_equal(run.neuron_counts[[n for n in g.nodes if n.startswith("neuron")][0]], counts.mean(0))
    np.testing.assert_allclose(run.outputs, out / K2, rtol=1e-6)
