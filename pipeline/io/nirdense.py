"""A NIR graph with every linear node (Conv2d, pooling, Flatten, Scale, Linear) as an Affine map of flattened
vectors, chains of them merged into one: the form for an importer that knows dense layers only (rockpool 3.1.0).

Each map is computed by the reference backend's own lowering of the node (`backends.reference.linear_map`), so
it means what the node means there; neuron parameters are flattened in C-order with the tensors.
"""
from __future__ import annotations

import copy
import dataclasses

import nir
import numpy as np

from backends.graph import analyse
from backends.nirext import KEY, NEURON_TYPES, node_shape
from backends.reference import LINEAR_TYPES, linear_map
from pipeline.errors import SpikeportError


def _flat_neuron(node: nir.NIRNode) -> nir.NIRNode:
    """`node` with every per-neuron array (and a `v_init` in its metadata) flattened."""
    shape = node_shape(node)
    flat = copy.copy(node)
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        if isinstance(value, np.ndarray) and value.shape == shape:
            setattr(flat, field.name, value.reshape(-1))
    meta = (node.metadata or {}).get(KEY)
    if meta is not None and meta.get("v_init") is not None:
        flat.metadata = {**node.metadata, KEY: {**meta, "v_init": np.asarray(meta["v_init"]).reshape(-1)}}
    return flat


def _merge_chains(nodes: dict, edges: list) -> None:
    """Compose every Affine whose only successor is an Affine with that one input (in place)."""
    while True:
        pairs = [(a, b) for a, b in edges if isinstance(nodes[a], nir.Affine) and isinstance(nodes[b], nir.Affine)
                 and [e for e in edges if e[0] == a] == [(a, b)] and [e for e in edges if e[1] == b] == [(a, b)]]
        if not pairs:
            return
        a, b = pairs[0]
        first, second = nodes.pop(a), nodes[b]
        w2 = np.asarray(second.weight, np.float64)
        nodes[b] = nir.Affine(weight=(w2 @ np.asarray(first.weight, np.float64)).astype(np.float32),
                              bias=(w2 @ np.asarray(first.bias, np.float64) + second.bias).astype(np.float32))
        edges[:] = [(x, b) if y == a else (x, y) for x, y in edges if (x, y) != (a, b)]


def dense_graph(graph: nir.NIRGraph) -> nir.NIRGraph:
    """`graph` with flat tensors: Input/Output of size C*H*W, linear nodes as merged Affine maps, neurons
    flattened. SpikeportError naming the node for a linear node with fan-in or a node type without a flat form."""
    view = analyse(graph)
    nodes: dict[str, nir.NIRNode] = {}
    for name in view.order:
        node, size = view.node(name), int(np.prod(view.shape(name)))
        if isinstance(node, nir.Input):
            nodes[name] = nir.Input(input_type={"input": np.array([size])})
        elif isinstance(node, nir.Output):
            nodes[name] = nir.Output(output_type={"output": np.array([size])})
        elif isinstance(node, LINEAR_TYPES):
            if len(view.preds[name]) != 1:
                raise SpikeportError(f"node {name!r} ({type(node).__name__}): a linear node with several inputs has "
                                     "no dense form here")
            matrix, bias = linear_map(view, name)
            nodes[name] = nir.Affine(weight=matrix.astype(np.float32), bias=bias.astype(np.float32))
        elif isinstance(node, NEURON_TYPES):
            nodes[name] = _flat_neuron(node)
        else:
            raise SpikeportError(f"node {name!r} ({type(node).__name__}) has no dense form")
    edges = [tuple(e) for e in view.graph.edges]
    _merge_chains(nodes, edges)
    out = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata=dict(graph.metadata or {}))
    analyse(out)
    return out
