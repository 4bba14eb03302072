"""Statistics for comparing accuracies measured on one test set: Wilson intervals for one accuracy, the exact
McNemar test for two classifiers on the same samples, and the accuracy-energy Pareto front.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for an accuracy of `correct`/`n`: better than the normal
    approximation near 0 and 1, where converted SNNs live."""
    if n <= 0:
        raise ValueError("wilson_interval needs n >= 1")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if correct == 0 else centre - half), (1.0 if correct == n else centre + half)


@dataclass(frozen=True)
class McNemar:
    """Paired comparison of classifiers A and B on the same samples: `a_only` samples only A gets right,
    `b_only` only B; `p` the exact two-sided binomial p-value of the discordant pairs (McNemar 1947)."""

    a_only: int
    b_only: int
    p: float


def mcnemar(a_correct, b_correct) -> McNemar:
    """Exact McNemar test: under H0 (equal accuracy) the discordant pairs split as Binomial(a_only + b_only, 1/2)."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    p = 1.0 if n == 0 else float(_scipy.binomtest(a_only, n, 0.5).pvalue)
    return McNemar(a_only, b_only, p)


def pareto_front(points: list[dict], accuracy: str = "accuracy", cost: str = "energy") -> list[dict]:
    """The points no other point beats on both axes (higher `accuracy` and lower `cost`), by rising cost."""
    ordered = sorted(points, key=lambda r: (r[cost], -r[accuracy]))
    front, best = [], -math.inf
    for r in ordered:
        if r[accuracy] > best:
            front.append(r)
            best = r[accuracy]
    return front


def cheapest_reaching(points: list[dict], target: float, accuracy: str = "accuracy",
                      cost: str = "energy") -> dict | None:
    """The lowest-cost point whose accuracy is at least `target` (None when no point reaches it)."""
    reaching = [r for r in points if r[accuracy] >= target]
    return min(reaching, key=lambda r: r[cost]) if reaching else None
