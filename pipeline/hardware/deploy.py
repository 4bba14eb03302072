"""`spikeport deploy`: a deployment bundle for a fixed-point target -- the quantized NIR graph, its resource
map, and an accuracy/energy report (quantized vs float per weight bit width) in one output folder.

Accuracy of a quantized graph is measured in the reference simulator's fixed-point mode, which is bit-exact
with Lava's fixed_pt process models (tests/test_fixedpoint_lava.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nir

import backends
from backends.netx import export_quantized
from pipeline.io.atomic import output_set, write_json, write_nir, write_text, write_with
from pipeline.hardware.hwconfig import HwConfig, load_hwconfig
from pipeline.hardware.quantize import Quantized, output_peak, quantize
from pipeline.io.render import markdown_table
from pipeline.hardware.resources import resource_map

SWEEP_BITS = (8, 6, 4, 2)
OUTPUTS = ("model.q.nir", "resources.json", "report.json", "report.md", "model.net")

@dataclass
class Bundle:
    """What `deploy` wrote and measured."""

    out: Path
    files: dict[str, Path]
    accuracy: list[dict]
    report: dict


def accuracy_sweep(graph: nir.NIRGraph, hw: HwConfig, calib_x, x, y, T: int, bits=SWEEP_BITS,
                   progress: bool = False) -> tuple[list[dict], dict[int, Quantized]]:
    """Float accuracy and, per weight bit width, the quantized graph's accuracy (fixed-point reference) and its
    agreement with the float predictions."""
    ref = backends.get("reference")
    float_run = ref.run(graph, x, T, progress=progress)
    rows = [{"weights": "float", "accuracy": float_run.accuracy(y), "agreement": 1.0,
             "spikes_per_sample": float_run.spikes_per_sample}]
    quantized = {}
    peak = output_peak(graph, calib_x)
    for b in bits:
        if b > hw.fixed_point_formats()["weight_bits"]:
            continue
        quantized[b] = quantize(graph, hw, calib_x, weight_bits=b, peak=peak)
        run = ref.run(quantized[b].graph, x, T, fixed_point=True, progress=progress)
        rows.append({"weights": f"{b}-bit", "accuracy": run.accuracy(y), "agreement": run.agreement(float_run),
                     "spikes_per_sample": run.spikes_per_sample})
    return rows, quantized


def deploy(graph: nir.NIRGraph, target: HwConfig | str, out: str | Path, calib_x, x, y, T: int = 32,
           progress: bool = False, encoding: str = "direct") -> Bundle:
    """Quantize `graph` for `target` at its full weight width, map it to cores, measure accuracy on (x, y) at
    each width of SWEEP_BITS and energy where the target publishes per-operation energies; write the bundle
    into folder `out` as one output set (complete or absent, pipeline.io.atomic.output_set). `x` (and `calib_x`)
    are direct or time-varying inputs as `encoding` delivers them."""
    hw = target if isinstance(target, HwConfig) else load_hwconfig(target)
    out = Path(out)
    full = hw.fixed_point_formats()["weight_bits"]
    resources = resource_map(graph, hw)
    rows, quantized = accuracy_sweep(graph, hw, calib_x, x, y, T, tuple(sorted({full, *SWEEP_BITS}, reverse=True)),
                                     progress)
    q = quantized[full]
    energy = _energy(q, hw, x, T, encoding)
    with output_set(out, OUTPUTS, "deploy") as tmp:
        files = {"graph": write_nir(tmp / "model.q.nir", q.graph),
                 "resources": write_json(tmp / "resources.json", resources.to_dict())}
        netx = _netx(q.graph, tmp)
        if "path" in netx:
            files["netx"] = tmp / "model.net"
            netx["path"] = str(out / "model.net")
        report = {"target": hw.name, "T": T, "encoding": encoding, "samples": len(x), "accuracy": rows,
                  "layers": q.layers, "resources": resources.to_dict(), "energy": energy, "netx": netx}
        files["report_json"] = write_json(tmp / "report.json", report)
        files["report"] = write_text(tmp / "report.md", _markdown(report, resources.to_markdown()))
    return Bundle(out, {k: out / p.name for k, p in files.items()}, rows, report)


def _energy(q: Quantized, hw: HwConfig, x, T: int, encoding: str) -> dict:
    if hw.energy is None:
        return {"note": f"{hw.name} publishes no per-operation energies ({hw.path.name}); no estimate is made"}
    from pipeline.hardware.energy import energy_report
    run = backends.get("reference").run(q.graph, x, T, fixed_point=True)
    report = energy_report(q.graph, run, hw, T, encoding=encoding)
    return {"snn_joules_per_inference": report.snn_joules_per_inference, "markdown": report.to_markdown()}


def _netx(graph: nir.NIRGraph, out: Path) -> dict:
    """The quantized graph as a lava-dl netx HDF5 file holding its own integers, fed with its integer input, when
    netx runs them bit for bit (backends.netx.writer.plan_quantized); otherwise a note naming why not."""
    try:
        path = write_with(out / "model.net", lambda p: export_quantized(graph, p))
        return {"path": str(path)}
    except backends.Unsupported as err:
        return {"note": f"no lava-dl netx HDF5 written: {err}"}


def _markdown(report: dict, resources_md: str) -> str:
    layer_rows = [{"layer": k, **v} for k, v in report["layers"].items()]
    acc = [{**r, "accuracy": f"{100 * r['accuracy']:.2f}%", "agreement": f"{100 * r['agreement']:.1f}%",
            "spikes_per_sample": f"{r['spikes_per_sample']:.0f}"} for r in report["accuracy"]]
    energy = report["energy"].get("markdown", report["energy"].get("note", ""))
    return "\n\n".join([
        f"# Deployment to {report['target']}",
        f"T = {report['T']}, {report['samples']} test samples. Quantized accuracy is the reference simulator's "
        "fixed-point mode (bit-exact with Lava fixed_pt).",
        "## Accuracy, float vs quantized weights",
        markdown_table(acc, [("weights", "weights"), ("accuracy", "accuracy"), ("agreement", "agrees with float"),
                             ("spikes_per_sample", "spikes/sample")]),
        "## Quantization (full weight width)",
        markdown_table(layer_rows, [("layer", "layer"), ("neuron", "feeds"), ("weight_bits", "bits"),
                                    ("weight_exp", "exponent"), ("mantissa_min", "min mantissa"),
                                    ("mantissa_max", "max mantissa"), ("clipped", "clipped"),
                                    ("rms_error", "rms weight error")]),
        "## Resources", resources_md,
        "## Energy", energy,
        "## lava-dl netx", report["netx"].get("path", report["netx"].get("note", "")),
    ]) + "\n"
