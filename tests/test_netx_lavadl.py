"""lava-dl 0.6.0's own netx networks (shipped in its wheel beside their ground-truth outputs) imported with
`import_netx` and run on the reference and Lava backends; spike trains compared with the ground truth layer by layer
(full-length figures for both backends and lava-dl's own netx run: benchmarks/lavadl_networks.py)."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import nir
import numpy as np
import pytest

import backends
from backends.netx import import_netx

# lava-dl's wheel installs its test folder as a top-level `tests` directory in site-packages
GTS = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx"


BACKENDS = ["reference", pytest.param("lava", marks=[pytest.mark.slow, pytest.mark.lava])]


def _trains(backend: str, graph, bias_whc: np.ndarray, T: int) -> dict[str, np.ndarray]:
    """Spike trains (C, H, W, T) per neuron node for one sample whose input layer is driven by `bias_whc`
    (lava-dl's (W, H, C) layout, as the ground truths hold it)."""
    x = np.ascontiguousarray(bias_whc.transpose(2, 1, 0))[None].astype(np.float32)
    run = backends.get(backend).run(graph, x, T, record=True)
    return {n: np.moveaxis(s[0], 0, -1) for n, s in run.spikes.items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_tinynet_matches_its_ground_truth_in_every_layer(backend):
    """tiny.net: LOIHI neurons with vDecay = 1024 (input layer included), two strided convs; ground truth
    (N, C, H, W, T) from lava-dl for 16 steps of the input bias. It is one step late (its step 0 is empty):
    our step t = ground-truth step t + 1, exactly, in all three layers -- on Lava with its stock fixed-point LIF
    (du = iDecay - 1, dv = vDecay) as lava-dl's netx builds it."""
    graph = import_netx(GTS / "tiny.net")
    assert graph.nodes["neuron1"].metadata["spikeport"]["lava_cuba"] == {"i_decay": 4096, "v_decay": 1024}
    T = 16
    ours = _trains(backend, graph, np.load(GTS / "gts/tinynet/input_bias.npy"), T)
    for name, gt in (("neuron0", "input"), ("neuron1", "layer1"), ("neuron2", "output")):
        truth = np.load(GTS / f"gts/tinynet/{gt}.npy")[0]
        assert truth[..., 0].sum() == 0 and truth.sum() > 50
        np.testing.assert_array_equal(ours[name][..., :T - 1], truth[..., 1:])


@pytest.mark.slow
def test_pilotnet_lif_matches_its_ground_truth_in_every_layer():
    """pilotnet_lif: 5 convs and 4 dense layers of LOIHI neurons (vDecay = 1024), input layer driven by the
    image as bias; ground truth (W, H, C, T) recorded on Lava with one step of delay per layer and a reset
    every 16 steps. Layer k at ground-truth step k + t is reference step t, exactly, until that reset."""
    root = GTS / "gts/pilotnet_lif"
    graph = import_netx(root / "network.net")
    ours = _trains("reference", graph, np.load(root / "image.npy"), 16)
    layers = ["input", "conv-0", "conv-1", "conv-2", "conv-3", "conv-4", "fc-0", "fc-1", "fc-2"]
    names = [n for n in ours if n != "neuron10"]
    assert len(names) == len(layers)
    for k, (name, gt) in enumerate(zip(names, layers)):
        truth = np.load(root / f"{gt}.npy")
        truth = truth.transpose(2, 1, 0, 3) if truth.ndim == 4 else truth
        np.testing.assert_array_equal(ours[name].reshape(truth.shape[:-1] + (16,))[..., :16 - k], truth[..., k:16])


@pytest.mark.parametrize("backend, T", [("reference", 3000),
                                        pytest.param("lava", 400, marks=[pytest.mark.slow, pytest.mark.lava])])
def test_ntidigits_with_axonal_delays_matches_its_ground_truth(backend, T):
    """ntidigits: CUBA neurons with iDecay = vDecay = 1024, axonal delays up to 62 steps (imported as
    nir.Delay), spike input (the backend's per-step input); its last layer (`average`, which netx cannot run)
    left out as in lava-dl's own test. Ground truth from lava-dl on Lava: 4 steps late (one per hop), otherwise
    identical -- over all 3000 steps on the reference backend, the first 400 on Lava (all 3000 in
    benchmarks/lavadl_networks.py)."""
    root = GTS / "gts/ntidigits"
    graph = import_netx(root / "ntidigits.net", num_layers=5)
    assert [type(graph.nodes[n]).__name__ for n in ("delay2", "neuron2", "delay3")] == ["Delay", "CubaLIF", "Delay"]
    x, truth = np.load(root / "input.npy")[:, :T], np.load(root / "output.npy")[:, :T]
    run = backends.get(backend).run(graph, x.T.reshape(1, T, 1, 1, -1).astype(np.float32), T, record=True)
    ours = run.spikes["neuron4"][0].T
    assert truth.sum() > 10_000
    np.testing.assert_array_equal(ours[:, :-4], truth[:, 4:])


@pytest.mark.parametrize("backend, options", [
    ("reference", {"mode": "layer"}), ("reference", {"mode": "step"}),
    pytest.param("lava", {}, marks=[pytest.mark.slow, pytest.mark.lava])])
def test_delay_node_shifts_each_element_by_its_delay(backend, options):
    """Input 1 -> Affine(identity) -> Delay(0, 2, 5 steps) -> IF(θ 1.5, reset to 0): without delay the IF
    fires at steps 1, 3, 5, ... (v = 1, 2 -> spike); delayed by d, at d + 1, d + 3, ... Two samples: the second
    starts with nothing of the first still in the delay line (Lava streams them back to back)."""
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Affine(weight=np.eye(3, dtype=np.float32), bias=np.zeros(3, np.float32)),
        "delay": nir.Delay(delay=np.array([0, 2, 5]) * 1e-3),
        "if": nir.IF(r=np.ones(3, np.float32), v_threshold=np.full(3, 1.5, np.float32), v_reset=np.zeros(3, np.float32)),
        "output": nir.Output(output_type={"output": np.array([3])})},
        edges=[("input", "fc"), ("fc", "delay"), ("delay", "if"), ("if", "output")], type_check=False)
    T = 12
    expect = np.zeros((3, T))
    for i, d in enumerate((0, 2, 5)):
        expect[i, d + 1::2] = 1
    run = backends.get(backend).run(graph, np.ones((2, 3), np.float32), T, record=True, **options)
    for sample in range(2):
        np.testing.assert_array_equal(run.spikes["if"][sample].T, expect)


def test_sdnn_is_refused_naming_what_is_missing():
    with pytest.raises(backends.Unsupported, match=r"netx layer 0: SDNN \(sigma-delta\) neurons.*graded spikes"):
        import_netx(GTS / "gts/pilotnet_sdnn/network.net")


def test_mnist_net_imports_as_lif_layers_and_netx_default_readout():
    """mnist.net (no ground truth shipped): CUBA vDecay = 123 layers and a last layer without neurons, which
    netx gives its default neuron (iDecay 0, vDecay 4096, unreachable threshold): an integrator readout."""
    graph = import_netx(GTS / "mnist.net")
    kinds = [type(graph.nodes[n]).__name__ for n in ("neuron0", "neuron1", "neuron2", "neuron3")]
    assert kinds == ["LIF", "LIF", "LIF", "I"]
    assert graph.nodes["neuron1"].metadata["spikeport"]["lava_cuba"] == {"i_decay": 4096, "v_decay": 123}


@pytest.mark.slow
@pytest.mark.lava
def test_mnist_net_on_lava_gives_the_reference_spikes_and_readout():
    """mnist.net has no ground truth; its CUBA vDecay = 123 layers on Lava's own fixed-point LIF and its never-firing
    readout (an I on spikeport's NeuronLayer) give, for random integer inputs, the reference backend's spike counts
    per layer and sample and its outputs (a second, independent implementation of Lava's integer CUBA neuron)."""
    graph = import_netx(GTS / "mnist.net")
    shape = tuple(int(d) for d in graph.nodes["input"].input_type["input"])
    x = np.random.default_rng(0).integers(0, 40, (3, *shape)).astype(np.float32)
    ref, lava = (backends.get(name).run(graph, x, 12) for name in ("reference", "lava"))
    assert ref.spike_counts["neuron2"].sum() > 100
    for name, counts in ref.spike_counts.items():
        np.testing.assert_array_equal(lava.spike_counts[name], counts)
    np.testing.assert_array_equal(lava.outputs, ref.outputs.reshape(3, -1))


def test_netx_graph_on_lava_refuses_what_lavas_lif_cannot_run():
    """A netx graph runs on Lava's own fixed-point LIF only: a per-neuron threshold (Lava's vth is one per process)
    is refused naming the node, and so is neurons='custom' (spikeport's NeuronLayer has no 12-bit decays)."""
    lava = backends.get("lava")
    graph = import_netx(GTS / "tiny.net")
    assert set(lava.neuron_processes(graph).values()) == {"LIFReset"}
    with pytest.raises(backends.Unsupported, match="neurons='custom' does not apply"):
        lava.neuron_processes(graph, neurons="custom")
    graph.nodes["neuron1"].v_threshold = graph.nodes["neuron1"].v_threshold + np.arange(24)[:, None, None]
    with pytest.raises(backends.Unsupported, match="node 'neuron1': the threshold is no single integer mantissa"):
        lava.neuron_processes(graph)


@pytest.mark.slow
@pytest.mark.lava
def test_tinynet_on_lava_equals_lava_dls_own_netx_run():
    """lava-dl's netx.hdf5.Network of tiny.net on Lava, with its tiny.net test's per-layer start resets (layer i's
    u, v zeroed after step i), sends layer k's spikes k steps after spikeport's Lava backend, identically in all
    three layers; run plainly, layer 1 integrates its bias while its input is still a step away and differs."""
    from benchmarks.lavadl_networks import lavadl_run, spikeport_runs, tiny
    case = tiny()
    ours = spikeport_runs(case)["lava"][0]
    staggered, _ = lavadl_run(case, staggered=True)
    plain, _ = lavadl_run(case, staggered=False)
    for k, (mine, netx) in enumerate(zip(ours, staggered)):
        assert mine.sum() > 90
        np.testing.assert_array_equal(mine, netx[:, k:k + case["T"]])
    assert np.abs(ours[1] - plain[1][:, 1:1 + case["T"]]).sum() > 100
