"""Time-varying input (N, T, *shape) on Lava, float and fixed point: step t of a sample receives x[:, t], through
Lava's SpikeDataloader into the first synapse layer.

The answer is an independent per-step loop written here (float64 torch ops for the float graphs, the integer
operations of backends/fixedpoint.py stepped by hand for the quantized one, against Lava's own fixed_pt Dense);
the comparisons with the reference simulator run once it accepts (N, T, ...) inputs. Inputs and weights are
multiples of 1/8, so float64 (Lava) and float32 (graphs) agree exactly and a threshold crossing cannot hinge on
rounding.
"""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backends
from backends import fixedpoint
from backends.graph import analyse
from backends.lava import LavaBackend
from backends.lava import stream as lava_stream
from backends.lava.layout import Signal
from backends.nirext import neuron_semantics
from pipeline.hardware.quantize import quantize
from tests.graphs import if_node, mlp, single_if

pytestmark = pytest.mark.lava

LAVA, REF = LavaBackend(), backends.get("reference")
FEW = settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def events(rng: np.random.Generator, shape) -> np.ndarray:
    """Random input events for samples of `shape` (T, ...), one sample of each kind: binary {0, 1}, signed
    {-1, 0, 1}, graded multiples of 1/8 in [-2, 2] (half of them 0)."""
    binary = (rng.random(shape) < 0.4).astype(np.float32)
    signed = rng.choice([-1.0, 0.0, 0.0, 1.0], shape).astype(np.float32)
    graded = (rng.integers(-16, 17, shape) / 8 * (rng.random(shape) < 0.5)).astype(np.float32)
    return np.stack([binary, signed, graded])


def eighths(rng, *shape, lo=-6, hi=7) -> np.ndarray:
    return (rng.integers(lo, hi, shape) / 8).astype(np.float32)


def conv_graph(rng, x_shape=(2, 4, 5)) -> nir.NIRGraph:
    """Input (2, 4, 5) -> Conv2d 3x2 kernel, stride (1, 2) -> IF (reset to zero) -> Flatten -> Affine -> IF
    (subtract, v_init) -> Linear -> I -> Output: asymmetric kernel and image, so a transposition cannot hide."""
    conv = nir.Conv2d(input_shape=x_shape[1:], weight=eighths(rng, 3, 2, 3, 2), bias=eighths(rng, 3, lo=-2, hi=3),
                      stride=(1, 2), padding=(1, 0), dilation=1, groups=1)
    shape = tuple(F.conv2d(torch.zeros(1, *x_shape), torch.as_tensor(conv.weight), stride=(1, 2),
                           padding=(1, 0)).shape[1:])
    n = int(np.prod(shape))
    nodes = {
        "input": nir.Input(input_type={"input": np.array(x_shape)}),
        "conv": conv,
        "if1": if_node(shape, 0.75, reset="zero"),
        "flat": nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0),
        "fc": nir.Affine(weight=eighths(rng, 5, n, lo=-3, hi=4), bias=eighths(rng, 5, lo=-1, hi=2)),
        "if2": if_node(5, 0.5, v_init=0.25),
        "ro": nir.Linear(weight=eighths(rng, 3, 5)),
        "out": nir.I(r=np.ones(3, np.float32)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "conv"), ("conv", "if1"), ("if1", "flat"), ("flat", "fc"), ("fc", "if2"), ("if2", "ro"),
             ("ro", "out"), ("out", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def float_loop(g: nir.NIRGraph, x: np.ndarray) -> tuple[dict, np.ndarray]:
    """Spike trains (N, T, *shape) of every IF node and the final v of the output I, stepped per time step
    in float64 torch ops on a chain graph: the documented semantics, written independently of the backends."""
    order = [e[0] for e in g.edges if e[0] != "input"] + [g.edges[-1][1]]
    t64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    N, T = x.shape[:2]
    trains = {k: [] for k in order if isinstance(g.nodes[k], nir.IF)}
    state: dict = {}
    for t in range(T):
        y = t64(x[:, t])
        for k in order:
            node = g.nodes[k]
            if isinstance(node, nir.Conv2d):
                y = F.conv2d(y, t64(node.weight), t64(node.bias), stride=tuple(node.stride),
                             padding=tuple(node.padding))
            elif isinstance(node, (nir.Affine, nir.Linear)):
                y = y @ t64(node.weight).T + (t64(node.bias) if isinstance(node, nir.Affine) else 0)
            elif isinstance(node, nir.Flatten):
                y = y.reshape(N, -1)
            elif isinstance(node, nir.IF):
                sem = neuron_semantics(k, node)
                v = state.get(k, t64(0.0 if sem.v_init is None else sem.v_init).expand_as(y)) + y
                theta = t64(node.v_threshold)
                z = (v >= theta if sem.reset == "subtract" else v > theta).double()
                state[k] = v - theta * z if sem.reset == "subtract" else torch.where(z.bool(), t64(node.v_reset), v)
                trains[k].append(z.numpy())
                y = z
            elif isinstance(node, nir.I):
                state[k] = state.get(k, torch.zeros_like(y)) + y
    return {k: np.stack(v, axis=1) for k, v in trains.items()}, state["out"].numpy()


def fixed_loop(g: nir.NIRGraph, x: np.ndarray) -> tuple[dict, np.ndarray]:
    """A quantized chain graph stepped by hand with backends.fixedpoint's integer operations, x[:, t] at step t."""
    view = analyse(g, fixedpoint.SUPPORTED)
    fmt = fixedpoint.input_format(g)
    ops = {n: fixedpoint.lower(view, n) for n in view.order}
    xq = fixedpoint.quantize_input(x, float(fmt["input_scale"]), int(fmt["input_bits"]), bool(fmt["input_signed"]))
    states = {n: ops[n].init(len(x)) for n in view.order}
    trains = {n: [] for n in view.order if ops[n].spiking}
    for t in range(x.shape[1]):
        values: dict = {}
        for n in view.order:
            inp = xq[:, t] if n == view.input else sum(values[p] for p in view.preds[n])
            states[n], values[n] = ops[n].step(states[n], inp)
            if n in trains:
                trains[n].append(values[n])
    out = values[view.output] * fixedpoint.output_unit(view)
    return {k: np.stack(v, axis=1) for k, v in trains.items()}, out.reshape(len(x), -1)


def assert_same_spikes(run, trains: dict) -> None:
    assert set(run.spikes) >= set(trains)
    for name, z in trains.items():
        np.testing.assert_array_equal(run.spikes[name], z, err_msg=name)


def check_float(seed: int) -> None:
    """An MLP (reset by subtraction or to zero, v_init) and a conv graph on Lava against `float_loop`."""
    rng = np.random.default_rng(seed)
    T = int(rng.integers(3, 9))
    mlp_graph = mlp(eighths(rng, 5, 4), eighths(rng, 5, lo=-1, hi=2), eighths(rng, 2, 5), eighths(rng, 2),
                    threshold=0.75, v_init=0.25, reset=("subtract", "zero")[seed % 2])
    for g, shape in ((mlp_graph, (4,)), (conv_graph(rng), (2, 4, 5))):
        x = events(rng, (T, *shape))
        run = LAVA.run(g, x, T, record=True)
        trains, out = float_loop(g, x)
        assert_same_spikes(run, trains)
        np.testing.assert_allclose(run.outputs, out, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(run.spike_counts["if1"], trains["if1"].reshape(len(x), -1).sum(1))
        first = next(k for k in ("fc1", "conv") if k in run.input_events)
        np.testing.assert_allclose(run.input_events[first], (x != 0).sum(1).mean(0))


def check_fixed(seed: int) -> None:
    """A quantized MLP (reset to zero or by subtraction, 4-bit weights) on Lava's fixed_pt models against
    `fixed_loop`."""
    rng = np.random.default_rng(seed)
    T = int(rng.integers(3, 9))
    g = mlp(rng.normal(0, 0.8, (6, 4)), rng.normal(0, 0.2, 6), rng.normal(0, 0.8, (3, 6)), np.zeros(3),
            v_init=0.5 if seed % 2 else None, reset=("zero", "subtract")[seed % 2])
    x = events(rng, (T, 4))
    q = quantize(g, "loihi", x.reshape(-1, 4), weight_bits=4).graph
    run = LAVA.run(q, x, T, record=True)
    trains, out = fixed_loop(q, x)
    assert_same_spikes(run, trains)
    np.testing.assert_array_equal(run.outputs, out)


def test_float_spike_for_spike_with_a_per_step_loop():
    check_float(0)
    check_float(1)


def test_fixed_point_spike_for_spike_with_the_integer_loop():
    check_fixed(0)
    check_fixed(1)


@pytest.mark.slow
@FEW
@given(seed=st.integers(0, 2**16))
def test_float_spike_for_spike_with_a_per_step_loop_on_random_graphs(seed):
    check_float(seed)


@pytest.mark.slow
@FEW
@given(seed=st.integers(0, 2**16))
def test_fixed_point_spike_for_spike_with_the_integer_loop_on_random_graphs(seed):
    check_fixed(seed)


def test_time_varying_input_differs_from_its_mean_and_a_constant_one_equals_direct():
    """A constant (N, T, ...) input is direct encoding, step for step; reversing a ramp changes the spikes."""
    rng = np.random.default_rng(3)
    g = mlp(eighths(rng, 5, 4), eighths(rng, 5), eighths(rng, 2, 5), eighths(rng, 2), threshold=0.75)
    x = eighths(rng, 1, 4, lo=4, hi=9)
    T = 6
    direct = LAVA.run(g, x, T, record=True)
    ramp = x[:, None] * np.arange(T)[None, :, None] / T
    varying = np.concatenate([np.repeat(x[:, None], T, axis=1), ramp, ramp[:, ::-1]])
    run = LAVA.run(g, varying, T, record=True)
    np.testing.assert_array_equal(run.spikes["if1"][:1], direct.spikes["if1"])
    np.testing.assert_array_equal(run.outputs[:1], direct.outputs)
    assert not np.array_equal(run.spikes["if1"][1], run.spikes["if1"][2])
    assert_same_spikes(run, float_loop(g, varying)[0])


def test_blocks_crossing_sample_boundaries_give_the_same_run(monkeypatch):
    """The stream in blocks of 5 steps (T = 4, so blocks straddle samples) equals one block per run."""
    rng = np.random.default_rng(8)
    g = mlp(eighths(rng, 5, 3), eighths(rng, 5), eighths(rng, 2, 5), eighths(rng, 2), threshold=0.5)
    x = events(rng, (4, 3))
    monkeypatch.setattr(lava_stream, "BLOCK_BYTES", 5 * 3 * 8)
    blocks = LAVA.run(g, x, 4, record=True)
    assert lava_stream.InputStream(x, 4, True, Signal.canonical((), (3,), delay=0)).block == 5
    assert_same_spikes(blocks, float_loop(g, x)[0])


@FEW
@given(seed=st.integers(0, 2**16))
def test_float_spike_for_spike_with_the_reference(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(3, 9))
    g = conv_graph(rng)
    x = events(rng, (T, 2, 4, 5))
    run, ref = LAVA.run(g, x, T, record=True), REF.run(g, x, T, record=True)
    assert_same_spikes(run, ref.spikes)
    np.testing.assert_allclose(run.outputs, ref.outputs, rtol=0, atol=1e-6)


@FEW
@given(seed=st.integers(0, 2**16))
def test_fixed_point_spike_for_spike_with_the_reference(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(3, 9))
    g = mlp(rng.normal(0, 0.8, (6, 4)), rng.normal(0, 0.2, 6), rng.normal(0, 0.8, (3, 6)), np.zeros(3),
            reset="zero")
    x = events(rng, (T, 4))
    q = quantize(g, "loihi", x.reshape(-1, 4), weight_bits=4).graph
    run, ref = LAVA.run(q, x, T, record=True), REF.run(q, x, T, fixed_point=True, record=True)
    assert_same_spikes(run, ref.spikes)
    np.testing.assert_array_equal(run.outputs, ref.outputs)


def test_input_stream_blocks_hold_the_samples_back_to_back_in_lava_layout():
    """Hand check of the stream Lava's SpikeDataloader reads: (C, H, W) = (2, 1, 3) is Lava's (W, H, C) = (3, 1, 2),
    global step g is step g % T of sample g // T, blocks of 3 steps, zeros past the end."""
    x = np.arange(2 * 2 * 6, dtype=np.float32).reshape(2, 2, 2, 1, 3)   # N = 2, T = 2, (C, H, W) = (2, 1, 3)
    sig = Signal.canonical((), (2, 1, 3), delay=0)
    s = lava_stream.InputStream(x, 2, True, sig, block_bytes=3 * 6 * 8)
    assert (s.block, len(s)) == (3, 2)
    steps = np.concatenate([s[j][0] for j in range(len(s))], axis=-1)  # (3, 1, 2, 6)
    for g in range(4):
        np.testing.assert_array_equal(steps[..., g], x[g // 2, g % 2].transpose(2, 1, 0))
    assert not steps[..., 4:].any()
    direct = lava_stream.InputStream(x[:, 0], 2, False, sig)
    np.testing.assert_array_equal(direct[0][0][..., 3], x[1, 0].transpose(2, 1, 0))
    assert direct.block == 4
    q = lava_stream.InputStream(2 * x[:, 0] - 12, 2, False, sig, lava_stream.InputFormat(2.0, 3, True))
    assert q[0][0].dtype == np.int32 and q[0][0].min() == -4 and q[0][0].max() == 3   # clipped to 3 signed bits


def test_inputs_of_neither_shape_are_an_error_naming_both():
    with pytest.raises(ValueError, match=r"\(N, \*\(3,\)\).*\(N, T=4, \*\(3,\)\)"):
        LAVA.run(single_if(3, 1.0), np.zeros((2, 5, 3)), 4)
