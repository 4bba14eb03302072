"""Accuracy per conversion method per T on digits, and the papers' qualitative claims checked.

Run: .venv/bin/python -m benchmarks.methods_digits  (writes the 'methods-digits' section of docs/benchmarks.md)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.docs import DOC, machine, write_section
from pipeline.conversion.registry import convert, method_names, prepare
from pipeline.data.datasets import load_dataset
from pipeline.data.zoo import build_model
from pipeline.io.render import markdown_table
from pipeline.reports.sweep import DEFAULT_T, SweepConfig, run_sweep
from pipeline.training.ann import TrainConfig, seed_everything, train_ann

COMMAND = ".venv/bin/python -m benchmarks.methods_digits"
WANTED = ("maxnorm", "robustnorm", "maxnorm:channel", "optimal-shift", "optimal-noshift", "rnl-ril", "dnisnm")


def _claim(acc, a: str, b: str, Ts, label: str) -> dict:
    """Claim 'a beats b at T in Ts': reproduced when a >= b at every T and a > b at one at least."""
    if a not in acc or b not in acc:
        return {"claim": label, "verdict": "not run", "figures": f"{a} or {b} missing"}
    diffs = [acc[a][T] - acc[b][T] for T in Ts]
    ok = all(d >= 0 for d in diffs) and any(d > 0 for d in diffs)
    figs = ", ".join(f"T={T}: {100 * acc[a][T]:.1f} vs {100 * acc[b][T]:.1f}" for T in Ts)
    return {"claim": label, "verdict": "reproduced" if ok else "not reproduced", "figures": figs}


def claims(results: dict) -> list[dict]:
    acc: dict[str, dict[int, float]] = {}
    for r in results["runs"]:
        acc.setdefault(r["label"], {})[r["T"]] = r["accuracy"]
    small = [T for T in results["T_values"] if T <= 4]
    rows = [
        _claim(acc, "optimal-shift", "optimal-noshift", small, "shift beats no-shift at small T (Deng & Gu)"),
        _claim(acc, "dnisnm", "maxnorm", [T for T in results["T_values"] if T <= 16],
               "DNI+SNM beats layer-wise maxnorm at T<=16 (Wang et al.)"),
        _claim(acc, "rnl-ril", "maxnorm", [T for T in results["T_values"] if T <= 32],
               "RNL+RIL beats maxnorm at T<=32 (Ding et al.)"),
    ]
    top = max(results["T_values"])
    gaps = {m: results["methods"][m]["ann_accuracy"] - acc[m][top] for m in acc}
    rows.append({"claim": f"every method approaches its ANN as T grows (gap at T={top} <= 1 point)",
                 "verdict": "reproduced" if all(g <= 0.01 for g in gaps.values()) else "not reproduced",
                 "figures": ", ".join(f"{m}: {100 * g:+.2f}" for m, g in gaps.items())})
    ann = results["ann"]["accuracy"]
    for T, bound in ((2, 0.06), (4, 0.02), (8, 0.005)):
        if T in results["T_values"]:
            best = max(acc, key=lambda m: acc[m][T])
            ok = ann - acc[best][T] <= bound
            rows.append({"claim": f"best method within {100 * bound:g} points of the ANN at T={T}",
                         "verdict": "met" if ok else "not met",
                         "figures": f"{best}: {100 * acc[best][T]:.2f} vs ANN {100 * ann:.2f}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="out/bench-methods")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--method-epochs", type=int, default=10)
    args = parser.parse_args()
    methods = tuple(m for m in WANTED if m.split(":")[0] in method_names())
    ds = load_dataset("digits", seed=0)
    seed_everything(0)
    ann = build_model("digits-cnn", ds.input_shape, ds.num_classes)
    train_ann(ann, ds.train_x, ds.train_y, ds.test_x, ds.test_y, TrainConfig(epochs=args.epochs, seed=0), progress=False)
    t0 = time.perf_counter()
    res = run_sweep(ann.eval(), ds, SweepConfig(out=Path(args.out), methods=methods, T_values=DEFAULT_T,
                                                method_epochs=args.method_epochs, progress=False))
    from pipeline.reports.sweep import sweep_markdown
    body = "\n\n".join([
        "## Conversion methods on digits: accuracy per T (reference backend, 360 test samples)",
        f"Command: `{COMMAND}` (ANN {args.epochs} epochs, methods that fine-tune {args.method_epochs} epochs, "
        f"seed 0). Machine: {machine()}. Took {time.perf_counter() - t0:.0f} s.",
        sweep_markdown(res).split("\n", 2)[2].replace("![accuracy vs T](accuracy_vs_T.png)", "").strip(),
        "### The papers' claims at our scale",
        markdown_table(claims(res), [("claim", "claim"), ("verdict", "verdict"), ("figures", "figures (%)")]),
    ])
    body += "\n\n" + k_curve_section(ann.eval(), ds, args.method_epochs)
    print(write_section("methods-digits", body))


def k_curve_section(ann, ds, epochs: int, T: int = 64) -> str:
    """The K curve (Ding et al. Eq. 7) of the rnl-ril network on one test image, against 2 Omega / t."""
    from pipeline.conversion.methods import rnl_ril
    model = prepare("rnl-ril", ann, ds, epochs, seed=0)
    graph = convert(model, ds.input_shape, ds.train_x, method="rnl-ril")
    x = ds.test_x[:1]
    rates = rnl_ril.ann_rates(model, ds.input_shape, x)
    curves = rnl_ril.k_curve(graph, rates, x.numpy(), T)
    omegas = {n: rnl_ril.omega_of(r) for n, r in rates.items()}
    rnl_ril.plot_k_curve(DOC.parent / "img" / "k_curve_rnl_ril.png", curves, bounds=omegas)
    t = np.arange(1, T + 1)
    rows = [{"layer": n, "omega": f"{omegas[n]:.3f}", "k8": f"{c[7]:.4f}", "k64": f"{c[-1]:.5f}",
             "ratio": f"{np.max(c / (2 * omegas[n] / t)):.3f}"} for n, c in curves.items()]
    return "\n\n".join([
        "### K curve of the rnl-ril network (Ding et al. Eq. 7, Theorem 2 bound 2 Omega / t)",
        markdown_table(rows, [("layer", "layer"), ("omega", "Omega"), ("k8", "K(8)"), ("k64", f"K({T})"),
                              ("ratio", "max_t K(t) / (2 Omega / t)")]),
        "![K curve](img/k_curve_rnl_ril.png)"])


if __name__ == "__main__":
    main()
