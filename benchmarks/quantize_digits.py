"""Accuracy of quantized digits networks per weight width (8, 6, 4, 2 bits) against float, on Loihi 2's formats.

Run: .venv/bin/python -m benchmarks.quantize_digits  (writes the 'quantize-digits' section of docs/benchmarks.md)

The digits CNN is trained as in tests/conftest.py (seed 0, 30 epochs), converted with maxnorm (IF, reset by
subtraction) and dnisnm (signed neuron with memory), quantized with `pipeline.hardware.quantize` and run at T = 32 on
the whole test split in the reference simulator's fixed-point mode; the 8-bit graphs are also run on Lava's
fixed_pt models for `--lava-samples` test samples and compared spike for spike.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import backends
from benchmarks.docs import machine, write_section
from pipeline.conversion.registry import convert
from pipeline.data.datasets import load_dataset
from pipeline.hardware.deploy import accuracy_sweep
from pipeline.hardware.hwconfig import load_hwconfig
from pipeline.data.zoo import build_model
from pipeline.io.render import markdown_table
from pipeline.training.ann import TrainConfig, seed_everything, train_ann

COMMAND = ".venv/bin/python -m benchmarks.quantize_digits"


def lava_parity(graph, x, T: int) -> str:
    ref = backends.get("reference").run(graph, x, T, fixed_point=True, record=True)
    lava = backends.get("lava").run(graph, x, T, record=True)
    same = all(np.array_equal(ref.spikes[k], lava.spikes[k]) for k in ref.spikes)
    same = same and np.array_equal(ref.outputs, lava.outputs)
    return "identical" if same else "DIFFERENT"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--target", default="loihi2")
    parser.add_argument("--lava-samples", type=int, default=40)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    ds = load_dataset("digits", seed=0)
    seed_everything(0)
    model = build_model("digits-cnn", ds.input_shape, ds.num_classes)
    train_ann(model, ds.train_x, ds.train_y, ds.test_x, ds.test_y, TrainConfig(epochs=30, seed=0), progress=False)
    model.eval()
    hw = load_hwconfig(args.target)
    x, y, calib = ds.test_x.numpy(), ds.test_y.numpy(), ds.train_x.numpy()
    rows = []
    for method in ("maxnorm", "dnisnm"):
        graph = convert(model, ds.input_shape, ds.train_x, method=method)
        sweep, quantized = accuracy_sweep(graph, hw, calib, x, y, args.T)
        parity = lava_parity(quantized[8].graph, x[:args.lava_samples], args.T)
        for row in sweep:
            exps = "" if row["weights"] == "float" else ", ".join(
                f"{k} {v['weight_exp']}" for k, v in quantized[int(row["weights"].split("-")[0])].layers.items())
            rows.append({"method": method, "weights": row["weights"], "accuracy": f"{100 * row['accuracy']:.2f}%",
                         "agreement": f"{100 * row['agreement']:.1f}%",
                         "spikes": f"{row['spikes_per_sample']:.0f}", "exponents": exps,
                         "lava": parity if row["weights"] == "8-bit" else ""})
        print(f"{method}: done (Lava fixed_pt vs reference fixed point on {args.lava_samples} samples: {parity})")
    table = markdown_table(rows, [("method", "method"), ("weights", "weights"), ("accuracy", "accuracy"),
                                  ("agreement", "agrees with float"), ("spikes", "spikes/sample"),
                                  ("exponents", "shared exponent per layer"),
                                  ("lava", f"Lava fixed_pt, first {args.lava_samples} samples")])
    body = "\n\n".join([
        f"## Quantized to {args.target}: accuracy per weight width (digits, T = {args.T})",
        f"Command: `{COMMAND}`. Machine: {machine()} (shared with other jobs; no timings are reported).",
        "The digits CNN (seed 0, 30 epochs) converted with maxnorm and dnisnm, quantized by `spikeport quantize` "
        f"to {args.target}'s formats (docs/nir-extensions.md, \"Fixed point\": per-layer weight mantissas with one "
        "shared exponent, 8-bit input, 8-bit graded payloads for the dnisnm amplitudes), run on the whole test split "
        f"({len(x)} samples) in the reference simulator's fixed-point mode. 'agrees with float' is the share of test "
        "samples whose prediction equals the float graph's. The last column compares every layer's spikes at every "
        "step and the outputs of the 8-bit graph between Lava's fixed_pt models and the reference fixed-point mode.",
        table])
    print(f"wrote {write_section('quantize-digits', body)}")


if __name__ == "__main__":
    main()
