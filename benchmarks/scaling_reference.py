"""Reference simulator time and peak memory against T and against batch size, plotted.

Run: .venv/bin/python -m benchmarks.scaling_reference  (writes the 'scaling-reference' section of
docs/benchmarks.md and docs/img/scaling_reference.png)

Every point runs in its own fresh Python process, so its peak resident memory is its own: the figure is
the rise of ru_maxrss during the simulator call over the process's level just before it (graph, data and
one warm-up run already in memory). Time is the median of three calls.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from backends.reference import DEFAULT_MAX_ELEMENTS
from benchmarks.docs import DOC, machine, write_section
from pipeline.io.render import markdown_table

COMMAND = ".venv/bin/python -m benchmarks.scaling_reference"
T_VALUES = (8, 16, 32, 64, 128, 256)
BATCHES = (45, 90, 180, 360, 720, 1440)
FIXED_T, FIXED_BATCH = 32, 360
PLOT = DOC.parent / "img" / "scaling_reference.png"


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def point(T: int, batch: int) -> dict:
    """One measurement (runs in a child process): the untrained digits CNN converted by maxnorm, `batch`
    samples (the test split tiled to size), layer mode with its default chunking."""
    import backends
    from pipeline.conversion.registry import convert
    from pipeline.data.datasets import load_dataset
    from pipeline.data.zoo import build_model
    torch.set_num_threads(2)
    torch.manual_seed(0)
    digits = load_dataset("digits", seed=0)
    cnn = build_model("digits-cnn", digits.input_shape, digits.num_classes).eval()
    graph = convert(cnn, digits.input_shape, digits.train_x, method="maxnorm")
    x = np.resize(digits.test_x.numpy(), (batch, *digits.input_shape))
    ref = backends.get("reference")
    ref.run(graph, x[:8], 2, batch_size=batch)   # warm-up: allocator and oneDNN primitives
    before = _max_rss_mb()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        ref.run(graph, x, T, batch_size=batch)
        times.append(time.perf_counter() - start)
    return {"T": T, "batch": batch, "seconds": statistics.median(times), "peak_mb": _max_rss_mb() - before}


def _measure(T: int, batch: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.scaling_reference", "--point", str(T), str(batch)],
                         check=True, capture_output=True, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(row, flush=True)
    return row


def _plot(by_t: list[dict], by_batch: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pipeline.io.render import save_figure
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, rows, key, fixed in ((axes[0], by_t, "T", f"batch {FIXED_BATCH}"), (axes[1], by_batch, "batch",
                                                                                  f"T={FIXED_T}")):
        xs = [r[key] for r in rows]
        ax.plot(xs, [r["seconds"] for r in rows], "o-", color="C0")
        ax.plot(xs, [rows[0]["seconds"] * x / xs[0] for x in xs], ":", color="C0", label="linear from first point")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel("time (s)", color="C0")
        ax.set_title(f"digits CNN, reference layer mode, {fixed}")
        ax.legend(loc="upper left")
        ax2 = ax.twinx()
        ax2.plot(xs, [r["peak_mb"] for r in rows], "s--", color="C1")
        ax2.set_ylabel("peak memory rise (MB)", color="C1")
        ax2.set_ylim(bottom=0)
    fig.tight_layout()
    save_figure(fig, PLOT)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--point", nargs=2, type=int, metavar=("T", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch docs/")
    args = parser.parse_args(argv)
    if args.point:
        print(json.dumps(point(*args.point)))
        return
    by_t = [_measure(T, FIXED_BATCH) for T in T_VALUES]
    by_batch = [_measure(FIXED_T, b) for b in BATCHES]
    per_step = [r["seconds"] / r["T"] for r in by_t]
    fmt = lambda rows: [{**r, "seconds": f"{r['seconds']:.3f}", "peak_mb": f"{r['peak_mb']:.1f}",  # noqa: E731
                         "s per (T x sample) (us)": f"{1e6 * r['seconds'] / (r['T'] * r['batch']):.1f}"} for r in rows]
    cols = [("T", "T"), ("batch", "batch"), ("seconds", "time (s)"), ("s per (T x sample) (us)", "per step and sample (us)"),
            ("peak_mb", "peak memory rise (MB)")]
    body = "\n".join([
        "## Reference simulator: time and memory against T and batch",
        "",
        f"Command: `{COMMAND}`  ",
        f"Machine: {machine()}, torch {torch.__version__}, torch.set_num_threads(2)",
        "",
        "The untrained digits CNN converted by maxnorm, layer mode with the default chunking (max_elements =",
        f"2^{DEFAULT_MAX_ELEMENTS.bit_length() - 1} per tensor), every point in a fresh process; memory is the rise of",
        "the process's peak resident set during the three timed runs.",
        "",
        markdown_table(fmt(by_t), cols),
        "",
        markdown_table(fmt(by_batch), cols),
        "",
        f"Time per step from T={T_VALUES[0]} to T={T_VALUES[-1]}: {1e3 * per_step[0]:.2f} ms -> {1e3 * per_step[-1]:.2f} ms "
        f"(ratio {per_step[-1] / per_step[0]:.2f}; above 1 would be super-linear growth in T).",
        "",
        f"![time and memory against T and batch](img/{PLOT.name})",
    ])
    print(body)
    if not args.no_write:
        _plot(by_t, by_batch)
        print("wrote", write_section("scaling-reference", body), PLOT)


if __name__ == "__main__":
    main()
