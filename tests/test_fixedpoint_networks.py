"""Whole networks the pipeline emits, quantized, on Lava's bit-accurate models against the reference simulator's
fixed-point mode: the same spikes in every layer at every step. LIF layers from `train-snn --neuron lif` and the
reset-to-zero IF layers of converted CNNs run on Lava's stock LIFReset (Loihi's CUBA neuron), pooling and
convolutions on Lava's bit-accurate Sparse, so the check is independent of backends/fixedpoint.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import backends
from pipeline.api import train_snn
from pipeline.conversion.registry import convert
from pipeline.data.datasets import load_dataset
from pipeline.data.zoo import build_model
from pipeline.hardware.quantize import output_peak, quantize
from tests.graphs import assert_fixed_point_spike_for_spike

REF, LAVA = backends.get("reference"), backends.get("lava")



def stock_layers(graph) -> set[str]:
    return {n for n, proc in LAVA.neuron_processes(graph).items() if proc == "LIFReset"}


@pytest.fixture(scope="module")
def lif_digits(digits):
    """A LIF network from `train-snn --method stbp --neuron lif` on digits (2 epochs, T = 4; about 15 s)."""
    torch.manual_seed(0)
    net = train_snn(build_model("digits-cnn", digits.input_shape, digits.num_classes), digits, "stbp", T=4,
                    epochs=2, neuron="lif")
    return net.export(digits.input_shape)


@pytest.mark.slow
@pytest.mark.lava
def test_lif_network_from_train_snn_spike_for_spike(digits, lif_digits):
    """Both LIF layers on Lava's LIFReset with dv from their tau; the fixed-point reference on the whole test
    split keeps the accuracy of the quantized graph's float run within 3 points (measured: equal)."""
    q = quantize(lif_digits, "loihi2", digits.train_x.numpy()).graph
    lifs = {n for n, node in q.nodes.items() if type(node).__name__ == "LIF"}
    assert lifs and stock_layers(q) == lifs
    x, y = digits.test_x.numpy(), digits.test_y.numpy()
    fixed, floats = REF.run(q, x, 4, fixed_point=True), REF.run(q, x, 4)
    assert fixed.accuracy(y) > 0.8 and abs(fixed.accuracy(y) - floats.accuracy(y)) < 0.03
    ref = assert_fixed_point_spike_for_spike(q, x[:4], 8)
    assert all(ref.spikes[n].any() for n in lifs)


def cifar_graph(name: str):
    """synthetic-cifar and a seeded, untrained zoo model on it converted with maxnorm and reset to zero."""
    data = load_dataset("synthetic-cifar", seed=0)
    torch.manual_seed(0)
    model = build_model(name, data.input_shape, data.num_classes).eval()
    return data, convert(model, data.input_shape, data.train_x[:64], method="maxnorm", reset="zero")


def quantized(graph, data):
    """`graph` quantized to 8-bit loihi2 (the output range from 16 samples), and one test sample."""
    calib = data.train_x[:64].numpy()
    q = quantize(graph, "loihi2", calib, peak=output_peak(graph, calib, calib_T=8, calib_samples=16)).graph
    return q, data.test_x[:1].numpy()


def converted_cifar(name: str):
    """The converted zoo model `name`, quantized, and one test sample."""
    data, graph = cifar_graph(name)
    return quantized(graph, data)


@pytest.mark.slow
@pytest.mark.lava
def test_converted_resnet20_spike_for_spike():
    """ResNet-20 (residual fan-in through Scale, average pooling, Flatten): one sample, T = 8 (measured: about
    20 s on Lava with the convolutions on Sparse, 60-130 s on Lava's Conv process; the deepest blocks do not fire
    yet at T = 8, the first twelve do)."""
    q, x = converted_cifar("resnet20")
    ifs = {n for n, node in q.nodes.items() if type(node).__name__ == "IF"}
    assert stock_layers(q) == ifs
    ref = assert_fixed_point_spike_for_spike(q, x, 8)
    assert sum(ref.spikes[n].any() for n in ifs) >= 10


@pytest.mark.slow
@pytest.mark.lava
def test_converted_vgg16_spike_for_spike():
    """The whole VGG-16 at CIFAR shape (13 IF layers on Lava's LIFReset, 13 convolutions on Lava's bit-accurate
    Sparse, 5 average pools, the Affine classifier into an integrator): one sample, T = 48, the shortest run in
    which every IF layer fires (the last one first at step 47). Measured: about 50 s on Lava (the Lava processes
    together peak at about 6 GB) and 60 s for the reference; the whole test 92 s on a shared 2-core machine at
    load 7-10, 278 s at load 21."""
    q, x = converted_cifar("vgg16")
    ifs = {n for n, node in q.nodes.items() if type(node).__name__ == "IF"}
    assert len(ifs) == 13 and stock_layers(q) == ifs
    ref = assert_fixed_point_spike_for_spike(q, x, 48)
    assert all(ref.spikes[n].any() for n in ifs)
