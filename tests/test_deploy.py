"""`spikeport quantize` and `spikeport deploy` end to end: the bundle's accuracy against the written quantized
graph run on Lava's fixed_pt models (a second backend), its resource totals, and one-line user errors."""
from __future__ import annotations

import json

import numpy as np

import backends
from pipeline.io.atomic import write_nir
from pipeline.cli import main
from pipeline.io.nirio import read_graph
from tests.graphs import mlp

LIMIT = 30


def test_quantize_and_deploy_commands(tmp_path, digits, digits_graphs, capsys):
    model = write_nir(tmp_path / "m.nir", digits_graphs["maxnorm"])
    q_path = tmp_path / "m.q.nir"
    assert main(["quantize", str(model), "--target", "loihi2", "-o", str(q_path), "--weight-bits", "6", "--quiet"]) == 0
    q = read_graph(q_path)
    printed = capsys.readouterr().out
    for name in ("conv1", "conv2", "fc"):
        meta = q.nodes[name].metadata["spikeport"]["fixed_point"]
        assert meta["weight_bits"] == 6 and f"{name}: 6-bit mantissas" in printed
        assert f"exponent {int(meta['weight_exp'])}," in printed

    out = tmp_path / "bundle"
    assert main(["deploy", str(model), "--target", "loihi2", "--out", str(out), "--T", "16", "--limit", str(LIMIT),
                 "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["weights"] for r in report["accuracy"]] == ["float", "8-bit", "6-bit", "4-bit", "2-bit"]
    bundled = read_graph(out / "model.q.nir")
    lava = backends.get("lava").run(bundled, digits.test_x[:LIMIT].numpy(), 16)
    assert report["accuracy"][1]["accuracy"] == lava.accuracy(digits.test_y[:LIMIT].numpy())
    resources = json.loads((out / "resources.json").read_text())
    assert resources["cores"] == sum(layer["cores"] for layer in resources["layers"]) == 3
    assert [layer["neurons"] for layer in resources["layers"]] == [16 * 8 * 8, 32 * 4 * 4, 10]
    text = (out / "report.md").read_text()
    assert "loihi2 publishes no per-operation energies" in text
    assert "no lava-dl netx HDF5 written" in text


def test_deploy_to_a_float_target_is_one_clear_line(tmp_path, digits_graphs, capsys):
    model = write_nir(tmp_path / "m.nir", digits_graphs["maxnorm"])
    assert main(["deploy", str(model), "--target", "cmos45nm", "--out", str(tmp_path / "b"), "--limit", "5",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no key 'formats.weight_bits'" in err


def test_deploy_tries_netx_and_names_why_it_is_not_exact(tmp_path):
    """A reset-to-zero network is netx's own neuron, but Loihi 2's 8190-unit threshold does not fold into
    netx's 8-bit weights without error: the bundle writes no model.net and its report says why."""
    from pipeline.hardware.deploy import deploy
    rng = np.random.default_rng(7)
    g = mlp(rng.normal(0, 0.5, (6, 4)), rng.normal(0, 0.2, 6), rng.normal(0, 0.5, (3, 6)), np.zeros(3),
            threshold=0.8, reset="zero")
    calib = rng.uniform(0, 1, (64, 4)).astype(np.float32)
    bundle = deploy(g, "loihi2", tmp_path / "b", calib, calib[:16], rng.integers(0, 3, 16), T=12)
    assert "netx" not in bundle.files and not (tmp_path / "b" / "model.net").exists()
    note = json.loads((tmp_path / "b" / "report.json").read_text())["netx"]["note"]
    assert note.startswith("no lava-dl netx HDF5 written: netx export is not exact") and "threshold" in note


def test_simulate_runs_a_quantized_file_in_integers_on_the_reference(tmp_path, digits, digits_graphs):
    """`simulate --backend reference` on a quantized file reports the integer (Lava fixed_pt twin) accuracy."""
    model = write_nir(tmp_path / "m.nir", digits_graphs["maxnorm"])
    q_path = tmp_path / "m.q.nir"
    assert main(["quantize", str(model), "--target", "loihi2", "-o", str(q_path), "--weight-bits", "2", "--quiet"]) == 0
    out = tmp_path / "sim.json"
    assert main(["simulate", str(q_path), "--T", "16", "--limit", "60", "--json", str(out), "--quiet"]) == 0
    reported = json.loads(out.read_text())["runs"][0]
    x, y = digits.test_x[:60].numpy(), digits.test_y[:60].numpy()
    ref = backends.get("reference")
    q = read_graph(q_path)
    fixed, float_run = ref.run(q, x, 16, fixed_point=True), ref.run(q, x, 16)
    assert (reported["accuracy"], reported["spikes_per_sample"]) == (fixed.accuracy(y), fixed.spikes_per_sample)
    assert reported["spikes_per_sample"] != float_run.spikes_per_sample, "the float run must differ for this to test"
