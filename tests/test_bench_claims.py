"""The claim and goal tables of benchmarks/methods_mnist (benchmarks/claims.py) against hand-worked examples."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.claims import Beats, Within, goal_rows, judge_beats, judge_within


def _bits(s: str) -> np.ndarray:
    return np.array([c == "1" for c in s])


def test_beats_verdicts_from_exact_mcnemar():
    correct = {
        # T=2: A only on 9 images, B only on 1: p = 2 P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024 = 0.021
        ("a", 2): _bits("111111111100"), ("b", 2): _bits("100000000010"),
        # T=4: A only on 3, B only on 0: p = 2 / 8 = 0.25, ahead but not significant
        ("a", 4): _bits("111100000000"), ("b", 4): _bits("100000000000"),
        # T=8: B ahead
        ("a", 8): _bits("100000000000"), ("b", 8): _bits("111000000000"),
    }
    row = judge_beats(Beats("P", "c", "a", "b", (2, 4)), correct)
    assert row["verdict"] == "partly"
    assert "T=2: 83.33 vs 16.67 (9/1, p=0.021)" in row["figures"]
    assert "T=4: 33.33 vs 8.33 (3/0, p=0.25)" in row["figures"]
    assert judge_beats(Beats("P", "c", "a", "b", (2,)), correct)["verdict"] == "reproduced"
    assert judge_beats(Beats("P", "c", "a", "b", (4, 8)), correct)["verdict"] == "not reproduced"
    assert judge_beats(Beats("P", "c", "a", "z", (2,)), correct)["verdict"] == "not run"


def test_within_and_goal_rows():
    accuracy = {("a", 4): 0.90, ("b", 4): 0.93, ("a", 2): 0.80, ("b", 8): 0.9151}
    assert judge_within(Within("P", "c", "a", 4, 0.02), accuracy, {"a": 0.92})["verdict"] == "reproduced"
    row = judge_within(Within("P", "c", "a", 4, 0.015), accuracy, {"a": 0.92})
    assert row["verdict"] == "not reproduced" and "gap +2.00 points" in row["figures"]
    goals = goal_rows(accuracy, 0.92)   # ANN 92%: T=2 best a 80 (gap 12 > 6), T=4 best b 93 (-1), T=8 b (0.49)
    assert [g["verdict"] for g in goals] == ["not met", "met", "met"]
    assert goals[1]["figures"].startswith("b: 93.00")
    assert goal_rows({}, 0.9)[0]["verdict"] == "not run"
    assert goal_rows(accuracy, 0.92, bounds=((8, 0.0048),))[0]["verdict"] == "not met"
