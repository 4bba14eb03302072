"""Reference simulator time against the dense-compute floor, T x (ANN forward on the same batch), and Norse.

Run: .venv/bin/python -m benchmarks.speed_reference  (writes the 'speed-reference' section of docs/benchmarks.md)

Every figure is measured in this one run on this machine, with torch.set_num_threads(2) and with (1): the ANN
forward, reference mode="step" and mode="layer", and Norse (norse.torch.from_nir through backends.norse) on the
same batch, each the median of `--repeats` rounds.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import nir
import numpy as np
import torch

import backends
from benchmarks.docs import machine, write_section
from pipeline.conversion.registry import convert
from pipeline.data.datasets import load_dataset
from pipeline.data.zoo import build_model
from pipeline.io.render import markdown_table

COMMAND = ".venv/bin/python -m benchmarks.speed_reference"


def _interleaved_times(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Seconds of each callable per round, in rounds that run every callable once, so that a slow phase of the
    machine hits all of them alike (the first calls are slow: oneDNN primitive creation, allocator)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return times


def _ratio(times: dict, key: str, base: str) -> tuple[float, float, float]:
    """Median and quartiles over rounds of times[key] / times[base] taken in the same round."""
    q1, median, q3 = statistics.quantiles([a / b for a, b in zip(times[key], times[base])], n=4)
    return median, q1, q3


def norse_runnable(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The same network in node types Norse's from_nir takes: each AvgPool2d becomes a SumPool2d and its
    1/(kh*kw) moves into the weights of the next weighted node (through a Flatten) -- the same arithmetic."""
    nodes = {k: copy.copy(v) for k, v in graph.nodes.items()}
    succ = {a: b for a, b in graph.edges}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.AvgPool2d):
            nodes[name] = nir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride, padding=node.padding)
            nxt = succ[name]
            while isinstance(nodes[nxt], nir.Flatten):
                nxt = succ[nxt]
            nodes[nxt].weight = np.asarray(nodes[nxt].weight) / float(np.prod(node.kernel_size))
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=graph.metadata, type_check=False)


def measure(label: str, model: torch.nn.Module, graph, x: torch.Tensor, T: int, repeats: int, threads: int = 2) -> dict:
    ref, norse = backends.get("reference"), backends.get("norse")
    xn = x.numpy()
    norse_graph = norse_runnable(graph)
    runs = {}

    def ann_floor():
        with torch.no_grad():
            for _ in range(T):
                model(x)
    fns = {"ann": ann_floor,
           "step": lambda: runs.__setitem__("step", ref.run(graph, xn, T, batch_size=len(x), mode="step")),
           "layer": lambda: runs.__setitem__("layer", ref.run(graph, xn, T, batch_size=len(x), mode="layer")),
           "norse": lambda: runs.__setitem__("norse", norse.run(norse_graph, xn, T, batch_size=len(x),
                                                                  approximate=True))}
    torch.set_num_threads(threads)
    times = _interleaved_times(fns, repeats)
    t = {k: statistics.median(v) for k, v in times.items()}
    row = {"workload": label, "threads": threads, "batch": len(x), "T": T, "T x ANN forward (s)": f"{t['ann']:.4f}"}
    for mode in ("step", "layer"):
        row[f"{mode} (s)"] = f"{t[mode]:.4f}"
        row[f"{mode} / (T x ANN)"] = "{:.3f} ({:.3f}-{:.3f})".format(*_ratio(times, mode, "ann"))
    row["Norse (s)"] = f"{t['norse']:.4f}"
    row["Norse / layer"] = "{:.2f} ({:.2f}-{:.2f})".format(*_ratio(times, "norse", "layer"))
    same = (runs["step"].outputs == runs["layer"].outputs).all() and all(
        (runs["step"].spike_counts[k] == runs["layer"].spike_counts[k]).all() for k in runs["step"].spike_counts)
    row["step == layer"] = "yes" if same else "NO"
    print(row, flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []

    digits = load_dataset("digits", seed=0)
    cnn = build_model("digits-cnn", digits.input_shape, digits.num_classes).eval()
    g = convert(cnn, digits.input_shape, digits.train_x, method="maxnorm")
    for threads in (2, 1):
        rows.append(measure("digits-cnn (untrained), test split", cnn, g, digits.test_x, args.T, args.repeats, threads))

    vgg = build_model("vgg16", (3, 32, 32), 10).eval()
    g = convert(vgg, (3, 32, 32), torch.rand(64, 3, 32, 32), method="maxnorm")
    x = torch.rand(32, 3, 32, 32)
    for threads in (2, 1):
        rows.append(measure("vgg16 (untrained), CIFAR shape", vgg, g, x, args.T, args.repeats, threads))

    body = "\n".join([
        "## Reference simulator speed against the dense floor",
        "",
        f"Command: `{COMMAND}`  ",
        f"Machine: {machine()}, torch {torch.__version__}, torch.set_num_threads(threads) as in the table  ",
        f"Each time is the median of {args.repeats} rounds after two warm-up calls; a round runs T ANN forwards, the",
        "reference in both modes and Norse once each, so a slow phase of the (shared, noisy) machine hits all alike.",
        "Each ratio is the median over rounds of the two times taken in the same round, with its quartiles in",
        "parentheses. On this virtual machine the digits ratio has moved between runs of the same code by more",
        "than its quartiles: read it with that spread.",
        "",
        "The floor for a time-stepped SNN on dense hardware is T x the ANN forward on the same batch; the",
        "ratio columns are simulator time / (T x ANN forward). Models are untrained, converted by maxnorm",
        "(digits: calibrated on the train split; VGG-16: on 64 torch.rand images); their firing rates (measured in",
        "the event-driven section) set how many steps run event-driven. `step`",
        "runs the graph step by step; `layer` (the default) runs node by node over all T, stateless nodes as one",
        "batched call on (T*batch, ...) and neurons as a loop over T; both compute time-constant nodes (the input",
        "and the first layer's current under direct encoding) once, run a readout of spikes through one weighted",
        "node into the output integrator once on the spike counts instead of per step (the digits CNN's fc; not",
        "VGG-16's, whose classifier reads an AvgPool2d), and run a Conv2d/Linear step event-driven where",
        "the cost model of backends/events.py predicts it faster (never for the digits CNN's small layers); `layer`",
        "also updates IF neurons over all steps of a chunk in one compiled pass (backends/kernels.py, numba; the",
        "same floats) into output tensors reused across chunks, skips a convolution's (step, sample) slices whose",
        "input is all zero, and derives input event counts from spike counts. `step == layer`: identical outputs",
        "and spike counts. Norse runs the same graph",
        "through norse.torch.from_nir (as `backends.norse` with approximate=True: Norse resets to zero, so its",
        "spikes differ, its dense work does not; for VGG-16 each AvgPool2d is given to Norse as a SumPool2d with",
        "1/4 folded into the next layer's weights, as from_nir has no AvgPool2d); `Norse / layer` above 1 means",
        "spikeport is faster.",
        "",
        markdown_table(rows, [(k, k) for k in rows[0]]),
    ])
    print(body)
    if not args.no_write:
        print("wrote", write_section("speed-reference", body))


if __name__ == "__main__":
    main()
