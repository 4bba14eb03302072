"""lava-dl 0.6.0's own netx networks (shipped in its wheel beside their ground-truth outputs) imported with
`import_netx` and run on the reference backend; spike trains compared with the ground truth layer by layer."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import backends
from backends.graph import analyse
from backends.netx import import_netx
from backends.reference import _Lowering

# lava-dl's wheel installs its test folder as a top-level `tests` directory in site-packages
GTS = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx"


def _trains(graph, bias_whc: np.ndarray, T: int) -> dict[str, np.ndarray]:
    """Spike trains (C, H, W, T) per neuron node for one sample whose input layer is driven by `bias_whc`
    (lava-dl's (W, H, C) layout, as the ground truths hold it)."""
    x = np.ascontiguousarray(bias_whc.transpose(2, 1, 0))[None].astype(np.float32)
    run = backends.get("reference").run(graph, x, T, record=True)
    return {n: np.moveaxis(s[0], 0, -1) for n, s in run.spikes.items()}


def test_tinynet_matches_its_ground_truth_in_every_layer():
    """tiny.net: LOIHI neurons with vDecay = 1024 (input layer included), two strided convs; ground truth
    (N, C, H, W, T) from lava-dl for 16 steps of the input bias. It is one step late (its step 0 is empty):
    reference step t = ground-truth step t + 1, exactly, in all three layers."""
    graph = import_netx(GTS / "tiny.net")
    assert graph.nodes["neuron1"].metadata["spikeport"]["lava_cuba"] == {"i_decay": 4096, "v_decay": 1024}
    T = 16
    ours = _trains(graph, np.load(GTS / "gts/tinynet/input_bias.npy"), T)
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
    ours = _trains(graph, np.load(root / "image.npy"), 16)
    layers = ["input", "conv-0", "conv-1", "conv-2", "conv-3", "conv-4", "fc-0", "fc-1", "fc-2"]
    names = [n for n in ours if n != "neuron10"]
    assert len(names) == len(layers)
    for k, (name, gt) in enumerate(zip(names, layers)):
        truth = np.load(root / f"{gt}.npy")
        truth = truth.transpose(2, 1, 0, 3) if truth.ndim == 4 else truth
        np.testing.assert_array_equal(ours[name].reshape(truth.shape[:-1] + (16,))[..., :16 - k], truth[..., k:16])


def _output_trains_per_step(graph, x_steps: np.ndarray) -> np.ndarray:
    """Output spike trains (n, T) of one sample fed `x_steps` (*input_shape, T), step t getting x[..., t], by
    the reference backend's own node lowering stepped in order (what `run(graph, (N, T, ...), T)` will do
    once the reference backend takes per-step input; it holds one input for all steps today)."""
    view = analyse(graph)
    lowering = _Lowering(view, torch.device("cpu"), torch.float32)
    ops = {n: lowering.lower(n) for n in view.order}
    states = {n: ops[n].init(1) for n in view.order}
    source, outs = view.preds[view.output][0], []
    with torch.no_grad():
        for t in range(x_steps.shape[-1]):
            values = {}
            for n in view.order:
                inp = torch.as_tensor(x_steps[..., t], dtype=torch.float32).reshape(1, *view.shape(n)) \
                    if n == view.input else sum(values[p] for p in view.preds[n])
                states[n], values[n] = ops[n].step(states[n], inp)
            outs.append(values[source][0].numpy())
    return np.stack(outs, -1)


def test_ntidigits_with_axonal_delays_matches_its_ground_truth():
    """ntidigits: CUBA neurons with iDecay = vDecay = 1024, axonal delays up to 62 steps (imported as
    nir.Delay), spike input over 3000 steps; its last layer (`average`, which netx cannot run) left out as in
    lava-dl's own test. Ground truth from lava-dl on Lava: 4 steps late (one per hop), otherwise identical."""
    root = GTS / "gts/ntidigits"
    graph = import_netx(root / "ntidigits.net", num_layers=5)
    assert [type(graph.nodes[n]).__name__ for n in ("delay2", "neuron2", "delay3")] == ["Delay", "CubaLIF", "Delay"]
    x, truth = np.load(root / "input.npy"), np.load(root / "output.npy")
    ours = _output_trains_per_step(graph, x)
    assert truth.sum() > 20_000
    np.testing.assert_array_equal(ours[:, :-4], truth[:, 4:])


def test_delay_node_shifts_each_element_by_its_delay():
    """Input 1 -> Affine(identity) -> Delay(0, 2, 5 steps) -> IF(θ 1.5, reset to 0): without delay the IF
    fires at steps 1, 3, 5, ... (v = 1, 2 -> spike); delayed by d, at d + 1, d + 3, ..."""
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
    for mode in ("layer", "step"):
        run = backends.get("reference").run(graph, np.ones((1, 3), np.float32), T, record=True, mode=mode)
        np.testing.assert_array_equal(run.spikes["if"][0].T, expect)


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
