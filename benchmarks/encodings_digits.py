"""Input encodings on digits (or MNIST): accuracy, spikes and energy per inference for direct, rate and event input,
and the reference simulator's throughput on time-varying input against direct input on the same graph and T.

Run: .venv/bin/python -m benchmarks.encodings_digits  (writes the 'encodings-digits' section of docs/benchmarks.md);
with --dataset mnist (lenet5 from benchmarks.methods_mnist's cache) the 'encodings-mnist' section.

direct and rate run the demo's network (digits CNN, 30 epochs, robustnorm, calibrated on the images). The event
input (N, T, 2, 8, 8) needs a network with two input channels: the same architecture trained on the event rates
(the per-step mean of the event encoding, `calibration_input`) and converted with robustnorm on them
(`encoding="event"`). Every figure is measured in this one run.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

import backends
from benchmarks.docs import machine, write_section
from benchmarks.speed_reference import _interleaved_times, _ratio
from pipeline import api
from pipeline.data import encoding as enc
from pipeline.data.datasets import load_dataset
from pipeline.data.zoo import build_model
from pipeline.hardware.energy import energy_report
from pipeline.io.render import markdown_table
from pipeline.training.ann import TrainConfig, evaluate, seed_everything, train_ann
from pipeline.training.checkpoints import load_model

COMMAND = ".venv/bin/python -m benchmarks.encodings_digits"
T_VALUES = (4, 8, 16, 32, 64, 128)
TARGETS = ("cmos45nm", "loihi")


def trained(train_x, train_y, test_x, test_y, shape, epochs: int, seed: int):
    seed_everything(seed)
    model = build_model("digits-cnn", shape, 10)
    train_ann(model, train_x, train_y, test_x, test_y, TrainConfig(epochs=epochs, seed=seed), progress=False)
    return model.eval()


def first_layer_events(run) -> float:
    """Non-zero inputs per sample over all steps into the first weighted node (the input's events)."""
    return float(np.sum(next(iter(run.input_events.values()))))


def accuracy_rows(graphs: dict, x: np.ndarray, y: np.ndarray, seed: int, T_values) -> tuple[list[dict], list[dict]]:
    ref = backends.get("reference")
    rows, energy = [], []
    for T in T_values:
        for name, graph in graphs.items():
            run = ref.run(graph, enc.encode(x, name, T, seed), T)
            rows.append({"encoding": name, "T": T, "accuracy": f"{100 * run.accuracy(y):.2f}",
                         "spikes": f"{run.spikes_per_sample:.0f}", "input events": f"{first_layer_events(run):.0f}"})
            row = {"encoding": name, "T": T}
            for target in TARGETS:
                rep = energy_report(graph, run, target, T, encoding=name)
                first = next(r for r in rep.layers if r.ann_macs)
                row[f"{target} ANN (nJ)"] = f"{rep.ann_joules_per_inference * 1e9:.1f}"
                row[f"{target} SNN (nJ)"] = f"{rep.snn_joules_per_inference * 1e9:.1f}"
                row[f"{target} first layer (nJ)"] = f"{first.snn_joules * 1e9:.1f}"
                row[f"{target} ANN/SNN"] = f"{rep.ratio:.3f}"
            energy.append(row)
            print(rows[-1], flush=True)
    return rows, energy


def throughput(graph, x: np.ndarray, T: int, repeats: int, seed: int) -> dict:
    """Seconds of the reference (layer mode, 2 threads) on direct input, rate spikes (N, T, ...) int8, and the
    direct image repeated as time-varying float input; ratios per round against direct."""
    ref = backends.get("reference")
    inputs = {"direct": x, "rate": enc.encode(x, "rate", T, seed), "analog (N, T, ...)": np.repeat(x[:, None], T, 1)}
    torch.set_num_threads(2)
    times = _interleaved_times({k: (lambda v=v: ref.run(graph, v, T)) for k, v in inputs.items()}, repeats)
    row = {"T": T, "samples": len(x), "direct (s)": f"{statistics.median(times['direct']):.3f}"}
    for k in list(inputs)[1:]:
        row[f"{k} (s)"] = f"{statistics.median(times[k]):.3f}"
        row[f"{k} / direct"] = "{:.3f} ({:.3f}-{:.3f})".format(*_ratio(times, k, "direct"))
    print(row, flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    parser.add_argument("--T", type=int, nargs="+", default=None, help=f"time steps (default {T_VALUES})")
    parser.add_argument("--epochs", type=int, default=30, help="digits CNN epochs (mnist: --ann-epochs)")
    parser.add_argument("--ann-epochs", type=int, default=4, help="lenet5 epochs on mnist (benchmarks.methods_mnist)")
    parser.add_argument("--no-event", action="store_true", help="leave out the event encoding (it trains a network)")
    parser.add_argument("--repeats", type=int, default=7, help="throughput rounds (0: no throughput table)")
    parser.add_argument("--checkpoint", default=None, help="mnist: a spikeport lenet5 checkpoint to use instead")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.dataset != "digits" and not args.no_event:
        parser.error("the event network is built for digits (2 x 8 x 8 input); pass --no-event with --dataset mnist")
    T_values = tuple(args.T or T_VALUES)
    torch.set_num_threads(2)
    ds = load_dataset(args.dataset, seed=args.seed)
    x, y = ds.test_x[:args.limit].numpy(), ds.test_y[:args.limit].numpy()
    if args.dataset == "digits":
        cnn = trained(ds.train_x, ds.train_y, ds.test_x, ds.test_y, ds.input_shape, args.epochs, args.seed)
        network = f"the demo's digits CNN ({args.epochs} epochs"
    else:
        from benchmarks.methods_mnist import AUGMENT, trained_ann
        if args.checkpoint:
            cnn, state = load_model(args.checkpoint, input_shape=ds.input_shape)
            network = (f"{state['model']} (`{Path(args.checkpoint).name}`: `--augment {state.get('augment', 'none')}`, "
                       f"{len(state.get('history', []))} epochs")
        else:
            cnn, path = trained_ann(ds, args.dataset, args.ann_epochs, args.seed)
            network = (f"lenet5 (`{path.name}`: `--augment {AUGMENT[args.dataset]}`, {args.ann_epochs} epochs, "
                       "batch 128")
    ann_acc = evaluate(cnn, ds.test_x[:args.limit], ds.test_y[:args.limit])
    direct = api.convert(cnn, ds.train_x, method="robustnorm")
    graphs = {"direct": direct, "rate": direct}
    notes = [f"direct and rate: {network}, ANN test accuracy {100 * ann_acc:.2f}%), robustnorm, one graph for both."]
    if not args.no_event:
        rates = {split: torch.from_numpy(enc.calibration_input(getattr(ds, f"{split}_x").numpy(), "event"))
                 for split in ("train", "test")}
        event_cnn = trained(rates["train"], ds.train_y, rates["test"], ds.test_y, (2, 8, 8), args.epochs, args.seed)
        event_ann_acc = evaluate(event_cnn, rates["test"], ds.test_y)
        graphs["event"] = api.convert(event_cnn, ds.train_x, method="robustnorm", encoding="event")
        notes.append(
            "event: N-MNIST-style ON/OFF events (N, T, 2, 8, 8) from the image moved along a repeated 3-saccade "
            "triangle of 1 pixel (2 steps per saccade), DVS threshold 0.15 on log(I + 0.1) (pipeline/data/encoding.py); "
            "its network is the same architecture with two input channels trained on the per-step event rates (ANN "
            f"test accuracy {100 * event_ann_acc:.2f}% on those rates) and converted with robustnorm calibrated on them.")
    notes.append(f"rate: Bernoulli spikes, probability = pixel intensity, seed {args.seed}.")
    rows, energy = accuracy_rows(graphs, x, y, args.seed, T_values)
    speed = [throughput(direct, x, T, args.repeats, args.seed) for T in (32, 128)] if args.repeats else []

    def pivot(key):
        return [{"encoding": e, **{str(T): r[key] for r in rows if r["encoding"] == e for T in [r["T"]]}}
                for e in graphs]
    T_cols = [("encoding", "encoding")] + [(str(T), f"T={T}") for T in T_values]
    e_cols = [("encoding", "encoding"), ("T", "T")] + [(f"{t} {k}", f"{t} {k}") for t in TARGETS
                                                       for k in ("ANN (nJ)", "SNN (nJ)", "first layer (nJ)", "ANN/SNN")]
    command = COMMAND if args.dataset == "digits" else (
        f"{COMMAND} --dataset {args.dataset} "
        f"{f'--checkpoint {args.checkpoint}' if args.checkpoint else f'--ann-epochs {args.ann_epochs}'} "
        f"--T {' '.join(map(str, T_values))}{' --no-event' if args.no_event else ''} --repeats {args.repeats}"
        f"{f' --limit {args.limit}' if args.limit else ''}")
    body = "\n\n".join([
        f"## Input encodings on {args.dataset}: {', '.join(graphs)} input (reference backend, {len(y)} test samples)",
        f"Command: `{command}`  \nMachine: {machine()}, torch {torch.__version__}, 2 threads.",
        " ".join(notes),
        "### Accuracy (%)", markdown_table(pivot("accuracy"), T_cols),
        "### Spikes per sample (all spiking layers)", markdown_table(pivot("spikes"), T_cols),
        "### Input events per sample (non-zero inputs to the first layer over all T; direct: pixels x T)",
        markdown_table(pivot("input events"), T_cols),
        "### Energy per inference",
        "Under direct input the first layer pays T x MACs; under rate and event input it pays one AC per input "
        "event per synapse (docs/energy.md). loihi prices MACs and ACs alike (23.6 pJ, Davies 2018), so there the "
        "encodings differ only through their event counts." + (" The event network's ANN has two input channels, "
                                                                "hence its own ANN column." if "event" in graphs else ""),
        markdown_table(energy, e_cols),
        *(["### Throughput on time-varying input against direct input (same graph, same T, layer mode)",
           f"Median seconds over {args.repeats} interleaved rounds for the {len(y)} test samples; ratios per round, "
           "quartiles in parentheses. rate: int8 spikes (N, T, 1, H, W); analog (N, T, ...): the direct image "
           "repeated as float32 time-varying input (no constant folding: the first convolution runs at every step).",
           markdown_table(speed, [(k, k) for k in speed[0]])] if speed else []),
    ])
    if not args.no_write:
        print("wrote", write_section(f"encodings-{args.dataset}", body))
    else:
        print(body)


if __name__ == "__main__":
    main()
