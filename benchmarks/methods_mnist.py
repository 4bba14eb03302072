"""Every conversion method and both SNN training methods on MNIST or Fashion-MNIST with lenet5 (full test set):
accuracy, Wilson intervals, McNemar tests, spikes and energy per (method, T), and the papers' claims judged.

Run: .venv/bin/python -m benchmarks.methods_mnist --dataset mnist|fashion-mnist  (writes the 'methods-<dataset>'
section of docs/benchmarks.md). The trained ANN and the trained SNNs are cached under <cache>/checkpoints/
(pipeline.data.fetch.cache_root: $SPIKEPORT_CACHE or ~/.cache/spikeport) and reused when present.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

import backends
from benchmarks.claims import Beats, Within, goal_rows, judge_beats, judge_within
from benchmarks.docs import machine, write_section
from pipeline import api
from pipeline.conversion.registry import get_method, method_names
from pipeline.data.datasets import Dataset, load_dataset
from pipeline.data.fetch import cache_root
from pipeline.data.zoo import build_model
from pipeline.hardware.energy import energy_report
from pipeline.hardware.hwconfig import load_hwconfig
from pipeline.io.atomic import write_json, write_nir, write_with
from pipeline.io.render import markdown_table
from pipeline.reports.stats import wilson_interval
from pipeline.reports.sweep import SweepConfig, run_sweep, significance, sweep_markdown, tradeoff
from pipeline.training.ann import predict, save_checkpoint, seed_everything
from pipeline.training.checkpoints import load_model

COMMAND = ".venv/bin/python -m benchmarks.methods_mnist"
T_VALUES = (1, 2, 4, 8, 16, 32, 64)
AUGMENT = {"mnist": "crop", "fashion-mnist": "crop-flip"}  # README's zoo table
ANN_EPOCHS = {"mnist": 10, "fashion-mnist": 15}            # the same table's recipes
TARGETS = ("cmos45nm", "loihi")
TRAINED = {"snn2ann": ("snn2ann", {}), "joint-asnn": ("joint-asnn", {}), "stbp-lif": ("stbp", {"neuron": "lif"})}
# a trained method's revision, part of its cache name: a graph cached before a fix to the method is not reused
REVISION = {"joint-asnn": "-r2"}  # r2: distillation no longer reaches the tensors shared with the ANN

# the papers' accuracy claims at low T against their baselines (/work/shared/papers/)
CLAIMS = (
    Beats("Deng & Gu", "Sec. 4.3, Tables 4-5: threshold + shift (TS) reduces the conversion error fastest at short "
          "simulation lengths (ResNet-20 CIFAR-10, T=32: loss -0.98% with shift vs 19.72% threshold only)",
          "optimal-shift", "optimal-noshift", (1, 2, 4, 8)),
    Within("Deng & Gu", "Table 4: near-lossless at T=32 (VGG-16 CIFAR-10: loss -0.2% TS)", "optimal-shift", 32, 0.005),
    Beats("Ding et al.", "Sec. 3.3, Table 2: RNL+RIL 57.90 / 85.40% at T=16 / 32 where Robust Norm has 10.11 / "
          "43.03% and Max Norm 10.00% at T=32 (VGG-16 CIFAR-10)", "rnl-ril", "robustnorm", (16, 32)),
    Beats("Ding et al.", "same: against Max Norm", "rnl-ril", "maxnorm", (16, 32)),
    Beats("Wang et al.", "Sec. 5.2, Table 2: DNISNM on the plain ReLU ANN beats Deng & Gu (88.79% at T=32) and "
          "Ding et al. (57.90 / 85.40% at T=16 / 32), VGG-16 CIFAR-10", "dnisnm", "optimal-shift", (32,)),
    Beats("Wang et al.", "same: against Ding et al.", "dnisnm", "rnl-ril", (16, 32)),
    Within("Wang et al.", "Table 2: 94.14% at T=4 against ANN 95.67% (VGG-16 CIFAR-10, 1.53 points)", "dnisnm", 4,
           0.0153),
    Beats("Tang et al.", "Abstract, Sec. IV.C, Table V: SNN2ANN needs 3-5 steps where RNL-RIL conversion needs "
          "hundreds (RNL-RIL T=250 ~ SNN2ANN T=5 on VGG-13)", "snn2ann", "rnl-ril", (4,)),
    Beats("Guo et al.", "Sec. 4.3.1, Table 4: joint training 95.45% against 92.4% for a standard SNN trained alone "
          "(ResNet-18 CIFAR-10, T=4)", "joint-asnn", "stbp-lif", (4,)),
)


def checkpoints() -> Path:
    return cache_root() / "checkpoints"


def trained_ann(ds, dataset: str, epochs: int, seed: int):
    """lenet5 trained with the README's augmentation for `dataset` (batch 128), from the cache or trained and
    cached."""
    augment = AUGMENT[dataset]
    path = checkpoints() / f"lenet5-{dataset}-{augment}-e{epochs}-b128-s{seed}.pt"
    if path.exists():
        return load_model(path, input_shape=ds.input_shape)[0], path
    seed_everything(seed)
    model = build_model("lenet5", ds.input_shape, ds.num_classes)
    history = api.train(model, ds, epochs=epochs, batch_size=128, seed=seed, augment=augment, progress=False)
    save_checkpoint(path, model, model_name="lenet5", input_shape=ds.input_shape, num_classes=ds.num_classes,
                    extra={"history": history.epochs, "seed": seed, "dataset": dataset, "augment": augment})
    return model.eval(), path


def trained_snn(label: str, method: str, ann, ds, ann_path: Path, T: int, epochs: int, images: int, seed: int,
                options: dict):
    """The NIR graph of `method` trained from the ANN at T on the first `images` training images, from the cache
    or trained; with the training's record (wall time in seconds, per-epoch history)."""
    lr = f"-lr{options['lr']:g}" if "lr" in options else ""
    path = checkpoints() / f"{label}{REVISION.get(label, '')}-{ann_path.stem}-T{T}-e{epochs}-n{images}{lr}.nir"
    log = path.with_suffix(".json")   # training time and per-epoch history, measured when it was trained
    if path.exists() and log.exists():
        return api.load(path), json.loads(log.read_text())
    part = Dataset(ds.name, ds.train_x[:images], ds.train_y[:images], ds.test_x, ds.test_y, ds.num_classes)
    t0 = time.perf_counter()
    net = api.train_snn(copy.deepcopy(ann), part, method, T=T, epochs=epochs, seed=seed, **options)
    seconds = time.perf_counter() - t0
    graph = net.export(ds.input_shape, source=f"{method} T={T}, {epochs} epochs")
    write_nir(path, graph)
    record = {"seconds": seconds, "history": net.history}
    write_json(log, record)
    return graph, record


def conversion_sweep(ann, ds, out: Path, methods, args) -> tuple[dict, dict, float]:
    """The sweep's results and per-image correctness; with --reuse-sweep, those a previous run saved in `out`."""
    saved = out / "sweep-correct.npz"
    seconds = out / "sweep-seconds.json"
    if args.reuse_sweep and saved.exists():
        with np.load(saved) as z:
            correct = {(k.rsplit("|", 1)[0], int(k.rsplit("|", 1)[1])): z[k] for k in z.files}
        return (json.loads((out / "sweep" / "results.json").read_text()), correct,
                json.loads(seconds.read_text())["seconds"])
    correct: dict = {}
    t0 = time.perf_counter()
    tune = Dataset(ds.name, ds.train_x[:args.tune_images], ds.train_y[:args.tune_images], ds.test_x, ds.test_y,
                   ds.num_classes)
    results = run_sweep(ann, tune, SweepConfig(out=out / "sweep", methods=methods, T_values=T_VALUES,
                                             method_epochs=args.method_epochs, seed=args.seed, progress=False,
                                             limit=args.limit, targets=TARGETS), correct=correct)
    took = time.perf_counter() - t0
    write_with(saved, lambda f: np.savez_compressed(f, **{f"{k}|{T}": v for (k, T), v in correct.items()}))
    write_json(seconds, {"seconds": took})
    return results, correct, took


def measure(label: str, graph, x, y, hws, correct: dict) -> list[dict]:
    """Rows as the sweep writes them (accuracy, interval, spikes, energy per target) for `graph` at every T."""
    rows = []
    for T in T_VALUES:
        run = backends.get("reference").run(graph, x, T)
        correct[label, T] = run.predictions == y
        hits = int(correct[label, T].sum())
        energy = {hw.name: energy_report(graph, run, hw, T, encoding="direct") for hw in hws}
        rows.append({"label": label, "method": label, "backend": "reference", "encoding": "direct", "T": T,
                     "accuracy": hits / len(y), "ci95": list(wilson_interval(hits, len(y))),
                     "spikes_per_sample": run.spikes_per_sample, "seconds": run.seconds,
                     "energy": {name: r.snn_joules_per_inference for name, r in energy.items()},
                     "report": energy[hws[0].name].to_dict() if T == 32 else None})
        print(f"{label:>20} T={T:>3}: accuracy {100 * rows[-1]['accuracy']:6.2f}%", flush=True)
    return rows


def merge(results: dict, trained: dict, correct: dict, ann_correct) -> dict:
    """The sweep's results with the trained SNNs' rows added, significance and Pareto fronts recomputed over all."""
    for label, (rows, record) in trained.items():
        results["methods"][label] = {"ann_accuracy": results["ann"]["accuracy"], "prepare_seconds": record["seconds"],
                                     "history": record["history"]}
        results["energy"]["per_method"][label] = next(r.pop("report") for r in rows if r["T"] == 32)
        for r in rows:
            r.pop("report", None)
        results["runs"] += rows
    results["significance"] = significance(results["runs"], correct, ann_correct, results["T_values"])
    results["pareto"] = {t: tradeoff(results["runs"], t, results["ann"]["accuracy"], results["ann"]["energy"][t])
                         for t in results["pareto"]}
    return results


def per_T_table(results: dict, cell) -> str:
    Ts = results["T_values"]
    by = {(r["label"], r["T"]): r for r in results["runs"]}
    rows = [{"method": m, **{str(T): cell(by[m, T]) for T in Ts}} for m in results["methods"]]
    return markdown_table(rows, [("method", "method")] + [(str(T), f"T={T}") for T in Ts])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=tuple(AUGMENT), default="fashion-mnist")
    parser.add_argument("--method-epochs", type=int, default=3, help="fine-tuning epochs of conversion methods")
    parser.add_argument("--tune-images", type=int, default=20000,
                        help="training images the conversion methods fine-tune and calibrate on (first N)")
    parser.add_argument("--snn-T", type=int, nargs="+", default=[4, 8],
                        help="the Ts the SNN training methods train at; rows of the second and later are 'method@T<T>'")
    parser.add_argument("--snn-epochs", type=int, default=2)
    parser.add_argument("--snn-images", type=int, default=60000, help="training images the SNN methods train on")
    parser.add_argument("--snn-lr", type=float, default=1e-3,
                        help="the SNN training methods' learning rate (the papers' 1e-3); 0: each method's own default")
    parser.add_argument("--snn-methods", nargs="*", default=list(TRAINED), choices=list(TRAINED))
    parser.add_argument("--ann-epochs", type=int, default=None, help="default: the README's recipe (10 / 15)")
    parser.add_argument("--checkpoint", default=None, help="a spikeport lenet5 checkpoint to use as the ANN instead")
    parser.add_argument("--reuse-sweep", action="store_true", help="reuse the conversion sweep saved in --out")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/bench-methods-mnist")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    args.ann_epochs = args.ann_epochs or ANN_EPOCHS[args.dataset]
    t_start = time.perf_counter()
    ds = load_dataset(args.dataset, seed=args.seed)
    if args.checkpoint:
        ann_path = Path(args.checkpoint)
        ann, state = load_model(ann_path, input_shape=ds.input_shape)
        recipe = (f"`{ann_path.name}` as given (`--augment {state.get('augment', 'none')}`, "
                  f"{len(state.get('history', []))} epochs)")
    else:
        ann, ann_path = trained_ann(ds, args.dataset, args.ann_epochs, args.seed)
        recipe = (f"`--augment {AUGMENT[args.dataset]}`, {args.ann_epochs} epochs, batch 128, seed {args.seed} (cached "
                  f"as `{ann_path.name}`)")
    n = len(ds.test_x) if args.limit is None else min(args.limit, len(ds.test_x))
    x, y = ds.test_x[:n].numpy(), ds.test_y[:n].numpy()
    ann_correct = predict(ann, ds.test_x[:n]) == y
    methods = tuple(method_names()) + ("maxnorm:channel",)
    out = Path(args.out) / args.dataset
    results, correct, sweep_seconds = conversion_sweep(ann, ds, out, methods, args)
    hws = [load_hwconfig(t) for t in TARGETS]
    trained = {}
    for T, label in [(T, label) for T in args.snn_T for label in args.snn_methods]:
        method, options = TRAINED[label]
        if args.snn_lr:
            options = {**options, "lr": args.snn_lr}
        graph, record = trained_snn(label, method, ann, ds, ann_path, T, args.snn_epochs,
                                     min(args.snn_images, len(ds.train_x)), args.seed, options)
        row = label if T == args.snn_T[0] else f"{label}@T{T}"
        trained[row] = (measure(row, graph, x, y, hws, correct), record)
    results = merge(results, trained, correct, ann_correct)
    write_json(out / "all-results.json", results)
    accuracy = {(r["label"], r["T"]): r["accuracy"] for r in results["runs"]}
    its_ann = {m: v["ann_accuracy"] for m, v in results["methods"].items()}
    claims = [judge_beats(c, correct) if isinstance(c, Beats) else judge_within(c, accuracy, its_ann)
              for c in CLAIMS]
    full_ann = float((predict(ann, ds.test_x) == ds.test_y.numpy()).mean())
    subset = "" if n == len(ds.test_x) else (
        f", {100 * results['ann']['accuracy']:.2f}% on the first {n} used here. NOT THE FULL TEST SET: the full "
        "run did not fit the time available on the shared machine; every figure below is on those images")
    train_note = "; ".join(f"{label} {r['seconds'] / 60:.1f} min, last epoch: loss {r['history'][-1]['loss']:.3g}, "
                           f"its own SNN test accuracy {100 * r['history'][-1]['snn_accuracy']:.2f}%"
                           for label, (_, r) in trained.items())
    later = "".join(f" (rows '@T{T}': at T={T})" for T in args.snn_T[1:])
    tuned = ", ".join(m for m in methods if get_method(m.split(":")[0]).train is not None)
    body = "\n\n".join([
        f"## Methods on {args.dataset}: lenet5, {n} test images, T = 1-64 (reference backend)",
        f"Command: `{COMMAND} --dataset {args.dataset} "
        f"{f'--checkpoint {args.checkpoint}' if args.checkpoint else f'--ann-epochs {args.ann_epochs}'} --method-epochs "
        f"{args.method_epochs} --tune-images {args.tune_images} --snn-T {' '.join(map(str, args.snn_T))} --snn-epochs {args.snn_epochs} "
        f"--snn-images {args.snn_images} --snn-lr {args.snn_lr:g}"
        f"{'' if args.limit is None else f' --limit {args.limit}'}`. "
        f"Machine: {machine()}, shared with 4 other engineers' jobs (wall times are upper bounds). ANN: lenet5, "
        f"{recipe}, test accuracy {100 * full_ann:.2f}% on all {len(ds.test_x)} test images{subset}. "
        "Conversion methods that "
        f"fine-tune ({tuned}) do so for {args.method_epochs} epochs on the first "
        f"{min(args.tune_images, len(ds.train_x))} training images (rnl-ril: the last third of the epochs its stage "
        f"2); every method calibrates on those images. The SNN training methods start from the ANN's weights and train {args.snn_epochs} "
        f"epoch(s) at T={args.snn_T[0]}{later} on the first {min(args.snn_images, len(ds.train_x))} training images "
        f"({f'Adam at lr {args.snn_lr:g}' if args.snn_lr else 'each at its own default lr'}, cosine decay) "
        f"(snn2ann: IF, reset to zero; joint-asnn: LIF; stbp-lif: a standard LIF SNN trained alone by STBP, Joint "
        f"A-SNN's Table 4 baseline); their graphs are then run at every T, and 'its ANN' is the ANN they start "
        f"from. Training (time; the trainer's own last-epoch figures on the full test set at the T trained at): "
        f"{train_note}. Conversion sweep (fine-tuning and simulation) {sweep_seconds / 60:.1f} "
        f"min.",
        sweep_markdown(results).split("\n", 2)[2].replace("![accuracy vs T](accuracy_vs_T.png)", "")
        .replace(f"![accuracy vs energy on {TARGETS[0]}](pareto_{TARGETS[0]}.png)", "")
        .replace(f"![accuracy vs energy on {TARGETS[1]}](pareto_{TARGETS[1]}.png)", "").strip(),
        "## Wilson 95% intervals of the accuracy (%)",
        per_T_table(results, lambda r: f"{100 * r['ci95'][0]:.2f}-{100 * r['ci95'][1]:.2f}"),
        *[part for t in TARGETS for part in (f"## SNN energy per inference on {t} (nJ; ANN "
                                             f"{1e9 * results['ann']['energy'][t]:.1f} nJ)",
                                             per_T_table(results, lambda r, t=t: f"{1e9 * r['energy'][t]:.1f}"))],
        f"## The papers' claims on {args.dataset}",
        "Each claim as the paper states it (its network and data set in parentheses) against the same comparison "
        "here, paired on the same test images: A/B counts the images only A / only B classifies correctly, p the "
        "exact two-sided McNemar p. 'reproduced' needs A significantly ahead (p < 0.05) at every T listed; "
        "'partly' at some of them.",
        markdown_table(claims, [("paper", "paper"), ("claim", "claim (paper's figures)"), ("ours", "our comparison"),
                                ("figures", "measured (%)"), ("verdict", "verdict")]),
        "## The goal: the best method within 6 / 2 / 0.5 points of the ANN at T = 2 / 4 / 8",
        markdown_table(goal_rows(accuracy, results["ann"]["accuracy"]),
                       [("goal", "goal"), ("verdict", "verdict"), ("figures", "best (%)")]),
    ])
    if not args.no_write:
        print("wrote", write_section(f"methods-{args.dataset}", body))
    else:
        print(body)


if __name__ == "__main__":
    main()
