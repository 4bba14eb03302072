"""Lava (floating point) on MNIST test images at T = 32 against the reference simulator: agreement of the
predictions, accuracy and wall time, for the trained LeNet-5 converted by robustnorm (IF, reset by subtraction).

Run: .venv/bin/python -m benchmarks.lava_mnist [--limit 1000]  (writes the 'lava-mnist' section of docs/benchmarks.md)
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import backends
from benchmarks.docs import machine, write_section
from benchmarks.mnist_lenet5 import CALIBRATION, CHECKPOINT, converted, trained
from pipeline.io.render import markdown_table

COMMAND = ".venv/bin/python -m benchmarks.lava_mnist"
METHOD = "robustnorm"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--limit", type=int, default=1000, help="first N test images")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    ds, model, ann_accuracy = trained()
    graph = converted(ds, model, (METHOD,))[METHOD]
    x, y = ds.test_x[:args.limit].numpy(), ds.test_y[:args.limit].numpy()
    load = os.getloadavg()
    start = time.perf_counter()
    ref = backends.get("reference").run(graph, x, args.T)
    ref_wall = time.perf_counter() - start
    start = time.perf_counter()
    lava = backends.get("lava").run(graph, x, args.T)
    lava_wall = time.perf_counter() - start
    load_after = os.getloadavg()
    agree = int((lava.predictions == ref.predictions).sum())
    rows = [{"backend": name, "samples": len(x), "T": args.T, "wall time (s)": f"{wall:.1f}",
             "samples/s": f"{len(x) / wall:.1f}", "accuracy": f"{100 * run.accuracy(y):.2f}%",
             "spikes/sample": f"{run.spikes_per_sample:.0f}"}
            for name, run, wall in (("reference (layer mode)", ref, ref_wall), ("lava float (CPU)", lava, lava_wall))]
    body = "\n".join([
        "## Lava (floating point) on MNIST",
        "",
        f"Command: `{COMMAND} --limit {args.limit}`  ",
        f"Machine: {machine()}, lava-nc 0.10.0, torch.set_num_threads(2); load average (1, 5, 15 min) "
        f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} before and {load_after[0]:.1f}, {load_after[1]:.1f}, "
        f"{load_after[2]:.1f} after (the 2 cores are shared with other jobs)",
        "",
        f"LeNet-5 trained on MNIST ({CHECKPOINT.name} in the cache, {100 * ann_accuracy:.2f}% on the 10,000 test",
        f"images), converted by {METHOD} (calibrated on the first {CALIBRATION} training images), run on the first",
        f"{len(x)} test images at T = {args.T} by the reference simulator and by Lava's floating-point CPU models (one",
        "compiled network for all images, Conv2d lowered to Lava's Sparse process, IF with reset by subtraction on",
        "spikeport's neuron process). The wall time includes Lava's compile and start-up.",
        "",
        markdown_table(rows, [(k, k) for k in rows[0]]),
        "",
        f"Predictions agreeing with the reference: {agree} of {len(x)} ({100 * agree / len(x):.2f}%).",
    ])
    print(body)
    if not args.no_write:
        print("wrote", write_section("lava-mnist", body))


if __name__ == "__main__":
    main()
