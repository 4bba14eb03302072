"""`spikeport demo`: the whole pipeline on the embedded digits data, end to end, into one folder.

Train the digits CNN, convert it, write model.nir, run it on the reference simulator (direct input and a spike
encoding side by side) and on Lava, count energy per encoding, and write report.md, results.json and plots.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import backends
from pipeline.io.atomic import output_set, write_json, write_nir, write_text
from pipeline.conversion.registry import convert, get_method
from pipeline.data.datasets import load_dataset
from pipeline.data.encoding import check as check_encoding, encode
from pipeline.hardware.energy import energy_report
from pipeline.hardware.hwconfig import load_hwconfig
from pipeline.data.zoo import build_model
from pipeline.io.nirio import read_graph
from pipeline.io.provenance import provenance
from pipeline.io.render import RUN_COLUMNS, accuracy_plot, energy_plot, markdown_table
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
    encoding: str = "rate"   # the input encoding run beside direct (pipeline/data/encoding.py)


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
    encodings = list(dict.fromkeys(["direct", check_encoding(cfg.encoding)]))
    ref_runs, runs = {}, []
    for name in encodings:
        for T in cfg.T_values:
            run = reference.run(graph, encode(x, name, T, cfg.seed), T, device=cfg.device, progress=cfg.progress)
            ref_runs[name, T] = run
            say(f"reference {name:>7} T={T:>3}: accuracy {100 * run.accuracy(y):.2f}%, "
                f"{run.spikes_per_sample:.0f} spikes/sample")
            runs.append(_row(run, y, ref_runs.get(("direct", T), run), name))

    n_lava = len(x) if cfg.lava_samples is None else min(cfg.lava_samples, len(x))
    say(f"Lava (Loihi 2 process models, floating point): {n_lava} samples at T={cfg.lava_T} ...")
    ref_lava_T = ref_runs.get(("direct", cfg.lava_T)) or reference.run(graph, x, cfg.lava_T)
    lava = backends.get("lava").run(graph, x[:n_lava], cfg.lava_T, progress=cfg.progress)
    runs.append(_row(lava, y[:n_lava], _subset(ref_lava_T, n_lava), "direct"))
    say(f"lava T={cfg.lava_T}: accuracy {100 * runs[-1]['accuracy']:.2f}%, agreement with reference "
        f"{100 * runs[-1]['agreement']:.2f}% in {lava.seconds:.1f} s")

    hw = load_hwconfig(cfg.target)
    reports = {}
    for name in encodings:
        energy_run = ref_runs.get((name, cfg.energy_T)) or \
            reference.run(graph, encode(x, name, cfg.energy_T, cfg.seed), cfg.energy_T)
        reports[name] = energy_report(graph, energy_run, hw, cfg.energy_T, data_movement=True, encoding=name)
        say(f"energy ({hw.name}, T={cfg.energy_T}, {name}): ANN {reports[name].ann_joules_per_inference * 1e9:.1f} "
            f"nJ, SNN {reports[name].snn_joules_per_inference * 1e9:.1f} nJ per inference")
    energy = reports["direct"]

    results = {
        "dataset": {"name": "digits", "train": len(ds.train_x), "test": len(ds.test_x)},
        "model": "digits-cnn",
        "method": cfg.method,
        "ann": {"accuracy": ann_acc, "epochs": cfg.epochs},
        "runs": runs,
        "energy": {"hwconfig": hw.name, **energy.to_dict(), "T": cfg.energy_T},
        "energy_by_encoding": {name: r.to_dict() for name, r in reports.items()},
        "environment": provenance(cfg.seed),
    }
    accuracy_plot(out / "accuracy_vs_T.png", runs, ann_acc, f"digits-cnn, {cfg.method}")
    energy_plot(out / "energy_per_layer.png", energy.to_dict()["layers"], f"energy per inference, {hw.name}, T={cfg.energy_T}")
    write_json(out / "results.json", results)
    write_text(out / "report.md", _report(results, reports))
    return results


def _first_layer_joules(report) -> float:
    """SNN compute energy of the first weighted layer of an energy report."""
    return next(r.snn_joules for r in report.layers if r.ann_macs)


def _subset(run, n: int):
    """The first `n` samples of a reference run (for agreement with a shorter Lava run)."""
    return replace(run, outputs=run.outputs[:n])


def _row(run, labels, ref, encoding: str) -> dict:
    return {"backend": run.backend, "label": f"{run.backend} ({encoding})", "encoding": encoding, "T": run.T,
            "accuracy": run.accuracy(labels), "agreement": run.agreement(ref),
            "spikes_per_sample": run.spikes_per_sample, "samples": len(run.outputs), "seconds": run.seconds,
            "approximate": run.approximate}


def _report(results: dict, reports: dict) -> str:
    ann = results["ann"]["accuracy"]
    side = [{"encoding": name, "ann": f"{r.ann_joules_per_inference * 1e9:.1f}",
             "snn": f"{r.snn_joules_per_inference * 1e9:.1f}", "ratio": f"{r.ratio:.3f}",
             "first": f"{_first_layer_joules(r) * 1e9:.1f}"} for name, r in reports.items()]
    method = get_method(results["method"])
    return "\n\n".join([
        "# spikeport demo report",
        f"Model `{results['model']}` on `{results['dataset']['name']}` ({results['dataset']['train']} train / "
        f"{results['dataset']['test']} test samples), converted with `{method.name}`: {method.summary}.",
        f"ANN test accuracy: **{100 * ann:.2f}%**.",
        "## Accuracy per time-step budget",
        "Agreement is the fraction of test samples whose prediction equals the reference backend's with direct "
        "input at the same T. `rate` input: Bernoulli spikes with probability = pixel intensity, seeded "
        "(pipeline/data/encoding.py).",
        markdown_table(results["runs"], [("encoding", "encoding")] + RUN_COLUMNS),
        "![accuracy vs T](accuracy_vs_T.png)",
        "## Energy per inference, per input encoding",
        markdown_table(side, [("encoding", "input encoding"), ("ann", "ANN (nJ)"), ("snn", "SNN compute (nJ)"),
                              ("first", "SNN first layer (nJ)"), ("ratio", "E_ANN / E_SNN")]),
        "Under direct input the first layer multiplies the analog image at every step (T x MACs); under a spike "
        "encoding it pays one AC per input spike per synapse.",
        *[f"### {name} input\n\n{r.to_markdown()}" for name, r in reports.items()],
        "![energy per layer](energy_per_layer.png)",
        "## Environment",
        markdown_table([{"library": k, "version": v} for k, v in results["environment"]["libraries"].items()],
                       [("library", "library"), ("version", "version")]),
    ]) + "\n"
