"""The human side of a run: accuracy-vs-T and energy plots, report.md and results.json.

Plots are written with matplotlib's Agg backend; every file goes through `pipeline.io.atomic`.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.io.atomic import write_with  # noqa: E402

def accuracy_plot(path, runs: list[dict], ann_accuracy: float, title: str) -> Path:
    """Accuracy vs T, one line per (backend, method), the ANN as a dashed line."""
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in runs:
        series.setdefault(r.get("label", r["backend"]), []).append((r["T"], 100 * r["accuracy"]))
    for label, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.axhline(100 * ann_accuracy, linestyle="--", color="black", label="ANN")
    ax.set_xscale("log", base=2)
    return finish(fig, ax, path, "time steps T", "test accuracy (%)", title)


def energy_plot(path, layers: list[dict], title: str) -> Path:
    """Per-layer energy per inference in µJ, ANN bar beside SNN bar, each stacked by component.

    `layers` are `EnergyReport.to_dict()["layers"]`. ANN: MAC, data movement; SNN: MAC, AC, neuron update,
    data movement. Components a row lacks (no run, no data movement, older rows) are drawn as zero.
    """
    import numpy as np

    def col(key):
        return np.array([1e6 * (row.get(key) or 0.0) for row in layers])
    ann_mac = col("ann_joules")
    snn_ac, snn_nu = col("snn_ac_joules"), col("snn_neuron_joules")
    snn_mac = col("snn_mac_joules") if any("snn_mac_joules" in r for r in layers) else col("snn_joules") - snn_ac - snn_nu
    stacks = [  # (offset, label, values, colour); ANN left, SNN right, same colour per component
        (-0.2, "MAC", ann_mac, "tab:blue"), (-0.2, "data movement", col("ann_movement_joules"), "tab:gray"),
        (0.2, "MAC", snn_mac, "tab:blue"), (0.2, "AC", snn_ac, "tab:orange"),
        (0.2, "neuron update", snn_nu, "tab:green"), (0.2, "data movement", col("snn_movement_joules"), "tab:gray"),
    ]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(layers) + 2), 4.5))
    pos = np.arange(len(layers))
    bottoms, seen = {-0.2: np.zeros(len(layers)), 0.2: np.zeros(len(layers))}, set()
    for offset, label, values, colour in stacks:
        if not values.any():
            continue
        ax.bar(pos + offset, values, width=0.4, bottom=bottoms[offset], color=colour,
               hatch="//" if offset > 0 else None, edgecolor="white", label=None if label in seen else label)
        bottoms[offset] = bottoms[offset] + values
        seen.add(label)
    ax.set_xticks(list(pos), [row["name"] for row in layers], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("energy per inference (µJ)")
    ax.set_title(f"{title}\nleft bar ANN, right (hatched) bar SNN")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def finish(fig, ax, path, xlabel: str, ylabel: str, title: str, legend_size: float | None = None) -> Path:
    """Label a line plot's axes, title it, add a light grid and the legend, and write it (`save_figure`)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=legend_size)
    return save_figure(fig, path)


def save_figure(fig, path) -> Path:
    """Lay out `fig`, write it as PNG atomically, close it."""
    fig.tight_layout()
    try:
        return write_with(path, lambda p: fig.savefig(p, format="png", dpi=120))
    finally:
        plt.close(fig)


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table of `rows` with (key, header) `columns`; floats to 4 significant digits."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


RUN_COLUMNS = [("backend", "backend"), ("T", "T"), ("accuracy", "accuracy"), ("agreement", "agreement with reference"),
               ("spikes_per_sample", "spikes / sample"), ("samples", "samples"), ("seconds", "seconds")]


def pareto_plot(path, points: list[dict], front: list[dict], ann_accuracy: float, ann_energy: float,
                title: str) -> Path:
    """Accuracy vs energy per inference (log scale), one marker per (method, T), the Pareto front as a line
    and the ANN as a star."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label in dict.fromkeys(p["label"] for p in points):
        pts = sorted((p["energy"], 100 * p["accuracy"], p["T"]) for p in points if p["label"] == label)
        ax.plot([1e9 * e for e, _, _ in pts], [a for _, a, _ in pts], marker="o", linestyle=":", label=label)
        for e, a, T in pts:
            ax.annotate(str(T), (1e9 * e, a), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.step([1e9 * p["energy"] for p in front], [100 * p["accuracy"] for p in front], where="post", color="black",
            linewidth=1, label="Pareto front")
    ax.plot([1e9 * ann_energy], [100 * ann_accuracy], marker="*", markersize=12, color="black", linestyle="",
            label="ANN")
    ax.set_xscale("log")
    return finish(fig, ax, path, "energy per inference (nJ, log scale); labels: T", "test accuracy (%)", title,
                  legend_size=7)
