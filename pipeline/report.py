"""The human side of a run: accuracy-vs-T and energy plots, report.md and results.json.

Plots are written with matplotlib's Agg backend; every file goes through `pipeline.atomic`.
"""
from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.atomic import write_with  # noqa: E402

LIBRARIES = ("spikeport", "torch", "numpy", "nir", "lava-nc", "lava-dl", "norse", "h5py", "scikit-learn")


def environment(seed: int) -> dict:
    """Seed, Python and library versions, recorded in every results.json."""
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {"seed": seed, "python": platform.python_version(), "machine": platform.machine(), "libraries": versions}


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
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def energy_plot(path, layers: list[dict], title: str) -> Path:
    """Per-layer energy, ANN beside SNN, in microjoules per inference."""
    names = [row["name"] for row in layers]
    ann = [1e6 * row["ann_joules"] for row in layers]
    snn = [1e6 * row["snn_joules"] for row in layers]
    fig, ax = plt.subplots(figsize=(6, 4))
    pos = range(len(names))
    ax.bar([p - 0.2 for p in pos], ann, width=0.4, label="ANN (MAC)")
    ax.bar([p + 0.2 for p in pos], snn, width=0.4, label="SNN (MAC first layer, AC after)")
    ax.set_xticks(list(pos), names, rotation=30, ha="right")
    ax.set_ylabel("energy per inference (µJ)")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def _save(fig, path) -> Path:
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
