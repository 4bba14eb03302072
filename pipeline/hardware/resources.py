"""Resource map of a NIR graph on a neuromorphic target: neurons, synapses, input axons and cores per layer,
total cores and chips, from the [cores] table of hwconfigs/<target>.toml; a layer that cannot fit is refused.

A layer is split across cores by output neurons; every core of a layer receives all of the layer's inputs. With
shared conv kernels, a layer whose kernels exceed one core is split by output channels (each core keeps the
kernels of the channels it hosts, as NxTF partitions convolutions, Rueckauer et al. 2021).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import nir
import numpy as np
import torch
import torch.nn.functional as F

from backends.fixedpoint import conv_kwargs
from backends.graph import WEIGHTED_TYPES, analyse
from pipeline.errors import SpikeportError
from pipeline.hardware.hwconfig import HwConfig, load_hwconfig
from pipeline.io.render import markdown_table


class ResourceError(SpikeportError):
    """A layer does not fit the target's cores; the message gives the layer's needs and the core's limits."""


@dataclass(frozen=True)
class LayerResources:
    """One neuron layer: `connections` is fan-in x fan-out as a list of synapses would hold them; `stored` the
    synaptic weights the target keeps (one kernel per core where the chip shares conv weights)."""

    name: str
    neurons: int
    fan_in: int
    input_axons: int
    connections: int
    stored: int
    cores: int
    neurons_per_core: int


@dataclass(frozen=True)
class ResourceMap:
    target: str
    layers: tuple[LayerResources, ...]
    cores_per_chip: int

    @property
    def cores(self) -> int:
        return sum(layer.cores for layer in self.layers)

    @property
    def chips(self) -> int:
        return math.ceil(self.cores / self.cores_per_chip)

    def to_dict(self) -> dict:
        return {"target": self.target, "cores": self.cores, "chips": self.chips, "cores_per_chip": self.cores_per_chip,
                "layers": [asdict(layer) for layer in self.layers]}

    def to_markdown(self) -> str:
        cols = [("name", "layer"), ("neurons", "neurons"), ("fan_in", "fan-in"), ("input_axons", "input axons"),
                ("connections", "connections"), ("stored", "stored weights"), ("cores", "cores"),
                ("neurons_per_core", "neurons/core")]
        return (markdown_table([asdict(layer) for layer in self.layers], cols)
                + f"\n\nTotal: {self.cores} cores on {self.chips} chip(s) of {self.cores_per_chip} cores ({self.target}).")


def _conv_connections(node: nir.Conv2d, in_shape: tuple[int, ...]) -> int:
    """Exact number of (input, output) pairs of a convolution, padding excluded: a conv of ones with ones."""
    c_out, c_in_g, kh, kw = np.shape(node.weight)
    ones = torch.ones(1, int(node.groups), *in_shape[1:], dtype=torch.float64)
    kernel = torch.ones(int(node.groups), 1, kh, kw, dtype=torch.float64)
    per_position = F.conv2d(ones, kernel, **conv_kwargs(node))
    return int(round(float(per_position.sum()))) * int(c_in_g) * int(c_out) // int(node.groups)


def resource_map(graph: nir.NIRGraph, target: HwConfig | str) -> ResourceMap:
    """Per neuron layer (IF, LIF, CubaLIF, I, LI node) fed by weighted nodes: what it needs and how many cores."""
    hw = target if isinstance(target, HwConfig) else load_hwconfig(target)
    limits = hw.cores
    for key in ("cores_per_chip", "neurons_per_core", "synapses_per_core"):
        if key not in limits:
            raise ResourceError(f"{hw.path}: target {hw.name!r} has no key 'cores.{key}', so no resource map")
    view = analyse(graph)
    layers = []
    for name in view.order:
        preds = [p for p in view.preds[name] if isinstance(view.node(p), WEIGHTED_TYPES)]
        if not preds:
            continue
        neurons = int(np.prod(view.shape(name)))
        fan_in = axons = connections = kernels = 0
        all_conv = all(isinstance(view.node(p), nir.Conv2d) for p in preds)
        for p in preds:
            node, in_shape = view.node(p), view.shape(view.preds[p][0])
            fan_in += int(np.prod(np.shape(node.weight)[1:]))
            axons += int(np.prod(in_shape))
            if isinstance(node, nir.Conv2d):
                connections += _conv_connections(node, in_shape)
                kernels += int(np.size(node.weight))
            else:
                connections += int(np.size(node.weight))
        channels = view.shape(name)[0] if all_conv else 1
        layers.append(_fit(hw, name, neurons, fan_in, axons, connections, kernels if all_conv else 0, channels))
    return ResourceMap(hw.name, tuple(layers), int(limits["cores_per_chip"]))


def _fit(hw: HwConfig, name: str, neurons: int, fan_in: int, axons: int, connections: int,
         kernels: int, channels: int = 1) -> LayerResources:
    """Neurons per core: the core's neuron limit, and without weight sharing also its synapses / fan-in. Shared
    kernels that do not fit one core are split into groups of whole output channels (`_channel_groups`)."""
    limits, where = hw.cores, f"{hw.name} ({hw.path.name})"
    per_core_syn, per_core_neurons = int(limits["synapses_per_core"]), int(limits["neurons_per_core"])
    if "axons_per_core" in limits and axons > limits["axons_per_core"]:
        raise ResourceError(f"layer {name!r} cannot be mapped: every core of it receives all {axons} input axons, a "
                            f"{where} core takes {limits['axons_per_core']}; splitting by output neurons does not help")
    shared = bool(limits.get("conv_weight_sharing", False)) and kernels > 0   # a layer fed by convolutions only
    if shared and kernels > per_core_syn:
        return _channel_groups(name, where, neurons, fan_in, axons, connections, kernels, channels, per_core_syn,
                               per_core_neurons)
    if shared:
        per_core = per_core_neurons
    else:
        if fan_in > per_core_syn:
            raise ResourceError(f"layer {name!r} cannot be mapped: one neuron has a fan-in of {fan_in} synapses, a "
                                f"{where} core stores {per_core_syn}; splitting by output neurons does not help")
        per_core = min(per_core_neurons, per_core_syn // fan_in)
    cores = math.ceil(neurons / per_core)
    stored = kernels * cores if shared else connections
    return LayerResources(name, neurons, fan_in, axons, connections, stored, cores, min(per_core, neurons))


def _channel_groups(name: str, where: str, neurons: int, fan_in: int, axons: int, connections: int, kernels: int,
                    channels: int, per_core_syn: int, per_core_neurons: int) -> LayerResources:
    """A conv layer as groups of `per_core_syn // kernel weights per channel` output channels, each group's
    neurons spread over as many cores as the neuron limit needs, every core keeping its group's kernels."""
    per_channel = kernels // channels
    group = per_core_syn // per_channel
    if group == 0:
        raise ResourceError(f"layer {name!r} cannot be mapped: one output channel's shared conv kernels hold "
                            f"{per_channel} weights, a {where} core stores {per_core_syn}")
    plane = neurons // channels
    per_group = math.ceil(group * plane / per_core_neurons)
    cores = math.ceil(channels / group) * per_group
    return LayerResources(name, neurons, fan_in, axons, connections, cores * group * per_channel, cores,
                          min(per_core_neurons, group * plane))
