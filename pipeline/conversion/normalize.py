"""Balance a traced NIR graph to activation scales lambda, layer-, channel- or neuron-wise.

Weight form (Rueckauer et al. 2017; DNISNM Sec. 3.1, Eq. 5): W' = W lambda_in / lambda_out, b' = b /
lambda_out, thresholds 1. Threshold form (DNISNM Alg. 1): threshold = lambda, spikes scaled by lambda.
"""
from __future__ import annotations

import nir
import numpy as np

from backends.graph import WEIGHTED_TYPES as WEIGHTED, analyse
from pipeline.errors import ConversionError

PASSTHROUGH = (nir.Flatten, nir.AvgPool2d, nir.SumPool2d)
FORMS = ("weights", "thresholds")


def _full(name: str, node: nir.IF, scale) -> np.ndarray:
    """`scale` (scalar, per channel (C,) / (C,1,1), or per neuron) broadcast to the node's shape."""
    shape = np.shape(node.v_threshold)
    lam = np.asarray(scale, dtype=np.float64)
    if lam.ndim == 1 and len(shape) == 3 and lam.shape[0] == shape[0]:
        lam = lam.reshape(-1, 1, 1)
    try:
        lam = np.broadcast_to(lam, shape).copy()
    except ValueError:
        raise ConversionError(f"scale for {name!r} has shape {np.shape(scale)}, node has {shape}") from None
    if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ConversionError(f"scale for {name!r} must be finite and positive")
    return lam


def _per_channel(name: str, lam: np.ndarray) -> np.ndarray:
    """One value per channel (conv layers) or per neuron (1-D layers); neuron-wise conv scales refused."""
    if lam.ndim != 3:
        return lam.reshape(-1)
    if not np.allclose(lam, lam[:, :1, :1]):
        raise ConversionError(f"{name!r} has neuron-wise scales, which cannot be folded into shared conv "
                              "weights; use the threshold form")
    return lam[:, 0, 0]


def _neighbour(name: str, links: dict, nodes: dict) -> tuple[str, list[str]]:
    """The neuron (or Input/I/Output) reached from weighted layer `name` along `links`, and the path to it."""
    cur, path = name, []
    while True:
        if len(links[cur]) != 1:
            raise ConversionError(f"node {cur!r} has {len(links[cur])} neighbours on the way from the weighted "
                                  f"layer {name!r} to a neuron; expected one")
        cur = links[cur][0]
        if isinstance(nodes[cur], (nir.IF, nir.Input, nir.I, nir.Output)):
            return cur, path
        if not isinstance(nodes[cur], PASSTHROUGH):
            raise ConversionError(f"weighted layers {name!r} and {cur!r} follow each other with no neuron between")
        path.append(cur)


def normalize(graph: nir.NIRGraph, scales: dict, form: str = "weights") -> nir.NIRGraph:
    """A new graph balanced to `scales` (per IF node: scalar, per-channel or per-neuron array)."""
    if form not in FORMS:
        raise ConversionError(f"form must be one of {FORMS}, got {form!r}")
    missing = [n for n, node in graph.nodes.items() if isinstance(node, nir.IF) and n not in scales]
    if missing:
        raise ConversionError(f"no activation scale for IF node(s) {missing}")
    view = analyse(graph)
    lam = {n: _full(n, node, scales[n]) for n, node in graph.nodes.items() if isinstance(node, nir.IF)}
    nodes, edges = dict(graph.nodes), list(graph.edges)
    if form == "thresholds":
        for name, value in lam.items():
            node = nodes[name]
            nodes[name] = nir.IF(r=node.r, v_threshold=value.astype(np.float32), v_reset=node.v_reset,
                                 metadata=node.metadata)
            _insert_after(name, f"{name}_amplitude", nir.Scale(scale=value.astype(np.float32)), nodes, edges)
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=False)
    preds = {n: list(view.preds[n]) for n in view.order}
    succs = {n: [b for a, b in graph.edges if a == n] for n in view.order}
    for name in view.order:
        if isinstance(nodes[name], WEIGHTED):
            src, path = _neighbour(name, preds, nodes)
            dst, _ = _neighbour(name, succs, nodes)
            lam_in = _input_scale(src, path, lam, view)
            lam_out = _per_channel(dst, lam[dst]) if dst in lam else np.ones(1)
            nodes[name] = _rescaled(nodes[name], lam_in, lam_out)
    for name in view.order:
        if name not in lam or len(preds[name]) < 2:
            continue
        for p in preds[name]:
            origin = _origin(p, preds, nodes)
            if isinstance(nodes[origin], WEIGHTED):
                continue
            if view.shape(origin) != view.shape(name):
                raise ConversionError(f"identity path {origin!r} -> {name!r} changes shape; cannot rescale it")
            ratio = (lam[origin] if origin in lam else 1.0) / lam[name]
            edges.remove((p, name))
            nodes[f"{p}_to_{name}_scale"] = nir.Scale(scale=np.asarray(ratio, np.float32))
            edges += [(p, f"{p}_to_{name}_scale"), (f"{p}_to_{name}_scale", name)]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=False)


def _input_scale(src: str, path: list[str], lam: dict, view) -> np.ndarray:
    """lambda of the weighted layer's inputs, in its input layout (flattened when a Flatten is on the path)."""
    if src not in lam:
        return np.ones(1)
    per = _per_channel(src, lam[src])
    flat = next((p for p in path if isinstance(view.node(p), nir.Flatten)), None)
    if flat is None or lam[src].ndim != 3:
        return per
    c, h, w = view.shape(view.preds[flat][0])
    return np.repeat(per, h * w)


def _insert_after(name: str, new: str, node: nir.NIRNode, nodes: dict, edges: list) -> None:
    outgoing = [e for e in edges if e[0] == name]
    for e in outgoing:
        edges.remove(e)
        edges.append((new, e[1]))
    nodes[new] = node
    edges.append((name, new))


def _origin(name: str, preds: dict, nodes: dict) -> str:
    """The node that `name` passes on unchanged except for pooling and flattening (itself if none)."""
    cur = name
    while isinstance(nodes[cur], PASSTHROUGH):
        cur = preds[cur][0]
    return cur


def _rescaled(node, lam_in: np.ndarray, lam_out: np.ndarray):
    """W'[o, i] = W[o, i] lam_in[i] / lam_out[o], b' = b / lam_out (lam of length 1 broadcasts)."""
    w = np.asarray(node.weight, dtype=np.float64)
    extra = (1,) * (w.ndim - 2)
    if isinstance(node, nir.Conv2d) and int(node.groups) != 1 and len(lam_in) > 1:
        raise ConversionError("channel-wise scales into a grouped convolution are not supported")
    w = w * lam_in.reshape(1, -1, *extra) / lam_out.reshape(-1, 1, *extra)
    w = w.astype(np.float32)
    if isinstance(node, nir.Conv2d):
        return nir.Conv2d(input_shape=node.input_shape, weight=w, stride=node.stride, padding=node.padding,
                          dilation=node.dilation, groups=node.groups,
                          bias=(np.asarray(node.bias) / lam_out).astype(np.float32), metadata=node.metadata)
    if isinstance(node, nir.Affine):
        return nir.Affine(weight=w, bias=(np.asarray(node.bias) / lam_out).astype(np.float32), metadata=node.metadata)
    return nir.Linear(weight=w, metadata=node.metadata)
