"""The network the spiking trainers share: a chain of blocks (conv/linear, batch norm, max pool, neuron) ending
in a classifier, cut out of a zoo or user model, and its export of trained weights and thresholds to NIR.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends.nirext import graph_metadata, neuron_metadata
from pipeline.conversion.activations import SpikingActivation
from pipeline.errors import ConversionError, SpikeportError, UnsupportedLayer
from pipeline.spiking.surrogate import Neuron
from pipeline.conversion.trace import trace

PASSTHROUGH = (nn.Flatten, nn.AvgPool2d, nn.Identity, nn.Dropout)
DT = 1e-3  # NIR LIF time step written into exported graphs (docs/nir-extensions.md)


class Block(nn.Module):
    """`pre` (flatten / average pooling), a weighted layer, optional batch norm, optional max pooling, and a
    spiking neuron unless it is the classifier. Max pooling sits before the neuron: on the SNN branch it picks
    the maximal convolution output at each step as the membrane input (SNN2ANN Sec. IV.B.2); on the ANN branch
    max(relu(x)) = relu(max(x)), so the ANN computes what the original conv-BN-ReLU-pool computed."""

    def __init__(self, pre: list[nn.Module], layer: nn.Module):
        super().__init__()
        self.pre = nn.Sequential(*pre)
        self.layer = layer
        self.bn: nn.Module | None = None
        self.pool: nn.MaxPool2d | None = None
        self.spiking = False

    def weighted(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The block's layer applied with `weight` and `bias` in place of its own."""
        if isinstance(self.layer, nn.Conv2d):
            m = self.layer
            return F.conv2d(x, weight, bias, m.stride, m.padding, m.dilation, m.groups)
        return F.linear(x, weight, bias)

    def after(self, x: torch.Tensor, bn: nn.Module | None = None) -> torch.Tensor:
        """Batch norm (`bn`, default the block's own) then max pooling, on a weighted layer's output."""
        bn = self.bn if bn is None else bn
        if bn is not None:
            x = bn(x)
        return self.pool(x) if self.pool is not None else x


def chain_blocks(model: nn.Module, input_shape) -> nn.ModuleList:
    """The blocks of `model` (copied), which must compute a plain chain of its leaf modules in order."""
    leaves = [m for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            same = torch.allclose(model(x), nn.Sequential(*leaves)(x), atol=1e-5)
        except RuntimeError:
            same = False
    model.train(was_training)
    if not same:
        raise SpikeportError(f"{type(model).__name__} is not a plain chain of layers (residual adds or a custom "
                             "forward); spiking training supports chain models such as digits-cnn and vgg16")
    blocks, pre = [], []
    for m in copy.deepcopy(leaves):
        cur = blocks[-1] if blocks else None
        if isinstance(m, PASSTHROUGH):
            pre.append(m)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            blocks.append(Block(pre, m))
            pre = []
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and cur is not None and not pre and cur.bn is None \
                and not cur.spiking:
            cur.bn = m
        elif isinstance(m, nn.ReLU) and cur is not None and not pre and not cur.spiking:
            cur.spiking = True
        elif isinstance(m, nn.MaxPool2d) and cur is not None and cur.spiking and not pre and cur.pool is None:
            cur.pool = m
        else:
            raise UnsupportedLayer(f"{type(m).__name__} at this place is not supported by spiking training; "
                                   "blocks are conv/linear, optional batch norm, ReLU, optional max pooling")
    if not blocks or blocks[-1].spiking or pre or not isinstance(blocks[-1].layer, nn.Linear):
        raise SpikeportError("spiking training needs a model ending in a Linear classifier with no ReLU after it")
    return nn.ModuleList(blocks)


def repeat_steps(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct encoding: the analog input at each of T steps, as a (T*B, ...) batch."""
    return x.unsqueeze(0).expand(T, *x.shape).reshape(T * x.shape[0], *x.shape[1:])


def run_ann(blocks: nn.ModuleList, x: torch.Tensor, weight_of, bn_of, taps=()) -> tuple[torch.Tensor, dict]:
    """The ReLU ANN: logits and the activations after the blocks listed in `taps`. `weight_of(i)` gives block
    i's (weight, bias), `bn_of(i)` its batch norm (or None)."""
    out = {}
    for i, block in enumerate(blocks):
        x = block.after(block.weighted(block.pre(x), *weight_of(i)), bn_of(i))
        if block.spiking:
            x = torch.relu(x)
        if i in taps:
            out[i] = x
    return x, out


def run_snn(blocks: nn.ModuleList, x: torch.Tensor, T: int, neuron: Neuron, weight_of, bn_of, threshold_of=None,
            taps=()) -> tuple[torch.Tensor, dict]:
    """The SNN over T steps (direct encoding, all steps as one (T*B) batch through each layer): the classifier's
    output averaged over the steps (integrate-only, Joint A-SNN Eq. 3) and the firing rates after `taps`."""
    batch = x.shape[0]
    s, out = repeat_steps(x, T), {}
    for i, block in enumerate(blocks):
        c = block.after(block.weighted(block.pre(s), *weight_of(i)), bn_of(i))
        c = c.reshape(T, batch, *c.shape[1:])
        if not block.spiking:
            return c.mean(0), out
        o = neuron.run(c, None if threshold_of is None else threshold_of(i))
        if i in taps:
            out[i] = o.mean(0)
        s = o.reshape(T * batch, *o.shape[2:])
    raise AssertionError("chain_blocks guarantees a final classifier")


class _Threshold(SpikingActivation):
    """Marks a neuron for `pipeline.conversion.trace`; carries its firing threshold into the export."""

    def __init__(self, v_threshold: torch.Tensor):
        super().__init__()
        self.register_buffer("v_threshold", v_threshold.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def scale(self) -> torch.Tensor:
        return self.v_threshold


def export_blocks(blocks: nn.ModuleList, input_shape, *, weights: list[tuple[torch.Tensor, torch.Tensor | None]],
                  bns: list[nn.Module | None], thresholds: list[torch.Tensor], neuron: Neuron, bias_steps: int,
                  method: str, source: str = "") -> nir.NIRGraph:
    """NIR graph of the trained SNN through `pipeline.conversion.trace` (batch norm folded with its running statistics).

    Each weighted layer gets `weights[i]`, its bias divided by `bias_steps` (SNN2ANN Eq. 20 spreads the bias over
    T steps; 1 elsewhere); each neuron becomes core NIR's IF or LIF with reset to zero and threshold
    `thresholds[i]` (the `Neuron.run` dynamics: u = k u + c, fire on u > V_th). The classifier feeds an `I` node.
    """
    if any(b.pool is not None for b in blocks):
        raise UnsupportedLayer(f"{method}: NIR 1.0 has no spiking max pooling that spikeport's backends run; the "
                               "network trains with max pooling but cannot be exported; use a model without "
                               "nn.MaxPool2d (e.g. digits-cnn or vgg16 --pool avg) to export")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, block in enumerate(blocks):
        for j, m in enumerate(block.pre):
            layers[f"pre{i}_{j}"] = copy.deepcopy(m)
        layer = copy.deepcopy(block.layer)
        w, b = weights[i]
        with torch.no_grad():
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b / bias_steps)
        layers[f"layer{i}"] = layer
        if bns[i] is not None:
            bn = copy.deepcopy(bns[i]).eval()
            with torch.no_grad():  # folded bias (b - mu) g/s + beta, spread over bias_steps steps
                bn.running_mean.div_(bias_steps)
                if bn.affine:
                    bn.bias.div_(bias_steps)
            layers[f"bn{i}"] = bn
        if block.spiking:
            layers[f"spike{i}"] = _Threshold(thresholds[i])
    traced = trace(nn.Sequential(layers), tuple(input_shape), method=method, source=source)
    nodes = dict(traced.graph.nodes)
    for name, node in traced.graph.nodes.items():
        if not isinstance(node, nir.IF):
            continue
        shape = np.shape(node.v_threshold)
        th = np.broadcast_to(traced.neuron_modules[name].v_threshold.cpu().numpy(), shape).astype(np.float32)
        zeros = np.zeros(shape, np.float32)
        if neuron.kind == "if":
            nodes[name] = nir.IF(r=np.ones(shape, np.float32), v_threshold=th, v_reset=zeros,
                                 metadata=neuron_metadata("zero"))
        else:  # v += dt/tau (0 - v + r x) with dt/tau = 1 - decay, r = 1/(1 - decay): v = decay v + x
            k = 1.0 - neuron.decay
            nodes[name] = nir.LIF(tau=np.full(shape, DT / k, np.float32), r=np.full(shape, 1.0 / k, np.float32),
                                  v_leak=zeros, v_threshold=th, v_reset=zeros, metadata=neuron_metadata("zero"))
    return nir.NIRGraph(nodes=nodes, edges=list(traced.graph.edges),
                        metadata=graph_metadata(method, source=source, dt=DT), type_check=False)

