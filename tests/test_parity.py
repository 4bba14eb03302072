"""`spikeport parity`: per-layer differences against numpy loops, labelled causes, refusals, CLI outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

import backends
from pipeline.io.atomic import write_nir
from pipeline.cli import main
from pipeline.reports.parity import Tolerances, run_parity
from tests.graphs import mlp


def _counts(x, w1, b1, theta, T, subtract):
    v, total = np.zeros((len(x), w1.shape[0])), 0.0
    for _ in range(T):
        v = v + x @ w1.T + b1
        z = (v >= theta) if subtract else (v > theta)
        v = v - theta * z if subtract else np.where(z, 0.0, v)
        total += z.sum()
    return total


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(5)
    w1, b1 = rng.integers(-3, 5, (8, 6)) / 8, rng.integers(-1, 2, 8) / 8
    w2, b2 = rng.integers(-4, 5, (4, 8)) / 8, np.zeros(4)
    x = rng.integers(0, 9, (40, 6)) / 8
    return w1, b1, w2, b2, x, rng.integers(0, 4, 40)


def test_norse_row_is_refused_then_labelled_with_the_layer_cause(case):
    w1, b1, w2, b2, x, y = case
    graph = mlp(w1, b1, w2, b2, threshold=1.0, reset="subtract")
    refused = run_parity(graph, x, y, ["reference", "norse"], 16)["rows"]
    assert refused[0]["status"] == "pass" and refused[1]["status"] == "refused"
    assert "node 'if1' (IF): reset 'subtract'" in refused[1]["cause"]
    rows = run_parity(graph, x, y, ["norse"], 16, approximate=True)["rows"]
    layer = rows[0]["layers"][0]
    want, got = _counts(x, w1, b1, 1.0, 16, True), _counts(x, w1, b1, 1.0, 16, False)
    assert layer["reference_spikes"] == want and layer["spikes"] == got
    assert layer["rel_diff"] == pytest.approx((got - want) / want)
    assert len(layer["cause"]) == 1 and "reset 'subtract'" in layer["cause"][0]
    assert rows[0]["approximate"]


def test_pass_and_fail_follow_the_tolerances(case):
    w1, b1, w2, b2, x, y = case
    graph = mlp(w1, b1, w2, b2, threshold=1.0, reset="subtract")
    want, got = _counts(x, w1, b1, 1.0, 16, True), _counts(x, w1, b1, 1.0, 16, False)
    rel = abs(got - want) / want
    loose = Tolerances(agreement=0.0, layer_rel=rel + 1e-9, output_rel=1e9)
    tight = Tolerances(agreement=0.0, layer_rel=rel - 1e-9, output_rel=1e9)
    assert run_parity(graph, x, y, ["norse"], 16, approximate=True, tol=loose)["rows"][0]["status"] == "pass"
    row = run_parity(graph, x, y, ["norse"], 16, approximate=True, tol=tight)["rows"][0]
    assert row["status"] == "fail" and not row["checks"]["layers"] and "reset 'subtract'" in row["cause"]


def test_cli_writes_table_json_and_plot(tmp_path, capsys):
    rng = np.random.default_rng(0)
    import nir
    from tests.graphs import if_node
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
               "flat": nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0, end_dim=-1),
               "fc": nir.Affine(weight=rng.normal(0, 0.3, (10, 64)).astype(np.float32), bias=np.zeros(10, np.float32)),
               "if": if_node(10, 1.0, reset="zero"),
               "output": nir.Output(output_type={"output": np.array([10])})},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "if"), ("if", "output")], type_check=False)
    path = write_nir(tmp_path / "g.nir", graph)
    code = main(["parity", str(path), "--backends", "reference,norse", "--T", "8", "--limit", "50", "--quiet",
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "| norse | pass |" in out
    result = json.loads((tmp_path / "out" / "parity.json").read_text())
    ref = backends.get("reference").run(graph, _digits_x(50), 8)
    assert result["rows"][1]["layers"][0]["reference_spikes"] == float(ref.spike_counts["if"].sum())
    assert (tmp_path / "out" / "parity_layers.png").stat().st_size > 0
    assert main(["parity", str(path), "--backends", "reference,bogus", "--quiet"]) == 2


def _digits_x(n):
    from pipeline.data.datasets import load_dataset
    return load_dataset("digits", seed=0).test_x.numpy()[:n]


@pytest.mark.slow
def test_digits_maxnorm_parity_across_all_backends(digits, digits_graphs):
    """The issue's acceptance check at T=32 on the whole test split, with maxnorm's reset-to-zero conversion
    (core NIR, which Norse and netx express). Norse and Lava run it exactly. netx's one remaining gap is its
    8-bit weight mantissas: it refuses the float graph naming them (and nothing else), and runs exactly the
    graph it computes (`netx_equivalent`: the same network on netx's integer weights and thresholds), as do
    the other three backends. netx runs ~18 steps/s on Lava's fixed-point models (the whole split took 440 s of
    this test; docs/parity.md has that run), so the test runs netx on the first 96 samples and the others on all."""
    from backends.netx import netx_equivalent
    from backends.netx.backend import input_scale
    graph = digits_graphs["maxnorm-zero"]
    x, y = digits.test_x.numpy(), digits.test_y.numpy()
    rows = {r["backend"]: r for r in run_parity(graph, x, y, ["reference", "lava", "norse", "netx"], 32)["rows"]}
    for name in ("lava", "norse"):
        assert rows[name]["status"] == "pass" and not rows[name]["approximate"] and rows[name]["agreement"] >= 0.99
    assert rows["netx"]["status"] == "refused" and "weights quantized to 8-bit mantissas" in rows["netx"]["cause"]
    assert "reset" not in rows["netx"]["cause"]
    on_grid, gaps = netx_equivalent(graph, input_scale(x)[0])
    assert len(gaps) == 3 and all("quantized to 8-bit mantissas" in g for g in gaps)
    rows = {r["backend"]: r for r in run_parity(on_grid, x, y, ["reference", "lava", "norse"], 32)["rows"]}
    rows |= {r["backend"]: r for r in run_parity(on_grid, x[:96], y[:96], ["netx"], 32)["rows"]}
    for name in ("lava", "norse", "netx"):
        row = rows[name]
        assert row["status"] == "pass" and not row["approximate"] and row["agreement"] >= 0.99, row
        assert row["max_layer_rel_diff"] == 0.0
    ref = backends.get("reference")
    assert ref.run(on_grid, x, 32).agreement(ref.run(graph, x, 32)) >= 0.99   # what the 8-bit weights cost


def test_digits_subtract_reset_is_refused_by_norse_and_netx_naming_it(digits, digits_graphs):
    x, y = digits.test_x.numpy()[:4], digits.test_y.numpy()[:4]
    rows = run_parity(digits_graphs["maxnorm"], x, y, ["norse", "netx"], 32)["rows"]
    assert [r["status"] for r in rows] == ["refused", "refused"]
    assert all("node 'relu1' (IF): reset 'subtract'" in r["cause"] for r in rows)


@pytest.mark.slow
def test_digits_subtract_reset_runs_approximately_with_the_cause_per_layer(digits, digits_graphs):
    """Reset by subtraction run anyway on netx (16 samples) and Norse (the whole split): both lose the surplus
    at every spike, so both spiking layers fire less than on the reference, each labelled with its reset."""
    x, y = digits.test_x.numpy(), digits.test_y.numpy()
    norse = run_parity(digits_graphs["maxnorm"], x, y, ["norse"], 32, approximate=True)["rows"][0]
    netx = run_parity(digits_graphs["maxnorm"], x[:16], y[:16], ["netx"], 32, approximate=True)["rows"][0]
    for row in (norse, netx):
        assert row["approximate"] and [layer["layer"] for layer in row["layers"]] == ["relu1", "relu2"]
        for layer in row["layers"]:
            assert layer["spikes"] < layer["reference_spikes"]
            assert any(f"node '{layer['layer']}' (IF): reset 'subtract'" in c for c in layer["cause"])


def test_parity_of_an_imported_graph_lists_the_conventions(tmp_path, capsys):
    from tests.test_nirimport import _sinabs_style_graph
    graph, _, _ = _sinabs_style_graph(1.0, size=8, classes=10)    # digits-shaped input and classes
    path = write_nir(tmp_path / "s.nir", graph)
    code = main(["parity", str(path), "--from", "sinabs", "--backends", "reference", "--T", "4", "--limit", "5",
                 "--quiet", "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert "read as written by sinabs: node 'iaf1' (IF): sinabs' default MultiSpike" in out
    assert json.loads((tmp_path / "o" / "parity.json").read_text())["imported"]["from"] == "sinabs"
