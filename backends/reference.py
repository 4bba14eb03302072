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

from backends import neurons
from backends.graph import KNOWN_TYPES, WEIGHTED_TYPES, GraphView, analyse
from backends.nirext import neuron_semantics
from backends.result import RunResult

SUPPORTED = KNOWN_TYPES


@dataclass
class Op:
    """One node lowered to torch: `step(state, x) -> (state, y)`; `spiking` marks outputs that are spikes."""

    step: Callable[[Any, torch.Tensor], tuple[Any, torch.Tensor]]
    init: Callable[[int], Any] = lambda batch: None
    spiking: bool = False
    integrator: bool = False


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
            nir.LI: self.li,
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
        return Op(lambda s, x: (s, F.linear(x, w, b)))

    def conv2d(self, name, node) -> Op:
        w, b = self.t(node.weight), self.t(node.bias)
        padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
        kw = dict(stride=_pair(node.stride), padding=padding, dilation=_pair(node.dilation), groups=int(node.groups))
        return Op(lambda s, x: (s, F.conv2d(x, w, b, **kw)))

    def pool(self, name, node) -> Op:
        kw = dict(kernel_size=_pair(node.kernel_size), stride=_pair(node.stride), padding=_pair(node.padding))
        if isinstance(node, nir.SumPool2d):
            kw["divisor_override"] = 1
        return Op(lambda s, x: (s, F.avg_pool2d(x, count_include_pad=True, **kw)))

    def flatten(self, name, node) -> Op:
        shape = self.view.shape(name)
        return Op(lambda s, x: (s, x.reshape(x.shape[0], *shape)))

    def scale(self, name, node) -> Op:
        k = self.t(node.scale)
        return Op(lambda s, x: (s, x * k))

    def _v0(self, name, node):
        sem = neuron_semantics(name, node)
        shape = self.view.shape(name)
        v_init = self.t(sem.v_init) if sem.v_init is not None else torch.zeros(shape, dtype=self.dtype, device=self.device)
        return sem, (lambda batch: v_init.expand(batch, *shape).clone())

    def if_(self, name, node) -> Op:
        sem, v0 = self._v0(name, node)
        if sem.signed:
            snm = neurons.SNMParams(self.t(node.r), self.t(node.v_threshold))
            return Op(lambda s, x: neurons.snm_step(s, x, snm),
                      init=lambda batch: (v0(batch), torch.zeros_like(v0(batch))), spiking=True)
        p = neurons.IFParams(self.t(node.r), self.t(node.v_threshold), self.t(node.v_reset), sem.reset == "subtract")
        return Op(lambda v, x: neurons.if_step(v, x, p), init=v0, spiking=True)

    def lif(self, name, node) -> Op:
        sem, v0 = self._v0(name, node)
        p = neurons.LIFParams(self.t(node.tau), self.t(node.r), self.t(node.v_leak), self.t(node.v_threshold),
                              self.t(node.v_reset), sem.reset == "subtract")
        dt = self.view.dt
        return Op(lambda v, x: neurons.lif_step(v, x, p, dt), init=v0, spiking=True)

    def cubalif(self, name, node) -> Op:
        sem, v0 = self._v0(name, node)
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


class ReferenceBackend:
    """Synchronous, zero-delay simulator of docs/nir-extensions.md; honours every node type it accepts."""

    name = "reference"
    honours = {
        "nodes": sorted(t.__name__ for t in SUPPORTED),
        "neuron semantics": ["reset: zero", "reset: subtract", "reset: signed-memory", "v_init"],
    }

    def run(self, graph: nir.NIRGraph, inputs, T: int, *, batch_size: int = 256, device: str = "cpu",
            dtype: torch.dtype = torch.float32, record: bool = False, approximate: bool = False,
            progress: bool = False) -> RunResult:
        """Run `graph` on `inputs` (N, *input shape) for `T` steps; see `RunResult` for what is returned."""
        if int(T) < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        view = analyse(graph, SUPPORTED)
        dev = torch.device(device)
        low = _Lowering(view, dev, dtype)
        ops = {n: low.lower(n) for n in view.order}
        x_all = torch.as_tensor(np.asarray(inputs), dtype=dtype)
        want = view.shape(view.input)
        if tuple(x_all.shape[1:]) != want:
            raise ValueError(f"inputs have shape {tuple(x_all.shape[1:])} per sample, the graph's Input expects {want}")
        start = time.perf_counter()
        chunks: list[dict] = []
        bar = tqdm(total=len(x_all), desc=f"reference T={T}", unit="sample", disable=not progress, leave=False)
        for lo in range(0, len(x_all), batch_size):
            chunks.append(self._run_batch(view, ops, x_all[lo:lo + batch_size].to(dev), int(T), record))
            bar.update(min(batch_size, len(x_all) - lo))
        bar.close()
        return _merge(chunks, self.name, int(T), len(x_all), time.perf_counter() - start, record)

    @staticmethod
    def _run_batch(view: GraphView, ops: dict[str, Op], x: torch.Tensor, T: int, record: bool) -> dict:
        batch = x.shape[0]
        states = {n: op.init(batch) for n, op in ops.items()}
        out_pred = view.preds[view.output][0] if view.preds[view.output] else view.input
        out_is_state = ops[out_pred].integrator and len(view.preds[view.output]) == 1
        spiking = [n for n in view.order if ops[n].spiking]
        weighted = [n for n in view.order if isinstance(view.node(n), WEIGHTED_TYPES)]
        counts = {n: torch.zeros(batch, *view.shape(n), device=x.device) for n in spiking}
        events = {n: torch.zeros(view.shape(view.preds[n][0]), device=x.device) for n in weighted}
        trains = {n: [] for n in spiking} if record else None
        total = None
        with torch.no_grad():
            for _ in range(T):
                values: dict[str, torch.Tensor] = {}
                for n in view.order:
                    inp = x if n == view.input else _sum(values[p] for p in view.preds[n])
                    if n in events:
                        events[n] += (inp != 0).sum(0).to(events[n].dtype)
                    states[n], values[n] = ops[n].step(states[n], inp)
                for n in spiking:
                    counts[n] += values[n].abs()
                    if record:
                        trains[n].append(values[n].cpu())
                y = values[view.output]
                total = y if out_is_state else (y.clone() if total is None else total + y)
        return {
            "outputs": total.double().cpu().numpy(),
            "counts": {n: c.double().cpu().numpy() for n, c in counts.items()},
            "events": {n: e.double().cpu().numpy() for n, e in events.items()},
            "trains": {n: torch.stack(v, 1).numpy() for n, v in trains.items()} if record else None,
        }


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
