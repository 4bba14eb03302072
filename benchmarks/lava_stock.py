"""Lava's stock LIF process against spikeport's NeuronLayer on non-dyadic float graphs: how often their spikes
differ (their float arithmetic differs, docs/nir-extensions.md "Lava processes"), and their wall time.

Run: .venv/bin/python -m benchmarks.lava_stock  (writes the 'lava-stock' section of docs/benchmarks.md)

Per neuron kind, one random graph Input(8) -> Affine/Linear(16) -> neuron(16, reset to zero) -> Linear(3) -> I,
normal weights and biases (no dyadic values), uniform inputs, run on both processes in this process and run.
"""
from __future__ import annotations

import argparse
import time

import nir
import numpy as np

from backends.lava import LavaBackend
from backends.nirext import graph_metadata, neuron_metadata
from benchmarks.docs import machine, write_section
from pipeline.io.render import markdown_table

COMMAND = ".venv/bin/python -m benchmarks.lava_stock"
DT = 1e-3


def neuron(kind: str, n: int, rng) -> nir.NIRNode:
    f32 = lambda v: np.full(n, v, np.float32)  # noqa: E731
    meta = neuron_metadata("zero")
    if kind == "IF":
        return nir.IF(r=f32(1.0), v_threshold=f32(1.0), v_reset=f32(0.0), metadata=meta)
    if kind == "LIF":
        return nir.LIF(tau=f32(DT / 0.3), r=f32(1.0), v_leak=f32(0.1), v_threshold=f32(0.3), v_reset=f32(0.0),
                       metadata=meta)
    return nir.CubaLIF(tau_syn=f32(DT / 0.4), tau_mem=f32(DT / 0.3), r=f32(1.0), v_leak=f32(0.0),
                       v_threshold=f32(0.2), v_reset=f32(0.0), w_in=f32(1.0), metadata=meta)


def graph(kind: str, rng) -> nir.NIRGraph:
    w1 = rng.normal(0, 0.6, (16, 8)).astype(np.float32)
    first = (nir.Linear(weight=w1) if kind == "CubaLIF"
             else nir.Affine(weight=w1, bias=rng.normal(0, 0.2, 16).astype(np.float32)))
    nodes = {"input": nir.Input(input_type={"input": np.array([8])}), "fc1": first, "n": neuron(kind, 16, rng),
             "fc2": nir.Linear(weight=rng.normal(0, 0.5, (3, 16)).astype(np.float32)),
             "out": nir.I(r=np.ones(3, np.float32)), "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "fc1"), ("fc1", "n"), ("n", "fc2"), ("fc2", "out"), ("out", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata=graph_metadata("bench", dt=DT))


def state_gap(kind: str, rng, steps: int = 64, n: int = 4096) -> float:
    """Largest relative gap between the node's membrane update (docs/nir-extensions.md) and the stock LIF's on
    the rescaled state (backends/lava/stock.py), both in float64 without spikes, on random currents a + b."""
    a, b = rng.normal(0, 1, (steps, n)), rng.normal(0, 0.2, n)
    v, vs, i, u = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    dv, du, gap = 0.3, 0.4, 0.0
    for t in range(steps):
        if kind == "IF":
            v, vs, scale = v + (a[t] + b), (vs + a[t]) + b, 1.0
        elif kind == "LIF":
            v = v + dv * (0.1 - v + (a[t] + b))
            vs, scale = vs * (1 - dv) + a[t] + (0.1 + b), dv
        else:
            i = i + du * (a[t] - i)
            v = v + dv * (0.0 - v + i)
            u = u * (1 - du) + a[t]
            vs, scale = vs * (1 - dv) + u, dv * du
        gap = max(gap, float(np.max(np.abs(vs * scale - v) / np.maximum(np.abs(v), 1e-12))))
    return gap


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--T", type=int, default=64)
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    lava = LavaBackend()
    rows = []
    for i, kind in enumerate(("IF", "LIF", "CubaLIF")):
        rng = np.random.default_rng(i)
        g = graph(kind, rng)
        assert lava.neuron_processes(g)["n"] == "LIFReset"
        x = rng.uniform(0, 1, (args.samples, 8))
        runs, walls = {}, {}
        for mode in ("stock", "custom"):
            start = time.perf_counter()
            runs[mode] = lava.run(g, x, args.T, record=True, neurons=mode)
            walls[mode] = time.perf_counter() - start
        a, b = runs["stock"].spikes["n"], runs["custom"].spikes["n"]
        differ = (a != b).reshape(len(x), args.T, -1)
        first = np.flatnonzero(differ.any(axis=(0, 2)))
        rows.append({"neuron": kind, "samples x T x neurons": f"{len(x)} x {args.T} x 16",
                     "spikes (custom)": int(b.sum()), "spike entries that differ": int(differ.sum()),
                     "fraction": f"{differ.mean():.2e}",
                     "first differing step": int(first[0]) if first.size else "-",
                     "predictions that differ": int((runs["stock"].predictions != runs["custom"].predictions).sum()),
                     "state gap (max rel.)": f"{state_gap(kind, rng):.1e}",
                     "wall stock / custom (s)": f"{walls['stock']:.1f} / {walls['custom']:.1f}"})
        print(rows[-1], flush=True)
    body = "\n".join([
        "## Lava's stock LIF against spikeport's NeuronLayer (float)",
        "",
        f"Command: `{COMMAND}`  ",
        f"Machine: {machine()}, lava-nc 0.10.0, all rows measured in one run",
        "",
        "Reset to zero, one threshold per layer: the nodes run either on Lava's `LIFReset` (the default) or on",
        "spikeport's `NeuronLayer` (`neurons='custom'`). Random non-dyadic weights; LIF and CubaLIF rescale the",
        "state to fit Lava's equations, and the IF's bias enters as `(v + a) + b` instead of `v + (a + b)`, so",
        "floats round differently (state gap: the largest relative difference of the two membrane updates in",
        "float64 over 64 steps of 4096 random currents, numpy, no spikes); on dyadic values both are exact and",
        "equal (tests/test_lava_stock.py). Spike entries that differ count where that gap flipped a spike. Fixed",
        "point is bit-exact on both (same test). Wall time includes compile; the stock layer runs two OS",
        "processes (LIFReset and a SpikeRecorder) where NeuronLayer runs one.",
        "",
        markdown_table(rows, [(k, k) for k in rows[0]]),
    ])
    print(body)
    if not args.no_write:
        print("wrote", write_section("lava-stock", body))


if __name__ == "__main__":
    main()
