"""The Lava backend: runs a NIR graph on lava-nc's floating-point process models (Loihi2SimCfg), and a
quantized graph on its bit-accurate fixed-point models (select_tag="fixed_pt").

One network is compiled per chunk of samples and streams them (direct or time-varying input) back to back;
results come back from each neuron layer's bookkeeping, aligned to the synchronous time base of
docs/nir-extensions.md.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import nir
import numpy as np
from tqdm.auto import tqdm

from backends import fixedpoint
from backends.graph import analyse
from backends.lava.lowering import LOWERINGS, Builder, Network
from backends.lava.stock import is_netx_graph
from backends.lava.stream import time_varying
from backends.nirext import SPIKING_TYPES, fixed_point
from backends.result import RunResult
from lava.magma.core.process.process import ProcessServer
from lava.magma.core.process.variable import VarServer
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg

SUPPORTED_TYPES = tuple(LOWERINGS)
SELECT_TAG = "floating_pt"
FIXED_TAG = "fixed_pt"   # the tag for quantized graphs (graph metadata spikeport.fixed_point)
PROGRESS_BLOCKS = 50  # a progress bar advances this many times per compiled network


class LavaBackend:
    """Runs NIR graphs on Lava (CPU simulation of Loihi 2 process models): a float graph on the floating-point
    models, a quantized graph (`spikeport quantize`) on the fixed_pt models, bit-exact with `backends.fixedpoint`.

    IF/LIF/CubaLIF nodes run on Lava's own LIF process (`lava.proc.lif.LIFReset`) where their semantics are
    its (a graph imported from lava-dl netx, with Lava's 12-bit CUBA decays, on its fixed-point model with the
    file's integers), the rest on spikeport's processes (`backends/lava/procs/`; docs/nir-extensions.md, "On Lava").
    Every node type in `SUPPORTED_TYPES` and every neuron semantics of docs/nir-extensions.md is run
    faithfully, so `approximate` never has anything to ignore; what cannot be lowered (e.g. a Conv2d
    with asymmetric 'same' padding, or int8 overflow of Lava's Conv parameters with conv='conv') raises
    `backends.Unsupported` naming the node.
    """

    name = "lava"
    honours = {
        "nodes": sorted(t.__name__ for t in SUPPORTED_TYPES),
        "neuron semantics": ["reset: zero", "reset: subtract", "reset: signed-memory", "v_init",
                             "lava_cuba (netx graphs, on Lava's fixed-point LIF)"],
        "limits": ["Conv2d: symmetric padding (conv='conv' also: kernel, stride, padding, dilation, groups <= 127)",
                   "Flatten: of all non-batch dimensions", "Delay: not of an input carrying a constant bias"],
    }
    memory_budget = 64 * 2**20  # bytes of spike rasters per compiled network

    def run(self, graph: nir.NIRGraph, inputs: np.ndarray, T: int, *, record: bool = False,
            approximate: bool = False, progress: bool = False, conv: str = "sparse",
            neurons: str = "stock") -> RunResult:
        """Run `graph` for `T` steps per sample on `inputs` (torch layout): (N, *input shape) drives every
        step with the same tensor (direct encoding), (N, T, *input shape) gives step t its own `x[:, t]`
        (binary, signed or graded events); either streams in blocks through Lava's SpikeDataloader.

        `record` adds spike trains (N, T, *shape) per spiking node; `approximate` is accepted for the
        common backend interface but never changes anything here (see the class docstring); `conv` picks
        the Lava process a Conv2d becomes (`lowering.CONV_PROCESSES`); `neurons="stock"` runs IF/LIF/CubaLIF
        nodes on Lava's own LIF process wherever their semantics are its (`backends.lava.stock`),
        `"custom"` all of them on spikeport's `NeuronLayer` (`lowering.NEURON_PROCESSES`).
        """
        if int(T) < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        T = int(T)
        view = analyse(graph, SUPPORTED_TYPES)
        inputs = np.asarray(inputs)
        if inputs.ndim == 0 or len(inputs) == 0:
            raise ValueError(f"inputs must hold at least one sample, got an array of shape {inputs.shape}")
        varying = time_varying(inputs.shape, view.shape(view.input), T)
        chunk = self._chunk_size(view, len(inputs), T, record)
        quantized = fixed_point("graph", graph.metadata, "graph") is not None
        netx = is_netx_graph(view)
        if quantized:
            fixedpoint.input_format(graph)
            out_unit = fixedpoint.output_unit(view)
        start = time.perf_counter()
        parts = []
        with tqdm(total=len(inputs) * T, desc=f"lava T={T}", unit="step", disable=not progress, leave=False) as bar:
            for lo in range(0, len(inputs), chunk):
                parts.append(_run_chunk(view, inputs[lo:lo + chunk], T, record, bar if progress else None,
                                        FIXED_TAG if quantized or netx else SELECT_TAG,
                                        dict(conv=conv, varying=varying, neurons=neurons)))
        result = _merge(parts, T, len(inputs), time.perf_counter() - start, record)
        if quantized:   # integer outputs back to values; an added output integrator holds them in v units
            pred = view.node(view.preds[view.output][0])
            result.outputs = result.outputs * (out_unit if isinstance(pred, fixedpoint.INTEGRATORS)
                                               else out_unit / 2 ** fixedpoint.ACT_SHIFT)
        if netx:   # the output integrator holds v units (x << 6); netx's own readout I scales them by its r
            pred = view.node(view.preds[view.output][0])
            r = np.asarray(pred.r, np.float64).reshape(-1) if isinstance(pred, nir.I) else 1.0
            result.outputs = result.outputs * r / 2 ** fixedpoint.ACT_SHIFT
        return result

    def neuron_processes(self, graph: nir.NIRGraph, *, neurons: str = "stock") -> dict[str, str]:
        """The Lava process each neuron node of `graph` runs on: 'LIFReset' (lava.proc.lif) or 'NeuronLayer
        (<why not LIFReset>)' (the network is lowered, not compiled or run)."""
        view = analyse(graph, SUPPORTED_TYPES)
        inputs = np.zeros((1, *view.shape(view.input)))
        with forgotten_afterwards(), tempfile.TemporaryDirectory(prefix="spikeport-lava-") as workdir:
            net = Builder(view, inputs, 1, False, Path(workdir), neurons=neurons).build()
            return {name: layer.proc.__class__.__name__ + (f" ({layer.why_custom})" if layer.why_custom else "")
                    for name, layer in net.layers.items() if name != view.output}

    def _chunk_size(self, view, n: int, T: int, record: bool) -> int:
        """Samples per compiled network: all of them, unless the spike rasters of `record` would exceed
        `memory_budget` (the input streams in blocks of bounded size, `stream.BLOCK_BYTES`)."""
        if not record:
            return n
        per_step = sum(int(np.prod(view.shape(k))) for k in view.order if isinstance(view.node(k), SPIKING_TYPES))
        return int(min(n, max(1, self.memory_budget // (max(1, per_step) * T))))


def _run_chunk(view, inputs: np.ndarray, T: int, record: bool, bar=None, select_tag: str = SELECT_TAG,
               options: dict | None = None) -> dict:
    """Compile, run and read back one network for `inputs`; Lava is stopped whatever happens.

    With a progress `bar` the run proceeds in blocks of steps (Lava resumes where it paused); `options` are
    `Builder`'s keyword arguments.
    """
    workdir = Path(tempfile.mkdtemp(prefix="spikeport-lava-"))
    net: Network | None = None
    with forgotten_afterwards():
        try:
            net = Builder(view, inputs, T, record, workdir, **(options or {})).build()
            cfg = Loihi2SimCfg(select_tag=select_tag)
            block = net.steps if bar is None else max(T, net.steps // PROGRESS_BLOCKS)
            done = 0
            while done < net.steps:
                steps = min(block, net.steps - done)
                net.source.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
                if bar is not None:
                    bar.update(max(0, min(done + steps, len(inputs) * T) - done))
                done += steps
            errors = sorted(workdir.glob("*.err"))
            if errors:
                raise RuntimeError(errors[0].read_text())
            return _collect(net, record)
        finally:
            if net is not None:
                net.source.stop()
            shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def forgotten_afterwards():
    """Lava's ProcessServer and VarServer keep every process and Var ever created, with their data
    (with their data); drop those created inside the block when it ends, so
    repeated runs in one Python process do not pile up memory."""
    processes, variables = ProcessServer(), VarServer()
    n_processes, n_vars = len(processes.processes), len(variables.vars)
    try:
        yield
    finally:
        del processes.processes[n_processes:]
        del variables.vars[n_vars:]


def _collect(net: Network, record: bool) -> dict:
    out: dict = {"counts": {}, "per_neuron": {}, "spikes": {} if record else None, "events": {}}
    for name, layer in net.layers.items():
        if not layer.spiking:
            continue
        data = _load(layer)
        out["counts"][name] = data["per_sample"]
        out["per_neuron"][name] = layer.signal.to_torch(data["per_neuron"], lead=0)
        if record:
            out["spikes"][name] = layer.signal.to_torch(data["raster"], lead=2).astype(np.float32)
    for name, counter in net.counters.items():
        out["events"][name] = counter.signal.to_torch(_load(counter)["events"], lead=0)
    final = _load(net.output)["final"]
    out["outputs"] = net.output.signal.to_torch(final, lead=1).reshape(len(final), -1)
    return out


def _load(item) -> dict:
    if not item.dump.exists():
        raise RuntimeError(f"Lava run ended without results from {item.name!r} ({item.dump})")
    with np.load(item.dump) as data:
        return dict(data)


def _merge(parts: list[dict], T: int, n: int, seconds: float, record: bool) -> RunResult:
    names = list(parts[0]["counts"])
    return RunResult(
        backend="lava",
        T=T,
        outputs=np.concatenate([p["outputs"] for p in parts]),
        spike_counts={k: np.concatenate([p["counts"][k] for p in parts]) for k in names},
        neuron_counts={k: sum(p["per_neuron"][k] for p in parts) / n for k in names},
        input_events={k: sum(p["events"][k] for p in parts) / n for k in parts[0]["events"]},
        spikes={k: np.concatenate([p["spikes"][k] for p in parts]) for k in names} if record else None,
        seconds=seconds,
    )
