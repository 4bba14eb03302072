"""Layer mode folds a Scale and a tiling pooling node into the neuron kernel before them (`kernels.Fold`).

The folded run must give the spikes and outputs of a plain step-by-step torch loop written here, bit for bit.
"""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import backends
from backends.graph import analyse
from backends.nirext import neuron_metadata
from backends.reference import _fusions, _Lowering

REF = backends.get("reference")
KINDS = {"if-subtract": "subtract", "if-zero": "zero", "snm": "signed-memory"}


def lenet_like(kind: str, pool: type, scaled: bool, seed: int = 0) -> nir.NIRGraph:
    """input (2, 9, 9) -> conv 3x3 pad 1 -> n1 [-> s1] -> pool 2 (drops row and column 8) -> conv 3x3 pad 1 -> n2
    [-> s2] -> pool 2 -> flatten -> fc1 -> n3 [-> s3] -> fc2 -> output; [sN]: Scale nodes when `scaled`."""
    rng = np.random.default_rng(seed)
    f32 = lambda *s: rng.normal(0, 0.7, s).astype(np.float32)

    def neuron(shape):
        theta = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return nir.IF(r=np.ones(shape, np.float32), v_threshold=theta, v_reset=np.zeros(shape, np.float32),
                      metadata=neuron_metadata(KINDS[kind], None))

    tile = dict(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 9, 9])}),
        "conv1": nir.Conv2d(input_shape=(9, 9), weight=f32(3, 2, 3, 3), stride=1, padding=(1, 1), dilation=1,
                            groups=1, bias=f32(3)),
        "n1": neuron((3, 9, 9)), "pool1": pool(**tile),
        "conv2": nir.Conv2d(input_shape=(4, 4), weight=f32(4, 3, 3, 3), stride=1, padding=(1, 1), dilation=1,
                            groups=1, bias=f32(4)),
        "n2": neuron((4, 4, 4)), "pool2": pool(**tile),
        "flatten": nir.Flatten(input_type={"input": np.array([4, 2, 2])}, start_dim=0, end_dim=-1),
        "fc1": nir.Affine(weight=f32(6, 16), bias=f32(6)), "n3": neuron((6,)),
        "fc2": nir.Affine(weight=f32(5, 6), bias=f32(5)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    chain = ["input", "conv1", "n1", "pool1", "conv2", "n2", "pool2", "flatten", "fc1", "n3", "fc2", "output"]
    if scaled:
        for i, shape in ((1, (3, 9, 9)), (2, (4, 4, 4)), (3, (6,))):
            nodes[f"s{i}"] = nir.Scale(scale=rng.uniform(0.3, 1.7, shape).astype(np.float32))
            chain.insert(chain.index(f"n{i}") + 1, f"s{i}")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), type_check=False)


def plain_loop(g: nir.NIRGraph, kind: str, x: torch.Tensor, T: int, dtype):
    """The graph's semantics step by step in torch, written out for this chain: (summed outputs, spike counts)."""
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)
    n = g.nodes
    state = {k: (torch.zeros(len(x), *np.shape(n[k].v_threshold), dtype=dtype),) * 2 for k in ("n1", "n2", "n3")}
    counts = {k: 0 for k in state}
    total = 0

    def spike(k, cur):
        v, m = state[k]
        theta = t(n[k].v_threshold)
        v = v + cur
        if kind == "snm":   # Wang et al. Eq. 19-23
            z = (v >= theta).to(dtype) - ((v <= -theta) & (m > 0) & (v < theta)).to(dtype)
            state[k] = (v - theta * z, m + z)
        elif kind == "if-subtract":
            z = (v >= theta).to(dtype)
            state[k] = (v - theta * z, m)
        else:
            z = (v > theta).to(dtype)
            state[k] = (torch.where(z > 0, torch.zeros_like(v), v), m)
        counts[k] = counts[k] + z.abs()
        return z * t(n[f"s{k[1]}"].scale) if f"s{k[1]}" in n else z

    def pool(k, z):
        return F.avg_pool2d(z, 2, 2, divisor_override=1 if isinstance(n[k], nir.SumPool2d) else None)

    conv = lambda k, a: F.conv2d(a, t(n[k].weight), t(n[k].bias), padding=1)
    lin = lambda k, a: F.linear(a, t(n[k].weight), t(n[k].bias))
    c1 = conv("conv1", x.to(dtype))
    for _ in range(T):
        h = pool("pool1", spike("n1", c1))
        h = pool("pool2", spike("n2", conv("conv2", h)))
        total = total + lin("fc2", spike("n3", lin("fc1", h.flatten(1))))
    return total, counts


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("pool,scaled", [(nir.AvgPool2d, True), (nir.SumPool2d, False), (nir.AvgPool2d, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_folded_run_equals_a_plain_torch_loop(kind, pool, scaled, dtype):
    g = lenet_like(kind, pool, scaled)
    view = analyse(g)
    low = _Lowering(view, torch.device("cpu"), dtype)
    fused = _fusions(view, {k: low.lower(k) for k in view.order})
    expected_chains = {"n1": ("s1", "pool1"), "n2": ("s2", "pool2"), "n3": ("s3",)} if scaled else \
        {"n1": ("pool1",), "n2": ("pool2",)}
    assert {k: c for k, (c, _) in fused.items()} == expected_chains
    x = torch.as_tensor(np.random.default_rng(1).uniform(0, 1.5, (11, 2, 9, 9)).astype(np.float32))
    T = 12
    total, counts = plain_loop(g, kind, x, T, dtype)
    assert all(float(c.sum()) > 0 for c in counts.values()), "every layer must spike for the check to mean anything"
    # default chunking, and chunks of a few steps over batches of 4 (a partly filled last batch)
    for kw in ({}, {"batch_size": 4, "max_elements": 700}):
        run = REF.run(g, x.numpy(), T, dtype=dtype, **kw)
        np.testing.assert_array_equal(run.outputs, total.double().numpy())
        for k, c in counts.items():
            np.testing.assert_array_equal(run.spike_counts[k], c.double().reshape(len(x), -1).sum(1).numpy(), err_msg=k)
    if kind == "snm":
        recorded = REF.run(g, x.numpy(), T, dtype=dtype, record=True)   # unfolded: the spikes themselves
        assert min(s.min() for s in recorded.spikes.values()) == -1, "negative spikes must occur"


def test_no_fold_where_windows_overlap_or_a_neuron_has_another_reader():
    """n1 -> s1 -> pool1 with overlapping windows: only s1 folds; n2 read by s2 and a second branch: nothing."""
    g = lenet_like("if-subtract", nir.AvgPool2d, True)
    g.nodes["pool1"] = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    g.nodes["conv2"] = nir.Conv2d(input_shape=(8, 8), weight=g.nodes["conv2"].weight, stride=2, padding=(1, 1),
                                  dilation=1, groups=1, bias=g.nodes["conv2"].bias)
    g.nodes["flat_n2"] = nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1)
    g.nodes["fc_n2"] = nir.Linear(weight=np.ones((5, 64), np.float32))
    g.edges += [("n2", "flat_n2"), ("flat_n2", "fc_n2"), ("fc_n2", "output")]
    view = analyse(g)
    low = _Lowering(view, torch.device("cpu"), torch.float32)
    fused = _fusions(view, {k: low.lower(k) for k in view.order})
    assert {k: c for k, (c, _) in fused.items()} == {"n1": ("s1",), "n3": ("s3",)}
