"""NIR graphs written by other tools (Norse `to_nir`, snnTorch `export_to_nir`, sinabs `to_nir`), made to mean
what their authors' simulators compute, in spikeport's extension (docs/parity.md, "Graphs from other tools").

`adopt(graph, convention)` returns a checked graph with spikeport metadata plus notes: the conventions it
translated, and the differences that no NIR graph can remove (those are what a parity check will show).
"""
from __future__ import annotations

import copy

import nir
import numpy as np

from backends.graph import GraphError, analyse, output_shape, toposort
from backends.nirext import KEY, NEURON_TYPES, SPIKING_TYPES, graph_metadata, neuron_metadata
from pipeline.errors import SpikeportError

CONVENTIONS = ("spikeport", "norse", "snntorch", "sinabs")
NORSE_DT = 1e-3      # norse.torch.to_nir's default dt
SNNTORCH_DT = 1e-4   # snntorch.export_to_nir hard-codes dt = 1e-4 when it turns beta into tau
IMPORTED = "imported"  # graph metadata key: the convention adopted and its notes (read by `spikeport parity`)
_TAUS = ("tau", "tau_mem", "tau_syn")
_NEURON_ARRAYS = ("tau", "tau_mem", "tau_syn", "r", "v_threshold", "v_reset", "v_leak", "w_in")


def _numpy(node: nir.NIRNode) -> nir.NIRNode:
    """A copy of `node` with torch tensors (as nirtorch-based exporters leave them) turned into numpy arrays."""
    node = copy.copy(node)
    for attr, value in vars(node).items():
        if hasattr(value, "detach"):
            setattr(node, attr, value.detach().cpu().numpy())
    return node


def _strip_batch(shape) -> np.ndarray:
    """nirtorch takes Input/Output types from the sample data, so they carry its batch dimension."""
    return np.asarray(shape)[1:]


def _fix_neuron_shapes(nodes: dict, edges: list, notes: list[str]) -> None:
    """Give neuron parameters the layer's shape: Norse writes 0-d tensors (layer size lost), sinabs writes
    the shape of its membrane state, batch dimension included."""
    order = toposort(list(nodes), edges)
    shapes: dict[str, tuple[int, ...]] = {}
    for name in order:
        node = nodes[name]
        preds = [a for a, b in edges if b == name]
        if isinstance(node, nir.Input):
            shapes[name] = tuple(int(d) for d in np.atleast_1d(node.input_type["input"]))
            continue
        shape = shapes[preds[0]]
        if isinstance(node, NEURON_TYPES):
            for attr in _NEURON_ARRAYS:
                value = getattr(node, attr, None)
                if value is None:
                    continue
                arr = np.asarray(value, np.float32)
                if arr.shape != shape:
                    if arr.shape == (1, *shape):
                        arr = arr[0]
                    elif arr.size == 1:
                        notes.append(f"node {name!r}: {attr} given as one number, broadcast to the layer shape {shape}")
                    else:
                        raise SpikeportError(f"node {name!r}: {attr} has shape {arr.shape}, the layer has {shape}")
                    arr = np.broadcast_to(arr.reshape(arr.shape if arr.ndim else ()), shape).astype(np.float32)
                setattr(node, attr, np.ascontiguousarray(arr))
        try:
            shapes[name] = output_shape(node, shape)
        except GraphError as err:
            raise SpikeportError(f"node {name!r} ({type(node).__name__}) {err}") from None


def guess(graph: nir.NIRGraph) -> tuple[str, str] | None:
    """(convention, evidence) when `graph` carries a known exporter's fingerprint and no spikeport metadata."""
    if KEY in (graph.metadata or {}):
        return None
    for name, node in graph.nodes.items():
        if isinstance(node, (nir.LIF, nir.CubaLIF)) and np.allclose(
                np.asarray(node.r) * SNNTORCH_DT, np.asarray(getattr(node, "tau", getattr(node, "tau_mem", 0)))):
            return "snntorch", f"node {name!r} has r = tau / 1e-4"
        if isinstance(node, nir.Flatten) and np.array_equal(np.asarray(node.input_type.get("input")), [0, 0, 0, 0]):
            return "sinabs", f"node {name!r} (Flatten) declares input type [0, 0, 0, 0]"
        if isinstance(node, NEURON_TYPES) and np.ndim(getattr(node, "v_threshold", getattr(node, "r", 0))) == 0:
            return "norse", f"node {name!r} has 0-d parameters"
    return None


def adopt(graph: nir.NIRGraph, convention: str) -> tuple[nir.NIRGraph, list[str]]:
    """`graph` as written by `convention`'s exporter, expressed in spikeport's semantics; returns (graph, notes).

    norse (1.1.0 `to_nir`): IF/LIF reset to v_reset on v > threshold (core NIR); tau written as
      dt / tau_mem_inv = dt * tau (its own from_nir reads 1 / tau_mem_inv), so tau is divided by dt = 1e-3.
    snntorch (`export_to_nir`): Leaky/Synaptic as LIF/CubaLIF with dt = 1e-4 (tau = dt / (1 - beta),
      r = tau / dt) and snnTorch's default reset by subtraction (v_reset is not written).
    sinabs (`to_nir`): IAF as IF, reset by subtraction and firing on v >= threshold (MembraneSubtract);
      Flatten dims counted with the batch.
    All three: Input/Output types and sinabs' neuron parameters carry the batch dimension of the sample.
    """
    if convention not in CONVENTIONS:
        raise SpikeportError(f"unknown NIR convention {convention!r}; choose one of: {', '.join(CONVENTIONS)}")
    if convention == "spikeport":
        analyse(graph)
        return graph, []
    if any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()):
        raise SpikeportError(f"the {convention} graph has a nested subgraph (a recurrent layer); spikeport runs "
                             "feed-forward graphs only")
    notes: list[str] = []
    nodes = {name: _numpy(node) for name, node in graph.nodes.items()}
    edges = [tuple(e) for e in graph.edges]
    for name, node in nodes.items():
        if isinstance(node, nir.Input):
            node.input_type = {"input": _strip_batch(node.input_type["input"])}
        elif isinstance(node, nir.Output):
            node.output_type = {"output": _strip_batch(node.output_type["output"])}
        elif isinstance(node, nir.Flatten) and convention == "sinabs":
            node.start_dim = node.start_dim - 1 if node.start_dim > 0 else node.start_dim
            node.end_dim = node.end_dim - 1 if node.end_dim > 0 else node.end_dim
            node.input_type = {"input": None}
    notes.append(f"{convention}: batch dimension removed from the Input/Output types")
    if convention == "sinabs":
        notes.append("sinabs: Flatten start_dim/end_dim shifted by one (sinabs counts the batch dimension)")
    _fix_neuron_shapes(nodes, edges, notes)
    dt = SNNTORCH_DT if convention == "snntorch" else NORSE_DT
    for name, node in nodes.items():
        if not isinstance(node, NEURON_TYPES):
            continue
        kind = type(node).__name__
        if convention == "norse" and isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF)):
            for attr in _TAUS:
                if hasattr(node, attr):
                    setattr(node, attr, (np.asarray(getattr(node, attr)) / NORSE_DT).astype(np.float32))
            notes.append(f"node {name!r} ({kind}): time constants divided by dt = {NORSE_DT:g} (Norse 1.1.0 to_nir "
                         "writes dt * tau)")
        reset = "zero" if convention == "norse" or isinstance(node, (nir.I, nir.LI)) else "subtract"
        if isinstance(node, SPIKING_TYPES) and node.v_reset is None:
            node.v_reset = np.zeros_like(np.asarray(node.v_threshold))
        node.metadata = {**(node.metadata or {}), **neuron_metadata(reset)}
        if convention == "snntorch" and reset == "subtract":
            notes.append(f"node {name!r} ({kind}): snnTorch subtracts the threshold one step after the spike and "
                         "before the decay (mem = beta mem + x - threshold z_prev, fires on mem > threshold); "
                         "spikeport's reset by subtraction removes it at the spike and fires on >=: equal only "
                         "for beta = 1 and no input exactly at threshold")
        if convention == "sinabs" and isinstance(node, nir.IF):
            notes.append(f"node {name!r} (IF): sinabs' default MultiSpike sends floor(v / threshold) spikes per step, "
                         "spikeport's IF at most one: equal while no step brings v to twice the threshold")
        if convention == "sinabs" and isinstance(node, (nir.LIF, nir.LI)):
            notes.append(f"node {name!r} ({kind}): sinabs decays by exp(-1/tau) per step (and by default scales "
                         "the input by 1 - that), NIR's LIF by forward Euler: not the same dynamics")
    meta = {KEY: {**graph_metadata("", source=f"imported from {convention}")[KEY], "dt": dt},
            IMPORTED: {"from": convention, "notes": notes}}
    out = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata=meta)
    try:
        analyse(out)
    except GraphError as err:
        raise SpikeportError(f"{convention} graph: {err}") from None
    return out, notes
