"""`spikeport deploy`: a deployment bundle for a fixed-point target -- the quantized NIR graph, its resource map,
a lava-dl netx file and an accuracy/energy report (quantized vs float per weight bit width) in one output folder.

Accuracy of a quantized graph is measured in the reference simulator's fixed-point mode, which is bit-exact
with Lava's fixed_pt process models (tests/test_fixedpoint_lava.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nir

import backends
from backends.netx import export_quantized
from backends.netx.writer import plan_quantized
from pipeline.io.atomic import output_set, write_json, write_nir, write_text, write_with
from pipeline.hardware.hwconfig import HwConfig, load_hwconfig
from pipeline.hardware.quantize import NETX_FORMATS, Quantized, QuantizeError, output_peak, quantize
from pipeline.io.render import markdown_table
from pipeline.hardware.resources import resource_map

SWEEP_BITS = (8, 6, 4, 2)
OUTPUTS = ("model.q.nir", "resources.json", "report.json", "report.md", "model.net", "model.netx.q.nir")
NETX_ROW = f"{NETX_FORMATS['weight_bits']}-bit netx"

@dataclass
class Bundle:
    """What `deploy` wrote and measured."""

    out: Path
    files: dict[str, Path]
    accuracy: list[dict]
    report: dict


def accuracy_sweep(graph: nir.NIRGraph, hw: HwConfig, calib_x, x, y, T: int, bits=SWEEP_BITS,
                   progress: bool = False, netx: bool = False) -> tuple[list[dict], dict[int | str, Quantized]]:
    """Float accuracy and, per weight bit width, the quantized graph's accuracy (fixed-point reference) and its
    agreement with the float predictions. With `netx`, when lava-dl's netx cannot run the widest quantization's
    integers but can run those of the netx-targeted one (`quantize(..., netx=True)`), that one too: row
    NETX_ROW, key "netx"."""
    ref = backends.get("reference")
    float_run = ref.run(graph, x, T, progress=progress)
    rows = [{"weights": "float", "accuracy": float_run.accuracy(y), "agreement": 1.0,
             "spikes_per_sample": float_run.spikes_per_sample}]
    peak = output_peak(graph, calib_x)
    quantized: dict[int | str, Quantized] = {b: quantize(graph, hw, calib_x, weight_bits=b, peak=peak) for b in bits
                                             if b <= hw.fixed_point_formats()["weight_bits"]}
    if netx and netx_refusal(quantized[max(quantized)].graph) is not None:
        targeted = _netx_targeted(graph, hw, calib_x, peak)
        if targeted is not None:
            quantized["netx"] = targeted
    for key, q in quantized.items():
        run = ref.run(q.graph, x, T, fixed_point=True, progress=progress)
        rows.append({"weights": NETX_ROW if key == "netx" else f"{key}-bit", "accuracy": run.accuracy(y),
                     "agreement": run.agreement(float_run), "spikes_per_sample": run.spikes_per_sample})
    return rows, quantized


def _netx_targeted(graph: nir.NIRGraph, hw: HwConfig, calib_x, peak: float) -> Quantized | None:
    """`graph` quantized to netx's formats when lava-dl's netx runs those integers bit for bit, else None (the
    report then gives the target's integers' refusal, which names what netx lacks)."""
    try:
        q = quantize(graph, hw, calib_x, peak=peak, netx=True)
    except QuantizeError:
        return None
    return q if netx_refusal(q.graph) is None else None


def netx_refusal(graph: nir.NIRGraph) -> str | None:
    """Why lava-dl's netx cannot run quantized `graph`'s integers bit for bit (`plan_quantized`), or None."""
    try:
        plan_quantized(graph)
    except backends.Unsupported as err:
        return str(err)
    return None


def deploy(graph: nir.NIRGraph, target: HwConfig | str, out: str | Path, calib_x, x, y, T: int = 32,
           progress: bool = False, encoding: str = "direct") -> Bundle:
    """Quantize `graph` for `target` at its full weight width, map it to cores, measure accuracy on (x, y) at
    each width of SWEEP_BITS and energy where the target publishes per-operation energies; write the bundle
    into folder `out` as one output set (complete or absent, pipeline.io.atomic.output_set). `x` (and `calib_x`)
    are direct or time-varying inputs as `encoding` delivers them. model.net (lava-dl netx) holds the target's
    integers when netx runs them bit for bit, else those of the netx-targeted quantization, written beside it as
    model.netx.q.nir and measured as one more accuracy row (`accuracy_sweep(..., netx=True)`)."""
    hw = target if isinstance(target, HwConfig) else load_hwconfig(target)
    out = Path(out)
    full = hw.fixed_point_formats()["weight_bits"]
    resources = resource_map(graph, hw)
    rows, quantized = accuracy_sweep(graph, hw, calib_x, x, y, T, tuple(sorted({full, *SWEEP_BITS}, reverse=True)),
                                     progress, netx=True)
    q = quantized[full]
    energy = _energy(q, hw, x, T, encoding)
    with output_set(out, OUTPUTS, "deploy") as tmp:
        files = {"graph": write_nir(tmp / "model.q.nir", q.graph),
                 "resources": write_json(tmp / "resources.json", resources.to_dict())}
        targeted = quantized.get("netx")
        netx = _netx((targeted or q).graph, tmp)
        if targeted is not None:
            files["netx_graph"] = write_nir(tmp / "model.netx.q.nir", targeted.graph)
            netx.update(graph=str(out / "model.netx.q.nir"), why=f"{hw.name}'s own integers: {netx_refusal(q.graph)}")
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


def _netx_markdown(netx: dict) -> str:
    if "path" not in netx:
        return netx["note"]
    if "graph" not in netx:
        return f"{netx['path']}: the quantized graph's own integers, which lava-dl's netx runs bit for bit."
    return (f"{netx['path']}: the netx-targeted quantization {netx['graph']} (row '{NETX_ROW}' above: weight "
            "exponent 0, biases in whole activation units), which lava-dl's netx runs bit for bit as the reference "
            "fixed-point mode runs that file (`spikeport simulate model.netx.q.nir --backend reference`). "
            f"{netx['why']}")


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
        "## lava-dl netx", _netx_markdown(report["netx"]),
    ]) + "\n"
