"""The papers' accuracy claims judged on our measurements: paired McNemar tests of method A against method B on
the same test images at each T, and gaps of a method to its ANN, each row with the figures it rests on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.reports.stats import mcnemar

ALPHA = 0.05  # a difference with p >= ALPHA is not counted as evidence


@dataclass(frozen=True)
class Beats:
    """Paper's claim: method `a` is more accurate than baseline `b` at every T in `Ts`."""

    paper: str
    claim: str
    a: str
    b: str
    Ts: tuple[int, ...]


@dataclass(frozen=True)
class Within:
    """Paper's claim: method `a` is within `gap` (a fraction, 0.01 = 1 point) of its own ANN at T."""

    paper: str
    claim: str
    a: str
    T: int
    gap: float


def judge_beats(c: Beats, correct: dict) -> dict:
    """'reproduced' when `a` is significantly more accurate (McNemar p < ALPHA) at every T; 'partly' when at some;
    'not reproduced' when at none. `correct[(label, T)]` is the per-image correctness (bool array)."""
    missing = [T for T in c.Ts if (c.a, T) not in correct or (c.b, T) not in correct]
    if missing:
        return _row(c, "not run", f"{c.a} or {c.b} not measured at T={', '.join(map(str, missing))}")
    figures, wins = [], 0
    for T in c.Ts:
        a, b = np.asarray(correct[c.a, T], bool), np.asarray(correct[c.b, T], bool)
        test = mcnemar(a, b)
        wins += a.mean() > b.mean() and test.p < ALPHA
        figures.append(f"T={T}: {100 * a.mean():.2f} vs {100 * b.mean():.2f} ({test.a_only}/{test.b_only}, "
                       f"p={test.p:.2g})")
    verdict = "reproduced" if wins == len(c.Ts) else "partly" if wins else "not reproduced"
    return _row(c, verdict, "; ".join(figures))


def judge_within(c: Within, accuracy: dict, ann_accuracy: dict) -> dict:
    """'reproduced' when accuracy[(a, T)] >= ann_accuracy[a] - gap."""
    if (c.a, c.T) not in accuracy:
        return _row(c, "not run", f"{c.a} not measured at T={c.T}")
    acc, ann = accuracy[c.a, c.T], ann_accuracy[c.a]
    verdict = "reproduced" if ann - acc <= c.gap + 1e-12 else "not reproduced"
    return _row(c, verdict, f"T={c.T}: {100 * acc:.2f} vs its ANN {100 * ann:.2f} (gap {100 * (ann - acc):+.2f} "
                            f"points, claim <= {100 * c.gap:g})")


def _row(c, verdict: str, figures: str) -> dict:
    ours = (f"{c.a} vs {c.b} at T={', '.join(map(str, c.Ts))}" if isinstance(c, Beats)
            else f"{c.a} within {100 * c.gap:g} points of its ANN at T={c.T}")
    return {"paper": c.paper, "claim": c.claim, "ours": ours, "figures": figures, "verdict": verdict}


def goal_rows(accuracy: dict, ann_accuracy: float, bounds=((2, 0.06), (4, 0.02), (8, 0.005))) -> list[dict]:
    """The project goal: the best (method, T) within `bound` of the ANN at T; met or not, with its figures."""
    rows = []
    for T, bound in bounds:
        at_T = {m: a for (m, t), a in accuracy.items() if t == T}
        if not at_T:
            rows.append({"goal": f"within {100 * bound:g} points at T={T}", "verdict": "not run", "figures": "-"})
            continue
        best = max(at_T, key=at_T.get)
        gap = ann_accuracy - at_T[best]
        rows.append({"goal": f"within {100 * bound:g} points at T={T}",
                     "verdict": "met" if gap <= bound + 1e-12 else "not met",
                     "figures": f"{best}: {100 * at_T[best]:.2f} vs ANN {100 * ann_accuracy:.2f} "
                                f"(gap {100 * gap:+.2f})"})
    return rows
