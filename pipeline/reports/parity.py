"""`spikeport parity`: one NIR graph on several backends, compared with the reference simulator layer by layer.

Per backend: accuracy, prediction agreement, per-layer spike-count difference, output difference, time,
pass/fail against `Tolerances`; differences explained by a backend's declared mismatches carry that cause.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import nir
import numpy as np

import backends
from backends.graph import analyse
from backends.nirext import NEURON_TYPES
from pipeline.io.atomic import output_set, write_json
from pipeline.io.nirimport import IMPORTED
from pipeline.io.render import markdown_table, plt, save_figure

REFERENCE = "reference"
OUTPUTS = ("parity.json", "parity_layers.png")


@dataclass(frozen=True)
class Tolerances:
    """What counts as "the same behaviour" as the reference."""

    agreement: float = 0.99      # fraction of samples with the reference's prediction, at least
    layer_rel: float = 0.05      # |spikes - reference spikes| / reference spikes, per layer, at most
    output_rel: float = 0.05     # max |output - reference output| / max |reference output|, at most


def layer_causes(graph: nir.NIRGraph, ignored: list[str]) -> dict[str, list[str]]:
    """The declared mismatches of a run (`RunResult.ignored`) per spiking layer they affect: a line naming a
    neuron node concerns that layer, one naming a synapse concerns the neuron it feeds."""
    view = analyse(graph)
    causes: dict[str, list[str]] = {}
    for line in ignored:
        match = re.search(r"node '([^']+)'", line)
        if not match or match.group(1) not in view.graph.nodes:
            continue
        name = match.group(1)
        while not isinstance(view.node(name), NEURON_TYPES) and view.succs(name):
            name = view.succs(name)[0]
        causes.setdefault(name, []).append(line)
    return causes


def compare(graph: nir.NIRGraph, ref: backends.RunResult, run: backends.RunResult, labels, tol: Tolerances) -> dict:
    """One backend's row: its numbers against the reference and whether they are within `tol`."""
    causes = layer_causes(graph, run.ignored)
    layers = []
    for name, counts in ref.spike_counts.items():
        if name not in run.spike_counts:
            continue
        want, got = float(np.sum(counts)), float(np.sum(run.spike_counts[name]))
        rel = (got - want) / max(want, 1.0)
        layers.append({"layer": name, "reference_spikes": want, "spikes": got, "rel_diff": rel,
                       "ok": abs(rel) <= tol.layer_rel, "cause": causes.get(name, [])})
    peak = float(np.abs(ref.outputs).max()) or 1.0
    out_abs = float(np.abs(np.asarray(run.outputs) - np.asarray(ref.outputs)).max())
    checks = {"agreement": run.agreement(ref) >= tol.agreement,
              "layers": all(row["ok"] for row in layers),
              "output": out_abs / peak <= tol.output_rel}
    passed = all(checks.values())
    return {"backend": run.backend, "status": "pass" if passed else "fail", "accuracy": run.accuracy(labels),
            "agreement": run.agreement(ref), "max_layer_rel_diff": max((abs(r["rel_diff"]) for r in layers), default=0.0),
            "output_max_abs_diff": out_abs, "output_rel_diff": out_abs / peak, "seconds": run.seconds,
            "approximate": run.approximate, "checks": checks, "layers": layers,
            "cause": "; ".join(run.ignored) if run.approximate and not passed else
                     ("" if passed else "not explained by a declared semantic difference")}


def run_parity(graph: nir.NIRGraph, x: np.ndarray, labels: np.ndarray, names: list[str], T: int, *,
               approximate: bool = False, tol: Tolerances = Tolerances(), progress: bool = False) -> dict:
    """Run `graph` on the reference and on every backend in `names`; a backend that refuses the graph
    gets a `refused` row with its reason."""
    ref = backends.get(REFERENCE).run(graph, x, T, progress=progress)
    rows = []
    for name in names:
        if name == REFERENCE:
            rows.append(compare(graph, ref, ref, labels, tol))
            continue
        try:
            run = backends.get(name).run(graph, x, T, approximate=approximate, progress=progress)
        except backends.Unsupported as err:
            rows.append({"backend": name, "status": "refused", "cause": str(err), "layers": []})
            continue
        rows.append(compare(graph, ref, run, labels, tol))
    return {"T": int(T), "samples": int(len(x)), "tolerances": asdict(tol), "approximate": approximate,
            "imported": (graph.metadata or {}).get(IMPORTED), "rows": rows}


COLUMNS = [("backend", "backend"), ("status", "status"), ("accuracy", "accuracy"), ("agreement", "agreement"),
           ("max_layer_rel_diff", "max layer spike diff"), ("output_max_abs_diff", "output max |diff|"),
           ("seconds", "seconds"), ("cause", "cause")]


def table(result: dict) -> str:
    """The terminal table plus one line per labelled layer difference."""
    lines = [markdown_table(result["rows"], COLUMNS)]
    if result.get("imported"):
        lines += [f"read as written by {result['imported']['from']}: {note}" for note in result["imported"]["notes"]]
    for row in result["rows"]:
        for layer in row["layers"]:
            if layer["cause"] or not layer["ok"]:
                cause = "; ".join(layer["cause"]) or "no declared cause"
                lines.append(f"{row['backend']} {layer['layer']}: spikes {layer['spikes']:.0f} vs "
                             f"{layer['reference_spikes']:.0f} ({100 * layer['rel_diff']:+.1f}%) — {cause}")
    return "\n".join(lines)


def layer_plot(path, result: dict) -> Path:
    """Per-layer relative spike-count difference to the reference, one bar group per backend; hatched bars
    have a declared cause, the dashed lines are the tolerance."""
    rows = [r for r in result["rows"] if r["layers"] and r["backend"] != REFERENCE]
    layers = list(dict.fromkeys(layer["layer"] for r in rows for layer in r["layers"]))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(layers) + 2), 4))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        by_name = {layer["layer"]: layer for layer in row["layers"]}
        for j, name in enumerate(layers):
            if name in by_name:
                layer = by_name[name]
                ax.bar(j + (i - (len(rows) - 1) / 2) * width, 100 * layer["rel_diff"], width, color=f"C{i}",
                       hatch="//" if layer["cause"] else None, edgecolor="white",
                       label=row["backend"] if j == 0 else None)
    for sign in (1, -1):
        ax.axhline(sign * 100 * result["tolerances"]["layer_rel"], color="k", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(layers)), layers, rotation=30, ha="right")
    ax.set_ylabel("(spikes - reference) / reference (%)")
    ax.set_title(f"spike-count difference per layer, T={result['T']}\nhatched: difference with a declared cause",
                 fontsize=10)
    if rows:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_outputs(result: dict, out: Path) -> tuple[Path, Path]:
    """parity.json and parity_layers.png in folder `out`, one output set (complete or absent)."""
    with output_set(out, OUTPUTS, "parity") as tmp:
        write_json(tmp / "parity.json", result)
        layer_plot(tmp / "parity_layers.png", result)
    return Path(out) / "parity.json", Path(out) / "parity_layers.png"
