"""Wilson intervals, exact McNemar tests and the Pareto front against hand-worked values."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.reports.stats import cheapest_reaching, mcnemar, pareto_front, wilson_interval


def test_wilson_interval_hand_worked():
    # 8 of 10: centre (0.8 + 1.96^2/20) / (1 + 1.96^2/10) = 0.7167, half-width 0.2266 (Wilson 1927)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0
    lo, hi = wilson_interval(9500, 10000)   # large n: close to p +- 1.96 sqrt(p(1-p)/n)
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.95 * 0.05 / 10000), rel=1e-3)


def test_mcnemar_exact_binomial():
    a = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1], bool)
    test = mcnemar(a, b)
    assert (test.a_only, test.b_only) == (1, 6)
    assert test.p == pytest.approx(2 * (1 + 7) / 2 ** 7)   # 2 P(X <= 1), X ~ Bin(7, 1/2) = 0.125
    assert mcnemar(a, a).p == 1.0
    with pytest.raises(ValueError, match="paired samples"):
        mcnemar(a, b[:3])


def test_pareto_front_and_cheapest():
    pts = [{"name": "a", "accuracy": 0.90, "energy": 1.0}, {"name": "b", "accuracy": 0.95, "energy": 2.0},
           {"name": "c", "accuracy": 0.93, "energy": 3.0}, {"name": "d", "accuracy": 0.97, "energy": 5.0},
           {"name": "e", "accuracy": 0.90, "energy": 0.5}]
    assert [p["name"] for p in pareto_front(pts)] == ["e", "b", "d"]   # a is matched by e for less; c by b
    assert cheapest_reaching(pts, 0.94)["name"] == "b"
    assert cheapest_reaching(pts, 0.99) is None
