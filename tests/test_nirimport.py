"""NIR graphs in other tools' conventions, adopted and run on the reference backend against those tools'
own equations (Norse: its own forward pass; sinabs and snnTorch: numpy loops of their documented dynamics)."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import backends
from pipeline.errors import SpikeportError
from pipeline.io.nirimport import adopt


def test_norse_to_nir_graph_runs_like_norse_itself():
    import norse.torch as nt
    from norse.torch.module.iaf import IAFCell, IAFParameters
    from norse.torch.module.lif_box import LIFBoxCell, LIFBoxParameters
    torch.manual_seed(0)
    model = nt.SequentialState(torch.nn.Linear(4, 6), LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor(200.0))),
                               torch.nn.Linear(6, 3), IAFCell(IAFParameters(v_th=torch.tensor(0.5))))
    with torch.no_grad():
        model[0].weight.mul_(8)
    graph, notes = adopt(nt.to_nir(model, torch.randn(1, 4)), "norse")
    assert any("time constants divided by dt" in n for n in notes)
    x = torch.rand(5, 4)
    T = 25
    state, total, hidden = None, torch.zeros(5, 3), torch.zeros(5)
    with torch.no_grad():
        for _ in range(T):
            z, state = model(x, state)
            total += z
    run = backends.get("reference").run(graph, x.numpy(), T)
    assert total.sum() > 0
    np.testing.assert_array_equal(run.outputs, total.numpy())


def _sinabs_style_graph(theta: float, size: int = 3, classes: int = 3):
    """Input (batch 1) -> Conv2d -> IF -> Flatten(1, -1) -> Affine -> IF -> Output, as sinabs' to_nir writes it:
    types and neuron parameters with the batch dimension, Flatten dims counted with the batch."""
    rng = np.random.default_rng(2)
    w = (rng.integers(0, 3, (2, 1, 3, 3)) / 8).astype(np.float32)
    fc = (rng.integers(0, 2, (classes, 2 * size * size)) / 16).astype(np.float32)
    ones = np.ones((1, 2, size, size), np.float32)
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 1, size, size])}),
               "conv": nir.Conv2d(input_shape=(size, size), weight=w, stride=1, padding=1, dilation=1, groups=1,
                                  bias=np.zeros(2, np.float32)),
               "iaf1": nir.IF(r=ones, v_threshold=theta * ones),
               "flat": nir.Flatten(input_type={"input": np.array([0, 0, 0, 0])}, start_dim=1, end_dim=-1),
               "fc": nir.Affine(weight=fc, bias=np.zeros(classes, np.float32)),
               "iaf2": nir.IF(r=np.ones((1, classes), np.float32), v_threshold=np.full((1, classes), theta, np.float32)),
               "output": nir.Output(output_type={"output": np.array([1, classes])})},
        edges=[("input", "conv"), ("conv", "iaf1"), ("iaf1", "flat"), ("flat", "fc"), ("fc", "iaf2"),
               ("iaf2", "output")], type_check=False), w, fc


def test_sinabs_graph_matches_sinabs_iaf_loop():
    theta = 1.0
    graph, w, fc = _sinabs_style_graph(theta)
    adopted, notes = adopt(graph, "sinabs")
    assert any("Flatten" in n for n in notes) and any("MultiSpike" in n for n in notes)
    x = np.random.default_rng(3).integers(0, 5, (4, 1, 3, 3)) / 8
    T = 16
    # sinabs IAF (MembraneSubtract, MultiSpike): v += x; n = floor(v / theta) if v >= theta; v -= n theta
    current = torch.nn.functional.conv2d(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64),
                                         padding=1).numpy().reshape(4, -1)
    v1, v2, out = np.zeros((4, 18)), np.zeros((4, 3)), np.zeros((4, 3))
    for _ in range(T):
        v1 += current
        n1 = np.where(v1 >= theta, np.floor(v1 / theta), 0)
        v1 -= n1 * theta
        v2 += n1 @ fc.T.astype(np.float64)
        n2 = np.where(v2 >= theta, np.floor(v2 / theta), 0)
        v2 -= n2 * theta
        out += n2
        assert n1.max() <= 1 and n2.max() <= 1    # MultiSpike never sent two spikes in one step here
    assert out.sum() > 0
    run = backends.get("reference").run(adopted, x, T)
    np.testing.assert_array_equal(run.outputs, out)


def test_snntorch_graph_uses_its_dt_and_labels_its_reset():
    beta, dt = 0.5, 1e-4
    tau = dt / (1 - beta)
    n = 3
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, n])}),
               "fc": nir.Linear(weight=np.eye(n, dtype=np.float32)),
               "lif": nir.LIF(tau=np.full(n, tau, np.float32), r=np.full(n, tau / dt, np.float32),
                              v_leak=np.zeros(n, np.float32), v_threshold=np.ones(n, np.float32)),
               "output": nir.Output(output_type={"output": np.array([1, n])})},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    adopted, notes = adopt(graph, "snntorch")
    assert adopted.metadata["spikeport"]["dt"] == dt and any("one step after the spike" in m for m in notes)
    x = np.array([[0.3, 0.45, 0.6]])
    # snnTorch Leaky before its first reset: mem = beta * mem + x, spike when mem > threshold
    mem, first = np.zeros(n), np.full(n, -1)
    for t in range(12):
        mem = beta * mem + x[0]
        first[(mem > 1) & (first < 0)] = t
    run = backends.get("reference").run(adopted, x, 12, record=True)
    got = np.array([np.flatnonzero(run.spikes["lif"][0, :, i])[0] if run.spikes["lif"][0, :, i].any() else -1
                    for i in range(n)])
    np.testing.assert_array_equal(got, first)


def test_unknown_convention_and_recurrent_graphs_are_refused():
    graph, _, _ = _sinabs_style_graph(1.0)
    with pytest.raises(SpikeportError, match="unknown NIR convention 'brian'"):
        adopt(graph, "brian")
    nested = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                                 "rec": graph, "output": nir.Output(output_type={"output": np.array([2])})},
                          edges=[("input", "rec"), ("rec", "output")], type_check=False)
    with pytest.raises(SpikeportError, match="nested subgraph"):
        adopt(nested, "snntorch")


def test_read_graph_names_the_tool_that_wrote_a_foreign_file(tmp_path):
    from pipeline.io.atomic import write_nir
    from pipeline.io.nirio import read_graph
    graph, _, _ = _sinabs_style_graph(1.0)
    path = write_nir(tmp_path / "sinabs.nir", graph)
    with pytest.raises(SpikeportError, match=r"looks written by sinabs .*read it with --from sinabs"):
        read_graph(path, "spikeport")
    for convention in ("auto", "sinabs"):    # auto: sinabs' Flatten fingerprint names the writer
        adopted = read_graph(path, convention)
        assert adopted.nodes["iaf1"].metadata["spikeport"]["reset"] == "subtract"
