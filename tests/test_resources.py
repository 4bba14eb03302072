"""The resource map against hand counts: conv connections at the borders, weight sharing, layers split
across cores, and layers refused with their numbers and the core's limit in the message."""
from __future__ import annotations

import nir
import numpy as np
import pytest

from pipeline.hardware.resources import ResourceError, resource_map
from tests.graphs import conv_snm, if_node, mlp


def test_conv_connections_and_weight_sharing_by_hand():
    g = conv_snm(np.random.default_rng(0))
    # 3x3 kernel, padding 1 on 5x5: per axis 3*5 - 2 = 13 valid (input, output) pairs, so 13^2 per channel pair
    explicit = {layer.name: layer for layer in resource_map(g, "loihi").layers}
    assert explicit["drive"].connections == 13 ** 2 * 1 * 3
    assert explicit["snm"].connections == 13 ** 2 * 3 * 3 and explicit["snm"].stored == 13 ** 2 * 9
    assert explicit["if"].connections == 75 * 6 and explicit["out"].fan_in == 6
    shared = {layer.name: layer for layer in resource_map(g, "loihi2").layers}
    assert shared["snm"].stored == 3 * 3 * 3 * 3 and shared["drive"].stored == 3 * 9   # one kernel per core
    assert shared["if"].stored == 75 * 6                                                # dense: no sharing


def test_a_layer_too_big_for_one_core_is_split():
    g = mlp(np.zeros((3000, 100)), np.zeros(3000), np.zeros((2, 3000)), np.zeros(2))
    layers = {layer.name: layer for layer in resource_map(g, "loihi").layers}
    # Loihi: 1024 neurons per core, 131072 synapses per core / fan-in 100 = 1310 -> neurons bound: 3 cores
    assert (layers["if1"].cores, layers["if1"].neurons_per_core) == (3, 1024)
    # fan-in 3000: 131072 // 3000 = 43 neurons per core by synapse memory; 2 neurons fit in one
    assert (layers["out"].cores, layers["out"].neurons_per_core) == (1, 2)
    g = mlp(np.zeros((500, 2000)), np.zeros(500), np.zeros((2, 500)), np.zeros(2))
    layers = {layer.name: layer for layer in resource_map(g, "loihi2").layers}
    # Loihi 2: 937500 // 2000 = 468 neurons per core by synapse memory -> ceil(500 / 468) = 2 cores
    assert (layers["if1"].cores, layers["if1"].neurons_per_core) == (2, 468)
    total = resource_map(g, "loihi2")
    assert total.cores == 3 and total.chips == 1


def test_a_layer_that_cannot_fit_is_refused_with_its_numbers():
    g = mlp(np.zeros((4, 5000)), np.zeros(4), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ResourceError, match=r"layer 'if1' cannot be mapped: every core of it receives all 5000 input "
                                            r"axons, a loihi \(loihi.toml\) core takes 4096"):
        resource_map(g, "loihi")
    g = mlp(np.zeros((4, 1_000_000)), np.zeros(4), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ResourceError, match=r"layer 'if1' cannot be mapped: one neuron has a fan-in of 1000000 "
                                            r"synapses, a loihi2 \(loihi2.toml\) core stores 937500"):
        resource_map(g, "loihi2")


def test_chips_add_up():
    n = 1024 * 130
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                            "fc": nir.Linear(weight=np.zeros((n, 2), np.float32)), "if": if_node(n),
                            "output": nir.Output(output_type={"output": np.array([n])})},
                     edges=[("input", "fc"), ("fc", "if"), ("if", "output")], type_check=False)
    rmap = resource_map(g, "loihi")
    assert rmap.layers[0].cores == 130 and rmap.chips == 2   # 1024 neurons per core, 128 cores per chip


def test_shared_kernels_beyond_one_core_split_by_output_channels():
    """A VGG-16 block-5 conv (512 -> 512 channels, 3x3, on 4x4): its 2359296 kernel weights exceed a Loihi 2
    core's 937500, so cores take groups of 937500 // (512 * 9) = 203 channels (3248 neurons, under 8192):
    ceil(512 / 203) = 3 cores, each storing 203 channels' kernels."""
    nodes = {"input": nir.Input(input_type={"input": np.array([512, 4, 4])}),
             "conv": nir.Conv2d(input_shape=(4, 4), weight=np.zeros((512, 512, 3, 3), np.float32), stride=1,
                                padding=1, dilation=1, groups=1, bias=np.zeros(512, np.float32)),
             "if": if_node((512, 4, 4)), "output": nir.Output(output_type={"output": np.array([512, 4, 4])})}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "conv"), ("conv", "if"), ("if", "output")], type_check=False)
    layer = resource_map(g, "loihi2").layers[0]
    assert (layer.cores, layer.neurons_per_core, layer.stored) == (3, 203 * 16, 3 * 203 * 512 * 9)
