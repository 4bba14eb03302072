"""`spikeport demo`: the whole pipeline on the embedded digits data, end to end, into one folder.

Train the digits CNN, convert it, write model.nir, run it on the reference simulator and on Lava,
count energy, and write report.md, results.json and plots.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import backends
from pipeline.io.atomic import output_set, write_json, write_nir, write_text
from pipeline.conversion.registry import convert, get_method
from pipeline.data.datasets import load_dataset
from pipeline.hardware.energy import energy_report
from pipeline.hardware.hwconfig import load_hwconfig
from pipeline.data.zoo import build_model
from pipeline.io.nirio import read_graph
from pipeline.io.provenance import provenance
from pipeline.reports.render import RUN_COLUMNS, accuracy_plot, energy_plot, markdown_table
from pipeline.training.ann import TrainConfig, evaluate, save_checkpoint, seed_everything, train_ann


OUTPUTS = ("ann.pt", "model.nir", "accuracy_vs_T.png", "energy_per_layer.png", "results.json", "report.md")


@dataclass
class DemoConfig:
    out: Path
    method: str = "robustnorm"
    T_values: tuple[int, ...] = (4, 8, 16, 32, 64)
    lava_T: int = 32
    lava_samples: int | None = None
    energy_T: int = 32
    target: str = "cmos45nm"
    epochs: int = 30
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def say(msg: str) -> None:
    print(f"[spikeport] {msg}", flush=True)


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage, write the artifacts under `cfg.out` as one output set (complete or absent), and return
    the results dict."""
    with output_set(cfg.out, OUTPUTS, "demo") as out:
        results = _demo_into(out, cfg)
    say(f"wrote {Path(cfg.out) / 'report.md'}, {Path(cfg.out) / 'results.json'}, plots")
    return results


def _demo_into(out: Path, cfg: DemoConfig) -> dict:
    ds = load_dataset("digits", seed=cfg.seed)
    say(f"data: digits, {len(ds.train_x)} train / {len(ds.test_x)} test samples of shape {ds.input_shape}")
    seed_everything(cfg.seed)
    model = build_model("digits-cnn", ds.input_shape, ds.num_classes)
    t0 = time.perf_counter()
    history = train_ann(model, ds.train_x, ds.train_y, ds.test_x, ds.test_y,
                        TrainConfig(epochs=cfg.epochs, seed=cfg.seed, device=cfg.device), progress=cfg.progress)
    model = model.cpu()
    ann_acc = evaluate(model, ds.test_x, ds.test_y)
    say(f"ANN trained in {time.perf_counter() - t0:.1f} s: test accuracy {100 * ann_acc:.2f}%")
    save_checkpoint(out / "ann.pt", model, model_name="digits-cnn", input_shape=ds.input_shape,
                    num_classes=ds.num_classes, extra={"history": history.epochs, "seed": cfg.seed})

    graph = convert(model, ds.input_shape, ds.train_x, method=cfg.method, source="digits-cnn (spikeport demo)",
                    progress=cfg.progress)
    write_nir(out / "model.nir", graph)
    graph = read_graph(out / "model.nir")
    say(f"converted with {cfg.method} -> {Path(cfg.out) / 'model.nir'} ({len(graph.nodes)} nodes)")

    x, y = ds.test_x.numpy(), ds.test_y.numpy()
    reference = backends.get("reference")
    ref_runs = {}
    for T in cfg.T_values:
        ref_runs[T] = reference.run(graph, x, T, device=cfg.device, progress=cfg.progress)
        say(f"reference T={T:>3}: accuracy {100 * ref_runs[T].accuracy(y):.2f}%, "
            f"{ref_runs[T].spikes_per_sample:.0f} spikes/sample")
    runs = [_row(r, y, r) for r in ref_runs.values()]

    n_lava = len(x) if cfg.lava_samples is None else min(cfg.lava_samples, len(x))
    say(f"Lava (Loihi 2 process models, floating point): {n_lava} samples at T={cfg.lava_T} ...")
    ref_lava_T = ref_runs.get(cfg.lava_T) or reference.run(graph, x, cfg.lava_T)
    lava = backends.get("lava").run(graph, x[:n_lava], cfg.lava_T, progress=cfg.progress)
    runs.append(_row(lava, y[:n_lava], _subset(ref_lava_T, n_lava)))
    say(f"lava T={cfg.lava_T}: accuracy {100 * runs[-1]['accuracy']:.2f}%, agreement with reference "
        f"{100 * runs[-1]['agreement']:.2f}% in {lava.seconds:.1f} s")

    hw = load_hwconfig(cfg.target)
    energy_run = ref_runs.get(cfg.energy_T) or reference.run(graph, x, cfg.energy_T)
    energy = energy_report(graph, energy_run, hw, cfg.energy_T, data_movement=True)
    say(f"energy ({hw.name}, T={cfg.energy_T}): ANN {energy.ann_joules_per_inference * 1e9:.1f} nJ, "
        f"SNN {energy.snn_joules_per_inference * 1e9:.1f} nJ per inference")

    results = {
        "dataset": {"name": "digits", "train": len(ds.train_x), "test": len(ds.test_x)},
        "model": "digits-cnn",
        "method": cfg.method,
        "ann": {"accuracy": ann_acc, "epochs": cfg.epochs},
        "runs": runs,
        "energy": {"hwconfig": hw.name, **energy.to_dict(), "T": cfg.energy_T},
        "environment": provenance(cfg.seed),
    }
    accuracy_plot(out / "accuracy_vs_T.png", runs, ann_acc, f"digits-cnn, {cfg.method}")
    energy_plot(out / "energy_per_layer.png", energy.to_dict()["layers"], f"energy per inference, {hw.name}, T={cfg.energy_T}")
    write_json(out / "results.json", results)
    write_text(out / "report.md", _report(results, energy.to_markdown()))
    return results


def _subset(run, n: int):
    """The first `n` samples of a reference run (for agreement with a shorter Lava run)."""
    return replace(run, outputs=run.outputs[:n])


def _row(run, labels, ref) -> dict:
    return {"backend": run.backend, "T": run.T, "accuracy": run.accuracy(labels), "agreement": run.agreement(ref),
            "spikes_per_sample": run.spikes_per_sample, "samples": len(run.outputs), "seconds": run.seconds,
            "approximate": run.approximate}


def _report(results: dict, energy_md: str) -> str:
    ann = results["ann"]["accuracy"]
    method = get_method(results["method"])
    return "\n\n".join([
        "# spikeport demo report",
        f"Model `{results['model']}` on `{results['dataset']['name']}` ({results['dataset']['train']} train / "
        f"{results['dataset']['test']} test samples), converted with `{method.name}`: {method.summary}.",
        f"ANN test accuracy: **{100 * ann:.2f}%**.",
        "## Accuracy per time-step budget",
        "Agreement is the fraction of test samples whose prediction equals the reference backend's at the same T.",
        markdown_table(results["runs"], RUN_COLUMNS),
        "![accuracy vs T](accuracy_vs_T.png)",
        "## Energy per inference",
        energy_md,
        "![energy per layer](energy_per_layer.png)",
        "## Environment",
        markdown_table([{"library": k, "version": v} for k, v in results["environment"]["libraries"].items()],
                       [("library", "library"), ("version", "version")]),
    ]) + "\n"
