"""Export a NIR graph to lava-dl's netx HDF5 format (backends/netx/layout.py), where netx can express it.

Expressible: a chain Input [-> Scale] -> ([Flatten ->] Conv2d|Affine|Linear -> IF)* with an optional
Affine|Linear -> I readout before the Output; IF with core reset (to 0, v_reset = 0), any r and threshold
uniform per output channel, folded into integer weights. Everything else raises `Unsupported`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import nir
import numpy as np

from backends.graph import GraphError, GraphView, analyse
from backends.netx.layout import (ATTR, IF_DECAYS, MAX_BIAS, MAX_THRESHOLD, MAX_WEIGHT, NEVER_FIRES, write_str)
from backends.nirext import neuron_semantics
from backends.result import Unsupported

EXPORT_TYPES = (nir.Input, nir.Output, nir.Scale, nir.Flatten, nir.Conv2d, nir.Affine, nir.Linear, nir.IF, nir.I)


@dataclass
class Layer:
    """One netx layer: a synapse (conv or dense) and its CUBA neurons, in integer mantissas."""

    kind: str
    synapse: str
    neuron: str
    shape: tuple[int, ...]
    weight: np.ndarray
    bias: np.ndarray | None
    v_th_mant: int
    conv: dict = field(default_factory=dict)


@dataclass
class Plan:
    input_shape: tuple[int, ...]
    layers: list[Layer]
    input_scale: float
    output_scale: float
    approximations: list[str]


def _per_channel(name: str, values: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """`values` (node shape) as one number per output channel/neuron, or Unsupported if they vary inside one."""
    arr = np.broadcast_to(np.asarray(values, np.float64), shape)
    if len(shape) == 1:
        return arr.copy()
    flat = arr.reshape(shape[0], -1)
    if np.any(flat != flat[:, :1]):
        raise Unsupported(f"node {name!r}: {what} varies inside a channel; netx has one threshold per layer and "
                          "weights per channel, so it cannot be folded")
    return flat[:, 0].copy()


def _integral(x: np.ndarray) -> bool:
    return bool(np.allclose(x, np.round(x), rtol=0, atol=1e-6))


def _mantissas(W: np.ndarray, b: np.ndarray | None, preferred: float | None, readout: bool):
    """Integer weight/bias mantissas for real-valued `W`, `b` in units of 1/K, and K.

    K = `preferred` when that makes every mantissa an integer in range; otherwise the largest K keeping
    |W K| <= 127 and |b K| <= 4095 (and K <= 2**17 - 1 for a threshold), rounding to nearest.
    Returns (W_int, b_int, K, exact), exact when no mantissa had to be rounded.
    """
    def fits(K):
        wk = W * K
        bk = None if b is None else b * K
        ok = np.all(np.abs(wk) <= MAX_WEIGHT + 0.5) and (bk is None or np.all(np.abs(bk) <= MAX_BIAS + 0.5))
        return ok, wk, bk
    if preferred is not None and preferred >= 1:
        ok, wk, bk = fits(preferred)
        exact = _integral(wk) and (bk is None or _integral(bk))
        if ok and exact and (readout or preferred <= MAX_THRESHOLD):
            return np.round(wk).astype(np.int64), None if bk is None else np.round(bk).astype(np.int64), preferred, True
    limits = [MAX_WEIGHT / np.abs(W).max()] if np.abs(W).max() > 0 else []
    if b is not None and np.abs(b).max() > 0:
        limits.append(MAX_BIAS / np.abs(b).max())
    K = max(1, int(np.floor(min(limits + [MAX_THRESHOLD])))) if not readout else (min(limits) if limits else 1.0)
    _, wk, bk = fits(K)
    exact = _integral(wk) and (bk is None or _integral(bk))
    return np.round(wk).astype(np.int64), None if bk is None else np.round(bk).astype(np.int64), K, exact


def _neuron_gain(view: GraphView, name: str, gaps: list[str]) -> tuple[np.ndarray, float | None]:
    """Per output channel gain that folds the neuron into its weights (r/threshold for IF, r for the I
    readout), and the K under which the folded weights are integers when the graph came from netx."""
    node, shape = view.node(name), view.shape(name)
    if isinstance(node, nir.I):
        r = _per_channel(name, node.r, shape, "r")
        return r, float(1 / r[0]) if np.allclose(r, r[0]) and r[0] > 0 else None
    sem = neuron_semantics(name, node)
    if sem.signed:
        raise Unsupported(f"node {name!r}: reset 'signed-memory' — netx CUBA neurons send no negative spikes")
    if sem.reset == "subtract":
        gaps.append(f"node {name!r} (IF): reset 'subtract' exported as netx's reset to 0 after v > threshold "
                    "(the surplus v - threshold is lost at every spike)")
    elif not np.allclose(node.v_reset, 0):
        raise Unsupported(f"node {name!r} (IF): v_reset != 0 — netx CUBA neurons reset to 0")
    if sem.v_init is not None and np.any(sem.v_init != 0):
        gaps.append(f"node {name!r} (IF): v_init ignored — netx neurons start at v = 0")
    r = _per_channel(name, node.r, shape, "r")
    theta = _per_channel(name, node.v_threshold, shape, "v_threshold")
    if np.any(theta <= 0) or np.any(r <= 0):
        raise Unsupported(f"node {name!r} (IF): netx needs r > 0 and v_threshold > 0 to fold them into weights")
    gain = r / theta
    uniform = np.allclose(theta, theta[0]) and np.allclose(r, 1)
    return gain, float(theta[0]) if uniform and float(theta[0]).is_integer() else None


def plan(graph: nir.NIRGraph, input_scale: float = 1.0) -> Plan:
    """The netx layers for `graph` fed with inputs multiplied by `input_scale` (integers on the wire)."""
    try:
        view = analyse(graph, EXPORT_TYPES)
    except GraphError as err:
        raise Unsupported(f"netx export: {err} (netx has input, conv, dense and flatten layers only)") from None
    for n in view.order:
        if len(view.preds[n]) > 1 or len(view.succs(n)) > 1:
            raise Unsupported(f"netx export: node {n!r} has fan-in or fan-out; netx layers form a chain")
    chain = [n for n in view.order if n not in (view.input, view.output)]
    gaps: list[str] = []
    scale = 1.0 / float(input_scale)
    if chain and isinstance(view.node(chain[0]), nir.Scale):
        s = np.unique(np.asarray(view.node(chain[0]).scale, np.float64))
        if len(s) != 1:
            raise Unsupported(f"netx export: node {chain[0]!r} (Scale) is not uniform; netx inputs have one scale")
        scale *= float(s[0])
        chain = chain[1:]
    layers: list[Layer] = []
    output_scale = 1.0
    i = 0
    while i < len(chain):
        name, node = chain[i], view.node(chain[i])
        if isinstance(node, nir.Flatten):
            shape_in = view.shape(view.preds[name][0])
            if view.shape(name) != (int(np.prod(shape_in)),) or i + 1 == len(chain) \
                    or not isinstance(view.node(chain[i + 1]), (nir.Affine, nir.Linear)):
                raise Unsupported(f"netx export: node {name!r} (Flatten) must flatten everything into a dense layer")
            i += 1
            continue
        if not isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)) or i + 1 == len(chain):
            raise Unsupported(f"netx export: node {name!r} ({type(node).__name__}) is not a conv or dense synapse "
                              "followed by a neuron; netx layers are synapse + CUBA neurons")
        neuron = chain[i + 1]
        readout = isinstance(view.node(neuron), nir.I)
        if readout and i + 2 != len(chain):
            raise Unsupported(f"netx export: node {neuron!r} (I) is not the readout before the Output; netx has "
                              "no integrator layer inside a network")
        gain, preferred = _neuron_gain(view, neuron, gaps)
        W = np.asarray(node.weight, np.float64) * (scale if not layers else 1.0)
        b = np.asarray(node.bias, np.float64) if isinstance(node, (nir.Affine, nir.Conv2d)) else None
        g = gain.reshape(-1, *([1] * (W.ndim - 1)))
        W_int, b_int, K, exact = _mantissas(W * g, None if b is None else b * gain, preferred, readout)
        if not exact:
            err = np.abs(W_int / K - W * g).max() / np.abs(W * g).max()
            gaps.append(f"node {name!r}: weights quantized to 8-bit mantissas (threshold {K if not readout else 'n/a'}, "
                        f"max error {100 * err:.2f}% of the largest weight)")
        if b_int is not None and not np.any(b_int):
            b_int = None
        layer = Layer(kind="conv" if isinstance(node, nir.Conv2d) else "dense", synapse=name, neuron=neuron,
                      shape=view.shape(neuron), weight=W_int, bias=b_int,
                      v_th_mant=NEVER_FIRES if readout else int(K))
        if readout:
            output_scale = float(K)
        if isinstance(node, nir.Conv2d):
            layer.conv = _conv_args(name, node)
        layers.append(layer)
        i += 2
    if not layers:
        raise Unsupported("netx export: the graph has no conv or dense layer")
    return Plan(view.shape(view.input), layers, float(input_scale), output_scale, gaps)


def _conv_args(name: str, node: nir.Conv2d) -> dict:
    pair = lambda v: [int(x) for x in np.broadcast_to(np.atleast_1d(v), (2,))]  # noqa: E731
    if isinstance(node.padding, str):
        kh, kw = node.weight.shape[2:]
        if node.padding != "same" or kh % 2 == 0 or kw % 2 == 0 or np.any(np.asarray(node.stride) != 1):
            raise Unsupported(f"netx export: node {name!r} (Conv2d) padding {node.padding!r} is not symmetric")
        padding = [kh // 2, kw // 2]
    else:
        padding = pair(node.padding)
    return {"stride": pair(node.stride), "padding": padding, "dilation": pair(node.dilation), "groups": int(node.groups)}


def export_netx(graph: nir.NIRGraph, path, *, input_scale: float = 1.0, approximate: bool = False) -> list[str]:
    """Write `graph` to the netx HDF5 file `path`; returns what had to be approximated (empty when exact).

    The netx network takes inputs multiplied by `input_scale` (integers on Lava's graded input port).
    Raises `backends.Unsupported` naming the node when netx cannot express the graph, or when it can
    only approximately and `approximate` is False. `path` (a path or a binary file object) is written
    directly (callers in `pipeline` pass pipeline.io.atomic.write_with's in-memory buffer).
    """
    p = plan(graph, input_scale)
    if p.approximations and not approximate:
        more = f" (and {len(p.approximations) - 1} more)" if len(p.approximations) > 1 else ""
        raise Unsupported(f"netx export is not exact: {p.approximations[0]}{more}; pass approximate=True "
                          "to export anyway")
    write(p, path)
    return p.approximations


def write(p: Plan, path) -> None:
    """The HDF5 file for plan `p` (layout in backends/netx/layout.py)."""
    with h5py.File(path if hasattr(path, "write") else Path(path), "w") as f:
        f.attrs[ATTR] = json.dumps({"version": 1, "input_scale": p.input_scale, "output_scale": p.output_scale,
                                    "approximations": p.approximations,
                                    "nodes": [[layer.synapse, layer.neuron] for layer in p.layers]})
        top = f.create_group("layer")
        groups = iter(top.create_group(str(i)) for i in range(2 * len(p.layers) + 1))
        g = next(groups)
        write_str(g, "type", "input")
        g.create_dataset("shape", data=np.array(p.input_shape))
        previous = p.input_shape
        for layer in p.layers:
            if layer.kind == "dense" and len(previous) > 1:   # netx flattens only after a `flatten` layer
                g = next(groups)
                write_str(g, "type", "flatten")
                g.create_dataset("shape", data=np.array(previous))
            previous = layer.shape
            g = next(groups)
            write_str(g, "type", layer.kind)
            g.create_dataset("shape", data=np.array(layer.shape))
            g.create_dataset("weight", data=layer.weight)
            if layer.bias is not None:
                g.create_dataset("bias", data=layer.bias)
            if layer.kind == "conv":
                g.create_dataset("inChannels", data=layer.weight.shape[1] * layer.conv["groups"])
                g.create_dataset("outChannels", data=layer.weight.shape[0])
                g.create_dataset("kernelSize", data=np.array(layer.weight.shape[2:]))
                for key in ("stride", "padding", "dilation"):
                    g.create_dataset(key, data=np.array(layer.conv[key]))
                g.create_dataset("groups", data=layer.conv["groups"])
            else:
                g.create_dataset("inFeatures", data=layer.weight.shape[1])
                g.create_dataset("outFeatures", data=layer.weight.shape[0])
            n = g.create_group("neuron")
            write_str(n, "type", "CUBA")
            for key, value in {**IF_DECAYS, "vThMant": layer.v_th_mant, "refDelay": 1}.items():
                n.create_dataset(key, data=value)
            n.create_dataset("gradedSpike", data=False)
