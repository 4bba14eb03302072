"""lava-dl 0.6.0's own netx networks (shipped in its wheel beside their ground-truth outputs) imported with
`import_netx` and run on the reference backend; spike trains compared with the ground truth layer by layer."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

import backends
from backends.netx import import_netx

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


@pytest.mark.parametrize("network,reason", [
    ("gts/pilotnet_sdnn/network.net", r"netx layer 0: SDNN \(sigma-delta\) neurons"),
    ("gts/ntidigits/ntidigits.net", r"netx layer 2: axonal delays \('delay', 256 per-neuron values up to 62 steps\)"),
])
def test_what_is_not_imported_is_named(network, reason):
    with pytest.raises(backends.Unsupported, match=reason):
        import_netx(GTS / network)


def test_mnist_net_imports_as_lif_layers_and_netx_default_readout():
    """mnist.net (no ground truth shipped): CUBA vDecay = 123 layers and a last layer without neurons, which
    netx gives its default neuron (iDecay 0, vDecay 4096, unreachable threshold): an integrator readout."""
    graph = import_netx(GTS / "mnist.net")
    kinds = [type(graph.nodes[n]).__name__ for n in ("neuron0", "neuron1", "neuron2", "neuron3")]
    assert kinds == ["LIF", "LIF", "LIF", "I"]
    assert graph.nodes["neuron1"].metadata["spikeport"]["lava_cuba"] == {"i_decay": 4096, "v_decay": 123}
