"""Reference simulator: runs any feed-forward NIR graph step by step in torch, batched, CPU or CUDA.

The semantics are those of docs/nir-extensions.md; every other backend is compared against this one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import nir
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from backends import events as scatter
from backends import fixedpoint, inputs as feed, kernels, loihi_int, neurons
from backends.graph import KNOWN_TYPES, WEIGHTED_TYPES, GraphView, analyse
from backends.nirext import LAVA_CUBA, NEURON_TYPES, neuron_semantics
from backends.result import RunResult

SUPPORTED = KNOWN_TYPES


@dataclass
class Op:
    """One node lowered to torch: `step(state, x) -> (state, y)`; `spiking` marks outputs that are spikes.

    `steps_into(state, x, out, counts, rows) -> state`, where given, computes the same steps for all T of
    `x` (T, batch, ...) in place: state updated, outputs written into `out`, spike counts added to `counts`
    (batch, ...), spikes per (step, sample) written into `rows` (T, batch; int32); layer mode uses it, step
    mode keeps the pure `step`. `kernel`, where given (a `backends.kernels` neuron kernel), is such a
    `steps_into` that also takes a `kernels.Fold` of the nodes after it.
    """

    step: Callable[[Any, torch.Tensor], tuple[Any, torch.Tensor]]
    steps_into: Callable[[Any, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], Any] | None = None
    init: Callable[[int], Any] = lambda batch: None
    spiking: bool = False
    integrator: bool = False
    signed: bool = False   # spikes may be -1 (signed-memory); otherwise they are 0/1 and |z| = z
    events: Any = None     # a weighted node's event-driven form (backends.events), where it can beat dense
    in_place: Callable[[torch.Tensor], torch.Tensor] | None = None   # a stateless op writing its input (same floats)
    kernel: Any = None


def _pair(value) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(int)
    return (int(arr[0]), int(arr[-1]))


class _Lowering:
    """Turns NIR nodes into `Op`s on one device and dtype (a table keyed by node type)."""

    def __init__(self, view: GraphView, device: torch.device, dtype: torch.dtype):
        self.view, self.device, self.dtype = view, device, dtype
        self.table = {
            nir.Input: self.passthrough, nir.Output: self.passthrough, nir.Affine: self.affine,
            nir.Linear: self.affine, nir.Conv2d: self.conv2d, nir.AvgPool2d: self.pool,
            nir.SumPool2d: self.pool, nir.Flatten: self.flatten, nir.Scale: self.scale,
            nir.IF: self.if_, nir.LIF: self.lif, nir.CubaLIF: self.cubalif, nir.I: self.integrator,
            nir.LI: self.li, nir.Delay: self.delay,
        }

    def t(self, value) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=self.dtype, device=self.device)

    def lower(self, name: str) -> Op:
        node = self.view.node(name)
        return self.table[type(node)](name, node)

    def passthrough(self, name, node) -> Op:
        return Op(lambda s, x: (s, x))

    def affine(self, name, node) -> Op:
        w = self.t(node.weight)
        b = self.t(node.bias) if isinstance(node, nir.Affine) else None
        return Op(lambda s, x: (s, F.linear(x, w, b)), events=self._events(lambda: scatter.EventLinear(w, b)))

    def conv2d(self, name, node) -> Op:
        w, b = self.t(node.weight), self.t(node.bias)
        padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
        kw = dict(stride=_pair(node.stride), padding=padding, dilation=_pair(node.dilation), groups=int(node.groups))
        in_shape = self.view.shape(self.view.preds[name][0])
        events = None if isinstance(padding, str) else self._events(lambda: scatter.EventConv(w, b, in_shape, **kw))
        return Op(lambda s, x: (s, F.conv2d(x, w, b, **kw)), events=events)

    def _events(self, build):
        """The event-driven form of a weighted node, on the CPU and where the cost model lets it ever pay."""
        if not kernels.supports(self.device, self.dtype):
            return None
        events = build()
        return events if events.spike_limit(1) > 0 else None

    def pool(self, name, node) -> Op:
        kw = dict(kernel_size=_pair(node.kernel_size), stride=_pair(node.stride), padding=_pair(node.padding))
        if isinstance(node, nir.SumPool2d):
            kw["divisor_override"] = 1
        return Op(lambda s, x: (s, F.avg_pool2d(x, count_include_pad=True, **kw)))

    def flatten(self, name, node) -> Op:
        shape = self.view.shape(name)
        return Op(lambda s, x: (s, x.reshape(x.shape[0], *shape)))

    def delay(self, name, node) -> Op:
        """y(t) = x(t - d), d = delay / dt steps per element (0 before the first d steps). Stepped like a
        neuron (state across steps); its state holds the last max(d) + 1 inputs, newest first."""
        shape = self.view.shape(name)
        d = torch.as_tensor(self.view.delay_steps(name), device=self.device)
        depth = int(d.max()) + 1 if d.numel() else 1

        def step(history, x):
            history = torch.cat([x.unsqueeze(0), history[:-1]])
            return history, history.gather(0, d.expand(1, *x.shape))[0]
        return Op(step, init=lambda batch: torch.zeros(depth, batch, *shape, dtype=self.dtype, device=self.device),
                  integrator=True)

    def scale(self, name, node) -> Op:
        k = self.t(node.scale)
        return Op(lambda s, x: (s, x * k), in_place=lambda x: x.mul_(k))

    def _v0(self, name, node):
        sem = neuron_semantics(name, node, honours=(LAVA_CUBA,))
        shape = self.view.shape(name)
        v_init = self.t(sem.v_init) if sem.v_init is not None else \
            torch.zeros(shape, dtype=self.dtype, device=self.device)
        return sem, (lambda batch: v_init.expand(batch, *shape).clone())

    def if_(self, name, node) -> Op:
        sem, v0 = self._v0(name, node)
        fast = kernels.supports(self.device, self.dtype)
        if sem.signed:
            snm = neurons.SNMParams(self.t(node.r), self.t(node.v_threshold))
            kernel = kernels.SNMKernel(*snm, self.view.shape(name)) if fast else None
            return Op(lambda s, x: neurons.snm_step(s, x, snm),
                      init=lambda batch: (v0(batch), torch.zeros_like(v0(batch))), spiking=True, signed=True,
                      steps_into=kernel, kernel=kernel)
        p = neurons.IFParams(self.t(node.r), self.t(node.v_threshold), self.t(node.v_reset), sem.reset == "subtract")
        kernel = kernels.IFKernel(*p[:3], self.view.shape(name), subtract=p.subtract)

        def steps_in_torch(v, x, out, counts, rows):
            for t in range(len(x)):
                v = neurons.if_step_into(v, x[t], p, out[t], kernel.unit_r)
            counts += out.sum(0)
            rows.copy_(out.flatten(2).sum(2))
            return v
        return Op(lambda v, x: neurons.if_step(v, x, p), init=v0, spiking=True,
                  steps_into=kernel if fast else steps_in_torch, kernel=kernel if fast else None)

    def _lava_cuba(self, name, node, sem) -> Op:
        """Lava's fixed-point CUBA neuron (netx import): int64 state in Lava units, thresholds in mantissas."""
        p = neurons.LavaCubaParams(*sem.lava_cuba, vth=torch.as_tensor(
            np.asarray(node.v_threshold, np.int64) << loihi_int.ACT_SHIFT, device=self.device))
        shape = self.view.shape(name)

        def init(batch):
            return tuple(torch.zeros(batch, *shape, dtype=torch.int64, device=self.device) for _ in range(2))
        return Op(lambda s, x: neurons.lava_cuba_step(s, x, p), init=init, spiking=True)

    def lif(self, name, node) -> Op:
        sem, v0 = self._v0(name, node)
        if sem.lava_cuba:
            return self._lava_cuba(name, node, sem)
        p = neurons.LIFParams(self.t(node.tau), self.t(node.r), self.t(node.v_leak), self.t(node.v_threshold),
                              self.t(node.v_reset), sem.reset == "subtract")
        dt = self.view.dt
        return Op(lambda v, x: neurons.lif_step(v, x, p, dt), init=v0, spiking=True)

    def cubalif(self, name, node) -> Op:
        sem, v0 = self._v0(name, node)
        if sem.lava_cuba:
            return self._lava_cuba(name, node, sem)
        p = neurons.CubaLIFParams(self.t(node.tau_syn), self.t(node.tau_mem), self.t(node.r), self.t(node.v_leak),
                                  self.t(node.v_threshold), self.t(node.v_reset), self.t(node.w_in),
                                  sem.reset == "subtract")
        dt = self.view.dt
        return Op(lambda s, x: neurons.cubalif_step(s, x, p, dt),
                  init=lambda batch: (torch.zeros_like(v0(batch)), v0(batch)), spiking=True)

    def integrator(self, name, node) -> Op:
        _, v0 = self._v0(name, node)
        r = self.t(node.r)

        def step(v, x):
            v = neurons.integrator_step(v, x, r)
            return v, v
        return Op(step, init=v0, integrator=True)

    def li(self, name, node) -> Op:
        _, v0 = self._v0(name, node)
        p = neurons.LIParams(self.t(node.tau), self.t(node.r), self.t(node.v_leak))
        dt = self.view.dt

        def step(v, x):
            v = neurons.li_step(v, x, p, dt)
            return v, v
        return Op(step, init=v0, integrator=True)


LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Flatten, nir.Scale)


def linear_map(view: GraphView, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(matrix (out, in), bias (out,)) of linear node `name` (one of LINEAR_TYPES, one input) on C-order
    flattened tensors, float64: the node's own lowering applied to zero (the bias) and to the identity basis."""
    (pred,) = view.preds[name]
    in_shape, n = view.shape(pred), int(np.prod(view.shape(pred)))
    op = _Lowering(view, torch.device("cpu"), torch.float64).lower(name)
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, n, dtype=torch.float64), torch.eye(n, dtype=torch.float64)])
        y = op.step(op.init(n + 1), basis.reshape(n + 1, *in_shape))[1].reshape(n + 1, -1).numpy()
    return (y[1:] - y[0]).T, y[0]


MODES = ("layer", "step")
# 16 MB of float32 per tensor: a convolution over many steps at once costs a quarter per step of one over a single
# step (measured, LeNet-5 conv2, batch 256: 23 ms CPU per step alone, 5 ms in a stack of 16 or more steps); 2^24
# cost more CPU than 2^22 on the digits CNN in one measurement on a loaded machine. The untrained digits CNN of
# benchmarks/scaling_reference.py (few spikes) ran faster with 2^18 (0.05 s against 0.08 s at T = 32, batch 360)
DEFAULT_MAX_ELEMENTS = 1 << 22


def constant_nodes(view: GraphView, ops: dict[str, Op], varying: bool = False) -> set[str]:
    """Nodes whose output is the same at every step: the Input (direct encoding) and every stateless node
    all of whose inputs are constant. Neuron nodes (spiking or integrator) are never constant; with
    time-varying input (`varying`) no node is."""
    const: set[str] = set()
    if varying:
        return const
    for n in view.order:
        node = view.node(n)
        if n == view.input:
            const.add(n)
        elif not isinstance(node, NEURON_TYPES) and not ops[n].spiking and not ops[n].integrator \
                and all(p in const for p in view.preds[n]):
            const.add(n)
    return const


class ReferenceBackend:
    """Synchronous, zero-delay simulator of docs/nir-extensions.md; honours every node type it accepts.

    Two execution modes give identical spikes and outputs (the same float operations in the same order
    for every element):
      - `mode="step"`: step by step, every non-constant node but a readout once per step (the semantics as
        written);
      - `mode="layer"` (default): node by node over all T at once, a convolution or pooling as one batched
        call on a (T*batch, ...) tensor (slices whose input is all zero skipped, see `_stateless`), a
        Linear/Affine once per step on a fresh copy (BLAS rounding depends on row count and alignment), an
        IF or signed-memory node over all steps of a chunk in one pass (`backends.kernels`, numba, on the CPU;
        elsewhere its step in place, step by step), other neuron nodes as a loop over T; unless spikes are
        recorded, a Scale and a pooling node whose windows tile its input that follow such a neuron node are
        computed in the neuron's pass (`_fusions`, `kernels.Fold`: the same floats, no spike tensor); T is cut in
        chunks so that no (chunk*batch, *node shape) tensor a chunk holds has more than `max_elements` elements
        (at least one step is always taken).
    Inputs are direct (N, *input shape) or time-varying (N, T, *input shape), step t receiving x[:, t]
    (`backends.inputs`); a time-varying input is converted to floats one chunk of steps at a time (layer
    mode) or one step at a time (step mode), in the dtype it came in until then (bool, int8, sparse).
    In both, nodes whose inputs are all time-constant (`constant_nodes`, none under time-varying input) are
    computed once per batch, and a
    Conv2d or Linear/Affine node with an event-driven form (`backends.events`, on the CPU, for layers where it
    can pay) computes a step event-driven when that step's non-zero inputs over the batch are below the cost
    model's limit, densely otherwise: the choice depends only on the step's input, so both modes make it alike
    (its sums are taken in input order, so they can differ from dense compute in the last bit). A readout
    of spikes through one weighted node into an integrator `I` at the Output (`_Readout`) runs once, on the
    spike counts after the last step, instead of once per step: the same spikes; outputs equal to the
    per-step sum up to float rounding (exactly equal where the sums are exact, e.g. integer values below 2^24).
    """

    name = "reference"
    honours = {
        "nodes": sorted(t.__name__ for t in SUPPORTED),
        "neuron semantics": ["reset: zero", "reset: subtract", "reset: signed-memory", "v_init"],
    }

    def run(self, graph: nir.NIRGraph, inputs, T: int, *, batch_size: int = 256, device: str = "cpu",
            dtype: torch.dtype = torch.float32, record: bool = False, approximate: bool = False,
            progress: bool = False, mode: str = "layer", max_elements: int = DEFAULT_MAX_ELEMENTS,
            fixed_point: bool = False) -> RunResult:
        """Run `graph` on `inputs` (N, *input shape) or (N, T, *input shape) for `T` steps (`backends.inputs`);
        see `RunResult` for what is returned.

        `fixed_point=True` runs a quantized graph in the integer arithmetic of Lava's fixed_pt process models
        (`backends.fixedpoint`; `device`, `dtype`, `mode` and `max_elements` do not apply)."""
        if int(T) < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        if fixed_point:
            return fixedpoint.run(graph, inputs, int(T), batch_size=batch_size, record=record, progress=progress)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        if int(max_elements) < 1:
            raise ValueError(f"max_elements must be at least 1, got {max_elements}")
        view = analyse(graph, SUPPORTED)
        dev = torch.device(device)
        low = _Lowering(view, dev, dtype)
        ops = {n: low.lower(n) for n in view.order}
        x_all = feed.compact(inputs)
        varying = feed.time_varying(x_all.shape, view.shape(view.input), int(T))
        if not varying:
            x_all = x_all.to_dense().to(dtype)
        start = time.perf_counter()
        chunks: list[dict] = []
        bar = tqdm(total=len(x_all), desc=f"reference T={T}", unit="sample", disable=not progress, leave=False)
        for lo in range(0, len(x_all), batch_size):
            x = feed.rows(x_all, lo, batch_size)
            x = Feed(x, dtype, dev) if varying else x.to(dev)
            if mode == "step":
                chunks.append(self._run_batch(view, ops, x, int(T), record))
            else:
                chunks.append(self._run_layers(view, ops, x, int(T), record, int(max_elements)))
            bar.update(min(batch_size, len(x_all) - lo))
        bar.close()
        return _merge(chunks, self.name, int(T), len(x_all), time.perf_counter() - start, record)

    @staticmethod
    def _setup(view: GraphView, ops: dict[str, Op], x: "torch.Tensor | Feed", T: int, record: bool):
        batch = x.shape[0]
        out_pred = view.preds[view.output][0] if view.preds[view.output] else view.input
        out_is_state = ops[out_pred].integrator and len(view.preds[view.output]) == 1
        spiking = [n for n in view.order if ops[n].spiking]
        weighted = [n for n in view.order if isinstance(view.node(n), WEIGHTED_TYPES)]
        counts = {n: torch.zeros(batch, *view.shape(n), device=x.device) for n in spiking}
        # integer event counts: exact at any T x batch (the same in every mode)
        events = {n: torch.zeros(view.shape(view.preds[n][0]), dtype=torch.int64, device=x.device) for n in weighted}
        trains = {n: [] for n in spiking} if record else None
        const = constant_nodes(view, ops, isinstance(x, Feed))
        # constant nodes, evaluated once per batch, in order
        fixed: dict[str, torch.Tensor] = {}
        for n in view.order:
            if n in const:
                inp = x if n == view.input else _sum(fixed[p] for p in view.preds[n])
                _, fixed[n] = ops[n].step(None, inp)
        # weighted nodes fed by a constant: the same number of non-zero inputs at every step
        const_events = {n: (_sum(fixed[p] for p in view.preds[n]) != 0).sum(0)
                        for n in weighted if all(p in const for p in view.preds[n])}
        for n, c in const_events.items():
            events[n] += c * T
        return out_is_state, spiking, counts, events, trains, const, fixed, _Readout.find(view, ops)

    @staticmethod
    def _finish(ops: dict[str, Op], readout: "_Readout | None", states: dict, counts: dict, events: dict,
                sources: dict[str, str], T: int, total: torch.Tensor | None) -> torch.Tensor:
        """Input events of the weighted nodes in `sources` (node -> the spiking node that feeds it) from spike
        counts; the output: `total`, or the readout's value from the spike counts."""
        for n, p in sources.items():
            events[n] += counts[p].double().sum(0).round().long().reshape(events[n].shape)
        if readout is None:
            return total
        return readout.value(ops, counts[readout.source], states[readout.integrator], T)

    @staticmethod
    def _result(total, counts, events, trains, record) -> dict:
        return {
            "outputs": total.double().cpu().numpy(),
            "counts": {n: c.double().cpu().numpy() for n, c in counts.items()},
            "events": {n: e.double().cpu().numpy() for n, e in events.items()},
            "trains": {n: torch.cat(v, 1).numpy() for n, v in trains.items()} if record else None,
        }

    @classmethod
    def _run_batch(cls, view: GraphView, ops: dict[str, Op], x: "torch.Tensor | Feed", T: int, record: bool) -> dict:
        """Step-by-step execution (`mode="step"`)."""
        with torch.no_grad():
            out_is_state, spiking, counts, events, trains, const, fixed, readout = cls._setup(view, ops, x, T, record)
            states = {n: ops[n].init(x.shape[0]) for n in view.order if n not in const}
            skip = const | {view.input} | (readout.skipped(view) if readout else set())
            total = None
            for t in range(T):
                values: dict[str, torch.Tensor] = dict(fixed)
                if view.input not in const:
                    values[view.input] = x.steps(t, 1)[0]
                for n in view.order:
                    if n in skip:
                        continue
                    inp = _sum(values[p] for p in view.preds[n])
                    if n in events:
                        nonzero = (inp != 0).sum(0)
                        events[n] += nonzero
                        if ops[n].events is not None and ops[n].events.pays(int(nonzero.sum()), len(inp)):
                            values[n] = ops[n].events(inp)
                            continue
                    states[n], values[n] = ops[n].step(states[n], inp)
                for n in spiking:
                    counts[n] += values[n].abs()
                    if record:
                        trains[n].append(values[n].cpu().unsqueeze(1))
                if readout is None:
                    y = values[view.output]
                    total = y if out_is_state else (y.clone() if total is None else total + y)
            sources = {readout.weighted: readout.source} if readout else {}
            total = cls._finish(ops, readout, states, counts, events, sources, T, total)
        return cls._result(total, counts, events, trains, record)

    @classmethod
    def _run_layers(cls, view: GraphView, ops: dict[str, Op], x: "torch.Tensor | Feed", T: int, record: bool,
                    max_elements: int) -> dict:
        """Layer-wise execution over chunks of time steps (`mode="layer"`)."""
        batch = x.shape[0]
        with torch.no_grad():
            out_is_state, spiking, counts, events, trains, const, fixed, readout = cls._setup(view, ops, x, T, record)
            states = {n: ops[n].init(batch) for n in view.order if n not in const}
            fused = {} if record else _fusions(view, ops)
            folded = {c for chain, _ in fused.values() for c in chain}
            skip = const | {view.input} | folded | (readout.skipped(view) if readout else set())
            # the largest tensor a chunk holds: a non-constant node's output (a fused neuron's is its fold's)
            hidden = const | set(fused) | (folded - {chain[-1] for chain, _ in fused.values()})
            largest = max((int(np.prod(view.shape(n))) for n in view.order if n not in hidden), default=1)
            step_chunk = max(1, min(T, max_elements // max(1, batch * largest)))
            last_use = {}
            for n in view.order:
                for p in view.preds[n]:
                    last_use[p] = n
            # a weighted node fed by one spiking node (directly or through Flatten) receives as many events as
            # that node sent spikes
            events_from = {n: src for n in events if (src := _spiking_source(view, ops, n)) is not None}
            timed = view.input not in const
            # a GEMM's rounding can depend on its row count (BLAS blocking): one call per step, as in step mode
            per_step = {n for n in view.order if isinstance(view.node(n), (nir.Linear, nir.Affine))}
            # per non-constant node: its op, inputs, whether any input varies, the inputs it reads last
            plan = [(n, ops[n], view.preds[n], any(p not in const for p in view.preds[n]),
                     [p for p in view.preds[n] if last_use[p] == n]) for n in view.order if n not in skip]
            buffers = _Buffers()
            total = None
            for t0 in range(0, T, step_chunk):
                tc = min(step_chunk, T - t0)
                values: dict[str, torch.Tensor] = {}   # non-constant nodes: (tc, batch, *shape)
                rows: dict[str, torch.Tensor] = {}     # spiking nodes: spikes per (step, sample), (tc, batch)
                seen: dict[str, torch.Tensor] = {}     # weighted nodes: input events per (step, sample)
                if timed:
                    values[view.input] = x.steps(t0, tc)
                for n, op, preds, varying, frees in plan:
                    inp = _sum(fixed[p] if p in const else values[p] for p in preds)
                    if not varying:   # a neuron fed only by constants
                        inp = inp.unsqueeze(0).expand(tc, *inp.shape)
                    for p in frees:
                        values.pop(p, None)   # bounded memory: free a chunk once its last reader ran
                    if n in events_from:
                        seen[n] = rows[events_from[n]]
                    elif n in events:   # counted in one pass where a kernel runs
                        if kernels.supports(inp.device, inp.dtype):
                            seen[n] = kernels.count_nonzero(inp, events[n])
                        else:
                            nonzero = inp != 0
                            events[n] += nonzero.sum((0, 1))
                            seen[n] = nonzero.flatten(2).sum(2)
                    if n in fused:   # the neuron and the nodes folded into its pass (`_fusions`)
                        chain, fold = fused[n]
                        out = buffers.take(n, (tc, batch, *fold.out_shape), inp)
                        rows[n] = torch.empty(tc, batch, dtype=torch.int32, device=inp.device)
                        states[n] = op.kernel(states[n], inp, out, counts[n], rows[n], fold)
                        values[chain[-1]] = out
                    elif op.spiking or op.integrator:
                        out = buffers.take(n, inp.shape, inp) if op.spiking else torch.empty_like(inp)
                        if op.steps_into is not None:
                            rows[n] = torch.empty(tc, batch, dtype=torch.int32, device=inp.device)
                            states[n] = op.steps_into(states[n], inp, out, counts[n], rows[n])
                        else:
                            state = states[n]
                            for t in range(tc):
                                state, out[t] = op.step(state, inp[t])
                            states[n] = state
                            if op.spiking:
                                counts[n] += (out.abs() if op.signed else out).sum(0)
                                rows[n] = (out != 0).flatten(2).sum(2)
                        values[n] = out
                        if record and op.spiking:
                            trains[n].append(out.transpose(0, 1).to("cpu", copy=True))   # `out` is reused
                    elif op.in_place is not None and len(preds) == 1 and frees and ops[preds[0]].spiking:
                        # the last reader of a spiking node's chunk (counted and recorded already) scales it where
                        # it lies: no second multi-MB tensor per chunk (dnisnm's amplitudes)
                        values[n] = op.in_place(inp)
                    else:
                        flat = inp.reshape(tc * batch, *inp.shape[2:])
                        sparse = None
                        if op.events is not None:   # per step: the cost model on the step's non-zero inputs
                            sparse = op.events.pays(seen[n].sum(1), batch)
                        # a convolution skips the (step, sample) slices in which its input is all zero
                        active = seen[n].reshape(-1) != 0 if isinstance(view.node(n), nir.Conv2d) else None
                        y = _weighted(op, flat, batch, sparse, active, n in per_step)
                        values[n] = y.reshape(tc, batch, *y.shape[1:])
                if readout is None:
                    y = fixed[view.output] if view.output in const else values[view.output]
                    if out_is_state:
                        total = y[tc - 1]
                    else:
                        for t in range(tc):
                            yt = y if view.output in const else y[t]
                            total = yt.clone() if total is None else total + yt
                del values
            total = cls._finish(ops, readout, states, counts, events, events_from, T, total)
        return cls._result(total, counts, events, trains, record)


class Feed:
    """A batch of time-varying input (batch, T, *shape), in the dtype it came in; `steps` gives float chunks."""

    def __init__(self, x: torch.Tensor, dtype: torch.dtype, device: torch.device):
        self.x, self.dtype, self.device = x, dtype, device
        self.shape = x.shape

    def steps(self, t0: int, n: int) -> torch.Tensor:
        """Steps t0 .. t0+n-1 as a (n, batch, *shape) tensor of the run's dtype on its device."""
        return feed.steps(self.x, t0, n, self.dtype, self.device)


class _Buffers:
    """Output tensors of spiking nodes, one per node, reused by every chunk of a batch: allocating a few MB
    afresh per chunk cost more than the neuron update itself (page faults: glibc hands freed blocks of
    that size back to the OS)."""

    def __init__(self):
        self.store: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape, like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of `shape` (its first dimension is time) and `like`'s dtype and device."""
        buf, shape = self.store.get(name), torch.Size(shape)
        if buf is None or buf.shape[1:] != shape[1:] or len(buf) < shape[0] or buf.dtype != like.dtype:
            buf = self.store[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf[:shape[0]]


def _fusions(view: GraphView, ops: dict[str, Op]) -> dict[str, tuple[tuple[str, ...], kernels.Fold]]:
    """Spiking nodes run by a kernel (`Op.kernel`) whose only reader is a Scale, a pooling node whose windows tile
    its input (kernel = stride, no padding), or a Scale and then such a pooling node, each with no other input:
    {neuron: (those nodes, in order; the `kernels.Fold` that computes the last one's output in the neuron's
    pass)}. Layer mode then writes no spike tensor, no scaled copy and no pooling input."""
    fused = {}
    for n in view.order:
        if ops[n].kernel is None:
            continue
        chain, scale, window, divisor = [], None, None, 1.0
        reader = _sole_reader(view, n)
        if reader is not None and isinstance(view.node(reader), nir.Scale):
            chain.append(reader)
            scale = np.asarray(view.node(reader).scale)
            reader = _sole_reader(view, reader)
        if reader is not None and len(view.shape(n)) == 3 and _tiles(view.node(reader)):
            chain.append(reader)
            window = _pair(view.node(reader).kernel_size)
            divisor = 1.0 if isinstance(view.node(reader), nir.SumPool2d) else float(np.prod(window))
        if chain:
            dtype = ops[n].kernel.params[0].dtype
            fused[n] = (tuple(chain), kernels.Fold(view.shape(n), dtype, scale, window, divisor))
    return fused


def _sole_reader(view: GraphView, name: str) -> str | None:
    """The one node reading `name`, if it reads nothing else and is not the Output; else None."""
    succs = view.succs(name)
    if len(succs) != 1 or len(view.preds[succs[0]]) != 1 or succs[0] == view.output:
        return None
    return succs[0]


def _tiles(node) -> bool:
    """Whether `node` is a pooling node whose windows tile its input: kernel = stride, no padding."""
    return isinstance(node, (nir.AvgPool2d, nir.SumPool2d)) and _pair(node.kernel_size) == _pair(node.stride) \
        and _pair(node.padding) == (0, 0)


def _spiking_source(view: GraphView, ops: dict[str, Op], name: str) -> str | None:
    """The spiking node whose spikes reach `name` unchanged (one predecessor, through Flatten nodes only)."""
    node = name
    while len(view.preds[node]) == 1:
        node = view.preds[node][0]
        if ops[node].spiking:
            return node
        if not isinstance(view.node(node), nir.Flatten):
            return None
    return None


@dataclass
class _Readout:
    """A linear readout run once on spike counts: `source` (a 0/1 spiking node) -> Flatten* -> `weighted`
    (Conv2d, Linear or Affine) -> `integrator` (NIR `I`) -> the graph's Output, no node of the chain read by
    any other. The integrator's final state, v0 + r * sum_t W(s_t), equals v0 + r * (W(C) + (T-1) W(0)) with
    C = sum_t s_t the source's spike counts (W is affine): one call replaces T. The sum over steps is taken
    on integer counts before the weights instead of on floats after them, so outputs can differ from a
    step-by-step sum in the last bits of float rounding (the spikes are unchanged); `chain` is every node
    after `source` up to `integrator`, none of which runs per step."""

    source: str
    weighted: str
    integrator: str
    chain: tuple[str, ...]

    @classmethod
    def find(cls, view: GraphView, ops: dict[str, Op]) -> "_Readout | None":
        preds = view.preds[view.output]
        if len(preds) != 1 or not isinstance(view.node(preds[0]), nir.I) or len(view.preds[preds[0]]) != 1:
            return None
        integrator, weighted = preds[0], view.preds[preds[0]][0]
        source = _spiking_source(view, ops, weighted) if isinstance(view.node(weighted), WEIGHTED_TYPES) else None
        if source is None or ops[source].signed:
            return None
        chain, node = [integrator, weighted], weighted
        while view.preds[node][0] != source:
            node = view.preds[node][0]
            chain.append(node)
        if any(len(view.succs(n)) != 1 for n in chain):
            return None
        return cls(source, weighted, integrator, tuple(reversed(chain)))

    def skipped(self, view: GraphView) -> set[str]:
        """The nodes no step runs: the chain and the Output it feeds."""
        return {*self.chain, view.output}

    def value(self, ops: dict[str, Op], counts: torch.Tensor, v0: torch.Tensor, T: int) -> torch.Tensor:
        """The integrator's state after T steps from `counts` (batch, *source shape) and its initial `v0`."""
        x = counts.to(v0.dtype)
        for n in self.chain[:-2]:   # the Flatten nodes
            x = ops[n].step(None, x)[1]
        w = ops[self.weighted]
        y = w.step(None, x)[1]
        if T > 1:
            y = y + (T - 1) * w.step(None, x[:1].new_zeros(1, *x.shape[1:]))[1]
        return ops[self.integrator].step(v0, y)[1]


SILENT_SKIP_FRACTION = 0.1


def _stateless(op: Op, x: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
    """`op` on a (T*batch, ...) stack of inputs. Given `active` (per slice: whether its input has a non-zero),
    when at least SILENT_SKIP_FRACTION of the slices are silent (steps at which a sample's whole input layer
    is silent), only the others are computed and the silent ones get op(0) (the bias: exact, as 0*w sums to
    zero for finite weights)."""
    if active is not None:
        n_active = int(active.sum())
        if n_active <= (1 - SILENT_SKIP_FRACTION) * len(x):
            _, y0 = op.step(None, x[:1].new_zeros(1, *x.shape[1:]))
            y = y0.expand(len(x), *y0.shape[1:]).clone()
            if n_active:
                y[active] = op.step(None, x[active])[1]
            return y
    return op.step(None, x)[1]


def _weighted(op: Op, x: torch.Tensor, batch: int, sparse: torch.Tensor | None, active: torch.Tensor | None,
              per_step: bool) -> torch.Tensor:
    """A stateless node on a (T*batch, ...) stack: the steps marked in `sparse` (T,) by its event-driven form,
    the others dense (`_per_step` or `_stateless`, which skips the slices not `active`)."""
    def dense(rows, act):
        return _per_step(op, rows, batch) if per_step else _stateless(op, rows, act)
    if sparse is None or not bool(sparse.any()):
        return dense(x, active)
    if bool(sparse.all()):
        return op.events(x)
    by_row = sparse.repeat_interleave(batch)
    y = x.new_empty(len(x), *op.events.out_shape)
    y[by_row] = op.events(x[by_row])
    y[~by_row] = dense(x[~by_row], None if active is None else active[~by_row])
    return y


def _per_step(op: Op, x: torch.Tensor, batch: int) -> torch.Tensor:
    """`op` on a (T*batch, ...) stack one step (`batch` rows) at a time, each step's rows 64-byte aligned as a
    fresh tensor is (copied where they are not), so that BLAS rounds as it does in step mode."""
    steps = [xt if xt.data_ptr() % 64 == 0 else xt.clone() for xt in x.split(batch)]
    ys = [op.step(None, xt)[1] for xt in steps]
    return ys[0] if len(ys) == 1 else torch.cat(ys)


def _sum(tensors):
    it = iter(tensors)
    acc = next(it)
    for t in it:
        acc = acc + t
    return acc


def _merge(chunks: list[dict], backend: str, T: int, n: int, seconds: float, record: bool) -> RunResult:
    names = chunks[0]["counts"].keys()
    per_neuron = {k: np.concatenate([c["counts"][k] for c in chunks]) for k in names}
    return RunResult(
        backend=backend,
        T=T,
        outputs=np.concatenate([c["outputs"] for c in chunks]),
        spike_counts={k: v.reshape(n, -1).sum(1) for k, v in per_neuron.items()},
        neuron_counts={k: v.mean(0) for k, v in per_neuron.items()},
        input_events={k: sum(c["events"][k] for c in chunks) / n for k in chunks[0]["events"]},
        spikes={k: np.concatenate([c["trains"][k] for c in chunks]) for k in names} if record else None,
        seconds=seconds,
    )
