"""Structural checks and traversal of a NIR graph: node order, predecessors, shapes along edges.

Backends call `analyse` before running; it rejects unknown node types, dangling edges, cycles, shape
mismatches, non-finite parameters and non-positive thresholds/time constants with a message naming the node.
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from backends.nirext import LAVA_CUBA, ExtensionError, NEURON_TYPES, graph_info, neuron_semantics, node_shape


# Every node type spikeport's IR uses; a backend runs all or a subset of them.
KNOWN_TYPES = (
    nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d,
    nir.Flatten, nir.Scale, nir.IF, nir.LIF, nir.CubaLIF, nir.I, nir.LI, nir.Delay,
)

# Nodes with synaptic weights (the ones that cost synaptic operations).
WEIGHTED_TYPES = (nir.Affine, nir.Linear, nir.Conv2d)


# Numeric parameters a node may carry; all must be finite, and those in _POSITIVE strictly positive.
_PARAMETERS = ("weight", "bias", "r", "v_threshold", "v_reset", "v_leak", "tau", "tau_mem", "tau_syn", "w_in",
               "scale", "delay")
_POSITIVE = {"v_threshold": "threshold", "tau": "time constant", "tau_mem": "time constant",
             "tau_syn": "time constant"}
_FIX = "fix the tool that wrote the graph, or re-export it with `spikeport convert`"


class GraphError(ValueError):
    """A NIR graph is malformed; the message names the node or edge."""


def check_parameters(name: str, node: nir.NIRNode) -> None:
    """Reject a node whose parameters are not numeric, not finite, inconsistent in shape, or (thresholds,
    time constants) not > 0, naming the node, the parameter and the fix."""
    kind = type(node).__name__
    for attr in _PARAMETERS:
        if not hasattr(node, attr) or getattr(node, attr) is None:
            continue
        raw = np.asarray(getattr(node, attr))
        if raw.dtype.kind not in "biuf":
            raise GraphError(f"node {name!r} ({kind}): parameter {attr} is not real-valued ({raw.dtype}); {_FIX}")
        value = raw.astype(np.float64)
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            raise GraphError(f"node {name!r} ({kind}): parameter {attr} has {bad} non-finite (NaN/Inf) value(s); "
                             f"{_FIX} from a model with finite weights")
        if attr == "delay" and np.any(value < 0):
            raise GraphError(f"node {name!r} ({kind}): delays must be >= 0, found {float(value.min()):g}; {_FIX}")
        if attr in _POSITIVE and np.any(value <= 0):
            raise GraphError(f"node {name!r} ({kind}): every {_POSITIVE[attr]} ({attr}) must be > 0, found "
                             f"{float(value.min()):g}; {_FIX}")
    if isinstance(node, NEURON_TYPES):
        own = node_shape(node)
        for attr in ("r", "v_threshold", "v_reset", "v_leak", "tau", "tau_mem", "tau_syn"):
            shape = np.shape(getattr(node, attr, None))
            if getattr(node, attr, None) is not None and shape not in (own, ()):
                raise GraphError(f"node {name!r} ({kind}): parameter {attr} has shape {shape}, the node has {own}; "
                                 f"{_FIX}")
    if isinstance(node, (nir.Affine, nir.Linear)) and np.ndim(node.weight) != 2:
        raise GraphError(f"node {name!r} ({kind}): weight must be 2-D (out, in), has shape {np.shape(node.weight)}")
    if isinstance(node, nir.Affine) and np.shape(node.bias) not in ((np.shape(node.weight)[0],), ()):
        raise GraphError(f"node {name!r} (Affine): bias has shape {np.shape(node.bias)}, weight has "
                         f"{np.shape(node.weight)[0]} outputs; {_FIX}")
    if isinstance(node, nir.Conv2d):
        if np.ndim(node.weight) != 4:
            raise GraphError(f"node {name!r} (Conv2d): weight must be 4-D (out, in, kh, kw), has shape "
                             f"{np.shape(node.weight)}")
        if np.shape(node.bias) not in ((np.shape(node.weight)[0],), ()):
            raise GraphError(f"node {name!r} (Conv2d): bias has shape {np.shape(node.bias)}, weight has "
                             f"{np.shape(node.weight)[0]} output channels; {_FIX}")


@dataclass(frozen=True)
class GraphView:
    """A checked graph: nodes in execution order, predecessors, input and output node names."""

    graph: nir.NIRGraph
    order: tuple[str, ...]
    preds: dict[str, tuple[str, ...]]
    input: str
    output: str
    dt: float

    def shape(self, name: str) -> tuple[int, ...]:
        """Output shape of node `name`, without the batch dimension."""
        node = self.graph.nodes[name]
        out = node.output_type.get("output") if node.output_type else None
        if out is None:
            raise GraphError(f"node {name!r} ({type(node).__name__}) has no known output shape")
        return tuple(int(d) for d in np.atleast_1d(out))

    def node(self, name: str) -> nir.NIRNode:
        return self.graph.nodes[name]

    def succs(self, name: str) -> tuple[str, ...]:
        return tuple(b for b in self.order if name in self.preds[b])

    def delay_steps(self, name: str) -> np.ndarray:
        """The whole steps of Delay node `name` per element (its delays in seconds over the graph's dt)."""
        steps = np.asarray(self.node(name).delay, np.float64) / self.dt
        if np.any(np.abs(steps - np.rint(steps)) > 1e-6 * np.maximum(1, steps)):
            raise GraphError(f"node {name!r} (Delay): delays are not whole multiples of the graph's dt = {self.dt:g}")
        return np.broadcast_to(np.rint(steps), self.shape(name)).astype(np.int64)


def toposort(nodes, edges) -> list[str]:
    """Node names in an order where every edge goes forward; GraphError names a cycle."""
    indeg = {n: 0 for n in nodes}
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        out[a].append(b)
        indeg[b] += 1
    ready = [n for n in nodes if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in out[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) != len(nodes):
        stuck = sorted(n for n in nodes if n not in order)
        raise GraphError(
            f"graph has a cycle through node(s) {stuck}; recurrent graphs are not supported "
            "(spikeport runs feed-forward graphs, with fan-in for residual adds)"
        )
    return order


def _pair(value) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(int)
    return int(arr[0]), int(arr[-1])


class _WindowError(GraphError):
    """A convolution or pooling node whose own parameters are invalid (not a shape mismatch along an edge)."""


def _window_out(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Output length of a sliding window, or a _WindowError for parameters torch refuses."""
    if kernel < 1 or stride < 1 or dilation < 1 or pad < 0:
        raise _WindowError(f"has kernel {kernel}, stride {stride}, dilation {dilation}, padding {pad}: kernel, stride "
                         "and dilation must be >= 1 and padding >= 0")
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise _WindowError(f"has a window of {dilation * (kernel - 1) + 1} (with padding {pad}) larger than its input "
                         f"size {size}")
    return out


def _conv_out(node: nir.Conv2d, c: int, h: int, w: int) -> tuple[int, ...]:
    """torch.nn.functional.conv2d output shape (NIR 1.0.8's own inference assumes a square kernel)."""
    kh, kw = node.weight.shape[2:]
    if int(node.weight.shape[1]) * int(node.groups) != c:
        raise GraphError(f"node Conv2d expects {int(node.weight.shape[1]) * int(node.groups)} input channels, gets {c}")
    (sh, sw), (dh, dw) = _pair(node.stride), _pair(node.dilation)
    if isinstance(node.padding, str):
        if node.padding == "same":
            return (node.weight.shape[0], h, w)
        ph = pw = 0
    else:
        ph, pw = _pair(node.padding)
    return (node.weight.shape[0], _window_out(h, kh, sh, ph, dh), _window_out(w, kw, sw, pw, dw))


def output_shape(node: nir.NIRNode, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of `node` for an input of `shape` (no batch), by docs/nir-extensions.md semantics."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        if shape != (node.weight.shape[1],):
            raise GraphError(f"expects input of shape ({node.weight.shape[1]},), gets {shape}")
        return (int(node.weight.shape[0]),)
    if isinstance(node, nir.Conv2d):
        if len(shape) != 3:
            raise GraphError(f"expects a (C, H, W) input, gets {shape}")
        return tuple(int(d) for d in _conv_out(node, *shape))
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        (kh, kw), (sh, sw), (ph, pw) = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        return (shape[0], _window_out(shape[1], kh, sh, ph), _window_out(shape[2], kw, sw, pw))
    if isinstance(node, nir.Flatten):
        declared = node.input_type.get("input")
        if declared is not None and tuple(np.atleast_1d(declared)) != shape:
            raise GraphError(f"declares input shape {tuple(np.atleast_1d(declared))}, gets {shape}")
        end = node.end_dim % len(shape)
        return shape[:node.start_dim] + (int(np.prod(shape[node.start_dim:end + 1])),) + shape[end + 1:]
    if isinstance(node, nir.Output):
        return shape
    if isinstance(node, nir.Delay):
        if np.shape(node.delay) not in (shape, ()):
            raise GraphError(f"has delays of shape {np.shape(node.delay)}, gets input of shape {shape}")
        return shape
    own = tuple(np.shape(node.scale)) if isinstance(node, nir.Scale) else node_shape(node)
    if own != shape and not (isinstance(node, nir.Scale) and own in ((), (1,))):
        raise GraphError(f"has parameters of shape {own}, gets input of shape {shape}")
    return shape


def _set_types(name: str, node: nir.NIRNode, in_types: list, preds: tuple[str, ...]) -> None:
    """Infer and store `node`'s input/output types, or raise a GraphError naming it."""
    if isinstance(node, nir.Input):
        declared = np.atleast_1d(np.asarray(node.input_type.get("input", ())))
        if declared.ndim != 1 or declared.dtype.kind not in "iu":
            raise GraphError(f"Input node {name!r} declares shape {declared.tolist()!r}, not a list of integers; {_FIX}")
        shape = tuple(int(d) for d in declared)
        if not shape or min(shape) < 1:
            raise GraphError(f"Input node {name!r} declares shape {shape}; every dimension must be >= 1")
        node.output_type = {"output": np.array(shape)}
        return
    shapes = {tuple(int(d) for d in np.atleast_1d(t)) for t in in_types}
    if len(shapes) > 1:
        raise GraphError(f"node {name!r} sums inputs of different shapes {sorted(shapes)} from {list(preds)}")
    shape = shapes.pop()
    try:
        out = output_shape(node, shape)
    except _WindowError as err:
        raise GraphError(f"node {name!r} ({type(node).__name__}) {err}; {_FIX}") from None
    except GraphError as err:
        raise GraphError(f"node {name!r} ({type(node).__name__}) {err} from {list(preds)}; the layer sizes "
                         f"do not chain: {_FIX}") from None
    node.input_type = {"input": np.array(shape)}
    node.output_type = {"output": np.array(out)}


def analyse(graph: nir.NIRGraph, supported: tuple[type, ...] = KNOWN_TYPES) -> GraphView:
    """Check `graph` for a backend that runs the node types `supported`; return its execution view."""
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    names = set(graph.nodes)
    for a, b in graph.edges:
        for end in (a, b):
            if end not in names:
                raise GraphError(f"edge ({a!r} -> {b!r}) names node {end!r}, which is not in the graph; "
                                 f"{_FIX}")
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise GraphError(f"node {name!r} is a nested NIRGraph; flatten subgraphs before running")
        if not isinstance(node, supported):
            allowed = ", ".join(sorted(t.__name__ for t in supported))
            raise GraphError(
                f"node {name!r} has type {type(node).__name__}, which this backend cannot run "
                f"(supported: {allowed})"
            )
        check_parameters(name, node)
        if isinstance(node, NEURON_TYPES):
            neuron_semantics(name, node, honours=(LAVA_CUBA,))   # validated here; each backend says what it runs
    order = toposort(list(graph.nodes), graph.edges)
    preds = {n: tuple(a for a, b in graph.edges if b == n) for n in order}
    inputs = [n for n in order if isinstance(graph.nodes[n], nir.Input)]
    outputs = [n for n in order if isinstance(graph.nodes[n], nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise GraphError(
            f"graph must have exactly one Input and one Output node, found inputs {inputs} "
            f"and outputs {outputs}"
        )
    for n in order:
        if n != inputs[0] and not preds[n]:
            raise GraphError(f"node {n!r} has no incoming edge (only the Input node may)")
    for n in order:
        try:
            _set_types(n, graph.nodes[n], [graph.nodes[p].output_type["output"] for p in preds[n]], preds[n])
        except GraphError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as err:
            raise GraphError(f"node {n!r} ({type(graph.nodes[n]).__name__}) has malformed attributes "
                             f"({type(err).__name__}: {err}); {_FIX}") from None
    try:
        dt = graph_info(graph)["dt"]
    except ExtensionError as err:
        raise GraphError(str(err)) from None
    return GraphView(graph=graph, order=tuple(order), preds=preds, input=inputs[0], output=outputs[0], dt=dt)
