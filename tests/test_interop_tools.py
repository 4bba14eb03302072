"""Files the other tools really write (Norse 1.1.0, snnTorch 1.0.0, sinabs 3.1.3, rockpool 3.1.0): each tool
builds a small network, simulates it with its own simulator, writes the NIR file; spikeport reads the file
and its reference backend must give the tool's spike trains (docs/parity.md, "Graphs from other tools")."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import backends
from pipeline.errors import SpikeportError
from pipeline.io.nirio import read_graph, read_graph_notes

N, T = 6, 40


def reference_trains(path, inputs: np.ndarray, convention: str = "auto") -> tuple[np.ndarray, list[str]]:
    """Output spike trains (N, T, n) of the reference backend on the file at `path`, read in `convention`.

    `inputs` is what the tool was fed, per step: (N, T, *input_shape). The reference backend takes one input
    per sample held for all T steps (time-varying input is coming: `run(graph, (N, T, ...), T)`), so the
    inputs must be constant over time until then."""
    if not np.array_equal(inputs, np.broadcast_to(inputs[:, :1], inputs.shape)):
        raise NotImplementedError("the reference backend holds one input for all steps; per-step input pending")
    graph, notes = read_graph_notes(path, convention)
    run = backends.get("reference").run(graph, inputs[:, 0], inputs.shape[1], record=True)
    output = next(n for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    return run.spikes[next(a for a, b in graph.edges if b == output)], notes


def _constant(x: torch.Tensor) -> np.ndarray:
    """(N, *shape) -> (N, T, *shape): the same input at every step."""
    return np.repeat(x.numpy()[:, None], T, axis=1)


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


# --- Norse ----------------------------------------------------------------------------------------------------


def _norse_cell(kind: str, n: int):
    import norse.torch as nt
    from norse.torch.functional.iaf import IAFParameters
    from norse.torch.functional.lif import LIFParameters
    from norse.torch.functional.lif_box import LIFBoxParameters
    # per-neuron parameters: with Norse's 0-d defaults nir.write fails ("Scalar datasets don't support
    # chunk/filter options")
    if kind == "LIFCell":
        return nt.LIFCell(LIFParameters(tau_syn_inv=torch.full((n,), 200.0), tau_mem_inv=torch.full((n,), 100.0),
                                        v_leak=torch.zeros(n), v_th=torch.full((n,), 0.3), v_reset=torch.zeros(n)))
    if kind == "LIFBoxCell":
        return nt.LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.full((n,), 100.0), v_leak=torch.zeros(n),
                                              v_th=torch.full((n,), 0.1), v_reset=torch.zeros(n)))
    return nt.IAFCell(IAFParameters(v_th=torch.full((n,), 1.0), v_reset=torch.zeros(n)))


@pytest.mark.parametrize("kind,written,convention", [("LIFCell", "CubaLIF", "auto"), ("LIFBoxCell", "LIF", "auto"),
                                                     ("IAFCell", "IF", "norse")])
@pytest.mark.parametrize("batched_sample", [False, True])
def test_norse_file_gives_norse_spike_trains(tmp_path, kind, written, convention, batched_sample):
    import norse.torch as nt
    _seeded(0)
    model = nt.SequentialState(torch.nn.Linear(4, 6), _norse_cell(kind, 6), torch.nn.Linear(6, 3), _norse_cell(kind, 3))
    with torch.no_grad():
        model[0].weight.mul_(3)
        model[2].weight.mul_(3)
    x = _constant(torch.rand(N, 4))
    state, steps = None, []
    with torch.no_grad():
        for t in range(T):
            z, state = model(torch.as_tensor(x[:, t]), state)
            steps.append(z.numpy())
    theirs = np.stack(steps, 1)
    graph = nt.to_nir(model, torch.zeros(1, 4) if batched_sample else torch.zeros(4))
    assert type(graph.nodes["1"]).__name__ == written
    nir.write(tmp_path / "norse.nir", graph)
    ours, notes = reference_trains(tmp_path / "norse.nir", x, convention)
    assert theirs.sum() > 20
    np.testing.assert_array_equal(ours, theirs)
    if batched_sample:
        assert any("leading [1] is the writer's batch/time dimension" in n for n in notes)


def test_norse_lif_module_is_not_exported(tmp_path):
    """norse.torch.LIF (the module that loops over time) has no to_nir entry: Norse 1.1.0 writes the node as
    None, which nir.write cannot store. Its per-step LIFCell is exported (as CubaLIF, tested above)."""
    import norse.torch as nt
    graph = nt.to_nir(nt.SequentialState(torch.nn.Linear(4, 3), nt.LIF()), torch.zeros(4))
    assert graph.nodes["1"] is None
    with pytest.raises(AttributeError):
        nir.write(tmp_path / "lif.nir", graph)


def test_a_file_without_metadata_or_fingerprint_is_refused_not_guessed(tmp_path):
    """An Affine -> IF file from Norse and one from sinabs are the same bytes in effect but mean different
    neurons (reset to 0 on v > θ vs subtraction on v >= θ): read without --from, it is refused."""
    import norse.torch as nt
    model = nt.SequentialState(torch.nn.Linear(4, 3), _norse_cell("IAFCell", 3))
    nir.write(tmp_path / "if.nir", nt.to_nir(model, torch.zeros(4)))
    with pytest.raises(SpikeportError, match=r"node '1' \(IF\) carries no spikeport metadata.*--from nir\|norse"):
        read_graph(tmp_path / "if.nir")
    assert read_graph(tmp_path / "if.nir", "sinabs").nodes["1"].metadata["spikeport"]["reset"] == "subtract"
    assert read_graph(tmp_path / "if.nir", "norse").nodes["1"].metadata["spikeport"]["reset"] == "zero"


# --- snnTorch -------------------------------------------------------------------------------------------------


def _snntorch_run(beta: float, reset: str):
    import snntorch as snn
    import snntorch.utils

    def leaky(n):
        return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), reset_mechanism=reset, init_hidden=True)
    _seeded(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), leaky(6), torch.nn.Linear(6, 3), leaky(3))
    with torch.no_grad():
        model[0].weight.mul_(3)
        model[2].weight.mul_(3)
    x = _constant(torch.rand(N, 4))
    snntorch.utils.reset(model)
    with torch.no_grad():
        theirs = np.stack([model(torch.as_tensor(x[:, t])).numpy() for t in range(T)], 1)
    # snnTorch's export needs an unbatched sample and per-neuron beta/threshold (else NIR's type check fails)
    return model, x, theirs


@pytest.mark.parametrize("beta", [0.9, 1.0])
@pytest.mark.parametrize("reset,convention", [("zero", "snntorch-zero"), ("subtract", "snntorch")])
def test_snntorch_file_gives_snntorch_spike_trains(tmp_path, beta, reset, convention):
    from snntorch.export_nir import export_to_nir
    model, x, theirs = _snntorch_run(beta, reset)
    with np.errstate(divide="ignore"):
        nir.write(tmp_path / "snn.nir", export_to_nir(model, torch.zeros(4)))
    with pytest.raises(SpikeportError, match="does not record the neuron reset"):
        read_graph(tmp_path / "snn.nir")
    ours, _ = reference_trains(tmp_path / "snn.nir", x, convention)
    assert theirs.sum() > 20
    if reset == "zero" or beta == 1.0:
        np.testing.assert_array_equal(ours, theirs)
        return
    # Labelled tolerance (docs/parity.md, snnTorch): snnTorch subtracts θ after the decay, one step late;
    # spikeport at the spike, before the decay: spikeport's neurons keep beta θ less after each spike
    # and fire more. Measured on this network: 17% more output spikes.
    assert 1.0 <= ours.sum() / theirs.sum() <= 1.25


# --- sinabs ---------------------------------------------------------------------------------------------------


def _sinabs_trains(model, x: np.ndarray) -> np.ndarray:
    """sinabs' usual layout: batch and time merged in the first dimension (IAFSqueeze)."""
    with torch.no_grad():
        out = model(torch.as_tensor(x).reshape(N * T, *x.shape[2:])).reshape(N, T, -1).numpy()
    assert out.max() == 1    # MultiSpike sent at most one spike per step: the models are the same here
    return out


def test_sinabs_dense_file_gives_sinabs_spike_trains(tmp_path):
    import sinabs
    import sinabs.layers as sl
    _seeded(2)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), sl.IAFSqueeze(batch_size=N), torch.nn.Linear(8, 3),
                                sl.IAFSqueeze(batch_size=N))
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    x = _constant(torch.rand(N, 16))
    theirs = _sinabs_trains(model, x)
    nir.write(tmp_path / "dense.nir", sinabs.to_nir(model, torch.zeros(N * T, 16)))
    ours, _ = reference_trains(tmp_path / "dense.nir", x, "sinabs")
    assert theirs.sum() > 20
    np.testing.assert_array_equal(ours, theirs)


def test_sinabs_conv_file_gives_sinabs_spike_trains(tmp_path):
    import sinabs
    import sinabs.layers as sl
    _seeded(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, (3, 2), padding=1), sl.IAFSqueeze(batch_size=N),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 9, 3), sl.IAFSqueeze(batch_size=N))
    with torch.no_grad():
        model[0].weight.mul_(0.5)
        model[3].weight.abs_().mul_(0.4)
    x = _constant(torch.rand(N, 1, 8, 8))
    theirs = _sinabs_trains(model, x)
    graph = sinabs.to_nir(model, torch.zeros(N * T, 1, 8, 8))
    # sinabs leaves Conv2d.input_shape and the Flatten's input type unset, which nir.write cannot store
    graph.nodes["0"].input_shape = np.array([8, 8])
    graph.nodes["2"].input_type = {"input": np.array([4, 8, 9])}
    nir.write(tmp_path / "conv.nir", graph)
    ours, _ = reference_trains(tmp_path / "conv.nir", x, "sinabs")
    assert theirs.sum() > 20
    np.testing.assert_array_equal(ours, theirs)


# --- rockpool -------------------------------------------------------------------------------------------------


def test_rockpool_lif_file_gives_rockpool_spike_trains(tmp_path):
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch, to_nir
    _seeded(4)
    net = Sequential(LinearTorch((4, 6)), LIFTorch(6, tau_mem=0.01, tau_syn=0.004),
                     LinearTorch((6, 3)), LIFTorch(3, tau_mem=0.02, tau_syn=0.005))
    with torch.no_grad():
        net[0].weight.mul_(0.1)
        net[2].weight.abs_().mul_(0.4)
    x = _constant(torch.rand(N, 4))
    with torch.no_grad():
        theirs, _, record = net(torch.as_tensor(x), record=True)
    hidden, theirs = record["1_LIFTorch"]["spikes"].numpy(), theirs.numpy()
    # rockpool sends floor(v / θ) spikes per step; spikeport's neurons one: here never more than one
    assert hidden.max() == 1 and theirs.max() == 1
    nir.write(tmp_path / "rockpool.nir", to_nir(net))
    ours, notes = reference_trains(tmp_path / "rockpool.nir", x)     # the writer is detected from the file
    assert notes[0].startswith("writer detected from the file")
    assert theirs.sum() > 20
    np.testing.assert_array_equal(ours, theirs)
    graph = read_graph(tmp_path / "rockpool.nir")
    run = backends.get("reference").run(graph, x[:, 0], T, record=True)
    np.testing.assert_array_equal(run.spikes["1_LIFTorch"], hidden)


def test_simulate_reads_a_sinabs_file_only_when_told_who_wrote_it(tmp_path, capsys):
    """The CLI: without --from the sinabs file (no fingerprint) is refused in one line naming the node and the
    choices; with --from sinabs it runs."""
    import sinabs
    import sinabs.layers as sl
    from pipeline.cli import main
    _seeded(5)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), sl.IAFSqueeze(batch_size=1), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 8 * 8, 10), sl.IAFSqueeze(batch_size=1))
    graph = sinabs.to_nir(model, torch.zeros(1, 1, 8, 8))
    graph.nodes["0"].input_shape = np.array([8, 8])
    graph.nodes["2"].input_type = {"input": np.array([2, 8, 8])}
    nir.write(tmp_path / "s.nir", graph)
    assert main(["simulate", str(tmp_path / "s.nir"), "--T", "4", "--limit", "5", "--quiet"]) == 2
    assert "node '1' (IF) carries no spikeport metadata" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "s.nir"), "--from", "sinabs", "--T", "4", "--limit", "5", "--quiet"]) == 0
