"""Export a NIR graph to lava-dl's netx HDF5 format (backends/netx/layout.py), where netx can express it:
a float graph with thresholds folded into integer weights (`export_netx`), or a quantized graph's own integers
(`export_quantized`, which `spikeport deploy` writes as model.net).

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
from backends import fixedpoint as fx
from backends.netx.layout import (ATTR, IF_DECAYS, MAX_BIAS, MAX_THRESHOLD, MAX_WEIGHT, NEVER_FIRES, STATE_SHIFT,
                                    write_str)
from backends.nirext import neuron_semantics
from backends.result import Unsupported, first_reason

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


def _chain(graph: nir.NIRGraph) -> tuple[GraphView, str | None, list[tuple[str, str]]]:
    """The graph as netx layers: (view, the Scale right after the Input or None, [(synapse, neuron), ...]),
    or Unsupported naming the node netx cannot place."""
    try:
        view = analyse(graph, EXPORT_TYPES)
    except GraphError as err:
        raise Unsupported(f"netx export: {err} (netx has input, conv, dense and flatten layers only)") from None
    for n in view.order:
        if len(view.preds[n]) > 1 or len(view.succs(n)) > 1:
            raise Unsupported(f"netx export: node {n!r} has fan-in or fan-out; netx layers form a chain")
    chain = [n for n in view.order if n not in (view.input, view.output)]
    scale = chain.pop(0) if chain and isinstance(view.node(chain[0]), nir.Scale) else None
    pairs: list[tuple[str, str]] = []
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
        if isinstance(view.node(neuron), nir.I) and i + 2 != len(chain):
            raise Unsupported(f"netx export: node {neuron!r} (I) is not the readout before the Output; netx has "
                              "no integrator layer inside a network")
        pairs.append((name, neuron))
        i += 2
    if not pairs:
        raise Unsupported("netx export: the graph has no conv or dense layer")
    return view, scale, pairs


def _layer(view: GraphView, synapse: str, neuron: str, weight: np.ndarray, bias: np.ndarray | None,
           v_th_mant: int) -> Layer:
    node = view.node(synapse)
    if bias is not None and not np.any(bias):
        bias = None
    return Layer(kind="conv" if isinstance(node, nir.Conv2d) else "dense", synapse=synapse, neuron=neuron,
                 shape=view.shape(neuron), weight=weight, bias=bias, v_th_mant=v_th_mant,
                 conv=_conv_args(synapse, node) if isinstance(node, nir.Conv2d) else {})


def plan(graph: nir.NIRGraph, input_scale: float = 1.0) -> Plan:
    """The netx layers for `graph` fed with inputs multiplied by `input_scale` (integers on the wire)."""
    view, scale_node, pairs = _chain(graph)
    gaps: list[str] = []
    scale = 1.0 / float(input_scale)
    if scale_node is not None:
        s = np.unique(np.asarray(view.node(scale_node).scale, np.float64))
        if len(s) != 1:
            raise Unsupported(f"netx export: node {scale_node!r} (Scale) is not uniform; netx inputs have one scale")
        scale *= float(s[0])
    layers: list[Layer] = []
    output_scale = 1.0
    for name, neuron in pairs:
        node = view.node(name)
        readout = isinstance(view.node(neuron), nir.I)
        gain, preferred = _neuron_gain(view, neuron, gaps)
        W = np.asarray(node.weight, np.float64) * (scale if not layers else 1.0)
        b = np.asarray(node.bias, np.float64) if isinstance(node, (nir.Affine, nir.Conv2d)) else None
        g = gain.reshape(-1, *([1] * (W.ndim - 1)))
        W_int, b_int, K, exact = _mantissas(W * g, None if b is None else b * gain, preferred, readout)
        if not exact:
            err = np.abs(W_int / K - W * g).max() / np.abs(W * g).max()
            gaps.append(f"node {name!r}: weights quantized to 8-bit mantissas (threshold {K if not readout else 'n/a'}, "
                        f"max error {100 * err:.2f}% of the largest weight)")
        if readout:
            output_scale = float(K)
        layers.append(_layer(view, name, neuron, W_int, b_int, NEVER_FIRES if readout else int(K)))
    return Plan(view.shape(view.input), layers, float(input_scale), output_scale, gaps)


def plan_quantized(graph: nir.NIRGraph) -> Plan:
    """The netx layers holding a quantized graph's own integers (backends/fixedpoint.py), fed with its integer
    input, or Unsupported listing every integer netx cannot reproduce bit for bit.

    netx's synapses add sum(W s) exactly (its Conv takes no weight exponent; its Dense gets the exponent
    lava-dl's optimize_weight_bits derives from the file, which only undoes a lossless left shift, after clipping
    W to [-256, 254]); its neurons take bias_mant << 6 and vThMant << 6. So weight mantissas m with exponent
    E >= 0 are written as m << E and the thresholds and biases as they are; Loihi's E < 0 (each step's sum
    shifted right by -E bits, dropping them), dense weights m << E outside [-256, 254] and biases that are no
    multiple of 2^6 have no netx form; when those are all, the message points to the netx-targeted quantization."""
    view, scale_node, pairs = _chain(graph)
    input_unit = float(fx.input_format(graph)["input_scale"])
    payload = 1
    problems: list[str] = []
    semantic = 0      # problems that no choice of integers removes (reset, v(0), thresholds within a layer)
    if scale_node is not None:
        node = view.node(scale_node)
        values = np.unique(fx.to_integer(f"node {scale_node!r} scale", node.scale,
                                         fx.unit(scale_node, node, "scale"), fx.V_LIMIT))
        if len(values) != 1:
            raise Unsupported(f"netx export: node {scale_node!r} (Scale) is not uniform; netx inputs have one scale")
        payload = int(values[0])
    layers: list[Layer] = []
    for name, neuron in pairs:
        w = fx.weights(name, view.node(name))
        p = fx.layer_params(view, neuron)
        if w.exp < 0:
            problems.append(f"node {name!r}: weight exponent {w.exp} (Loihi shifts each step's sum right by "
                            f"{-w.exp} bit(s), dropping them; netx's synapses keep the whole integer sum)")
        W = np.left_shift(w.m, max(w.exp, 0)) * (payload if not layers else 1)
        if not isinstance(view.node(name), nir.Conv2d) and (W.min() < -256 or W.max() > 254):
            problems.append(f"node {name!r}: weights m << {w.exp} span [{W.min()}, {W.max()}], outside the "
                            "[-256, 254] lava-dl's optimize_weight_bits keeps for a dense layer")
        if p.kind == "IF" and p.reset != "zero":
            problems.append(f"node {neuron!r}: reset {p.reset!r} (netx's CUBA neurons reset to 0 on v > vThMant)")
            semantic += 1
        if np.any(p.v_reset) or np.any(p.v_init):
            problems.append(f"node {neuron!r}: v_reset or v(0) != 0 (netx's CUBA neurons start at and reset to 0)")
            semantic += 1
        vth = np.unique(p.vth)
        if p.kind == "IF" and len(vth) != 1:
            problems.append(f"node {neuron!r}: thresholds vary ({vth.min()}..{vth.max()}); netx has one vThMant "
                            "per layer")
            semantic += 1
        bias = _per_channel(neuron, p.bias, view.shape(neuron), "bias")
        odd = bias[np.mod(bias, 1 << STATE_SHIFT) != 0]
        if len(odd):
            problems.append(f"node {neuron!r}: bias {int(odd[0])} (v units) is no multiple of 2^{STATE_SHIFT} "
                            f"(netx fixes bias_exp = {STATE_SHIFT}; {len(odd)} of {len(bias)} biases)")
        layers.append(_layer(view, name, neuron, W, (bias.astype(np.int64) >> STATE_SHIFT),
                             NEVER_FIRES if p.kind == "I" else int(vth[0])))
    if problems:
        hint = "" if semantic else "; integers quantized to netx's formats (`spikeport quantize --netx`) have one"
        raise Unsupported(f"netx cannot run the quantized integers bit for bit: {first_reason(problems, list_all=True)}{hint}")
    last = view.node(pairs[-1][1])
    output_scale = 1.0 / fx.unit(pairs[-1][1], last, "neuron") if isinstance(last, nir.I) else 1.0
    return Plan(view.shape(view.input), layers, 1.0 / input_unit, output_scale, [])


def export_quantized(graph: nir.NIRGraph, path) -> None:
    """Write quantized `graph` to the netx HDF5 file `path` with its own integers (`plan_quantized`): netx fed
    with the graph's integer input runs it bit for bit as the reference fixed-point mode does."""
    write(plan_quantized(graph), path)


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
        raise Unsupported(f"netx export is not exact: {first_reason(p.approximations)}; pass approximate=True "
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
