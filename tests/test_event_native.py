"""Spike input end to end: an event-native SCNN ((2, 8, 8) ON/OFF input) converted from an ANN trained on event
rates, and the digits CNN on rate-encoded input, run on the reference and on Lava (float and fixed point) with the
same spikes; the event network's accuracy bounds what conversion keeps of its ANN."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import backends
import pipeline
from pipeline.data import encoding as enc
from pipeline.data.zoo import build_model
from pipeline.hardware.quantize import quantize
from pipeline.training.ann import TrainConfig, evaluate, seed_everything, train_ann

REF = backends.get("reference")
T = 16


@pytest.fixture(scope="module")
def event_net(digits):
    """The digits CNN with two input channels trained on the per-step event rates (5 epochs), converted with
    robustnorm for event input; with the ANN's accuracy on those rates."""
    rates = {split: torch.from_numpy(enc.calibration_input(getattr(digits, f"{split}_x").numpy(), "event"))
             for split in ("train", "test")}
    seed_everything(0)
    ann = build_model("digits-cnn", (2, 8, 8), 10)
    train_ann(ann, rates["train"], digits.train_y, rates["test"], digits.test_y, TrainConfig(epochs=5, seed=0),
              progress=False)
    graph = pipeline.convert(ann.eval(), digits.train_x, method="robustnorm", reset="zero", encoding="event")
    return graph, evaluate(ann, rates["test"], digits.test_y)


def test_event_native_network_keeps_its_ann_accuracy(event_net, digits):
    graph, ann_accuracy = event_net
    assert graph.metadata["spikeport"]["encoding"] == "event"
    run = pipeline.simulate(graph, digits.test_x, T=64)   # images, event-encoded as the graph's metadata says
    assert ann_accuracy > 0.85
    assert run.accuracy(digits.test_y) >= ann_accuracy - 0.05   # measured: ANN 94.44%, SNN 92.22% at T=64


def _same(a, b) -> None:
    for name in b.spikes:
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name], err_msg=name)


@pytest.mark.slow
@pytest.mark.lava
def test_event_native_network_same_spikes_on_lava(event_net, digits):
    graph, _ = event_net
    x = enc.encode(digits.test_x[:12].numpy(), "event", T)
    ref = REF.run(graph, x, T, record=True, dtype=torch.float64)
    lava = backends.get("lava").run(graph, x, T, record=True)
    assert sum(ref.spike_counts.values()).sum() > 0
    _same(lava, ref)
    np.testing.assert_allclose(lava.outputs, ref.outputs, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
@pytest.mark.lava
def test_digits_cnn_on_rate_input_same_spikes_on_lava_float_and_fixed_point(digits, digits_graphs):
    x = enc.encode(digits.test_x[:12].numpy(), "rate", T, seed=3)
    graph = digits_graphs["maxnorm-zero"]
    ref = REF.run(graph, x, T, record=True, dtype=torch.float64)
    _same(backends.get("lava").run(graph, x, T, record=True), ref)
    q = quantize(graph, "loihi2", enc.calibration_input(digits.train_x[:256].numpy(), "rate")).graph
    ref_fixed = REF.run(q, x, T, record=True, fixed_point=True)
    lava_fixed = backends.get("lava").run(q, x, T, record=True)
    assert sum(ref_fixed.spike_counts.values()).sum() > 0
    _same(lava_fixed, ref_fixed)
    np.testing.assert_array_equal(lava_fixed.outputs, ref_fixed.outputs)
