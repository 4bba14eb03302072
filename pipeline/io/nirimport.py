"""NIR graphs written by other tools (Norse, snnTorch, sinabs, rockpool), made to mean what their authors'
simulators compute, in spikeport's extension (docs/parity.md, "Graphs from other tools").

`detect(graph)` names the writer where the file shows it; `adopt(graph, convention)` returns a checked graph
with spikeport metadata plus notes: what it translated, and what no NIR graph can remove.
"""
from __future__ import annotations

import copy

import nir
import numpy as np
from scipy.special import lambertw

from backends.graph import WEIGHTED_TYPES, GraphError, analyse, output_shape, toposort
from backends.nirext import KEY, NEURON_TYPES, SPIKING_TYPES, graph_metadata, neuron_metadata
from pipeline.errors import SpikeportError

# "nir": core NIR 1.0 (reset to v_reset on v > threshold, forward Euler); "spikeport": the same plus our
# metadata; the tools' names read their exporters' conventions; snnTorch does not record its reset.
CONVENTIONS = ("spikeport", "nir", "norse", "snntorch", "snntorch-zero", "sinabs", "rockpool")
AUTO = "auto"
NORSE_DT = 1e-3      # norse.torch.to_nir's default dt, also its simulators' default
SNNTORCH_DT = 1e-4   # snntorch.export_to_nir hard-codes dt = 1e-4 when it turns beta into tau
ROCKPOOL_DT = 1e-3   # rockpool's default dt (not written into the file; recovered from r, see _rockpool)
IMPORTED = "imported"  # graph metadata key: the convention adopted and its notes (read by `spikeport parity`)
_TAUS = ("tau", "tau_mem", "tau_syn")
_NEURON_ARRAYS = ("tau", "tau_mem", "tau_syn", "r", "v_threshold", "v_reset", "v_leak", "w_in")
_RESET = {"nir": "zero", "norse": "zero", "snntorch": "subtract", "snntorch-zero": "zero", "sinabs": "subtract",
          "rockpool": "subtract"}


def _numpy(node: nir.NIRNode) -> nir.NIRNode:
    """A copy of `node` with torch tensors (as nirtorch-based exporters leave them) turned into numpy arrays."""
    node = copy.copy(node)
    for attr, value in vars(node).items():
        if hasattr(value, "detach"):
            setattr(node, attr, value.detach().cpu().numpy())
    return node


def has_spikeport_metadata(graph: nir.NIRGraph) -> bool:
    return KEY in (graph.metadata or {}) or any(KEY in (getattr(n, "metadata", None) or {})
                                                  for n in graph.nodes.values())


def _array(node, attr) -> np.ndarray:
    return np.asarray(getattr(node, attr), np.float64)


def detect(graph: nir.NIRGraph) -> tuple[str, str] | None:
    """(convention, evidence) when `graph` carries a known exporter's fingerprint and no spikeport metadata.

    snnTorch: LIF with r = tau / 1e-4 (its dt), or tau = r = inf (beta = 1); the reset is not written, so the
      convention returned is "snntorch" and the caller must ask which reset (see `read`).
    Norse: LIF/CubaLIF with r = 1 and tau < 1e-3 (it writes dt * tau), or 0-d parameters.
    rockpool: CubaLIF/LIF with r = tau exp(-1e-3 / tau) / 1e-3 (its default dt), or an Output type of rank
      3 ([batch, time, n]).
    sinabs' older `Flatten` with input type [0, 0, 0, 0].
    """
    if has_spikeport_metadata(graph):
        return None
    for name, node in graph.nodes.items():
        if isinstance(node, (nir.LIF, nir.CubaLIF)):
            tau = _array(node, "tau" if isinstance(node, nir.LIF) else "tau_mem")
            r = _array(node, "r")
            if np.all(np.isinf(tau)) and np.all(np.isinf(r)):
                return "snntorch", f"node {name!r} has tau = r = inf (snnTorch's Leaky with beta = 1)"
            if np.allclose(r * SNNTORCH_DT, tau, rtol=1e-5):
                return "snntorch", f"node {name!r} has r = tau / 1e-4"
            if np.all(r == 1) and np.all(tau < NORSE_DT):
                return "norse", f"node {name!r} has r = 1 and tau < 1e-3 (Norse writes dt * tau)"
            if np.allclose(r, tau * np.exp(-ROCKPOOL_DT / tau) / ROCKPOOL_DT, rtol=1e-5):
                return "rockpool", f"node {name!r} has r = tau exp(-dt / tau) / dt with dt = 1e-3"
        if isinstance(node, nir.Output) and np.size(node.output_type.get("output")) == 3 and any(
                isinstance(graph.nodes[a], (nir.LIF, nir.CubaLIF)) for a, b in graph.edges if b == name):
            return "rockpool", f"Output {name!r} has type {np.asarray(node.output_type['output']).tolist()} " \
                               "(rockpool's [batch, time, n])"
        if isinstance(node, nir.Flatten) and np.array_equal(np.asarray(node.input_type.get("input")), [0, 0, 0, 0]):
            return "sinabs", f"node {name!r} (Flatten) declares input type [0, 0, 0, 0]"
        if isinstance(node, NEURON_TYPES) and np.ndim(getattr(node, "v_threshold", getattr(node, "r", 0))) == 0:
            return "norse", f"node {name!r} has 0-d parameters"
    return None


def ambiguity(graph: nir.NIRGraph) -> str | None:
    """Why `graph` cannot be read without `--from`: the first spiking node whose meaning differs between the
    tools that write NIR, when the file has neither spikeport metadata nor a writer's fingerprint."""
    if has_spikeport_metadata(graph) or detect(graph):
        return None
    for name, node in graph.nodes.items():
        if isinstance(node, SPIKING_TYPES):
            return (f"node {name!r} ({type(node).__name__}) carries no spikeport metadata and the file no writer's "
                    "fingerprint, and writers disagree on what it does (NIR and Norse reset to v_reset on v > "
                    "threshold, sinabs and rockpool subtract the threshold on v >= threshold, snnTorch records no "
                    f"reset): name the writer with --from {'|'.join(c for c in CONVENTIONS if c != 'spikeport')}")
    return None


def _expected_rank(node: nir.NIRNode) -> tuple[int, int] | None:
    """(rank, size of the first dimension it checks) of the input a weighted node takes, or None."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return 1, int(np.shape(node.weight)[1])
    if isinstance(node, nir.Conv2d):
        return 3, int(np.shape(node.weight)[1]) * int(node.groups)
    return None


def _input_shape(name: str, declared, first: tuple[str, nir.NIRNode] | None, notes: list[str]) -> tuple[int, ...]:
    """The Input's shape without the writer's batch/time dimensions, decided against the first weighted node:
    its dimensions before the ones that node takes are the writer's (nirtorch copies the sample's shape)."""
    shape = tuple(int(d) for d in np.atleast_1d(np.asarray(declared)))
    if first is None:
        return shape
    fname, fnode = first
    rank, size = _expected_rank(fnode)
    kind = type(fnode).__name__
    if len(shape) < rank or shape[-rank] != size:
        raise SpikeportError(f"Input {name!r} declares shape {list(shape)}, but the first weighted node {fname!r} "
                             f"({kind}) takes {'(C, H, W) with C = ' if rank == 3 else '('}{size}"
                             f"{'' if rank == 3 else ',)'}; the file is inconsistent")
    if len(shape) > rank:
        notes.append(f"Input {name!r}: type {list(shape)} read as {list(shape[-rank:])}; the leading "
                     f"{list(shape[:-rank])} is the writer's batch/time dimension (node {fname!r} ({kind}) takes "
                     f"a rank-{rank} input)")
    return shape[-rank:]


def _first_weighted(nodes: dict, order: list[str]) -> tuple[str, nir.NIRNode] | None:
    for name in order:
        if isinstance(nodes[name], WEIGHTED_TYPES):
            return name, nodes[name]
        if not isinstance(nodes[name], nir.Input):
            return None    # something reshapes before the first weighted node: take the Input as written
    return None


def _flatten(name: str, node: nir.Flatten, shape: tuple[int, ...], succ, notes: list[str]) -> None:
    """Flatten dims as the writer counted them: shifted by one when they counted a batch dimension (the
    weighted node after it takes the whole layer, the dims as written would not give it)."""
    node.input_type = {"input": None}
    want = _expected_rank(succ) if succ is not None else None
    got = output_shape(node, shape)
    if want and want[0] == 1 and got != (want[1],) and node.start_dim >= 1 and int(np.prod(shape)) == want[1]:
        node.start_dim -= 1
        node.end_dim = node.end_dim - 1 if node.end_dim > 0 else node.end_dim
        notes.append(f"node {name!r} (Flatten): dims counted with a batch dimension, shifted by one")


def _shapes(nodes: dict, edges: list, notes: list[str]) -> None:
    """Give every node its per-sample shape: the Input's decided by `_input_shape`, neuron parameters broadcast
    to the layer (Norse writes 0-d tensors, sinabs the membrane state's shape), Output typed from its source."""
    order = toposort(list(nodes), edges)
    shapes: dict[str, tuple[int, ...]] = {}
    first = _first_weighted(nodes, order)
    for name in order:
        node = nodes[name]
        preds = [a for a, b in edges if b == name]
        if isinstance(node, nir.Input):
            shapes[name] = _input_shape(name, node.input_type["input"], first, notes)
            node.input_type = {"input": np.array(shapes[name])}
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
                    elif arr.size != 1:
                        raise SpikeportError(f"node {name!r}: {attr} has shape {arr.shape}, the layer has {shape}")
                    arr = np.broadcast_to(arr.reshape(arr.shape if arr.ndim else ()), shape).astype(np.float32)
                setattr(node, attr, np.ascontiguousarray(arr))
        elif isinstance(node, nir.Flatten):
            succ = [nodes[b] for a, b in edges if a == name]
            _flatten(name, node, shape, succ[0] if len(succ) == 1 else None, notes)
        elif isinstance(node, nir.Output):
            declared = tuple(int(d) for d in np.atleast_1d(node.output_type.get("output", ())))
            if declared != shape:
                notes.append(f"Output {name!r}: type {list(declared)} read as {list(shape)} (the writer's "
                             "batch/time dimensions dropped)")
            node.output_type = {"output": np.array(shape)}
        try:
            shapes[name] = output_shape(node, shape)
        except GraphError as err:
            raise SpikeportError(f"node {name!r} ({type(node).__name__}) {err}") from None


def _norse(name: str, node, notes: list[str]) -> None:
    """Norse 1.1.0's to_nir writes tau = dt / tau_inv (= dt * tau); LIFCell adds its input to the current
    unscaled (i += x; v += dt/tau_mem (v_leak - v + i); i -= dt/tau_syn i), NIR's CubaLIF scales it by
    dt/tau_syn: w_in * tau_syn / dt gives Norse's current exactly."""
    if not isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF)):
        return
    for attr in _TAUS:
        if hasattr(node, attr):
            setattr(node, attr, (np.asarray(getattr(node, attr), np.float64) / NORSE_DT).astype(np.float32))
    notes.append(f"node {name!r} ({type(node).__name__}): time constants divided by dt = {NORSE_DT:g} (Norse 1.1.0 "
                 "to_nir writes dt * tau)")
    if isinstance(node, nir.CubaLIF):
        node.w_in = (np.asarray(node.w_in, np.float64) * node.tau_syn / NORSE_DT).astype(np.float32)
        notes.append(f"node {name!r} (CubaLIF): w_in multiplied by tau_syn / dt (Norse's LIFCell adds its input to "
                     "the current unscaled)")


def _snntorch(name: str, node, nodes: dict, notes: list[str]) -> None:
    """snnTorch writes Leaky(beta) as LIF(tau = 1e-4 / (1 - beta), r = tau / 1e-4): with dt = 1e-4 forward
    Euler gives v = beta v + x. beta = 1 becomes tau = r = inf, which is an IF with r = 1."""
    if isinstance(node, nir.LIF) and np.all(np.isinf(node.tau)) and np.all(np.isinf(node.r)):
        nodes[name] = nir.IF(r=np.ones_like(node.v_threshold), v_threshold=node.v_threshold,
                             v_reset=np.zeros_like(node.v_threshold))
        notes.append(f"node {name!r} (LIF): tau = r = inf is snnTorch's Leaky(beta = 1), read as IF with r = 1")


def _rockpool(name: str, node, graph_dt: float, notes: list[str]) -> None:
    """rockpool's LIFTorch: isyn = exp(-dt/tau_syn) (isyn + x); v = exp(-dt/tau_mem) v + isyn; written as
    CubaLIF(tau_syn, tau_mem, r = tau_mem exp(-dt/tau_mem) / dt) without dt. dt = tau_mem W(1 / r) (W: Lambert's
    function) recovers it; the exponential decays are then written as forward-Euler parameters at the graph's
    dt (tau' = dt / (1 - decay)) with r and w_in that give rockpool's input scaling exactly."""
    if not isinstance(node, nir.CubaLIF):
        if isinstance(node, (nir.LIF, nir.LI)):
            raise SpikeportError(f"node {name!r} ({type(node).__name__}): rockpool's {type(node).__name__} export "
                                 "is not supported (only LIFTorch, written as CubaLIF)")
        return
    tau_mem = np.asarray(node.tau_mem, np.float64)
    dt = tau_mem * lambertw(1 / np.asarray(node.r, np.float64)).real
    if not np.allclose(dt, dt.flat[0], rtol=1e-4):
        raise SpikeportError(f"node {name!r} (CubaLIF): r and tau_mem give different time steps across neurons "
                             f"({dt.min():g} to {dt.max():g} s); not a rockpool export")
    alpha, beta = np.exp(-dt / tau_mem), np.exp(-dt / np.asarray(node.tau_syn, np.float64))
    node.tau_mem = (graph_dt / (1 - alpha)).astype(np.float32)
    node.tau_syn = (graph_dt / (1 - beta)).astype(np.float32)
    node.r = (1 / (1 - alpha)).astype(np.float32)
    node.w_in = (np.asarray(node.w_in, np.float64) * beta / (1 - beta)).astype(np.float32)
    notes.append(f"node {name!r} (CubaLIF): rockpool's exponential decays at dt = {float(dt.flat[0]):.6g} s "
                 "(from r and tau_mem) written as forward-Euler time constants, r and w_in; rockpool may send "
                 "several spikes per step (floor(v / threshold)), spikeport one")


def adopt(graph: nir.NIRGraph, convention: str) -> tuple[nir.NIRGraph, list[str]]:
    """`graph` as written by `convention`'s exporter, expressed in spikeport's semantics; returns (graph, notes).

    All: the Input's batch/time dimensions decided against the first weighted node, neuron parameters
      broadcast to the layer, the Output typed from its source (`_shapes`).
    nir: core NIR; reset to v_reset on v > threshold, dt = 1e-3.
    norse (1.1.0 `to_nir`): see `_norse`; reset to v_reset on v > threshold, dt = 1e-3.
    snntorch / snntorch-zero (1.0.0 `export_to_nir`): see `_snntorch`; dt = 1e-4; reset by subtraction
      (Leaky's default) or to zero (reset_mechanism="zero"), which the file does not record.
    sinabs (3.1.3 `to_nir`): IAF as IF, reset by subtraction firing on v >= threshold (MembraneSubtract).
    rockpool (3.1.0 `to_nir`): see `_rockpool`; reset by subtraction on v >= threshold.
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
    for name in list(nodes):
        if convention.startswith("snntorch"):
            _snntorch(name, nodes[name], nodes, notes)
    _shapes(nodes, edges, notes)
    dt = SNNTORCH_DT if convention.startswith("snntorch") else NORSE_DT
    reset = _RESET[convention]
    for name, node in nodes.items():
        if not isinstance(node, NEURON_TYPES):
            continue
        kind = type(node).__name__
        if convention == "norse":
            _norse(name, node, notes)
        elif convention == "rockpool":
            _rockpool(name, node, dt, notes)
        node_reset = reset if isinstance(node, SPIKING_TYPES) else "zero"
        if isinstance(node, SPIKING_TYPES) and node.v_reset is None:
            node.v_reset = np.zeros_like(np.asarray(node.v_threshold))
        node.metadata = {**(node.metadata or {}), **neuron_metadata(node_reset)}
        if convention == "snntorch" and node_reset == "subtract":
            notes.append(f"node {name!r} ({kind}): snnTorch subtracts the threshold one step after the spike and "
                         "after the decay (mem = beta mem + x - threshold z_prev, fires on mem > threshold); "
                         "spikeport's reset by subtraction removes it at the spike, before the decay, and fires "
                         "on >=: equal for beta = 1 (IF) but for inputs exactly at threshold, measured otherwise "
                         "(docs/parity.md)")
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


def read(graph: nir.NIRGraph, convention: str = AUTO) -> tuple[nir.NIRGraph, list[str]]:
    """`graph` adopted in `convention`, or with AUTO in the one its metadata or fingerprint shows; a file that
    shows neither, or a writer that does not record what it needs (snnTorch's reset), is refused naming the
    choices. `convention` given explicitly is trusted: it is the user's statement of who wrote the file."""
    if convention != AUTO:
        return adopt(graph, convention)
    if has_spikeport_metadata(graph):
        return adopt(graph, "spikeport")
    found = detect(graph)
    if found and found[0] == "snntorch":
        raise SpikeportError(f"it looks written by snnTorch ({found[1]}), which does not record the neuron reset: "
                             "read it with --from snntorch (Leaky's default reset_mechanism='subtract') or "
                             "--from snntorch-zero (reset_mechanism='zero')")
    if found:
        graph, notes = adopt(graph, found[0])
        notes.insert(0, f"writer detected from the file: {found[1]}")
        graph.metadata[IMPORTED]["notes"] = notes
        return graph, notes
    why = ambiguity(graph)
    if why:
        raise SpikeportError(why)
    analyse(graph)
    return graph, []
