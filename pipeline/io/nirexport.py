"""A spikeport graph written for another tool's NIR importer (Norse 1.1.0 and sinabs 3.1.3 `from_nir`, snnTorch
1.0.0 `import_from_nir`, rockpool 3.1.0 `from_nir`): the form that importer runs as spikeport does, or a
SpikeportError naming the node and what the tool cannot express.

The importers drop an integrator readout (`I`) or have none, so it is folded into the weights before it:
spikeport's output, `r * sum_t (W s_t + b)`, is the sum over the steps of what `(r W) s_t + r b` delivers to
the Output.
"""
from __future__ import annotations

import copy

import nir
import numpy as np
import torch

from backends.graph import GraphError, analyse
from backends.nirext import NEURON_TYPES, neuron_semantics
from backends.norse import SUPPORTED_TYPES as NORSE_TYPES, mismatches as norse_mismatches
from backends.result import first_reason
from pipeline.errors import SpikeportError
from pipeline.io.nirdense import dense_graph

TOOLS = ("norse", "sinabs", "snntorch", "rockpool")
SINABS_TYPES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d, nir.Flatten, nir.IF, nir.I)
SNNTORCH_TYPES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.IF, nir.I)
SNNTORCH_DT = 1e-4       # snnTorch's import reads LIF(tau, r) as Leaky(beta = 1 - 1e-4 / tau), inputs scaled r 1e-4 / tau
SNNTORCH_IF_TAU = 1e4    # 1 - 1e-4 / 1e4 is 1.0 in float32: a Leaky that does not leak
ROCKPOOL_TYPES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d,
                  nir.Flatten, nir.Scale, nir.IF, nir.I)
ROCKPOOL_DT = 1e-3       # the dt rockpool's import derives, min(tau_mem / (1 + r))
ROCKPOOL_R = 1e9         # exp(-dt / tau_mem) = exp(-1 / (1 + r)) is 1.0 in float32: a membrane that does not leak
ROCKPOOL_SYN_DECAY = 40  # dt / tau_syn: the current keeps exp(-40) ~ 4e-18 of the last step, below float32's ulp


def _if_nodes(view):
    """(name, node, semantics) of every IF node, in graph order."""
    for name in view.order:
        node = view.node(name)
        if isinstance(node, nir.IF):
            yield name, node, neuron_semantics(name, node)


def _snntorch_gaps(view) -> list[str]:
    """What snnTorch 1.0.0's import_from_nir cannot run as spikeport does. It reads IF as Leaky(beta=0.9) (a
    leak), so IF is written as LIF(tau = 1e4, r = tau / 1e-4), read as Leaky(beta = 1.0 in float32,
    reset_mechanism="zero", reset_delay=False): v += x, fire on v > θ, v = 0, spikeport's reset to zero."""
    out = []
    for name, node, sem in _if_nodes(view):
        if sem.reset != "zero":
            out.append(f"node {name!r} (IF): reset {sem.reset!r} — snnTorch's import resets to zero")
        if not np.allclose(node.v_reset, 0) or not np.allclose(node.r, 1):
            out.append(f"node {name!r} (IF): v_reset != 0 or r != 1 — snnTorch's Leaky has neither")
        if np.unique(np.asarray(node.v_threshold)).size != 1:
            out.append(f"node {name!r} (IF): thresholds differ across neurons — snnTorch's import takes one per layer")
        if sem.v_init is not None and np.any(sem.v_init != 0):
            out.append(f"node {name!r} (IF): v_init — snnTorch starts every membrane at 0")
    return out


def _as_snntorch_lif(node: nir.IF) -> nir.LIF:
    shape = np.shape(node.v_threshold)
    tau = np.full(shape, SNNTORCH_IF_TAU, np.float32)
    return nir.LIF(tau=tau, r=tau / np.float32(SNNTORCH_DT), v_leak=np.zeros(shape, np.float32),
                   v_threshold=np.asarray(node.v_threshold, np.float32), v_reset=np.zeros(shape, np.float32))


def _sinabs_gaps(view) -> list[str]:
    """What sinabs 3.1.3's from_nir runs differently: IF becomes IAFSqueeze(spike_threshold=θ,
    min_v_mem=-θ) with MembraneSubtract and MultiSpike (sinabs/nir.py)."""
    out = []
    for name, node, sem in _if_nodes(view):
        if sem.reset != "subtract":
            out.append(f"node {name!r} (IF): reset {sem.reset!r} — sinabs' IAF resets by subtraction")
        if not np.allclose(node.r, 1):
            out.append(f"node {name!r} (IF): r != 1 — sinabs' IAF adds its input unscaled")
        if sem.v_init is not None and np.any(sem.v_init != 0):
            out.append(f"node {name!r} (IF): v_init — sinabs starts every membrane at 0")
        out.append(f"node {name!r} (IF): sinabs' from_nir clamps v at -v_threshold (min_v_mem) and sends "
                   "floor(v / v_threshold) spikes per step; spikeport's IF has no lower bound and sends one")
    return out


def _rockpool_gaps(view) -> list[str]:
    """What rockpool 3.1.0's from_nir (rockpool/nn/modules/torch/nir.py) runs differently. It reads CubaLIF as
    LIFTorch: isyn = (isyn + x) exp(-dt/tau_syn); v = v exp(-dt/tau_mem) + isyn + v_leak; floor(v / θ) spikes where
    v >= θ, v -= spikes θ (dt = min(tau_mem / (1 + r)); r and w_in otherwise unread). An IF is written as such a
    CubaLIF that does not leak and whose current holds only the present step (`_as_rockpool_cuba`)."""
    out = []
    for name, node, sem in _if_nodes(view):
        if sem.reset != "subtract":
            out.append(f"node {name!r} (IF): reset {sem.reset!r} — rockpool's LIFTorch resets by subtraction")
        if sem.v_init is not None and np.any(sem.v_init != 0):
            out.append(f"node {name!r} (IF): v_init — rockpool starts every membrane at 0")
        out.append(f"node {name!r} (IF): rockpool sends floor(v / v_threshold) spikes per step where spikeport's "
                   "IF sends one (and computes its current as (W / b) x * b, b = exp(-40): float32 rounding)")
    return out


def _as_rockpool_cuba(node: nir.IF) -> tuple[nir.CubaLIF, np.ndarray]:
    """The CubaLIF rockpool reads as spikeport's IF (`_rockpool_gaps`), and the factor r / exp(-dt / tau_syn), as
    rockpool computes it in float32, by which the weights into it must be scaled."""
    shape = np.shape(node.v_threshold)
    r = np.full(shape, ROCKPOOL_R, np.float32)
    tau_mem = (ROCKPOOL_DT * (1 + r)).astype(np.float32)
    dt = float(np.min(tau_mem / (1 + r)))
    tau_syn = np.full(shape, dt / ROCKPOOL_SYN_DECAY, np.float32)
    decay = torch.exp(-dt / torch.from_numpy(tau_syn)).numpy().astype(np.float64)
    cuba = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=np.zeros(shape, np.float32),
                       v_threshold=np.asarray(node.v_threshold, np.float32), v_reset=np.zeros(shape, np.float32),
                       w_in=np.ones(shape, np.float32))
    return cuba, np.asarray(node.r, np.float64) / decay


def _for_rockpool(graph: nir.NIRGraph, approximate: bool) -> tuple[nir.NIRGraph, list[str]]:
    """rockpool's form: dense layers only (`nirdense.dense_graph`), the readout folded, each IF a CubaLIF that
    rockpool runs as the IF (`_as_rockpool_cuba`) with the weights into it scaled."""
    try:
        view = analyse(graph, ROCKPOOL_TYPES)
    except GraphError as err:
        raise SpikeportError(f"rockpool: {err} (rockpool's from_nir reads CubaLIF, LI with whole-number tau, and "
                             "LIF by a tau_mem NIR's LIF does not have; spikeport writes IF neurons only)") from None
    gaps = _rockpool_gaps(view)
    if gaps and not approximate:
        raise SpikeportError(f"rockpool cannot run this graph as spikeport does: {first_reason(gaps)}"
                             "; pass --approximate to write it anyway")
    notes = list(gaps)
    dense = analyse(dense_graph(graph))
    nodes = {n: dense.node(n) for n in dense.order}
    edges = [tuple(e) for e in dense.graph.edges]
    _fold_readout(dense, nodes, edges, notes)
    for name in dense.order:
        if isinstance(nodes.get(name), nir.IF):
            nodes[name], scale = _as_rockpool_cuba(nodes[name])
            for pred in dense.preds[name]:
                if not isinstance(nodes[pred], nir.Affine) or len(dense.succs(pred)) != 1:
                    raise SpikeportError(f"node {name!r} (IF): fed by {pred!r} ({type(nodes[pred]).__name__}), not "
                                         "by a weighted node of its own whose weights could carry its input scale")
                w, b = (np.asarray(nodes[pred].weight, np.float64) * scale[:, None],
                        np.asarray(nodes[pred].bias, np.float64) * scale)
                if not (np.all(np.isfinite(w)) and np.abs(w).max(initial=0) < 1e30):
                    raise SpikeportError(f"node {pred!r}: weights too large for rockpool's form (|w| / exp(-40) "
                                         "overflows float32)")
                nodes[pred] = nir.Affine(weight=w.astype(np.float32), bias=b.astype(np.float32))
    notes.append("feed (batch, T, C*H*W), each sample flattened in C-order; sum the output over T")
    out = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    analyse(out)
    return out, notes


def _fold_readout(view, nodes: dict, edges: list, notes: list[str]) -> None:
    """Replace `weighted -> I -> Output` by `weighted (scaled by r) -> Output` (module docstring)."""
    preds = view.preds[view.output]
    readout = preds[0] if len(preds) == 1 and isinstance(view.node(preds[0]), nir.I) else None
    stray = [n for n in view.order if isinstance(view.node(n), nir.I) and n != readout]
    if stray:
        raise SpikeportError(f"node {stray[0]!r} (I): an integrator inside the network — the tool has no "
                             "integrator module")
    if readout is None:
        return
    source = view.preds[readout][0] if len(view.preds[readout]) == 1 else None
    node = view.node(source) if source else None
    sem = neuron_semantics(readout, view.node(readout))
    if not isinstance(node, (nir.Affine, nir.Linear)) or len(view.succs(source)) != 1 or sem.v_init is not None:
        raise SpikeportError(f"node {readout!r} (I): an integrator readout that is not fed by one Affine/Linear "
                             "alone (or starts from v_init) — the tool has no integrator module")
    r = np.asarray(view.node(readout).r, np.float64).reshape(-1)
    folded = copy.copy(node)
    folded.weight = (np.asarray(node.weight, np.float64) * r[:, None]).astype(np.float32)
    if isinstance(node, nir.Affine):
        folded.bias = (np.asarray(node.bias, np.float64) * r).astype(np.float32)
    nodes[source] = folded
    del nodes[readout]
    edges[:] = [(a, b) for a, b in edges if readout not in (a, b)] + [(source, view.output)]
    notes.append(f"node {readout!r} (I): readout folded into {source!r}; sum the outputs over the T steps")


def export_for(graph: nir.NIRGraph, tool: str, approximate: bool = False) -> tuple[nir.NIRGraph, list[str]]:
    """`graph` in the form `tool`'s from_nir runs; (graph, notes). Refuses (SpikeportError naming the node)
    what the tool cannot express, unless `approximate`: then the differences are in the notes."""
    if tool not in TOOLS:
        raise SpikeportError(f"cannot export for {tool!r}; choose one of: {', '.join(TOOLS)}")
    if tool == "rockpool":
        return _for_rockpool(graph, approximate)
    try:
        view = analyse(graph, {"norse": NORSE_TYPES, "sinabs": SINABS_TYPES, "snntorch": SNNTORCH_TYPES}[tool])
    except GraphError as err:
        raise SpikeportError(f"{tool}: {err}") from None
    if tool == "norse" and any(isinstance(view.node(n), nir.Scale) for n in view.order):
        name = next(n for n in view.order if isinstance(view.node(n), nir.Scale))
        raise SpikeportError(f"{tool}: node {name!r} (Scale): Norse's from_nir has no scaling module")
    gaps = {"norse": norse_mismatches, "sinabs": _sinabs_gaps, "snntorch": _snntorch_gaps}[tool](view)
    gaps = [g for g in gaps if "(I):" not in g]   # the readout is folded below
    if gaps and not approximate:
        raise SpikeportError(f"{tool} cannot run this graph as spikeport does: {first_reason(gaps)}"
                             "; pass --approximate to write it anyway")
    notes = list(gaps)
    nodes = {n: view.node(n) for n in view.order}
    edges = [tuple(e) for e in view.graph.edges]
    _fold_readout(view, nodes, edges, notes)
    for name, node in nodes.items():
        if isinstance(node, NEURON_TYPES):
            node = nodes[name] = _as_snntorch_lif(node) if tool == "snntorch" else copy.copy(node)
            node.metadata = {}
    out = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    analyse(out)
    if tool in ("norse", "snntorch") and any(isinstance(n, nir.Flatten) for n in nodes.values()):
        notes.append(f"{tool}'s importer hands NIR's Flatten dims to torch.nn.Flatten, which counts the batch: "
                     "run the module on one unbatched sample at a time")
    return out, notes
