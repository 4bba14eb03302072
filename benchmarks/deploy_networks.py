"""Deployment of four networks to Loihi 2's formats: float vs 8/6/4-bit accuracy, resources and Lava wall time.

Run: .venv/bin/python -m benchmarks.deploy_networks  (writes the 'deploy-networks' section of docs/benchmarks.md)

Networks: the digits CNN (10 epochs, maxnorm, reset to zero), a LIF net from `train-snn --method stbp --neuron lif`
(digits, 1 epoch), and seeded untrained ResNet-20 and VGG-16 converted with maxnorm (reset to zero) on
synthetic-cifar (no CIFAR data on this machine: their accuracy is chance; agreement with float is what they show).
Each is quantized with `pipeline.hardware.quantize` per weight width (and to netx's formats where deploy would
write model.net from those) and run in the reference simulator's fixed-point mode; the 8-bit graph is mapped to
cores (`resource_map`) and run on Lava's fixed_pt models for a few samples, compared spike for spike with the
reference, and timed.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import backends
from benchmarks.docs import machine, write_section
from pipeline.api import train_snn
from pipeline.conversion.registry import convert
from pipeline.data.datasets import load_dataset
from pipeline.data.zoo import build_model
from pipeline.hardware.deploy import NETX_ROW, accuracy_sweep, netx_refusal
from pipeline.hardware.hwconfig import load_hwconfig
from pipeline.hardware.resources import resource_map
from pipeline.io.render import markdown_table
from pipeline.training.ann import TrainConfig, seed_everything, train_ann

COMMAND = ".venv/bin/python -m benchmarks.deploy_networks"
BITS = (8, 6, 4)
VGG16_LAVA_T = 48   # the shortest run in which all 13 IF layers of the untrained VGG-16 fire (the last at step 47)
# Rueckauer et al. 2021 (NxTF, arXiv 2101.04261, abstract): "near optimal resource utilization of 80% across 16
# Loihi chips for a 28-layer, 4M parameter MobileNet model with input size 128 x 128"; 8.52% CIFAR-10 error.
NXTF = ("NxTF (Rueckauer et al. 2021, abstract) reports 80% resource utilisation across 16 Loihi (1) chips for a "
        "28-layer, 4M-parameter MobileNet at 128 x 128 input, and 8.52% CIFAR-10 error with a MobileNet on Loihi; "
        "we found no per-network core counts for VGG-16 or ResNet-20 in what we could read of the paper.")


def networks(lava_cifar: bool):
    """(name, graph, calibration x, test x, test y, T, Lava samples, Lava T) per network."""
    torch.set_num_threads(2)
    digits = load_dataset("digits", seed=0)
    seed_everything(0)
    cnn = build_model("digits-cnn", digits.input_shape, digits.num_classes)
    train_ann(cnn, digits.train_x, digits.train_y, digits.test_x, digits.test_y, TrainConfig(epochs=10, seed=0),
              progress=False)
    dx, dy, dcal = digits.test_x.numpy(), digits.test_y.numpy(), digits.train_x.numpy()
    graph = convert(cnn.eval(), digits.input_shape, digits.train_x, method="maxnorm", reset="zero")
    yield "digits-cnn (maxnorm, reset to zero)", graph, dcal, dx, dy, 32, 10, 32
    torch.manual_seed(0)
    lif = train_snn(build_model("digits-cnn", digits.input_shape, digits.num_classes), digits, "stbp", T=4, epochs=1,
                    neuron="lif")
    yield "digits-cnn LIF (train-snn stbp)", lif.export(digits.input_shape), dcal, dx, dy, 4, 10, 4
    cifar = load_dataset("synthetic-cifar", seed=0)
    cx, cy = cifar.test_x[:8].numpy(), cifar.test_y[:8].numpy()
    for name, n_test, lava_T in (("resnet20", 8, 8), ("vgg16", 4, VGG16_LAVA_T)):
        torch.manual_seed(0)
        model = build_model(name, cifar.input_shape, cifar.num_classes).eval()
        graph = convert(model, cifar.input_shape, cifar.train_x[:64], method="maxnorm", reset="zero")
        yield (f"{name} (untrained, synthetic-cifar)", graph, cifar.train_x[:16].numpy(), cx[:n_test], cy[:n_test],
               8, int(lava_cifar), lava_T)


def lava_timing(graph, x, T: int) -> tuple[str, str]:
    """Lava fixed_pt wall time per sample (compile and start-up included) and spike-for-spike parity, with how many
    spiking layers fire in the compared run."""
    if len(x) == 0:
        return "not run", ""
    ref = backends.get("reference").run(graph, x, T, fixed_point=True, record=True)
    start = time.perf_counter()
    lava = backends.get("lava").run(graph, x, T, record=True)
    seconds = (time.perf_counter() - start) / len(x)
    same = all(np.array_equal(ref.spikes[k], lava.spikes[k]) for k in ref.spikes)
    same = same and np.array_equal(ref.outputs, lava.outputs)
    firing = sum(bool(v.any()) for v in ref.spikes.values())
    return (f"{seconds:.1f} s ({len(x)} x T={T})",
            f"{'identical' if same else 'DIFFERENT'} ({firing} of {len(ref.spikes)} spiking layers fire)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="loihi2")
    parser.add_argument("--no-lava-cifar", action="store_true",
                        help="skip the ResNet-20 and VGG-16 Lava runs (about 1 and 2 minutes)")
    args = parser.parse_args(argv)
    hw = load_hwconfig(args.target)
    rows, refusals = [], []
    for name, graph, calib, x, y, T, lava_n, lava_T in networks(not args.no_lava_cifar):
        sweep, quantized = accuracy_sweep(graph, hw, calib, x, y, T, BITS, netx=True)
        res = resource_map(quantized[8].graph, hw)
        wall, parity = lava_timing(quantized[8].graph, x[:lava_n], lava_T)
        row = {"net": name, "samples": f"{len(x)}, T={T}", "neurons": sum(layer.neurons for layer in res.layers),
               "synapses": sum(layer.connections for layer in res.layers), "cores": res.cores, "chips": res.chips,
               "lava": wall, "parity": parity}
        for s in sweep:
            row[s["weights"]] = f"{100 * s['accuracy']:.1f}% ({100 * s['agreement']:.0f}%)"
        if "netx" not in quantized:
            refusal = netx_refusal(quantized[8].graph)
            row[NETX_ROW] = "= 8-bit" if refusal is None else "refused"
            refusals.append(f"{name}: {refusal.split(' (and ')[0]}" if refusal else "")
        rows.append(row)
        print(row, flush=True)
    table = markdown_table(rows, [("net", "network"), ("samples", "test samples"), ("float", "float"),
                                  *[(f"{b}-bit", f"{b}-bit") for b in BITS], (NETX_ROW, NETX_ROW),
                                  ("neurons", "neurons"),
                                  ("synapses", "synapses"), ("cores", "cores"), ("chips", "chips"),
                                  ("lava", "Lava wall time / sample"), ("parity", "Lava vs reference")])
    body = "\n\n".join([
        f"## Deploying four networks to {args.target}: accuracy per weight width, resources, Lava time",
        f"Command: `{COMMAND}`. Machine: {machine()} (shared with other jobs: times are of this one run).",
        "Accuracy: reference simulator's fixed-point mode (float: the float graph), in parentheses the share of "
        "samples whose prediction equals the float graph's. The CIFAR-shaped nets are untrained (seeded) and "
        "run on synthetic-cifar, so their accuracy is chance and only the agreement says something. Resources of "
        "the 8-bit graph (`resource_map`: neurons of the neuron layers, synapses as (input, output) pairs, cores "
        "with Loihi 2's shared conv kernels split by output channels). Lava: fixed_pt models, wall time per "
        "sample including compile and start-up, and whether every layer's spikes at every step and the outputs "
        "equal the reference's, and how many spiking layers fire in that run. Convolutions run on Lava's "
        f"bit-accurate Sparse process (Lava's Conv process convolves with scipy once per channel pair per step: one "
        f"VGG-16 sample at T = 4 had not finished after 15 minutes); VGG-16 runs on Lava at T = {VGG16_LAVA_T}, the "
        "shortest run in which all its IF layers fire.",
        f"{NETX_ROW}: the netx-targeted quantization (`quantize(..., netx=True)`: weight exponent 0, 8-bit "
        "mantissas, biases in whole activation units) that `spikeport deploy` writes as model.net when the "
        "target's own integers are no netx form, which lava-dl's netx runs bit for bit "
        "(tests/test_deploy.py::test_deploy_writes_a_netx_targeted_model_net_for_the_digits_cnn); '= 8-bit' where "
        "netx runs the 8-bit integers themselves, 'refused' where it runs neither (first reason, "
        "`backends.netx.writer.plan_quantized`): " + "; ".join(r for r in refusals if r) + ".",
        table, NXTF,
        "Our CIFAR-shaped nets fill a fraction of one Loihi 2 chip (128 cores), so a utilisation figure "
        "like NxTF's multi-chip 80% does not apply; the core counts above assume every core holds at most "
        "8192 neurons and 937500 synaptic weights (hwconfigs/loihi2.toml) and count no cores for input or "
        "routing."])
    print(f"wrote {write_section('deploy-networks', body)}")


if __name__ == "__main__":
    main()
