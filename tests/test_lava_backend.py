"""The Lava backend against hand computations of docs/nir-extensions.md, Lava's measured delays and the
reference simulator.

Weights, inputs and thresholds are multiples of 1/8 where spikes are compared, so float64 (Lava) and
float32 (graphs, reference) arithmetic agree exactly and a threshold crossing cannot hinge on rounding.
"""
from __future__ import annotations

import importlib.util
import math
import multiprocessing
import tempfile
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import backends
from backends.graph import GraphError, analyse
from backends.lava import SUPPORTED_TYPES, LavaBackend
from backends.lava.lowering import Builder
from backends.nirext import graph_metadata, neuron_metadata
from tests.graphs import if_node, mlp, single_if

pytestmark = pytest.mark.lava

LAVA = LavaBackend()


def eighths(rng, *shape, lo=-6, hi=7) -> np.ndarray:
    return (rng.integers(lo, hi, shape) / 8).astype(np.float32)


def no_stray_processes():
    assert multiprocessing.active_children() == []


def if_loop(currents: np.ndarray, theta, v0) -> np.ndarray:
    """Spikes (T, *shape) of IF neurons with reset by subtraction driven by `currents` (T, *shape):
    v += x; z = v >= θ; v -= θ z (docs/nir-extensions.md)."""
    v = np.broadcast_to(np.asarray(v0, np.float64), currents.shape[1:]).copy()
    out = np.zeros_like(currents)
    for t, x in enumerate(currents):
        v = v + x
        z = v >= theta
        v = v - theta * z
        out[t] = z
    return out


def graph(nodes: dict, edges: list, **metadata) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata=metadata)


def test_mlp_spikes_match_numpy_loop_for_every_sample():
    """Input(3) -> Affine -> IF(subtract) -> Affine -> I: spikes per step, outputs and counts."""
    rng = np.random.default_rng(0)
    w1, b1, w2, b2 = eighths(rng, 5, 3), eighths(rng, 5, lo=-2, hi=3), eighths(rng, 2, 5), eighths(rng, 2)
    theta = np.array([1.0, 0.5, 0.75, 1.25, 1.5], np.float32)
    v0 = theta / 2
    x = eighths(rng, 6, 3, lo=0, hi=9)
    T = 12
    run = LAVA.run(mlp(w1, b1, w2, b2, threshold=theta, v_init=v0), x, T, record=True)
    assert run.spikes["if1"].shape == (6, T, 5)
    for i in range(len(x)):
        z = if_loop(np.tile(w1 @ x[i] + b1, (T, 1)).astype(np.float64), theta, v0)
        np.testing.assert_array_equal(run.spikes["if1"][i], z)
        np.testing.assert_array_equal(run.outputs[i], (w2 @ z.T).sum(1) + T * b2)
    counts = run.spikes["if1"].sum(axis=(1, 2))
    assert counts.min() > 0 and len(set(counts.tolist())) > 2
    np.testing.assert_array_equal(run.spike_counts["if1"], counts)
    np.testing.assert_allclose(run.neuron_counts["if1"], run.spikes["if1"].sum(1).mean(0))
    np.testing.assert_allclose(run.input_events["fc1"], T * (x != 0).mean(0))
    np.testing.assert_allclose(run.input_events["fc2"], run.neuron_counts["if1"])
    assert run.backend == "lava" and run.T == T and not run.approximate
    no_stray_processes()


def test_if_constant_input_fires_floor_law_at_every_step():
    """Reset by subtraction, constant current I <= θ: spikes by step t = floor((v0 + t I) / θ)."""
    theta = np.array([1.0, 0.75, 1.5, 0.5], np.float32)
    v0 = np.array([0.5, 0.0, 0.625, 0.25], np.float32)
    x = np.array([[0.375, 0.25, 1.125, 0.5], [0.125, 0.75, 0.0625, 0.3125]], np.float32)
    T = 24
    run = LAVA.run(single_if(4, theta, v0), x, T, record=True)
    cum = np.cumsum(run.spikes["if"], axis=1)
    for i in range(len(x)):
        for t in range(1, T + 1):
            want = np.floor((v0 + t * x[i].astype(np.float64)) / theta)
            np.testing.assert_array_equal(cum[i, t - 1], want, err_msg=f"sample {i}, step {t}")
    np.testing.assert_array_equal(run.outputs, cum[:, -1])  # Output after an IF: spikes summed over T


def test_core_nir_if_fires_strictly_above_threshold_and_resets_to_v_reset():
    g = single_if(1, 1.0, reset="zero")
    g.nodes["if"].v_reset[:] = 0.25
    run = LAVA.run(g, np.array([[0.5]]), 8, record=True)
    # v: 0.5, 1.0 (not > 1), 1.5 -> 0.25, 0.75, 1.25 -> 0.25, 0.75, 1.25 -> 0.25, 0.75
    assert run.spikes["if"][0, :, 0].tolist() == [0, 0, 1, 0, 1, 0, 1, 0]


def conv_chain(x_shape, conv_kw, pool=None, scale=None, threshold=0.75, seed=0):
    """Input -> Conv2d -> IF [-> pool -> Scale -> IF] -> Flatten -> Affine -> I -> Output."""
    rng = np.random.default_rng(seed)
    c_in = x_shape[0]
    c_out = conv_kw.pop("c_out")
    kh, kw = conv_kw.pop("kernel")
    conv = nir.Conv2d(input_shape=x_shape[1:], weight=eighths(rng, c_out, c_in // conv_kw["groups"], kh, kw),
                      bias=eighths(rng, c_out, lo=-2, hi=3), **conv_kw)
    if conv.padding == "same":
        shape = (c_out, *x_shape[1:])
    else:  # torch's shape: NIR 1.0.8's own shape inference assumes square kernels
        probe = F.conv2d(torch.zeros(1, *x_shape), torch.as_tensor(conv.weight), stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
        shape = tuple(probe.shape[1:])
    nodes = {"input": nir.Input(input_type={"input": np.array(x_shape)}), "conv": conv,
             "if1": if_node(shape, threshold, v_init=threshold / 2)}
    edges = [("input", "conv"), ("conv", "if1")]
    last = "if1"
    if pool is not None:
        nodes["pool"] = pool
        probe = F.avg_pool2d(torch.zeros(1, *shape), tuple(pool.kernel_size), tuple(pool.stride), tuple(pool.padding))
        shape = tuple(probe.shape[1:])
        nodes["scale"] = nir.Scale(scale=np.broadcast_to(np.asarray(scale, np.float32), shape).copy())
        nodes["if2"] = if_node(shape, 0.5)
        edges += [("if1", "pool"), ("pool", "scale"), ("scale", "if2")]
        last = "if2"
    n = int(np.prod(shape))
    nodes.update({
        "flat": nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0),
        "fc": nir.Affine(weight=eighths(rng, 3, n), bias=eighths(rng, 3)),
        "out": nir.I(r=np.ones(3, np.float32)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    })
    edges += [(last, "flat"), ("flat", "fc"), ("fc", "out"), ("out", "output")]
    return graph(nodes, edges)


def torch_conv_loop(g: nir.NIRGraph, x: np.ndarray, T: int) -> dict:
    """The conv chain stepped with torch ops in float64, in torch layout (the independent answer)."""
    n = g.nodes
    conv = n["conv"]
    t64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    drive = F.conv2d(t64(x), t64(conv.weight), t64(conv.bias), stride=tuple(conv.stride),
                     padding=tuple(conv.padding), dilation=tuple(conv.dilation), groups=conv.groups).numpy()
    out: dict = {"if1": np.zeros((len(x), T, *drive.shape[1:]))}
    if "pool" in n:
        out["if2"] = None
    outputs = np.zeros((len(x), 3))
    for i in range(len(x)):
        theta1 = n["if1"].v_threshold.astype(np.float64)
        z1 = if_loop(np.tile(drive[i], (T, 1, 1, 1)), theta1, theta1 / 2)
        out["if1"][i] = z1
        last = z1
        if "pool" in n:
            p = n["pool"]
            kw = dict(kernel_size=tuple(p.kernel_size), stride=tuple(p.stride), padding=tuple(p.padding))
            pooled = F.avg_pool2d(t64(z1), count_include_pad=True, **kw).numpy()
            if isinstance(p, nir.SumPool2d):
                pooled = pooled * np.prod(p.kernel_size)
            z2 = if_loop(pooled * n["scale"].scale, n["if2"].v_threshold.astype(np.float64), 0.0)
            out["if2"] = z2[None] if out["if2"] is None else np.concatenate([out["if2"], z2[None]])
            last = z2
        fc = n["fc"]
        outputs[i] = (last.reshape(T, -1) @ fc.weight.T.astype(np.float64)).sum(0) + T * fc.bias
    out["outputs"] = outputs
    return out


CONVS = {
    "k2x3-stride2x1-pad1x2": dict(c_out=3, kernel=(2, 3), stride=(2, 1), padding=(1, 2), dilation=1, groups=1),
    "k3x2-stride1x2-dil2x1-groups2": dict(c_out=4, kernel=(3, 2), stride=(1, 2), padding=(0, 1), dilation=(2, 1),
                                          groups=2),
}


@pytest.mark.parametrize("process", ["sparse", "conv"])
@pytest.mark.parametrize("conv_kw", CONVS.values(), ids=CONVS.keys())
def test_conv_with_asymmetric_kernel_on_non_square_input_matches_torch(conv_kw, process):
    """C=2, H=5, W=7: a transposed kernel or image would change the spikes or fail the shapes; both Lava
    processes a Conv2d can become (Sparse matrix, Conv) give the torch answer."""
    x = (np.random.default_rng(1).integers(0, 9, (3, 2, 5, 7)) / 8).astype(np.float32)
    g = conv_chain((2, 5, 7), dict(conv_kw))
    T = 8
    run = LAVA.run(g, x, T, record=True, conv=process)
    want = torch_conv_loop(g, x, T)
    assert want["if1"].sum() > 20 and (want["if1"].sum((1, 2, 3, 4)) > 0).all()
    np.testing.assert_array_equal(run.spikes["if1"], want["if1"])
    np.testing.assert_allclose(run.outputs, want["outputs"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(run.input_events["conv"], T * (x != 0).mean(0))
    np.testing.assert_allclose(run.input_events["fc"], want["if1"].sum(1).mean(0).reshape(-1))
    no_stray_processes()


@pytest.mark.parametrize("pool", [
    nir.AvgPool2d(kernel_size=np.array([2, 3]), stride=np.array([1, 2]), padding=np.array([1, 0])),
    nir.SumPool2d(kernel_size=np.array([3, 2]), stride=np.array([2, 1]), padding=np.array([0, 1])),
], ids=["avg2x3", "sum3x2"])
def test_pooling_and_scale_match_torch(pool):
    x = (np.random.default_rng(2).integers(0, 9, (2, 2, 6, 7)) / 8).astype(np.float32)
    conv = dict(c_out=3, kernel=(2, 3), stride=1, padding=(1, 1), dilation=1, groups=1)
    g = conv_chain((2, 6, 7), conv, pool=pool, scale=1.5, seed=3)
    T = 8
    run = LAVA.run(g, x, T, record=True)
    want = torch_conv_loop(g, x, T)
    assert want["if2"].sum() > 5
    np.testing.assert_array_equal(run.spikes["if1"], want["if1"])
    np.testing.assert_array_equal(run.spikes["if2"], want["if2"])
    np.testing.assert_allclose(run.outputs, want["outputs"], rtol=0, atol=1e-9)


def residual_graph(rng) -> nir.NIRGraph:
    """if3 sums three paths of different Lava depth: fc3 (3 hops), identity from if1 (1), fc_skip (1)."""
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc1": nir.Affine(weight=eighths(rng, 6, 4), bias=eighths(rng, 6, lo=0, hi=3)),
        "if1": if_node(6, 0.75, v_init=0.375),
        "fc2": nir.Affine(weight=eighths(rng, 6, 6), bias=eighths(rng, 6, lo=0, hi=3)),
        "if2": if_node(6, 0.5),
        "fc3": nir.Linear(weight=eighths(rng, 6, 6)),
        "fc_skip": nir.Affine(weight=eighths(rng, 6, 4), bias=eighths(rng, 6, lo=-2, hi=3)),
        "if3": if_node(6, 1.0, v_init=0.5),
        "fc4": nir.Affine(weight=eighths(rng, 2, 6), bias=eighths(rng, 2)),
        "out": nir.I(r=np.ones(2, np.float32)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"), ("if2", "fc3"), ("fc3", "if3"),
             ("if1", "if3"), ("input", "fc_skip"), ("fc_skip", "if3"), ("if3", "fc4"), ("fc4", "out"),
             ("out", "output")]
    return graph(nodes, edges)


def test_residual_fan_in_of_paths_with_different_depths_matches_numpy():
    rng = np.random.default_rng(4)
    g = residual_graph(rng)
    x = eighths(rng, 4, 4, lo=0, hi=9)
    T = 16
    run = LAVA.run(g, x, T, record=True)
    n = {k: v for k, v in g.nodes.items()}
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    for i in range(len(x)):
        v1, v2, v3 = np.full(6, 0.375), np.zeros(6), np.full(6, 0.5)
        acc = np.zeros(2)
        for t in range(T):
            v1 = v1 + f64(n["fc1"].weight) @ x[i] + n["fc1"].bias
            z1 = v1 >= 0.75
            v1 = v1 - 0.75 * z1
            v2 = v2 + f64(n["fc2"].weight) @ z1 + n["fc2"].bias
            z2 = v2 >= 0.5
            v2 = v2 - 0.5 * z2
            v3 = v3 + f64(n["fc3"].weight) @ z2 + z1 + f64(n["fc_skip"].weight) @ x[i] + n["fc_skip"].bias
            z3 = v3 >= 1.0
            v3 = v3 - 1.0 * z3
            acc += f64(n["fc4"].weight) @ z3 + n["fc4"].bias
            for name, z in (("if1", z1), ("if2", z2), ("if3", z3)):
                np.testing.assert_array_equal(run.spikes[name][i, t], z, err_msg=f"{name} sample {i} step {t}")
        np.testing.assert_allclose(run.outputs[i], acc, rtol=0, atol=1e-9)
    assert run.spike_counts["if3"].min() > 0


def test_lif_cubalif_and_li_follow_the_documented_equations():
    """dt/tau = 0.25 (graph dt 0.25, tau 1), so every update below is exact in binary."""
    rng = np.random.default_rng(5)
    w1, w2, w3 = eighths(rng, 4, 3), eighths(rng, 4, 4), eighths(rng, 2, 4)
    ones = lambda k: np.ones(k, np.float32)  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc1": nir.Linear(weight=w1),
        "lif": nir.LIF(tau=ones(4), r=2 * ones(4), v_leak=0.25 * ones(4), v_threshold=0.5 * ones(4),
                       v_reset=-0.25 * ones(4)),
        "fc2": nir.Linear(weight=w2),
        "cuba": nir.CubaLIF(tau_syn=0.5 * ones(4), tau_mem=ones(4), r=ones(4), v_leak=np.zeros(4, np.float32),
                            v_threshold=0.25 * ones(4), v_reset=np.zeros(4, np.float32), w_in=2 * ones(4),
                            metadata=neuron_metadata("subtract", 0.125 * ones(4))),
        "fc3": nir.Linear(weight=w3),
        "li": nir.LI(tau=ones(2), r=ones(2), v_leak=np.zeros(2, np.float32)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "cuba"), ("cuba", "fc3"), ("fc3", "li"),
             ("li", "output")]
    g = graph(nodes, edges, **graph_metadata("test", dt=0.25))
    x = eighths(rng, 3, 3, lo=0, hi=9)
    T = 16
    run = LAVA.run(g, x, T, record=True)
    for i in range(len(x)):
        v1, cur, v2, v3 = np.zeros(4), np.zeros(4), np.full(4, 0.125), np.zeros(2)
        for t in range(T):
            v1 = v1 + 0.25 * (0.25 - v1 + 2 * (w1 @ x[i]))
            z1 = v1 > 0.5
            v1 = np.where(z1, -0.25, v1)
            cur = cur + 0.5 * (-cur + 2 * (w2 @ z1))
            v2 = v2 + 0.25 * (0.0 - v2 + cur)
            z2 = v2 >= 0.25
            v2 = v2 - 0.25 * z2
            v3 = v3 + 0.25 * (0.0 - v3 + w3 @ z2)
            np.testing.assert_array_equal(run.spikes["lif"][i, t], z1)
            np.testing.assert_array_equal(run.spikes["cuba"][i, t], z2)
        np.testing.assert_allclose(run.outputs[i], v3, rtol=0, atol=1e-12)
    assert (run.spike_counts["lif"] > 0).sum() >= 2 and (run.spike_counts["cuba"] > 0).sum() >= 2


def first_spikes(raster: np.ndarray) -> int:
    return int(np.argmax(raster.reshape(len(raster), -1).any(axis=1)))


def test_delays_measured_in_lava_equal_the_lowering_offsets(tmp_path):
    """An impulse at step 0 through raw Lava processes (no windows) shows each hop's delay: the input source
    (Lava's SpikeDataloader) adds one step, Dense and Conv one each, Pool2d and Scale none, Delay(k) k. The
    lowering must use the same numbers."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.dataloader import SpikeDataloader

    from backends.lava.procs import Delay, NeuronLayer, Pool2d, Scale

    steps = 8
    work = tmp_path

    def layer(name, shape):
        return NeuronLayer(shape=shape, kind="IF", params={"r": 1.0, "v_threshold": 0.5, "v_reset": 0.0},
                           subtract=True, dt=1e-3, bias=0.0, v_init=0.0, T=steps, n_samples=1, offset=0,
                           record=True, dump=str(work / f"{name}.npz"), name=name, error_dir=str(work))

    impulse = np.zeros((1, 1, 1, steps))
    impulse[..., 0] = 1.0
    src = SpikeDataloader(dataset=[(impulse, 0)], interval=steps)
    conv = Conv(weight=np.ones((1, 1, 1, 1)), input_shape=(1, 1, 1), num_message_bits=24)
    a = layer("conv_if", (1, 1, 1))
    dense_b = Dense(weights=np.ones((1, 1)), num_message_bits=24)
    b = layer("dense_if", (1,))
    dense_c = Dense(weights=np.ones((1, 1)), num_message_bits=24)
    c = layer("dense_dense_if", (1,))
    pool = Pool2d(input_shape=(1, 1, 1), kernel=(1, 1), stride=(1, 1), padding=(0, 0), divisor=1.0, name="pool",
                  error_dir=str(work))
    scale = Scale(scale=np.ones((1, 1, 1)), name="scale", error_dir=str(work))
    d = layer("pool_scale_if", (1, 1, 1))
    delay = Delay(shape=(1, 1, 1), steps=2, name="delay", error_dir=str(work))
    e = layer("delay2_if", (1, 1, 1))
    src.s_out.connect(conv.s_in)
    conv.a_out.connect(a.a_in)
    a.s_out.reshape((1,)).connect(dense_b.s_in)
    dense_b.a_out.connect(b.a_in)
    b.s_out.connect(dense_c.s_in)
    dense_c.a_out.connect(c.a_in)
    a.s_out.connect(pool.a_in)
    pool.a_out.connect(scale.a_in)
    scale.a_out.connect(d.a_in)
    a.s_out.connect(delay.a_in)
    delay.a_out.connect(e.a_in)
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
    finally:
        src.stop()
    measured = {n: first_spikes(np.load(work / f"{n}.npz")["raster"][0])
                for n in ("conv_if", "dense_if", "dense_dense_if", "pool_scale_if", "delay2_if")}
    assert measured == {"conv_if": 2, "dense_if": 3, "dense_dense_if": 4, "pool_scale_if": 2, "delay2_if": 4}

    rng = np.random.default_rng(6)
    pool_node = nir.AvgPool2d(kernel_size=np.array([1, 1]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    chain = conv_chain((1, 3, 3), dict(c_out=1, kernel=(1, 1), stride=1, padding=0, dilation=1, groups=1),
                       pool=pool_node, scale=1.0)
    offsets = lowered_delays(chain, rng.uniform(size=(1, 1, 3, 3)))
    assert offsets == {"if1": measured["conv_if"], "if2": measured["pool_scale_if"], "out": measured["dense_if"]}
    resid = lowered_delays(residual_graph(rng), rng.uniform(size=(1, 4)))
    assert resid == {"if1": 2, "if2": 3, "if3": 4, "out": 5}


def lowered_delays(g: nir.NIRGraph, x: np.ndarray) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as work:
        net = Builder(analyse(g, SUPPORTED_TYPES), x, 4, False, Path(work)).build()
        return {name: layer.delay for name, layer in net.layers.items()}


def test_chunked_runs_with_progress_equal_one_compiled_run(monkeypatch):
    rng = np.random.default_rng(7)
    g = mlp(eighths(rng, 5, 3), eighths(rng, 5), eighths(rng, 2, 5), eighths(rng, 2), threshold=0.75)
    x = eighths(rng, 5, 3, lo=0, hi=9)
    from lava.magma.core.process.process import ProcessServer
    from lava.magma.core.process.variable import VarServer

    before = len(ProcessServer().processes), len(VarServer().vars)
    whole = LAVA.run(g, x, 10, record=True)
    chunked = LavaBackend()
    monkeypatch.setattr(chunked, "memory_budget", 2 * 10 * 5)  # two samples' spike rasters per network
    assert chunked._chunk_size(analyse(g, SUPPORTED_TYPES), len(x), 10, True) == 2
    parts = chunked.run(g, x, 10, record=True, progress=True)
    np.testing.assert_array_equal(parts.spikes["if1"], whole.spikes["if1"])
    np.testing.assert_array_equal(parts.outputs, whole.outputs)
    np.testing.assert_array_equal(parts.spike_counts["if1"], whole.spike_counts["if1"])
    np.testing.assert_allclose(parts.neuron_counts["if1"], whole.neuron_counts["if1"])
    assert whole.spikes is not None and LAVA.run(g, x, 10).spikes is None
    assert (len(ProcessServer().processes), len(VarServer().vars)) == before  # Lava's registries let go
    no_stray_processes()


def test_unsupported_node_type_is_refused_naming_the_node():
    g = graph({"input": nir.Input(input_type={"input": np.array([3])}),
               "gate": nir.Threshold(threshold=np.ones(3, np.float32)),
               "output": nir.Output(output_type={"output": np.array([3])})},
              [("input", "gate"), ("gate", "output")])
    for approximate in (False, True):
        with pytest.raises(GraphError, match="'gate'.*Threshold"):
            LAVA.run(g, np.ones((1, 3)), 4, approximate=approximate)


def test_same_padding_with_even_kernel_is_refused_naming_the_node():
    g = conv_chain((2, 5, 7), dict(c_out=2, kernel=(2, 3), stride=1, padding="same", dilation=1, groups=1))
    with pytest.raises(backends.Unsupported, match="'conv'.*asymmetric padding"):
        LAVA.run(g, np.zeros((1, 2, 5, 7)), 4)


def test_conv_parameters_beyond_int8_are_refused_by_lavas_conv_and_run_as_sparse():
    """A dilation of 128 overflows the int8 fields of Lava's Conv process; the Sparse lowering has no limit."""
    g = conv_chain((1, 130, 2), dict(c_out=1, kernel=(2, 1), stride=1, padding=0, dilation=(128, 1), groups=1))
    x = (np.random.default_rng(4).integers(0, 9, (1, 1, 130, 2)) / 8).astype(np.float32)
    with pytest.raises(backends.Unsupported, match=r"'conv'.*dilation \(128, 1\).*int8.*conv='sparse'"):
        LAVA.run(g, x, 2, conv="conv")
    run = LAVA.run(g, x, 4, record=True)
    np.testing.assert_array_equal(run.spikes["if1"], torch_conv_loop(g, x, 4)["if1"])


def test_wrong_input_shape_is_an_error():
    g = single_if(3, 1.0)
    with pytest.raises(ValueError, match="expects"):
        LAVA.run(g, np.zeros((2, 4)), 4)


def test_error_inside_a_lava_process_is_raised_and_lava_is_stopped(monkeypatch):
    from backends.lava.procs.neuron import PyNeuronLayerModelFloat

    def broken(self, x):
        raise FloatingPointError("injected failure")

    monkeypatch.setattr(PyNeuronLayerModelFloat, "compute", broken)
    with pytest.raises(RuntimeError, match="(?s)'if'.*injected failure"):
        LAVA.run(single_if(2, 1.0), np.ones((2, 2)), 4)
    no_stray_processes()


def test_declares_what_it_honours():
    assert LAVA.name == "lava"
    assert {"IF", "LIF", "CubaLIF", "I", "LI", "Conv2d", "Affine", "Flatten", "Delay"} <= set(LAVA.honours["nodes"])
    assert {"reset: zero", "reset: subtract", "reset: signed-memory", "v_init",
            "lava_cuba (netx graphs, on Lava's fixed-point LIF)"} == set(LAVA.honours["neuron semantics"])
    assert isinstance(backends.get("lava"), LavaBackend)


def offsets_graph(rng) -> nir.NIRGraph:
    """Biases that must travel through weights before a neuron takes them: Conv2d -> Conv2d -> AvgPool2d ->
    Scale -> IF, then Affine -> Affine straight into Output (summed over T, no integrator)."""
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 7])}),
        "ca": nir.Conv2d(input_shape=(6, 7), weight=eighths(rng, 3, 2, 2, 3), bias=eighths(rng, 3), stride=1,
                         padding=(1, 0), dilation=1, groups=1),
        "cb": nir.Conv2d(input_shape=(7, 5), weight=eighths(rng, 2, 3, 3, 2), bias=eighths(rng, 2), stride=(1, 2),
                         padding=(1, 1), dilation=1, groups=1),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 1]), padding=np.array([1, 0])),
        "scale": nir.Scale(scale=np.full((2, 4, 2), 1.5, np.float32)),
        "if1": if_node((2, 4, 2), 0.5, v_init=0.25),
        "flat": nir.Flatten(input_type={"input": np.array([2, 4, 2])}, start_dim=0),
        "fa": nir.Affine(weight=eighths(rng, 5, 16), bias=eighths(rng, 5)),
        "fb": nir.Affine(weight=eighths(rng, 3, 5), bias=eighths(rng, 3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "ca"), ("ca", "cb"), ("cb", "pool"), ("pool", "scale"), ("scale", "if1"), ("if1", "flat"),
             ("flat", "fa"), ("fa", "fb"), ("fb", "output")]
    return graph(nodes, edges)


@pytest.mark.skipif(importlib.util.find_spec("backends.reference") is None,
                    reason="backends/reference.py is not in this checkout")
@pytest.mark.parametrize("make, x_shape", [(residual_graph, (5, 4)), (offsets_graph, (3, 2, 6, 7))],
                         ids=["residual", "offsets"])
def test_spikes_outputs_and_events_equal_the_reference_simulator(make, x_shape):
    rng = np.random.default_rng(8)
    g = make(rng)
    x = eighths(rng, *x_shape, lo=-2, hi=9)
    T = 12
    ours = LAVA.run(g, x, T, record=True)
    ref = backends.get("reference").run(g, x, T, record=True)
    assert set(ours.spikes) == set(ref.spikes)
    for name in ref.spikes:
        assert ref.spikes[name].sum() > 0
        np.testing.assert_array_equal(ours.spikes[name], ref.spikes[name], err_msg=name)
        np.testing.assert_array_equal(ours.spike_counts[name], ref.spike_counts[name])
    np.testing.assert_allclose(ours.outputs, ref.outputs, rtol=0, atol=1e-5)
    assert set(ours.input_events) == set(ref.input_events)
    for name in ref.input_events:
        np.testing.assert_allclose(ours.input_events[name], ref.input_events[name], err_msg=name)
    assert ours.agreement(ref) == 1.0
    assert math.isclose(ours.spikes_per_sample, ref.spikes_per_sample)


@pytest.mark.slow
def test_digits_test_split_in_one_compiled_network_equals_the_reference(digits, digits_graphs):
    """The converted digits CNN on all 360 test images at T=32 (about 70 s at ~160 steps/s): one Lava
    network, no spike trains kept. Both run in float64, so every count and output must match."""
    g = digits_graphs["robustnorm"]
    x = digits.test_x.numpy()
    T = 32
    ours = LAVA.run(g, x, T)
    ref = backends.get("reference").run(g, x, T, dtype=torch.float64)
    assert ours.spikes is None
    assert set(ours.spike_counts) == set(ref.spike_counts) and len(ref.spike_counts) >= 2
    for name, counts in ref.spike_counts.items():
        np.testing.assert_array_equal(ours.spike_counts[name], counts, err_msg=name)
        np.testing.assert_allclose(ours.neuron_counts[name], ref.neuron_counts[name], err_msg=name)
    np.testing.assert_allclose(ours.outputs, ref.outputs, rtol=0, atol=1e-9)
    for name in ref.input_events:
        np.testing.assert_allclose(ours.input_events[name], ref.input_events[name], err_msg=name)
    assert len(x) * T / ours.seconds > 20  # steps per second, compile included
