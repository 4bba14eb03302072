"""Turn a torch model into a NIR graph with the ANN's structure: torch.fx tracing, batch norm folded.

ReLUs become IF neurons (reset by subtraction unless `reset="zero"`) with placeholder thresholds;
`pipeline.conversion.normalize` sets the real scales. Residual adds become fan-in edges, the classifier ends in an
integrate-only `I` node.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import nir
import numpy as np
import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from backends.graph import analyse
from backends.nirext import graph_metadata, neuron_metadata
from pipeline.conversion.activations import SpikingActivation
from pipeline.errors import ConversionError, UnsupportedLayer

SUPPORTED_MODULES = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.Flatten, nn.Identity, nn.Dropout, SpikingActivation,
)
_ADD_FUNCTIONS = (operator.add, torch.add)
_RELU_FUNCTIONS = (torch.relu, torch.nn.functional.relu)
_FLATTEN_FUNCTIONS = (torch.flatten,)
_RESHAPE_METHODS = ("view", "reshape", "flatten")


def supported_layers() -> str:
    names = [m.__name__ for m in SUPPORTED_MODULES] + ["residual add (+)", "torch.relu", "torch.flatten", "x.view(N, -1)"]
    return ", ".join(names)


@dataclass
class TracedGraph:
    """The NIR graph of a traced model and, per IF node, the fx node whose output is its ANN activation."""

    graph: nir.NIRGraph
    activations: dict[str, str] = field(default_factory=dict)
    module: torch.fx.GraphModule | None = None
    neuron_modules: dict[str, nn.Module] = field(default_factory=dict)

    def module_scales(self, cls: type, method: str) -> dict[str, float]:
        """`scale()` of every IF node's activation module, each of which must be a `cls` (the activation
        `method` trains in place of ReLU); a ConversionError names the first that is not."""
        scales = {}
        for name, node in self.graph.nodes.items():
            if not isinstance(node, nir.IF):
                continue
            mod = self.neuron_modules.get(name)
            if not isinstance(mod, cls):
                raise ConversionError(f"{method}: activation {name!r} is not a {cls.__name__}; prepare the model "
                                      "with this method's training step first (pipeline.conversion.registry.prepare)")
            scales[name] = float(mod.scale())
        return scales


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _shape(node: torch.fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None:
        raise ConversionError(f"no shape known for {node.name!r}; the model's output must be a single tensor")
    return tuple(int(d) for d in meta.shape[1:])


class _Builder:
    """Walks the fx graph once, emitting NIR nodes and edges; each fx value maps to the NIR nodes summing into it."""

    def __init__(self, gm: torch.fx.GraphModule, reset: str = "subtract"):
        self.gm = gm
        self.reset = reset
        self.modules = dict(gm.named_modules())
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.sources: dict[str, list[str]] = {}
        self.activations: dict[str, str] = {}
        self.neuron_modules: dict[str, nn.Module] = {}
        self.weighted_users: dict[str, int] = {}

    def emit(self, name: str, node: nir.NIRNode, inputs: list[str]) -> list[str]:
        self.nodes[name] = node
        self.edges.extend((src, name) for src in inputs)
        return [name]

    def inputs_of(self, fx_node: torch.fx.Node) -> list[str]:
        arg = fx_node.args[0]
        if not isinstance(arg, torch.fx.Node):
            raise ConversionError(f"{fx_node.name!r}: first argument is not a tensor")
        return self.sources[arg.name]

    def build(self) -> nir.NIRGraph:
        for fx_node in self.gm.graph.nodes:
            self.sources[fx_node.name] = self.visit(fx_node)
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, type_check=False)

    def visit(self, n: torch.fx.Node) -> list[str]:
        if n.op == "placeholder":
            return self.emit("input", nir.Input(input_type={"input": np.array(_shape(n))}), [])
        if n.op == "output":
            return self.output(n)
        if n.op == "call_module":
            return self.module(n, self.modules[n.target])
        if n.op == "call_function":
            return self.function(n)
        if n.op == "call_method":
            return self.method(n)
        if n.op == "get_attr":
            raise UnsupportedLayer(f"{n.name!r}: the model reads parameter {n.target!r} directly in forward; "
                                   f"only these layers are supported: {supported_layers()}")
        raise UnsupportedLayer(f"{n.name!r}: fx operation {n.op!r} is not supported")

    def neuron(self, n: torch.fx.Node) -> list[str]:
        shape = _shape(n)
        ones = np.ones(shape, dtype=np.float32)
        self.activations[n.name] = n.name
        return self.emit(n.name, nir.IF(r=ones, v_threshold=ones.copy(), v_reset=np.zeros(shape, np.float32),
                                        metadata=neuron_metadata(self.reset)), self.inputs_of(n))

    def module(self, n: torch.fx.Node, mod: nn.Module) -> list[str]:
        src = self.inputs_of(n) if n.args else []
        if isinstance(mod, nn.Conv2d):
            if mod.padding_mode != "zeros":
                raise UnsupportedLayer(f"{n.target!r}: Conv2d padding_mode={mod.padding_mode!r}; only 'zeros' is supported")
            in_shape = _shape(n.args[0])
            bias = _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_channels, np.float32)
            node = nir.Conv2d(input_shape=in_shape[1:], weight=_np(mod.weight), stride=mod.stride,
                              padding=mod.padding, dilation=mod.dilation, groups=mod.groups, bias=bias)
            return self.emit(n.name, node, src)
        if isinstance(mod, nn.Linear):
            bias = _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_features, np.float32)
            return self.emit(n.name, nir.Affine(weight=_np(mod.weight), bias=bias), src)
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self.fold_batchnorm(n, mod)
        if isinstance(mod, (nn.ReLU, SpikingActivation)):
            self.neuron_modules[n.name] = mod
            return self.neuron(n)
        if isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return self.avgpool(n, mod, src)
        if isinstance(mod, nn.Flatten):
            return self.flatten(n, src, mod.start_dim, mod.end_dim)
        if isinstance(mod, (nn.Identity, nn.Dropout)):
            return src
        if isinstance(mod, nn.MaxPool2d):
            raise UnsupportedLayer(
                f"{n.target!r} (MaxPool2d): max pooling has no faithful rate-coded equivalent in the baseline "
                "conversion; build the model with average pooling instead (e.g. build_model(..., pool='avg'))")
        raise UnsupportedLayer(f"{n.target!r} ({type(mod).__name__}) is not supported; supported layers: "
                               f"{supported_layers()}")

    def fold_batchnorm(self, n: torch.fx.Node, bn: nn.Module) -> list[str]:
        """Fold batch norm into the conv/linear before it: W' = W g/s, b' = (b - mu) g/s + beta, s = sqrt(var+eps)."""
        prev = n.args[0]
        target = self.sources.get(prev.name, [])
        layer = self.nodes.get(target[0]) if len(target) == 1 else None
        if not isinstance(layer, (nir.Conv2d, nir.Affine)) or len(prev.users) != 1:
            raise ConversionError(f"{n.target!r}: batch norm must directly follow a Conv2d or Linear used only by it, "
                                  "so that it can be folded into that layer's weights")
        scale = _np(bn.weight / torch.sqrt(bn.running_var + bn.eps)) if bn.affine else \
            _np(1.0 / torch.sqrt(bn.running_var + bn.eps))
        shift = _np(bn.bias) if bn.affine else np.zeros_like(scale)
        w_shape = (-1,) + (1,) * (layer.weight.ndim - 1)
        layer.weight = (layer.weight * scale.reshape(w_shape)).astype(np.float32)
        layer.bias = ((layer.bias - _np(bn.running_mean)) * scale + shift).astype(np.float32)
        return target

    def avgpool(self, n, mod, src) -> list[str]:
        c, h, w = _shape(n.args[0])
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            oh, ow = _shape(n)[1:]
            if h % oh or w % ow:
                raise UnsupportedLayer(f"{n.target!r}: AdaptiveAvgPool2d from {h}x{w} to {oh}x{ow} is not a plain "
                                       "average pooling (sizes must divide)")
            kernel, stride, padding = (h // oh, w // ow), (h // oh, w // ow), (0, 0)
        else:
            if mod.ceil_mode or not mod.count_include_pad or mod.divisor_override:
                raise UnsupportedLayer(f"{n.target!r}: AvgPool2d with ceil_mode, count_include_pad=False or "
                                       "divisor_override is not supported")
            kernel, stride, padding = (np.broadcast_to(np.asarray(v), 2) for v in (mod.kernel_size, mod.stride or mod.kernel_size, mod.padding))
        node = nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
        return self.emit(n.name, node, src)

    def flatten(self, n, src, start_dim: int, end_dim: int) -> list[str]:
        in_shape = _shape(n.args[0])
        if start_dim not in (1, -len(in_shape) - 1) or end_dim != -1:
            raise UnsupportedLayer(f"{n.name!r}: only flattening every non-batch dimension is supported")
        return self.emit(n.name, nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1), src)

    def function(self, n: torch.fx.Node) -> list[str]:
        if n.target in _ADD_FUNCTIONS:
            operands = [a for a in n.args if isinstance(a, torch.fx.Node)]
            if len(operands) != 2 or len(n.args) != 2 or n.kwargs:
                raise UnsupportedLayer(f"{n.name!r}: only the sum of two tensors (a residual add) is supported")
            return [s for a in operands for s in self.sources[a.name]]
        if n.target in _RELU_FUNCTIONS:
            return self.neuron(n)
        if n.target in _FLATTEN_FUNCTIONS:
            start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
            end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
            return self.flatten(n, self.inputs_of(n), start, end)
        raise UnsupportedLayer(f"{n.name!r}: function {getattr(n.target, '__name__', n.target)} is not supported; "
                               f"supported layers: {supported_layers()}")

    def method(self, n: torch.fx.Node) -> list[str]:
        if n.target == "size":
            return []
        if n.target in _RESHAPE_METHODS and len(_shape(n)) == 1:
            return self.flatten(n, self.inputs_of(n), 1, -1)
        raise UnsupportedLayer(f"{n.name!r}: tensor method .{n.target}() is not supported; "
                               f"supported layers: {supported_layers()}")

    def output(self, n: torch.fx.Node) -> list[str]:
        arg = n.args[0]
        if not isinstance(arg, torch.fx.Node):
            raise ConversionError("the model must return a single tensor of class scores")
        src = self.sources[arg.name]
        shape = _shape(arg)
        if not all(isinstance(self.nodes[s], nir.IF) for s in src):
            ones = np.ones(shape, dtype=np.float32)
            src = self.emit("integrator", nir.I(r=ones), src)
        return self.emit("output", nir.Output(output_type={"output": np.array(shape)}), src)


class _Tracer(torch.fx.Tracer):
    """Keeps spikeport's trainable activations as single call_module nodes (they become IF layers)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SpikingActivation) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, input_shape: tuple[int, ...], method: str = "", source: str = "",
          reset: str = "subtract") -> TracedGraph:
    """NIR graph of `model` (eval mode) for inputs of `input_shape` (no batch), BN folded, thresholds 1, IF
    nodes with extension reset `reset` ("subtract": v -= threshold on v >= threshold; "zero": core NIR)."""
    model = model.eval()
    bad = next(((name, m) for name, m in model.named_modules()
                if not list(m.children()) and not isinstance(m, SUPPORTED_MODULES) and not isinstance(m, nn.MaxPool2d)), None)
    if bad is not None:
        name, mod = bad
        raise UnsupportedLayer(f"layer {name!r} ({type(mod).__name__}) is not supported; supported layers: "
                               f"{supported_layers()}")
    try:
        gm = torch.fx.GraphModule(model, _Tracer().trace(model))
    except Exception as err:  # fx raises many types for untraceable code
        raise ConversionError(f"torch.fx cannot trace the model ({type(err).__name__}: {err}); the converter "
                              "needs a model whose forward has no data-dependent control flow") from None
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    builder = _Builder(gm, reset)
    graph = builder.build()
    graph.metadata = graph_metadata(method, source=source)
    analyse(graph)
    return TracedGraph(graph=graph, activations=builder.activations, module=gm, neuron_modules=builder.neuron_modules)
