"""Every execution mode of the reference simulator gives identical spikes, outputs and input events.

mode="step" runs the graph step by step; mode="layer" node by node over all T (chunked in time by
`max_elements`); both compute time-constant nodes once. The float operations per element are the same in
every mode, so results are compared for exact equality (float32; float64 as well where cheap).
"""
from __future__ import annotations

from unittest import mock

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import backends
from backends import kernels, neurons
from backends.nirext import neuron_metadata
from backends.reference import Op, _Lowering, _stateless, constant_nodes
from backends.graph import analyse

REF = backends.get("reference")

# (mode, max_elements): step-by-step, layer-wise in one chunk, layer-wise in chunks of one and of a few steps
MODES = [("step", None), ("layer", 1 << 30), ("layer", 1), ("layer", 3000)]


def _neuron(shape, kind: str, rng, v_init=True):
    shape = tuple(shape)
    theta = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    v0 = (theta * rng.uniform(0, 0.5, shape)).astype(np.float32) if v_init else None
    zeros, ones = np.zeros(shape, np.float32), np.ones(shape, np.float32)
    if kind == "lif":
        return nir.LIF(tau=np.full(shape, 5e-3, np.float32), r=ones, v_leak=zeros, v_threshold=theta, v_reset=zeros,
                       metadata=neuron_metadata("subtract", v0))
    reset = {"if-subtract": "subtract", "if-zero": "zero", "snm": "signed-memory"}[kind]
    return nir.IF(r=ones, v_threshold=theta, v_reset=zeros, metadata=neuron_metadata(reset, v0))


def residual_graph(kind: str, seed: int = 0, integrate_output: bool = False) -> nir.NIRGraph:
    """A residual CNN with constant branches, pooling, Scale nodes and fan-in:

    input -> conv_a ----------------> n1 -> conv_c -> n2 -> sumpool -> flatten -> fc -> [I] -> output
    input -> scale_in -> conv_b ----^    \\-> skip (Scale) -^
    input -> avgpool -> flatten_in -> fc_in (constant, added to fc's input)
    """
    rng = np.random.default_rng(seed)
    f32 = lambda *s: rng.normal(0, 0.6, s).astype(np.float32)
    c, h = 2, 6
    nodes = {
        "input": nir.Input(input_type={"input": np.array([c, h, h])}),
        "conv_a": nir.Conv2d(input_shape=(h, h), weight=f32(4, c, 3, 3), stride=1, padding=(1, 1), dilation=1,
                             groups=1, bias=f32(4)),
        "scale_in": nir.Scale(scale=np.float32(0.7)),
        "conv_b": nir.Conv2d(input_shape=(h, h), weight=f32(4, c, 1, 1), stride=1, padding=(0, 0), dilation=1,
                             groups=1, bias=f32(4)),
        "n1": _neuron((4, h, h), kind, rng),
        "conv_c": nir.Conv2d(input_shape=(h, h), weight=f32(4, 4, 3, 3), stride=1, padding=(1, 1), dilation=1,
                             groups=1, bias=f32(4)),
        "skip": nir.Scale(scale=rng.uniform(0.5, 1.5, (4, h, h)).astype(np.float32)),
        "n2": _neuron((4, h, h), kind, rng),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flatten": nir.Flatten(input_type={"input": np.array([4, 3, 3])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=f32(5, 36), bias=f32(5)),
        "avgpool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flatten_in": nir.Flatten(input_type={"input": np.array([c, 3, 3])}, start_dim=0, end_dim=-1),
        "fc_in": nir.Linear(weight=f32(5, 18)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [("input", "conv_a"), ("conv_a", "n1"), ("input", "scale_in"), ("scale_in", "conv_b"), ("conv_b", "n1"),
             ("n1", "conv_c"), ("conv_c", "n2"), ("n1", "skip"), ("skip", "n2"), ("n2", "pool"), ("pool", "flatten"),
             ("flatten", "fc"), ("input", "avgpool"), ("avgpool", "flatten_in"), ("flatten_in", "fc_in")]
    if integrate_output:
        nodes["out"] = nir.I(r=np.ones(5, np.float32))
        edges += [("fc", "out"), ("fc_in", "out"), ("out", "output")]
    else:
        edges += [("fc", "output"), ("fc_in", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def assert_same(a, b):
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert a.spikes.keys() == b.spikes.keys()
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k], err_msg=k)
        np.testing.assert_array_equal(a.spike_counts[k], b.spike_counts[k], err_msg=k)
        np.testing.assert_array_equal(a.neuron_counts[k], b.neuron_counts[k], err_msg=k)
    assert a.input_events.keys() == b.input_events.keys()
    for k in a.input_events:
        np.testing.assert_array_equal(a.input_events[k], b.input_events[k], err_msg=k)


def run_all(graph, x, T, **kw):
    runs = []
    for mode, max_elements in MODES:
        extra = {} if max_elements is None else {"max_elements": max_elements}
        runs.append(REF.run(graph, x, T, record=True, mode=mode, **extra, **kw))
    return runs


@pytest.mark.parametrize("kind", ["if-subtract", "if-zero", "snm", "lif"])
@pytest.mark.parametrize("integrate_output", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_modes_identical_on_residual_pooling_scale_graph(kind, integrate_output, dtype):
    x = np.random.default_rng(1).uniform(-1, 1.5, (7, 2, 6, 6)).astype(np.float32)
    runs = run_all(residual_graph(kind, integrate_output=integrate_output), x, 13, batch_size=4, dtype=dtype)
    total = sum(runs[0].spike_counts.values()).sum()
    assert total > 0, "the graph must spike for the comparison to mean anything"
    if kind == "snm":
        assert min(r.min() for r in runs[0].spikes.values()) == -1, "negative spikes must occur"
    for other in runs[1:]:
        assert_same(runs[0], other)


def test_constant_nodes_are_the_input_and_its_stateless_descendants():
    g = residual_graph("if-subtract")
    view = analyse(g)
    low = _Lowering(view, torch.device("cpu"), torch.float32)
    ops = {n: low.lower(n) for n in view.order}
    assert constant_nodes(view, ops) == {"input", "conv_a", "scale_in", "conv_b", "avgpool", "flatten_in", "fc_in"}


def test_constant_input_events_are_per_step_count_times_T():
    """input_events of a weighted node fed by the (constant) input: its non-zero count times T."""
    g = residual_graph("if-subtract")
    x = np.random.default_rng(2).uniform(-1, 1, (3, 2, 6, 6)).astype(np.float32)
    x[x < 0] = 0
    T = 9
    for mode in ("step", "layer"):
        run = REF.run(g, x, T, mode=mode)
        np.testing.assert_array_equal(run.input_events["conv_a"], (x != 0).sum(0) * T / len(x))


def test_stateless_only_graph_sums_constant_output_over_T():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([4])}), "fc": nir.Linear(weight=w),
                            "output": nir.Output(output_type={"output": np.array([3])})},
                     edges=[("input", "fc"), ("fc", "output")], type_check=False)
    x = rng.uniform(size=(5, 4)).astype(np.float32)
    step, layer = (REF.run(g, x, 6, mode=m) for m in ("step", "layer"))
    np.testing.assert_array_equal(step.outputs, layer.outputs)
    np.testing.assert_allclose(layer.outputs, 6 * x @ w.T, rtol=1e-5)


def test_rejects_unknown_mode_and_bad_max_elements():
    g = residual_graph("if-subtract")
    x = np.zeros((1, 2, 6, 6), np.float32)
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        REF.run(g, x, 2, mode="fast")
    with pytest.raises(ValueError, match="max_elements"):
        REF.run(g, x, 2, max_elements=0)


@pytest.mark.parametrize("method", ["maxnorm", "robustnorm"])
def test_modes_identical_on_digits(digits, digits_graphs, method):
    x = digits.test_x[:96].numpy()
    runs = run_all(digits_graphs[method], x, 16, batch_size=64)
    assert sum(runs[0].spike_counts.values()).sum() > 0
    for other in runs[1:]:
        assert_same(runs[0], other)


def test_modes_identical_on_converted_residual_network():
    """A torch ResNet-20 converted by maxnorm (residual adds, global average pooling)."""
    from pipeline.conversion.registry import convert
    from pipeline.data.zoo import build_model
    torch.manual_seed(0)
    model = build_model("resnet20", (3, 16, 16), 10).eval()
    g = convert(model, (3, 16, 16), torch.rand(16, 3, 16, 16), method="maxnorm")
    x = torch.rand(3, 3, 16, 16).numpy()
    runs = [REF.run(g, x, 4, record=True, mode=m, max_elements=e) for m, e in (("step", 1 << 30), ("layer", 1 << 30),
                                                                               ("layer", 20000))]
    for other in runs[1:]:
        assert_same(runs[0], other)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), subtract=st.booleans(), unit_r=st.booleans(), per_neuron=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_in_place_if_step_equals_pure_if_step(seed, subtract, unit_r, per_neuron, dtype):
    """The in-place step used by layer mode gives the floats of the pure step (the semantics) over many steps."""
    g = torch.Generator().manual_seed(seed)
    shape = (3, 5)
    r = torch.ones(shape, dtype=dtype) if unit_r else torch.rand(shape, generator=g, dtype=dtype) * 2
    theta = torch.rand(shape if per_neuron else (), generator=g, dtype=dtype) + 0.1
    p = neurons.IFParams(r, theta, torch.rand(shape, generator=g, dtype=dtype) - 0.5, subtract)
    v_pure = torch.rand(shape, generator=g, dtype=dtype)
    v_fast = v_pure.clone()
    out = torch.empty(20, *shape, dtype=dtype)
    for t in range(20):
        x = torch.randn(shape, generator=g, dtype=dtype)
        v_pure, z = neurons.if_step(v_pure, x, p)
        v_fast = neurons.if_step_into(v_fast, x, p, out[t], unit_r)
        assert torch.equal(z, out[t]) and torch.equal(v_pure, v_fast)
    assert out.sum() > 0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), subtract=st.booleans(), unit_r=st.booleans(), per_neuron=st.booleans(),
       expanded=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]),
       min_per_thread=st.sampled_from([1, 1 << 30]))
def test_fused_if_kernel_equals_pure_if_steps(seed, subtract, unit_r, per_neuron, expanded, dtype, min_per_thread):
    """The numba kernel layer mode runs on the CPU gives the floats and spikes of the pure step, step by step.
    Inputs and thresholds on a grid of 1/8 make v == θ happen, where the two resets' spike conditions differ;
    `expanded` feeds one step's current broadcast over T (stride 0), as for a layer fed by a constant."""
    g = torch.Generator().manual_seed(seed)
    T, batch, shape = 12, 3, (2, 5)
    grid = lambda *s: torch.randint(-8, 12, s, generator=g).to(dtype) / 8
    r = torch.ones(shape, dtype=dtype) if unit_r else torch.randint(1, 17, shape, generator=g).to(dtype) / 8
    theta = torch.randint(2, 12, shape if per_neuron else (), generator=g).to(dtype) / 8
    p = neurons.IFParams(r, theta, grid(*shape) / 4, subtract)
    x = grid(1, batch, *shape).expand(T, batch, *shape) if expanded else grid(T, batch, *shape)
    v_pure = grid(batch, *shape)
    v_fast, out, counts = v_pure.clone(), torch.empty(T, batch, *shape, dtype=dtype), torch.zeros(batch, *shape)
    rows = torch.full((T, batch), -1, dtype=torch.int32)
    assert kernels.supports(x.device, dtype)
    # min_per_thread 1: the batch split over three threads (the kernel releases the GIL)
    with mock.patch.object(kernels, "MIN_PER_THREAD", min_per_thread), \
            mock.patch.object(kernels.torch, "get_num_threads", lambda: 3):
        kernels.IFKernel(*p[:3], shape, subtract=subtract)(v_fast, x, out, counts, rows)
    want = []
    for t in range(T):
        v_pure, z = neurons.if_step(v_pure, x[t], p)
        want.append(z)
    want = torch.stack(want)
    assert torch.equal(want, out) and torch.equal(v_pure, v_fast)
    assert torch.equal(counts, want.sum(0).float())
    assert rows.tolist() == [[int(want[t, b].sum()) for b in range(batch)] for t in range(T)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([torch.float32, torch.float64]),
       expanded=st.booleans())
def test_nonzero_kernel_counts_as_torch_does(seed, dtype, expanded):
    """Input events of a weighted node, counted in one pass: per element over (step, sample) added to the counts,
    and per (step, sample), as torch's comparisons count them (-0.0 is no event)."""
    g = torch.Generator().manual_seed(seed)
    T, batch, shape = 5, 3, (2, 3, 4)
    x = torch.randint(-2, 3, (1 if expanded else T, batch, *shape), generator=g).to(dtype) / 2
    x[x == 0] = torch.where(torch.rand(x.shape, generator=g) < 0.5, 0.0, -0.0).to(dtype)[x == 0]
    x = x.expand(T, batch, *shape)
    counts = torch.full(shape, 7, dtype=torch.int64)
    rows = kernels.count_nonzero(x, counts)
    assert torch.equal(counts, 7 + (x != 0).sum((0, 1)))
    assert rows.dtype == torch.int32 and torch.equal(rows, (x != 0).flatten(2).sum(2).int())


def test_without_the_kernel_layer_mode_still_equals_step_mode(monkeypatch):
    """Where the kernel does not apply (CUDA, other dtypes), layer mode falls back to the in-place torch step."""
    calls = []
    monkeypatch.setattr(kernels.IFKernel, "__call__", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(kernels, "supports", lambda device, dtype: False)
    x = np.random.default_rng(1).uniform(-1, 1.5, (7, 2, 6, 6)).astype(np.float32)
    runs = run_all(residual_graph("if-subtract"), x, 13, batch_size=4)
    assert not calls and sum(runs[0].spike_counts.values()).sum() > 0
    for other in runs[1:]:
        assert_same(runs[0], other)


def test_silent_slices_skip_the_conv_and_give_its_exact_output():
    """A conv fed by a stack where most (step, sample) slices are silent computes only the active ones."""
    rng = np.random.default_rng(4)
    w, b = torch.as_tensor(rng.normal(size=(3, 2, 3, 3)), dtype=torch.float32), torch.randn(3)
    seen = []

    def conv(state, x):
        seen.append(len(x))
        return state, torch.nn.functional.conv2d(x, w, b, padding=1)
    x = torch.as_tensor(rng.integers(0, 2, (10, 2, 5, 5)), dtype=torch.float32)
    x[[0, 3, 4, 7]] = 0
    y = _stateless(Op(conv), x, active=x.flatten(1).abs().amax(1) != 0)
    assert seen == [1, 6]   # op(0) once, then the six active slices
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, b, padding=1), rtol=0, atol=1e-6)
    assert torch.equal(y[0], b[:, None, None].expand(3, 5, 5))
    seen.clear()
    _stateless(Op(conv), x[[1, 2]], active=torch.ones(2, dtype=torch.bool))
    assert seen == [2]      # nothing silent: one dense call


def test_modes_identical_when_whole_samples_are_silent():
    """Samples with zero input leave the first IF layer silent, so the second conv skips their slices."""
    rng = np.random.default_rng(5)
    f32 = lambda *s: rng.normal(0, 0.8, s).astype(np.float32)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 5, 5])}),
        "c1": nir.Conv2d(input_shape=(5, 5), weight=f32(4, 2, 3, 3), stride=1, padding=(1, 1), dilation=1, groups=1,
                         bias=np.zeros(4, np.float32)),
        "n1": _neuron((4, 5, 5), "if-subtract", rng, v_init=False),
        "c2": nir.Conv2d(input_shape=(5, 5), weight=f32(3, 4, 3, 3), stride=1, padding=(1, 1), dilation=1, groups=1,
                         bias=f32(3)),
        "n2": _neuron((3, 5, 5), "if-subtract", rng),
        "flatten": nir.Flatten(input_type={"input": np.array([3, 5, 5])}, start_dim=0, end_dim=-1),
        "fc": nir.Linear(weight=f32(4, 75)),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "c1"), ("c1", "n1"), ("n1", "c2"), ("c2", "n2"), ("n2", "flatten"), ("flatten", "fc"),
             ("fc", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    x = rng.uniform(0, 1, (6, 2, 5, 5)).astype(np.float32)
    x[::2] = 0
    runs = run_all(g, x, 12, batch_size=6)
    assert runs[0].spike_counts["n1"][::2].sum() == 0 and runs[0].spike_counts["n1"][1::2].min() > 0
    assert runs[0].spike_counts["n2"][::2].sum() > 0, "the bias alone must drive the second layer"
    for other in runs[1:]:
        assert_same(runs[0], other)
