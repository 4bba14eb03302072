"""`spikeport sweep`: conversion methods x time steps on one model, as a table, results.json and a plot.

Each method prepares its own model (some fine-tune the ANN their way), converts it (once, or per T for
methods whose graph depends on T), and runs the reference simulator on the test split.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import backends
from pipeline.io.atomic import output_set, write_json, write_nir, write_text
from pipeline.conversion.calibrate import GRANULARITIES
from pipeline.conversion.registry import BALANCED_RESETS, check_reset, convert, get_method, prepare
from pipeline.errors import SpikeportError
from pipeline.hardware.energy import energy_report
from pipeline.hardware.hwconfig import load_hwconfig
from pipeline.io.provenance import provenance
from pipeline.reports.render import accuracy_plot, markdown_table
from pipeline.training.ann import evaluate

DEFAULT_T = (1, 2, 4, 8, 16, 32, 64, 128)
OUTPUTS = ("*.nir", "results.json", "report.md", "accuracy_vs_T.png")


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
    target: str = "cmos45nm"


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


def run_sweep(ann, dataset, cfg: SweepConfig, log=print) -> dict:
    """Run every method at every T; write results.json, report.md, accuracy_vs_T.png and one .nir per method
    into `cfg.out` as one output set (complete or absent; a concurrent sweep into it is refused)."""
    with output_set(cfg.out, OUTPUTS, "sweep") as out:
        return _sweep_into(out, ann, dataset, cfg, log)


def _sweep_into(out: Path, ann, dataset, cfg: SweepConfig, log) -> dict:
    variants = [Variant.parse(m) for m in cfg.methods]
    n = len(dataset.test_x) if cfg.limit is None else min(cfg.limit, len(dataset.test_x))
    x, y = dataset.test_x[:n].numpy(), dataset.test_y[:n].numpy()
    ann_acc = evaluate(ann, dataset.test_x[:n], dataset.test_y[:n])
    reference = backends.get("reference")
    rows, models, energy = [], {}, {}
    hw = load_hwconfig(cfg.target)
    nir_T = cfg.nir_T if cfg.nir_T in cfg.T_values else cfg.T_values[-1]
    for v in variants:
        method = get_method(v.method)
        t0 = time.perf_counter()
        model = prepare(v.method, copy.deepcopy(ann), dataset, cfg.method_epochs, seed=cfg.seed, device=cfg.device,
                        progress=cfg.progress)
        models[v.label] = {"ann_accuracy": evaluate(model, dataset.test_x[:n], dataset.test_y[:n]),
                           "prepare_seconds": time.perf_counter() - t0}
        graph = None if method.t_dependent else convert(model, dataset.input_shape, dataset.train_x, method=v.method,
                                                        **v.options)
        for T in cfg.T_values:
            g = convert(model, dataset.input_shape, dataset.train_x, method=v.method, T=T, **v.options) \
                if method.t_dependent else graph
            run = reference.run(g, x, T, device=cfg.device)
            rows.append({"label": v.label, "method": v.method, "backend": "reference", "T": T,
                         "accuracy": run.accuracy(y), "spikes_per_sample": run.spikes_per_sample,
                         "seconds": run.seconds})
            log(f"{v.label:>20} T={T:>3}: accuracy {100 * rows[-1]['accuracy']:6.2f}%, "
                f"{run.spikes_per_sample:9.0f} spikes/sample")
            if T == nir_T:
                write_nir(out / f"{v.label.replace(':', '-')}.nir", g)
                energy[v.label] = energy_report(g, run, hw, T).to_dict()
    results = {"ann": {"accuracy": ann_acc}, "samples": n, "methods": models, "runs": rows,
               "energy": {"hwconfig": hw.name, "T": nir_T, "per_method": energy},
               "T_values": list(cfg.T_values), "environment": provenance(cfg.seed)}
    accuracy_plot(out / "accuracy_vs_T.png", rows, ann_acc, "accuracy vs T per method (reference backend)")
    write_json(out / "results.json", results)
    write_text(out / "report.md", sweep_markdown(results))
    return results


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
        f"Test samples: {results['samples']}; original ANN accuracy {100 * results['ann']['accuracy']:.2f}%. "
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
    ]) + "\n"


def _nj(joules: float) -> str:
    return f"{joules * 1e9:.1f}"
