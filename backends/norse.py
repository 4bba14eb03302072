"""The Norse backend: runs a NIR graph through `norse.torch.from_nir` (norse 1.1.0), batched, step by step.

It honours only what Norse's NIR import implements and refuses the rest, naming node and semantics
(`mismatches`), unless `approximate=True`; spike counts per layer come from nirtorch's per-node cache.
"""
from __future__ import annotations

import copy
import time

import nir
import numpy as np
import torch
from tqdm.auto import tqdm

from backends import inputs as feed
from backends.graph import GraphView, analyse
from backends.nirext import neuron_semantics
from backends.result import RunResult, Unsupported, first_reason

# Node types Norse's from_nir maps to torch modules; `I` only as the readout before Output (see `readout`),
# `Scale` only right after the Input (see `input_scale`).
SUPPORTED_TYPES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d, nir.Flatten, nir.IF,
                   nir.LIF, nir.I, nir.Scale)


def input_scale(view: GraphView) -> str | None:
    """The `Scale` node the Input feeds alone, if any (netx imports carry one). from_nir maps no Scale; this
    backend multiplies the inputs by it instead, which is the same product."""
    succ = view.succs(view.input)
    if len(succ) == 1 and isinstance(view.node(succ[0]), nir.Scale) and len(view.preds[succ[0]]) == 1:
        return succ[0]
    return None


def readout(view: GraphView) -> str | None:
    """The `I` node feeding the Output, if any. Norse has no `I` module; its final state is r times the sum
    of its inputs over the T steps (docs/nir-extensions.md), which this backend computes from what Norse
    delivers to it, so the readout is exact."""
    pred = view.preds[view.output]
    if len(pred) == 1 and isinstance(view.node(pred[0]), nir.I) and len(view.succs(pred[0])) == 1:
        return pred[0]
    return None


def mismatches(view: GraphView) -> list[str]:
    """What Norse 1.1.0's from_nir would run differently from docs/nir-extensions.md, one line per gap.

    Norse's IAFCell and LIFBoxCell fire on v > v_th and reset to 0 (norse/torch/functional/iaf.py,
    lif_box.py); from_nir passes neither `r` nor `v_reset` nor an initial state.
    """
    out = []
    ro = readout(view)
    for name in view.order:
        node = view.node(name)
        if isinstance(node, nir.I) and name != ro:
            out.append(f"node {name!r} (I): Norse has no integrator module; only an I feeding the Output "
                       "is supported (as the readout)")
        if isinstance(node, nir.SumPool2d) and np.any(np.asarray(node.padding) != 0):
            out.append(f"node {name!r} (SumPool2d): padding {np.asarray(node.padding).tolist()} — Norse's "
                       "LPPool2d(norm_type=1) pools without padding")
        if not isinstance(node, (nir.IF, nir.LIF)):
            continue
        kind = type(node).__name__
        sem = neuron_semantics(name, node)
        if sem.reset != "zero":
            out.append(f"node {name!r} ({kind}): reset {sem.reset!r} — Norse resets to 0 after v > v_threshold "
                       "(no reset by subtraction, fires on > not >=)")
        if not np.allclose(node.v_reset, 0) and sem.reset == "zero":
            out.append(f"node {name!r} ({kind}): v_reset != 0 — Norse resets to 0")
        if not np.allclose(node.r, 1):
            out.append(f"node {name!r} ({kind}): r != 1 — Norse ignores r")
        if sem.v_init is not None and np.any(sem.v_init != 0):
            out.append(f"node {name!r} ({kind}): v_init — Norse starts every membrane at 0")
    return out


def _ints(value) -> tuple[int, int]:
    return tuple(int(v) for v in np.broadcast_to(np.atleast_1d(value), (2,)))


def _norse_graph(view: GraphView, ro: str | None, head: str | None) -> nir.NIRGraph:
    """A copy of the graph in the form from_nir accepts: integer tuples for Conv2d arguments, Flatten dims
    counted with the batch (from_nir hands them to torch.nn.Flatten unchanged), the readout `I` removed
    (its input goes straight to the Output), the input `Scale` removed (its output taken from the Input)."""
    nodes = {}
    for name in view.order:
        if name in (ro, head):
            continue
        node = copy.copy(view.node(name))
        if isinstance(node, nir.Conv2d):
            node.stride, node.dilation = _ints(node.stride), _ints(node.dilation)
            if not isinstance(node.padding, str):
                node.padding = _ints(node.padding)
            node.groups = int(node.groups)
        if isinstance(node, nir.Flatten):   # NIR counts dims without the batch; Norse's torch Flatten with it
            node.start_dim = node.start_dim + 1
            node.end_dim = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        nodes[name] = node
    edges = [(a, b) for a, b in view.graph.edges if not {a, b} & {ro, head}]
    if ro is not None:
        edges += [(p, view.output) for p in view.preds[ro]]
    if head is not None:
        edges += [(view.input, s) for s in view.succs(head)]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


class NorseBackend:
    """Runs NIR graphs with Norse: a Scale after the Input, Affine, Linear, Conv2d, SumPool2d (unpadded;
    Norse's LPPool2d with norm 1 sums |x|, the sum for the spikes of the neurons it honours), Flatten, IF and
    LIF with core-NIR reset (to 0, on v > threshold, r = 1), and an `I` readout before the Output. Anything else raises
    `backends.Unsupported` naming the node and the semantics Norse lacks; with `approximate=True` it runs
    anyway and the result carries `approximate=True` and those lines in `ignored`."""

    name = "norse"
    honours = {
        "nodes": sorted(t.__name__ for t in SUPPORTED_TYPES),
        "neuron semantics": ["reset: zero with v_reset = 0 and r = 1"],
        "limits": ["I: only as the readout feeding the Output", "Scale: only right after the Input"],
    }

    def run(self, graph: nir.NIRGraph, inputs, T: int, *, batch_size: int = 256, record: bool = False,
            approximate: bool = False, progress: bool = False) -> RunResult:
        """Run `graph` on `inputs` (N, *input shape) or (N, T, *input shape) for `T` steps (`backends.inputs`);
        see `RunResult`."""
        if int(T) < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        T = int(T)
        try:
            view = analyse(graph, SUPPORTED_TYPES)
        except ValueError as err:
            raise Unsupported(f"norse: {err}") from None
        head = input_scale(view)
        stray = [n for n in view.order if isinstance(view.node(n), nir.Scale) and n != head]
        if stray:
            raise Unsupported(f"norse: node {stray[0]!r} (Scale): Norse has no scaling module; only a Scale right "
                              "after the Input runs (applied to the inputs)")
        gaps = mismatches(view)
        if gaps and not approximate:
            raise Unsupported(f"norse cannot run this graph faithfully: {first_reason(gaps)}; pass approximate=True (`spikeport parity --approximate`) to run it anyway")
        ro = readout(view)
        r = torch.as_tensor(np.asarray(view.node(ro).r), dtype=torch.float32) if ro else None
        import norse.torch as norse_torch   # heavy import, only when this backend runs
        module = norse_torch.from_nir(_norse_graph(view, ro, head), ignore_warnings=True, dt=view.dt)
        spiking = [n for n in view.order if isinstance(view.node(n), (nir.IF, nir.LIF))]
        x_all = feed.compact(inputs)
        varying = feed.time_varying(x_all.shape, view.shape(view.input), T)
        if not varying:
            x_all = x_all.to_dense().to(torch.float32)
        scale = torch.as_tensor(np.asarray(view.node(head).scale), dtype=torch.float32) if head else None
        start = time.perf_counter()
        outputs, counts, trains = [], {n: [] for n in spiking}, {n: [] for n in spiking}
        with torch.no_grad(), tqdm(total=len(x_all), desc=f"norse T={T}", unit="sample", disable=not progress,
                                   leave=False) as bar:
            for lo in range(0, len(x_all), batch_size):
                x = feed.rows(x_all, lo, batch_size)
                state, total = None, None
                per = {n: torch.zeros(len(x), *view.shape(n)) for n in spiking}
                steps = {n: [] for n in spiking}
                for t in range(T):
                    xt = feed.steps(x, t, 1, torch.float32)[0] if varying else x
                    y, state = module(xt if scale is None else xt * scale, state)
                    total = y.clone() if total is None else total + y
                    for n in spiking:
                        z = state.cache[n]
                        per[n] += z
                        if record:
                            steps[n].append(z.unsqueeze(1))
                outputs.append((total * r if r is not None else total).double().numpy())
                for n in spiking:
                    counts[n].append(per[n].double().numpy())
                    if record:
                        trains[n].append(torch.cat(steps[n], 1).numpy())
                bar.update(len(x))
        per_neuron = {n: np.concatenate(c) for n, c in counts.items()}
        n_samples = len(x_all)
        return RunResult(
            backend=self.name, T=T, outputs=np.concatenate(outputs),
            spike_counts={n: v.reshape(n_samples, -1).sum(1) for n, v in per_neuron.items()},
            neuron_counts={n: v.mean(0) for n, v in per_neuron.items()},
            spikes={n: np.concatenate(t) for n, t in trains.items()} if record else None,
            seconds=time.perf_counter() - start, approximate=bool(gaps), ignored=gaps,
        )
