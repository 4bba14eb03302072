"""Weight normalization of a traced NIR graph (Rueckauer et al. 2017, Eq. in DNISNM Sec. 3.1).

Every weighted layer between IF layers a and b becomes W' = W * lambda_a / lambda_b, b' = b / lambda_b,
thresholds stay 1; an identity residual edge from a to b gets a Scale node lambda_a / lambda_b.
"""
from __future__ import annotations

import nir
import numpy as np

from backends.graph import WEIGHTED_TYPES as WEIGHTED, analyse
from pipeline.errors import ConversionError

PASSTHROUGH = (nir.Flatten, nir.AvgPool2d, nir.SumPool2d)


def _scale_of(node_name: str, nodes: dict, scales: dict[str, float]) -> float | None:
    node = nodes[node_name]
    if isinstance(node, nir.IF):
        return scales[node_name]
    if isinstance(node, (nir.Input, nir.I, nir.Output)):
        return 1.0
    return None


def _neighbour_scale(name: str, links: dict, nodes: dict, scales) -> float:
    """Scale of the single neuron (Input, integrator, Output) reached from `name` along `links`
    (predecessors or successors), passing through pooling and flattening only."""
    cur = name
    while True:
        if len(links[cur]) != 1:
            raise ConversionError(f"node {cur!r} has {len(links[cur])} neighbours on the way from the weighted "
                                  f"layer {name!r} to a neuron; expected one")
        cur = links[cur][0]
        scale = _scale_of(cur, nodes, scales)
        if scale is not None:
            return scale
        if not isinstance(nodes[cur], PASSTHROUGH):
            raise ConversionError(f"weighted layers {name!r} and {cur!r} follow each other with no neuron between")


def normalize(graph: nir.NIRGraph, scales: dict[str, float]) -> nir.NIRGraph:
    """A new graph with weights balanced to `scales` (one float per IF node); `graph` is left unchanged."""
    missing = [n for n, node in graph.nodes.items() if isinstance(node, nir.IF) and n not in scales]
    if missing:
        raise ConversionError(f"no activation scale for IF node(s) {missing}")
    view = analyse(graph)
    preds = {n: list(view.preds[n]) for n in view.order}
    succs = {n: [b for a, b in graph.edges if a == n] for n in view.order}
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    for name in view.order:
        node = nodes[name]
        if isinstance(node, WEIGHTED):
            lam_in = _neighbour_scale(name, preds, nodes, scales)
            lam_out = _neighbour_scale(name, succs, nodes, scales)
            nodes[name] = _rescaled(node, lam_in / lam_out, 1.0 / lam_out)
    for name in view.order:
        lam_out = _scale_of(name, nodes, scales)
        if lam_out is None or len(preds[name]) < 2:
            continue
        for p in preds[name]:
            origin = _origin(p, preds, nodes)
            if isinstance(nodes[origin], WEIGHTED):
                continue
            scale_name = f"{p}_to_{name}_scale"
            ratio = _scale_of(origin, nodes, scales) / lam_out
            nodes[scale_name] = nir.Scale(scale=np.full(view.shape(p), ratio, dtype=np.float32))
            edges.remove((p, name))
            edges += [(p, scale_name), (scale_name, name)]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=False)


def _origin(name: str, preds: dict, nodes: dict) -> str:
    """The node that `name` passes on unchanged except for pooling and flattening (itself if none)."""
    cur = name
    while isinstance(nodes[cur], PASSTHROUGH):
        cur = preds[cur][0]
    return cur


def _rescaled(node, w_factor: float, b_factor: float):
    w = (np.asarray(node.weight) * w_factor).astype(np.float32)
    if isinstance(node, nir.Conv2d):
        return nir.Conv2d(input_shape=node.input_shape, weight=w, stride=node.stride, padding=node.padding,
                          dilation=node.dilation, groups=node.groups,
                          bias=(np.asarray(node.bias) * b_factor).astype(np.float32), metadata=node.metadata)
    if isinstance(node, nir.Affine):
        return nir.Affine(weight=w, bias=(np.asarray(node.bias) * b_factor).astype(np.float32), metadata=node.metadata)
    return nir.Linear(weight=w, metadata=node.metadata)
