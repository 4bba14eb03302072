"""Event-driven accumulation (backends.events, numba scatter kernels) against oneDNN's dense conv / MKL's GEMM.

Run: .venv/bin/python -m benchmarks.event_driven  (writes the 'event-driven' section of docs/benchmarks.md)

For each layer shape of the digits CNN and VGG-16 and each input spike rate: dense time / event-driven time (above
1: event-driven is faster) on 1 and on 2 threads, and the per-operation costs the reference's cost model uses
(backends.events: ns per weight added, ns per dense multiply-accumulate).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.docs import machine, write_section
from pipeline.conversion.registry import convert
from pipeline.data.datasets import load_dataset
from pipeline.data.zoo import build_model
from pipeline.io.render import markdown_table

import backends
from backends import events

COMMAND = ".venv/bin/python -m benchmarks.event_driven"
RATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def conv_case(label: str, rows: int, cin: int, size: int, cout: int, stride: int):
    """(label, dense, event-driven, input shape) for a 3x3 conv, padding 1."""
    rng = np.random.default_rng(0)
    w = torch.as_tensor(rng.normal(0, 0.1, (cout, cin, 3, 3)), dtype=torch.float32)
    b = torch.as_tensor(rng.normal(0, 0.1, cout), dtype=torch.float32)
    kw = dict(stride=(stride, stride), padding=(1, 1), dilation=(1, 1), groups=1)
    return (label, lambda x: F.conv2d(x, w, b, **kw), events.EventConv(w, b, (cin, size, size), **kw),
            (rows, cin, size, size))


def linear_case(label: str, rows: int, n_in: int, n_out: int):
    rng = np.random.default_rng(0)
    w = torch.as_tensor(rng.normal(0, 0.1, (n_out, n_in)), dtype=torch.float32)
    b = torch.as_tensor(rng.normal(0, 0.1, n_out), dtype=torch.float32)
    return label, lambda x: F.linear(x, w, b), events.EventLinear(w, b), (rows, n_in)


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(case, x: torch.Tensor, rate_label: str, repeats: int) -> dict:
    label, dense, event, _ = case
    want, got = dense(x), event(x)
    err = float((want - got).abs().max())
    if err > 1e-4 * max(1.0, float(want.abs().max())):   # same sums, other order: float32 rounding only
        raise AssertionError(f"{label}: event-driven result differs from dense by {err}")
    row = {"layer": label, "input rate": rate_label}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        dense_s, event_s = median_seconds(lambda: dense(x), repeats), median_seconds(lambda: event(x), repeats)
        row[f"{threads}T: dense (ms)"] = f"{dense_s * 1e3:.3f}"
        row[f"{threads}T: event (ms)"] = f"{event_s * 1e3:.3f}"
        row[f"{threads}T: dense / event"] = f"{dense_s / event_s:.2f}"
        row[f"{threads}T: ns per weight added"] = f"{event_s * 1e9 / max(1, int(x.count_nonzero())) / event.adds:.3f}"
    row["dense ns per MAC (2T)"] = f"{float(row['2T: dense (ms)']) * 1e6 / (event.macs * len(x)):.4f}"
    print(row, flush=True)
    return row


def network_rates() -> tuple[torch.Tensor, dict[str, list[float]]]:
    """The networks benchmarks.speed_reference times (untrained, maxnorm, T=32): relu1 spikes of the digits CNN as
    conv2's input (one step's (360, 16, 8, 8) stack, from the middle of the run), and each network's per-layer
    firing rates."""
    ref = backends.get("reference")
    digits = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    cnn = build_model("digits-cnn", digits.input_shape, digits.num_classes).eval()
    graph = convert(cnn, digits.input_shape, digits.train_x, method="maxnorm")
    run = ref.run(graph, digits.test_x.numpy(), 32, batch_size=360, record=True)
    spikes = torch.as_tensor(run.spikes["relu1"][:, 16], dtype=torch.float32).reshape(360, 16, 8, 8)
    rates = {"digits CNN": [float(v.mean()) / 32 for v in run.neuron_counts.values()]}
    vgg = build_model("vgg16", (3, 32, 32), 10).eval()
    graph = convert(vgg, (3, 32, 32), torch.rand(64, 3, 32, 32), method="maxnorm")
    run = ref.run(graph, torch.rand(32, 3, 32, 32).numpy(), 32, batch_size=32)
    rates["VGG-16"] = [float(v.mean()) / 32 for v in run.neuron_counts.values()]
    return spikes.contiguous(), rates


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    cases = [conv_case("digits conv2 (batch 360, 16x8x8 -> 32, stride 2)", 360, 16, 8, 32, 2),
             linear_case("digits fc (batch 360, 512 -> 10)", 360, 512, 10),
             conv_case("VGG-16 conv 64x32x32 -> 64 (batch 32)", 32, 64, 32, 64, 1),
             conv_case("VGG-16 conv 128x16x16 -> 128 (batch 32)", 32, 128, 16, 128, 1),
             conv_case("VGG-16 conv 256x8x8 -> 256 (batch 32)", 32, 256, 8, 256, 1),
             conv_case("VGG-16 conv 512x2x2 -> 512 (batch 32)", 32, 512, 2, 512, 1)]
    generator = torch.Generator().manual_seed(0)
    spikes, rates = network_rates()
    rows = [measure(cases[0], spikes, f"{float(spikes.mean()):.3f} (its relu1 spikes, step 16)", args.repeats)]
    for case in cases:
        for rate in RATES:
            x = (torch.rand(case[3], generator=generator) < rate).float()
            rows.append(measure(case, x, f"{rate:g}", args.repeats))
    torch.set_num_threads(2)
    crossover = []
    for case in cases:
        mine = [r for r in rows if r["layer"] == case[0] and "relu1" not in r["input rate"]]
        for threads in (1, 2):
            paying = [r["input rate"] for r in mine if float(r[f"{threads}T: dense / event"]) > 1]
            crossover.append({"layer": case[0], "dense on": f"{threads} thread{'s' * (threads > 1)}",
                              "highest tested rate at which event-driven is faster": paying[-1] if paying else
                              f"none (not even {RATES[0]:g})"})
    at = lambda key, pick: statistics.median(float(r[key]) for r in rows if pick(r))  # noqa: E731
    vgg_at = lambda rate: lambda r: r["layer"].startswith("VGG") and r["input rate"] == rate  # noqa: E731
    fitted = [{"constant": "EVENT_NS_PER_ADD", "in backends.events": events.EVENT_NS_PER_ADD,
               "measured here": f"{at('2T: ns per weight added', vgg_at('0.05')):.3f}",
               "from": "median over the VGG-16 layers at rate 0.05, 2 threads"},
              {"constant": "DENSE_NS_PER_MAC", "in backends.events": events.DENSE_NS_PER_MAC,
               "measured here": f"{at('dense ns per MAC (2T)', lambda r: r['layer'].startswith('VGG')):.4f}",
               "from": "median over the VGG-16 rows, 2 threads"}]
    body = "\n".join([
        "## Event-driven accumulation against dense compute",
        "",
        f"Command: `{COMMAND}`  ",
        f"Machine: {machine()}, torch {torch.__version__}, numba {numba.__version__}  ",
        f"Each time is the median of {args.repeats} calls on one step's batch. Inputs are Bernoulli spikes at the",
        "given rate (independent per neuron), and for digits conv2 also the real relu1 spikes of the network that",
        "benchmarks.speed_reference times. Event-driven: backends.events, numba kernels that scan the input and, for",
        "each spike, add its weights to every output it reaches (rows split over the threads); dense: torch's conv2d",
        "(oneDNN) / linear (MKL). Both give the same sums up to float32 rounding (checked: max difference <= 1e-4 of",
        "the largest output). `dense / event` above 1: event-driven faster; `nT`: torch.set_num_threads(n).",
        "",
        markdown_table(rows, [(k, k) for k in rows[0]]),
        "",
        markdown_table(crossover, [(k, k) for k in crossover[0]]),
        "",
        "The reference's cost model (backends.events: a step of a layer runs event-driven when its non-zero inputs",
        "are below the count at which EVENT_NS_PER_ADD x weights added + EVENT_NS_PER_ELEMENT x (inputs + outputs)",
        "per row beats DENSE_NS_PER_MAC x multiply-accumulates) against what this run measured:",
        "",
        markdown_table(fitted, [(k, k) for k in fitted[0]]),
        "",
        "Firing rates per layer of the networks benchmarks.speed_reference times (measured in this run): " + "; ".join(
            f"{name} {min(r):.1%}-{max(r):.1%}" for name, r in rates.items()) + ".",
    ])
    print(body)
    if not args.no_write:
        print("wrote", write_section("event-driven", body))


if __name__ == "__main__":
    main()
