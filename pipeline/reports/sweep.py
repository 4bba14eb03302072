"""`spikeport sweep`: conversion methods x time steps on one model: accuracy with 95% intervals, paired tests,
spikes and energy per inference on each target, and the accuracy-energy Pareto front, as report.md, JSON, plots.

Each method prepares its own model (some fine-tune the ANN their way), converts it (once, or per T for
methods whose graph depends on T), and runs the reference simulator on the test split, encoded as
`SweepConfig.encoding` says (pipeline/data/encoding.py; calibration sees what that encoding delivers).
Under torchrun every simulation is split over the processes (pipeline/sharded.py); process 0 alone prepares and
converts each method's model, prints and writes.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from backends.nirext import with_encoding
from pipeline import sharded
from pipeline.data import encoding as enc
from pipeline.io.atomic import output_set, write_json, write_nir, write_text
from pipeline.conversion.calibrate import GRANULARITIES
from pipeline.conversion.registry import BALANCED_RESETS, check_reset, convert, get_method, prepare
from pipeline.errors import SpikeportError
from pipeline.hardware.energy import energy_report
from pipeline.hardware.hwconfig import load_hwconfig
from pipeline.io.provenance import provenance
from pipeline.io.render import accuracy_plot, markdown_table, pareto_plot
from pipeline.reports.stats import cheapest_reaching, mcnemar, pareto_front, wilson_interval
from pipeline.training.ann import evaluate, predict
from pipeline.training.distributed import world

DEFAULT_T = (1, 2, 4, 8, 16, 32, 64, 128)
OUTPUTS = ("*.nir", "results.json", "report.md", "accuracy_vs_T.png", "pareto_*.png")


@dataclass
class SweepConfig:
    out: Path
    methods: tuple[str, ...] = ("maxnorm", "robustnorm")
    T_values: tuple[int, ...] = DEFAULT_T
    method_epochs: int = 10
    nir_T: int = 32  # the T whose graph is written as <method>.nir (the last T when not swept)
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    limit: int | None = None
    targets: tuple[str, ...] = ("cmos45nm", "loihi")  # energy per (method, T) on each; the first prices the .nir
    encoding: str = "direct"


@dataclass
class Variant:
    """A sweep entry 'method[:granularity][:reset]', e.g. 'maxnorm:channel', 'maxnorm:zero'."""

    label: str
    method: str
    options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Variant":
        name, *parts = text.split(":")
        method = get_method(name)
        options: dict = {}
        for part in parts:
            key = "granularity" if part in GRANULARITIES else "reset" if part in BALANCED_RESETS else None
            if key is None or key in options:
                raise SpikeportError(f"sweep entry {text!r}: {part!r} is not a granularity "
                                     f"({', '.join(GRANULARITIES)}) or a reset ({', '.join(BALANCED_RESETS)}), "
                                     "or is given twice")
            options[key] = part
        if "reset" in options:
            check_reset(method, options["reset"])
        return cls(text, name, options)


def run_sweep(ann, dataset, cfg: SweepConfig, log=print, correct: dict | None = None) -> dict:
    """Run every method at every T; write results.json, report.md, accuracy_vs_T.png and one .nir per method
    into `cfg.out` as one output set (complete or absent; a concurrent sweep into it is refused). Under torchrun
    (process group initialised) every process must call it; processes other than 0 write nothing and return {}.
    A `correct` dict, when given, receives each (label, T)'s per-image correctness (bool array) for the caller's
    paired tests."""
    correct = {} if correct is None else correct
    if world()[0] != 0:
        return _sweep_into(None, ann, dataset, cfg, lambda *_: None, correct)
    with output_set(cfg.out, OUTPUTS, "sweep") as out:
        return _sweep_into(out, ann, dataset, cfg, log, correct)


def _sweep_into(out: Path | None, ann, dataset, cfg: SweepConfig, log, correct: dict) -> dict:
    variants = [Variant.parse(m) for m in cfg.methods]
    n = len(dataset.test_x) if cfg.limit is None else min(cfg.limit, len(dataset.test_x))
    x, y = dataset.test_x[:n].numpy(), dataset.test_y[:n].numpy()
    ann_correct = predict(ann, dataset.test_x[:n]) == y
    ann_acc = float(ann_correct.mean())
    encoding = enc.check(cfg.encoding)
    shape = enc.input_shape(encoding, dataset.input_shape)

    def converted(v: Variant, model, **options):
        calib = torch.from_numpy(enc.calibration_input(dataset.train_x.numpy(), encoding, options.get("T") or 32))
        g = convert(model, shape, calib, method=v.method, **v.options, **options)
        g.metadata = with_encoding(g.metadata, encoding)
        return g

    rows, models, energy = [], {}, {}
    hws = [load_hwconfig(t) for t in cfg.targets]
    ann_energy = {}
    nir_T = cfg.nir_T if cfg.nir_T in cfg.T_values else cfg.T_values[-1]
    for v in variants:
        method = get_method(v.method)
        t0 = time.perf_counter()
        model = sharded.from_first(lambda: prepare(v.method, copy.deepcopy(ann), dataset, cfg.method_epochs,
                                                   seed=cfg.seed, device=cfg.device, progress=cfg.progress))
        models[v.label] = {"ann_accuracy": evaluate(model, dataset.test_x[:n], dataset.test_y[:n]),
                           "prepare_seconds": time.perf_counter() - t0}
        graph = None if method.t_dependent else sharded.from_first(lambda: converted(v, model))
        for T in cfg.T_values:
            g = sharded.from_first(lambda: converted(v, model, T=T)) if method.t_dependent else graph
            run = sharded.simulate(g, enc.encode(x, encoding, T, cfg.seed), T, device=cfg.device)
            correct[v.label, T] = run.predictions == y
            reports = {hw.name: energy_report(g, run, hw, T, encoding=encoding) for hw in hws}
            ann_energy.update({name: r.ann_joules_per_inference for name, r in reports.items()})
            hits = int(correct[v.label, T].sum())
            rows.append({"label": v.label, "method": v.method, "backend": "reference", "encoding": encoding, "T": T,
                         "accuracy": hits / n, "ci95": list(wilson_interval(hits, n)),
                         "spikes_per_sample": run.spikes_per_sample, "seconds": run.seconds,
                         "energy": {name: r.snn_joules_per_inference for name, r in reports.items()}})
            log(f"{v.label:>20} T={T:>3}: accuracy {100 * rows[-1]['accuracy']:6.2f}%, "
                f"{run.spikes_per_sample:9.0f} spikes/sample")
            if T == nir_T and out is not None:
                write_nir(out / f"{v.label.replace(':', '-')}.nir", g)
                energy[v.label] = reports[hws[0].name].to_dict()
    if out is None:
        return {}
    results = {"ann": {"accuracy": ann_acc, "ci95": list(wilson_interval(int(ann_correct.sum()), n)),
                       "energy": ann_energy},
               "samples": n, "encoding": encoding, "methods": models, "runs": rows,
               "energy": {"hwconfig": hws[0].name, "T": nir_T, "per_method": energy},
               "significance": significance(rows, correct, ann_correct, cfg.T_values),
               "pareto": {hw.name: tradeoff(rows, hw.name, ann_acc, ann_energy[hw.name]) for hw in hws},
               "T_values": list(cfg.T_values), "environment": provenance(cfg.seed)}
    accuracy_plot(out / "accuracy_vs_T.png", rows, ann_acc, "accuracy vs T per method (reference backend)")
    for hw in hws:
        pareto_plot(out / f"pareto_{hw.name}.png", _points(rows, hw.name), results["pareto"][hw.name]["front"],
                    ann_acc, ann_energy[hw.name], f"accuracy vs energy per inference on {hw.name}")
    write_json(out / "results.json", results)
    write_text(out / "report.md", sweep_markdown(results))
    return results


def significance(rows: list[dict], correct: dict, ann_correct, T_values) -> list[dict]:
    """Per T: the best method, the runner-up, and exact McNemar tests of best vs runner-up and best vs its ANN
    (all on the same test images, so the comparison is paired)."""
    out = []
    for T in T_values:
        ranked = sorted((r for r in rows if r["T"] == T), key=lambda r: -r["accuracy"])
        best = ranked[0]
        entry = {"T": T, "best": best["label"], "accuracy": best["accuracy"], "ci95": best["ci95"],
                 "vs_ann": vars(mcnemar(correct[best["label"], T], ann_correct))}
        if len(ranked) > 1:
            entry["runner_up"] = ranked[1]["label"]
            entry["vs_runner_up"] = vars(mcnemar(correct[best["label"], T], correct[ranked[1]["label"], T]))
        out.append(entry)
    return out


ACCURACY_GAPS = (0.005, 0.01, 0.02, 0.05)  # points below the ANN a deployer may accept


def _points(rows: list[dict], target: str) -> list[dict]:
    return [{"label": r["label"], "T": r["T"], "accuracy": r["accuracy"], "energy": r["energy"][target]}
            for r in rows if r["energy"].get(target) is not None]


def tradeoff(rows: list[dict], target: str, ann_accuracy: float, ann_energy: float) -> dict:
    """The accuracy-energy Pareto front on `target` and, for each accepted gap to the ANN, the cheapest
    (method, T) within it."""
    points = _points(rows, target)
    cheapest = {f"{100 * gap:g}": cheapest_reaching(points, ann_accuracy - gap) for gap in ACCURACY_GAPS}
    return {"ann_energy": ann_energy, "front": pareto_front(points), "cheapest_within": cheapest}


def sweep_markdown(results: dict) -> str:
    """Accuracy (%) and spikes per sample per method (rows) and T (columns)."""
    Ts = results["T_values"]
    by = {(r["label"], r["T"]): r for r in results["runs"]}
    labels = list(results["methods"])
    acc_rows = [{"method": m, "ann": f"{100 * results['methods'][m]['ann_accuracy']:.2f}",
                 **{str(T): f"{100 * by[m, T]['accuracy']:.2f}" for T in Ts}} for m in labels]
    spk_rows = [{"method": m, **{str(T): f"{by[m, T]['spikes_per_sample']:.0f}" for T in Ts}} for m in labels]
    cols = [("method", "method"), ("ann", "its ANN")] + [(str(T), f"T={T}") for T in Ts]
    return "\n\n".join([
        "# Sweep: accuracy per method per time-step budget",
        f"Test samples: {results['samples']}, input encoding `{results.get('encoding', 'direct')}`; original ANN "
        f"accuracy {100 * results['ann']['accuracy']:.2f}%. "
        "'its ANN' is the accuracy of the model each method converts (methods that fine-tune change it).",
        "## Accuracy (%)", markdown_table(acc_rows, cols),
        "## Spikes per sample", markdown_table(spk_rows, [c for c in cols if c[0] != "ann"]),
        "![accuracy vs T](accuracy_vs_T.png)",
        f"## Energy per inference at T={results['energy']['T']} ({results['energy']['hwconfig']})",
        markdown_table([{"method": m, "ann": _nj(e["ann_joules_per_inference"]),
                         "snn": _nj(e["snn_joules_per_inference"]), "ratio": f"{e['ratio']:.3f}"}
                        for m, e in results["energy"]["per_method"].items()],
                       [("method", "method"), ("ann", "ANN (nJ)"), ("snn", "SNN compute (nJ)"),
                        ("ratio", "E_ANN / E_SNN (SNN2ANN Eq. 23)")]),
        "Counting convention and assumptions: docs/energy.md (MACs for the analog first layer, ACs per "
        "synaptic event, neuron updates per neuron per step; data movement not included here).",
        _significance_markdown(results), *[_tradeoff_markdown(results, t) for t in results["pareto"]],
    ]) + "\n"


def _p(test: dict) -> str:
    return f"{test['a_only']}/{test['b_only']}, p={test['p']:.3g}"


def _significance_markdown(results: dict) -> str:
    n = results["samples"]
    rows = [{"T": s["T"], "best": s["best"], "acc": f"{100 * s['accuracy']:.2f}",
             "ci": f"{100 * s['ci95'][0]:.2f}-{100 * s['ci95'][1]:.2f}", "ann": _p(s["vs_ann"]),
             "next": f"{s['runner_up']}: {_p(s['vs_runner_up'])}" if "runner_up" in s else "-"}
            for s in results["significance"]]
    return "\n\n".join([
        "## Significance",
        f"On {n} test images one image is {100 / n:.3g} points. Intervals are Wilson 95% intervals; the tests are exact "
        "McNemar tests on the same images (A/B: images only A / only B classifies correctly; p two-sided). A "
        "difference with p >= 0.05 is not evidence that the methods differ.",
        markdown_table(rows, [("T", "T"), ("best", "best method"), ("acc", "accuracy (%)"), ("ci", "95% interval"),
                              ("ann", "vs its ANN (best/ANN)"), ("next", "vs runner-up (best/next)")])])


def _tradeoff_markdown(results: dict, target: str) -> str:
    t = results["pareto"][target]
    ann = results["ann"]["accuracy"]
    front = [{"method": r["label"], "T": r["T"], "acc": f"{100 * r['accuracy']:.2f}", "e": _nj(r["energy"]),
              "ratio": f"{r['energy'] / t['ann_energy']:.3f}"} for r in t["front"]]
    cheapest = [{"gap": gap, "method": r["label"] if r else "none reaches it", "T": r["T"] if r else "-",
                 "acc": f"{100 * r['accuracy']:.2f}" if r else "-", "e": _nj(r["energy"]) if r else "-",
                 "ratio": f"{r['energy'] / t['ann_energy']:.3f}" if r else "-"}
                for gap, r in t["cheapest_within"].items()]
    cols = [("method", "method"), ("T", "T"), ("acc", "accuracy (%)"), ("e", "SNN energy (nJ)"),
            ("ratio", "SNN / ANN energy")]
    return "\n\n".join([
        f"## Accuracy and energy on {target}",
        f"ANN: {100 * ann:.2f}% at {_nj(t['ann_energy'])} nJ per inference. Pareto front (no other (method, T) is "
        "both more accurate and cheaper):", markdown_table(front, cols),
        "Cheapest (method, T) within a given gap of the ANN's accuracy:",
        markdown_table(cheapest, [("gap", "gap (points)")] + cols),
        f"![accuracy vs energy on {target}](pareto_{target}.png)"])


def _nj(joules: float) -> str:
    return f"{joules * 1e9:.1f}"
