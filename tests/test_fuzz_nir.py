"""Fuzz test of the NIR reader: corrupted and truncated HDF5 files end in a clear error or a valid graph.

Each file is read in a forked child with a timeout (benchmarks.badinputs.read_isolated), so a hang or a
crash of h5py is caught as such; the slow variant runs ten times more random cases.
"""
from __future__ import annotations

import os
import random
import time
from collections import Counter

import numpy as np
import pytest

import backends
from benchmarks.badinputs import Case, nir_cases, read_isolated, small_graph
from pipeline.io import nirio
from pipeline.io.atomic import write_nir
from pipeline.errors import SpikeportError

EXPECTED_ERROR = {  # classes that can never give a valid graph
    "not HDF5", "truncated", "garbage node type", "non-finite parameter", "threshold <= 0", "bad edges",
    "shape mismatch", "extension metadata",
}


def _check(cases, timeout=3.0):
    outcomes = Counter()
    for case in cases:
        outcome, detail = read_isolated(case.path, timeout)
        outcomes[outcome] += 1
        assert outcome in ("graph", "error"), f"{case.kind} ({case.label}): {outcome}: {detail}"
        if outcome == "error":
            assert "\n" not in detail and str(case.path) in detail, detail
        if case.kind in EXPECTED_ERROR:
            assert outcome == "error", f"{case.kind} ({case.label}) was accepted"
    return outcomes


def test_every_class_of_corruption_gives_a_clear_error_or_a_valid_graph(tmp_path):
    cases = nir_cases(tmp_path, per_class=10, seed=0)
    kinds = Counter(c.kind for c in cases)
    assert len(kinds) == 11 and len(cases) > 150
    outcomes = _check(cases)
    assert outcomes["error"] > 120


def test_a_file_on_which_hdf5_loops_forever_ends_in_a_clear_error(tmp_path):
    """Found by the slow fuzz run: 8 flipped bits make h5py loop forever reading node/edges (> 60 s
    measured); read_graph now reports the damaged heap in one line (and would time out otherwise)."""
    case = next(c for c in nir_cases(tmp_path, per_class=100, seed=3) if c.path.name == "bit_flips-0055.nir")
    outcome, detail = read_isolated(case.path, timeout=2.0)
    assert outcome == "error" and str(case.path) in detail and "re-export" in detail


def test_parser_hang_and_crash_become_errors(tmp_path, monkeypatch):
    """The forked parser is bounded in time and a dying parser is reported (the fork inherits the patch)."""
    good = write_nir(tmp_path / "good.nir", small_graph())
    monkeypatch.setattr(nirio, "_parse", lambda path: time.sleep(60))
    start = time.monotonic()
    with pytest.raises(SpikeportError, match="parsing took longer than 1 s"):
        nirio.read_graph(good, timeout=1.0)
    assert time.monotonic() - start < 30
    monkeypatch.setattr(nirio, "_parse", lambda path: os._exit(3))
    with pytest.raises(SpikeportError, match="failed while parsing it \\(exit code 3\\)"):
        nirio.read_graph(good)


def test_named_node_and_fix_in_the_messages(tmp_path):
    by_label = {(c.kind, c.label): c.path for c in nir_cases(tmp_path, per_class=1)}
    _, msg = read_isolated(by_label["non-finite parameter", "if1/v_threshold = nan"])
    assert "'if1'" in msg and "v_threshold" in msg and "NaN/Inf" in msg and "re-export" in msg
    _, msg = read_isolated(by_label["threshold <= 0", "v_threshold = -1.0"])
    assert "'if1'" in msg and "> 0" in msg
    _, msg = read_isolated(by_label["garbage node type", "fc1: 'Bogus'"])
    assert "'fc1'" in msg and "'Bogus'" in msg and "Affine" in msg  # names the supported types
    _, msg = read_isolated(by_label["shape mismatch", "fc2 weight (10, 15)"])
    assert "'fc2'" in msg and "(15,)" in msg and "(16,)" in msg
    _, msg = read_isolated(by_label["extension metadata", "graph version 99"])
    assert "version 99" in msg and "upgrade spikeport" in msg


def test_a_valid_graph_from_a_damaged_file_still_runs(tmp_path):
    """A flip in a weight's bytes can give a valid graph (HDF5 stores no checksum): it must then run."""
    for case in nir_cases(tmp_path, per_class=10, seed=1):
        if case.kind == "bit flips" and read_isolated(case.path)[0] == "graph":
            from pipeline.io.nirio import read_graph
            run = backends.get("reference").run(read_graph(case.path), np.zeros((2, 1, 8, 8), np.float32), 4)
            assert run.outputs.shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_fuzz_many_random_corruptions(tmp_path, seed):
    cases = [c for c in nir_cases(tmp_path, per_class=100, seed=seed) if c.kind in ("bit flips", "truncated")]
    _check(cases)


@pytest.mark.slow
def test_fuzz_random_bytes_over_a_converted_graph(tmp_path, digits_graphs):
    """Random byte overwrites of a real converted CNN graph (conv, pool, flatten nodes)."""
    good = write_nir(tmp_path / "cnn.nir", digits_graphs["robustnorm"]).read_bytes()
    rng = random.Random(0)
    cases = []
    for i in range(200):
        data = bytearray(good)
        start = rng.randrange(len(data))
        for k in range(start, min(len(data), start + rng.randint(1, 64))):
            data[k] = rng.randrange(256)
        path = tmp_path / f"cnn-{i}.nir"
        path.write_bytes(bytes(data))
        cases.append(Case("random bytes", str(i), path))
    _check(cases)


def test_small_graph_is_valid_and_runs():
    """The fuzz base graph itself: valid, and its output equals a numpy loop of the same network."""
    graph = small_graph(0)
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32)
    run = backends.get("reference").run(graph, x, 5)
    w1, w2 = graph.nodes["fc1"].weight.astype(np.float64), graph.nodes["fc2"].weight.astype(np.float64)
    v, total = np.zeros((3, 16)), np.zeros((3, 10))
    for _ in range(5):
        v = v + x.reshape(3, 64) @ w1.T
        z = (v >= 1.0).astype(float)
        v -= z
        total += z @ w2.T
    np.testing.assert_allclose(run.outputs, total, atol=1e-4)
