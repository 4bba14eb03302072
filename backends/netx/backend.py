"""The netx backend: runs a NIR graph (exported with `export_netx`) or a netx HDF5 file through lava-dl's
`lava.lib.dl.netx.hdf5.Network` on Lava's bit-accurate fixed-point CPU models.

Samples stream back to back, each step's input (held for T steps, or step t of a time-varying input) sent as
graded spikes from a RingBuffer source into netx's input; netx's own per-layer reset (`reset_interval=T`, staggered one step per layer
to follow the one-step synaptic delay) gives every layer exactly T synchronous steps per sample.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import h5py
import nir
import numpy as np
from tqdm.auto import tqdm

import backends.lava  # noqa: F401  (spikeport's Python 3.11 and start-method fixes, before any lava import)
from backends import inputs as feed
from backends.lava.backend import forgotten_afterwards
from backends.netx.layout import STATE_SHIFT, file_info, never_fires, read_int, read_str
from backends.netx.writer import plan, write
from backends.result import RunResult, Unsupported, first_reason
from lava.lib.dl.netx.hdf5 import Network
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.proc.monitor.process import Monitor

INPUT_BITS = 16          # graded input messages: inputs must be integers below 2**15 in magnitude
MEMORY_BUDGET = 64 * 2**20


def input_scale(inputs: np.ndarray) -> tuple[float, bool]:
    """The smallest power of two making every input an integer (exact), else the largest scale that keeps
    them within INPUT_BITS (rounded: not exact). Returns (scale, exact)."""
    peak = float(np.abs(inputs).max()) or 1.0
    for k in range(INPUT_BITS):
        q = float(2 ** k)
        if peak * q >= 2 ** (INPUT_BITS - 1):
            break
        if np.array_equal(inputs * q, np.round(inputs * q)):
            return q, True
    return float(2 ** np.floor(np.log2((2 ** (INPUT_BITS - 1) - 1) / peak))), False


def _lava_layout(x: np.ndarray, varying: bool = False) -> np.ndarray:
    """(N, [T,] C, H, W) torch layout to Lava's (N, [T,] W, H, C); 1-D samples unchanged."""
    lead = 1 + varying
    return x.transpose(*range(lead), lead + 2, lead + 1, lead) if x.ndim == lead + 3 else x


def layer_names(path) -> tuple[list[str], list[int], float]:
    """Names of the netx layers Lava creates (the neuron node names `import_netx` gives, or the original
    NIR names for files `export_netx` wrote), their sizes, and the output scale."""
    with h5py.File(path, "r") as f:
        info = file_info(f)
        top = f["layer"]
        names, sizes = [], []
        for i in range(len(top)):
            g = top[str(i)]
            kind = read_str(g, "type")
            if kind == "input" and "neuron" in g:
                raise Unsupported(f"{Path(path).name}: netx layer {i}: input layer with neurons — lava-dl 0.6.0's "
                                  "netx cannot compile it (no subcompiler for PyInputModel)")
            if kind in ("conv", "dense"):
                names.append(f"neuron{i}")
                sizes.append(int(np.prod(read_int(g, "shape"))))
        if "nodes" in info:
            names = [neuron for _, neuron in info["nodes"]]
    return names, sizes, float(info.get("output_scale", 1.0))


def run_file(path, inputs: np.ndarray, T: int, *, record: bool = False, progress: bool = False,
             varying: bool = False) -> RunResult:
    """Run the netx HDF5 network `path` on integer `inputs` (N, *input shape, torch layout), each held for
    T steps, or with `varying` on (N, T, *input shape), step t of a sample sent at its step t; outputs are the readout's final potential (a never-firing last layer, in weight units divided
    by the file's output scale) or else the last layer's spike counts. A file without an input layer
    (slayer's export) gets its input shape from `inputs`."""
    names, sizes, out_scale = layer_names(path)
    x = _lava_layout(np.asarray(inputs), varying)
    if not np.array_equal(x, np.round(x)):
        raise ValueError("netx inputs must be integers (graded spikes); scale them first (see input_scale)")
    per_step = x[0].size * 8 // (T if varying else 1)
    start = time.perf_counter()
    parts = []
    with tqdm(total=len(x), desc=f"netx T={T}", unit="sample", disable=not progress, leave=False) as bar:
        chunk = max(1, min(len(x), MEMORY_BUDGET // ((per_step + 8 * sum(sizes)) * (T + len(sizes)))))
        for lo in range(0, len(x), chunk):
            parts.append(_run_chunk(path, x[lo:lo + chunk], int(T), record, varying))
            bar.update(len(x[lo:lo + chunk]))
    readout = parts[0]["readout"]
    spiking = names[:-1] if readout else names
    counts = {n: np.concatenate([p["counts"][i] for p in parts]) for i, n in enumerate(spiking)}
    if readout:
        outputs = np.concatenate([p["v"] for p in parts]) / (2 ** STATE_SHIFT) / out_scale
    else:
        outputs = counts[names[-1]].reshape(len(x), -1)
    n = len(x)
    return RunResult(
        backend="netx", T=T, outputs=outputs.astype(np.float64),
        spike_counts={k: v.reshape(n, -1).sum(1) for k, v in counts.items()},
        neuron_counts={k: v.mean(0) for k, v in counts.items()},
        spikes={k: np.concatenate([p["trains"][i] for p in parts]) for i, k in enumerate(spiking)} if record else None,
        seconds=time.perf_counter() - start,
    )


def _run_chunk(path, x: np.ndarray, T: int, record: bool, varying: bool) -> dict:
    """One compiled netx network for the samples `x` (Lava layout, time-varying: (n, T, ...)); Lava is stopped
    whatever happens."""
    n = len(x)
    with forgotten_afterwards():
        net = Network(net_config=str(path), input_message_bits=INPUT_BITS, reset_interval=T, reset_offset=1,
                      input_shape=tuple(x.shape[1 + varying:]))
        # Layer j (0-based) integrates at Lava step t what layer j-1 (the source for j = 0) sent at t-1, and
        # netx resets it at steps t = 2 + j (mod T): it sees step k of sample m at t = mT + 2 + j + k.
        L = len(net.layers)
        steps = n * T + L
        data = np.zeros(tuple(net.inp.shape) + (steps,), np.int32)
        # sample m at columns mT .. mT+T-1
        if varying:
            data[..., :n * T] = np.moveaxis(x.reshape(n * T, *x.shape[2:]), 0, -1)
        else:
            data[..., :n * T] = np.repeat(np.moveaxis(x, 0, -1), T, axis=-1)
        source = Source(data=data)
        source.s_out.connect(net.inp)
        last = net.layers[-1]
        readout = never_fires(int(np.asarray(last.neuron.vth.init)))
        spiking = net.layers[:-1] if readout else net.layers
        sinks = []
        for layer in spiking:
            sink = Sink(shape=layer.out.shape, buffer=steps)
            layer.out.connect(sink.a_in)
            sinks.append(sink)
        monitor = None
        if readout:
            monitor = Monitor()
            monitor.probe(target=last.neuron.v, num_steps=steps)
        try:
            net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            out = {"readout": readout, "counts": [], "trains": []}
            for j, sink in enumerate(sinks):
                raw = np.asarray(sink.data.get())                                 # (*lava shape, steps)
                idx = (np.arange(n)[:, None] * T + 1 + j + np.arange(T)[None, :]).ravel()   # t - 1
                trains = np.moveaxis(raw[..., idx], -1, 0).reshape(n, T, *raw.shape[:-1])
                if trains.ndim == 5:
                    trains = trains.transpose(0, 1, 4, 3, 2)                    # (W, H, C) -> (C, H, W)
                out["counts"].append(trains.sum(1).astype(np.float64))
                if record:
                    out["trains"].append(trains.astype(np.float32))
            if readout:
                v = np.asarray(monitor.get_data()[last.neuron.name]["v"]).reshape(steps, -1)
                out["v"] = v[(np.arange(n) + 1) * T + L - 1].astype(np.float64)
            return out
        finally:
            net.stop()
            net.net_config.f.close()   # netx's NetDict keeps the HDF5 file open


class NetxBackend:
    """Exports a NIR graph with `export_netx` and runs the file with lava-dl's netx on Lava (fixed point).

    Honours exactly what the export expresses exactly (backends/netx/writer.py): conv/dense layers of IF
    neurons with core reset to 0 and integer-representable weights, an I readout, integer inputs (a power
    of two scale is found). Anything lossy (reset by subtraction, weight quantization, input rounding)
    raises `backends.Unsupported` unless `approximate=True`, and is then listed in `RunResult.ignored`.
    """

    name = "netx"
    honours = {
        "nodes": ["Input", "Scale (after Input)", "Conv2d", "Affine", "Linear", "Flatten (before Affine/Linear)",
                  "IF", "I (readout)", "Output"],
        "neuron semantics": ["reset: zero with v_reset = 0 (r and thresholds folded into integer weights)"],
        "limits": ["a chain (no fan-in/fan-out)", "8-bit weight mantissas, 13-bit biases, 17-bit thresholds",
                   "threshold and r uniform within a conv channel"],
    }

    def run(self, graph: nir.NIRGraph, inputs, T: int, *, record: bool = False, approximate: bool = False,
            progress: bool = False) -> RunResult:
        if int(T) < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        x = np.asarray(feed.compact(inputs).to_dense().numpy(), np.float64)
        q, exact = input_scale(x)
        p = plan(graph, q)
        varying = feed.time_varying(x.shape, p.input_shape, int(T))
        gaps = list(p.approximations)
        if not exact:
            gaps.append(f"inputs rounded to integers after scaling by {q:g} (netx inputs are graded integer spikes)")
        if gaps and not approximate:
            raise Unsupported(f"netx cannot run this graph exactly: {first_reason(gaps)}; pass approximate=True "
                              "(`spikeport parity --approximate`) to run it anyway")
        with tempfile.TemporaryDirectory(prefix="spikeport-netx-") as tmp:
            path = Path(tmp) / "net.h5"
            write(p, path)
            result = run_file(path, np.round(x * q), int(T), record=record, progress=progress, varying=varying)
        result.approximate, result.ignored = bool(gaps), gaps
        return result
