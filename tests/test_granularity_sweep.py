"""Channel- and neuron-wise balancing against numpy statistics and the ANN; the sweep's files and table."""
from __future__ import annotations

import json

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import backends
from pipeline.conversion.calibrate import activation_scales
from pipeline.conversion.registry import convert
from pipeline.reports.sweep import SweepConfig, run_sweep
from pipeline.conversion.trace import trace


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 5, 4)).eval()


def test_channel_and_neuron_scales_equal_numpy_statistics():
    model, x = _net(), torch.rand(50, 1, 4, 5)
    traced = trace(model, (1, 4, 5))
    with torch.no_grad():
        act = F.relu(model[0](x)).numpy()
    (node,) = traced.activations
    ch = activation_scales(traced.module, traced.activations, x, "max", granularity="channel")[node]
    np.testing.assert_allclose(ch, act.max(axis=(0, 2, 3)), rtol=1e-6)
    ne = activation_scales(traced.module, traced.activations, x, "max", granularity="neuron")[node]
    np.testing.assert_allclose(ne, np.where(act.max(0) > 0, act.max(0), 1.0), rtol=1e-6)
    p = activation_scales(traced.module, traced.activations, x, "percentile", percentile=50, granularity="channel")[node]
    expect = [np.percentile(act[:, c][act[:, c] > 0], 50) for c in range(3)]
    np.testing.assert_allclose(p, expect, rtol=1e-6)


def test_channel_weight_form_and_neuron_threshold_form_track_the_ann():
    """Both balanced graphs, run long, give output/T close to the ANN logits (rate coding, error ~1/T)."""
    model, x = _net(), torch.rand(40, 1, 4, 5)
    with torch.no_grad():
        ann = model(x).numpy()
    for granularity in ("channel", "neuron"):
        g = convert(model, (1, 4, 5), x, method="maxnorm", granularity=granularity)
        if granularity == "neuron":
            assert any(isinstance(n, nir.Scale) for n in g.nodes.values())  # spikes scaled by theta
        run = backends.get("reference").run(g, x.numpy(), 1000)
        np.testing.assert_allclose(run.outputs / 1000, ann, atol=0.01 * np.abs(ann).max())


def test_sweep_writes_table_json_plot_and_nir(tmp_path, digits, digits_model):
    cfg = SweepConfig(out=tmp_path, methods=("maxnorm", "maxnorm:channel"), T_values=(2, 8), progress=False, limit=60)
    res = run_sweep(digits_model, digits, cfg, log=lambda *_: None)
    assert [(r["label"], r["T"]) for r in res["runs"]] == [("maxnorm", 2), ("maxnorm", 8), ("maxnorm:channel", 2),
                                                           ("maxnorm:channel", 8)]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["runs"] == json.loads(json.dumps(res["runs"]))
    direct = backends.get("reference").run(nir.read(tmp_path / "maxnorm.nir", type_check=False),
                                           digits.test_x[:60].numpy(), 8)
    assert direct.accuracy(digits.test_y[:60].numpy()) == res["runs"][1]["accuracy"]  # file == what was measured
    report = (tmp_path / "report.md").read_text()
    assert "| maxnorm:channel |" in report and "T=8" in report
    assert (tmp_path / "accuracy_vs_T.png").stat().st_size > 1000
    assert "## Energy per inference at T=8 (cmos45nm)" in report
    from pipeline.hardware.energy import energy_report
    from pipeline.hardware.hwconfig import load_hwconfig
    again = energy_report(nir.read(tmp_path / "maxnorm.nir", type_check=False), direct, load_hwconfig("cmos45nm"), 8)
    assert res["energy"]["per_method"]["maxnorm"]["snn_joules_per_inference"] == again.snn_joules_per_inference
    loihi = energy_report(nir.read(tmp_path / "maxnorm.nir", type_check=False), direct, load_hwconfig("loihi"), 8)
    assert res["runs"][1]["energy"]["loihi"] == loihi.snn_joules_per_inference


def test_sweep_reports_intervals_paired_tests_and_the_pareto_front(tmp_path, digits, digits_model):
    """Intervals, McNemar counts and the front recomputed here from the runs and the ANN's own predictions."""
    from pipeline.reports.stats import wilson_interval
    cfg = SweepConfig(out=tmp_path, methods=("maxnorm", "robustnorm"), T_values=(1, 4, 16), progress=False, limit=90)
    correct: dict = {}
    res = run_sweep(digits_model, digits, cfg, log=lambda *_: None, correct=correct)
    n = 90
    for row in res["runs"]:
        assert row["ci95"] == list(wilson_interval(round(row["accuracy"] * n), n))
    x, y = digits.test_x[:n].numpy(), digits.test_y[:n].numpy()
    ann_correct = digits_model(digits.test_x[:n]).argmax(1).numpy() == y
    graphs = {m: convert(digits_model, digits.input_shape, digits.train_x, method=m) for m in ("maxnorm", "robustnorm")}
    for entry in res["significance"]:
        snn_correct = backends.get("reference").run(graphs[entry["best"]], x, entry["T"]).predictions == y
        assert entry["vs_ann"]["a_only"] == int((snn_correct & ~ann_correct).sum())
        assert entry["vs_ann"]["b_only"] == int((~snn_correct & ann_correct).sum())
        assert np.array_equal(correct[entry["best"], entry["T"]], snn_correct)   # what the caller receives
    for target in ("cmos45nm", "loihi"):
        front = res["pareto"][target]["front"]
        for point in front:   # nothing both more accurate and cheaper
            assert not any(r["accuracy"] > point["accuracy"] and r["energy"][target] < point["energy"]
                           for r in res["runs"])
        assert front[-1]["accuracy"] == max(r["accuracy"] for r in res["runs"])
        assert (tmp_path / f"pareto_{target}.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "## Significance" in report and "## Accuracy and energy on loihi" in report


def test_sweep_entry_with_a_reset_converts_with_it(tmp_path, digits, digits_model, digits_graphs):
    from pipeline.reports.sweep import Variant
    assert Variant.parse("maxnorm:channel:zero").options == {"granularity": "channel", "reset": "zero"}
    cfg = SweepConfig(out=tmp_path, methods=("maxnorm:zero",), T_values=(8,), progress=False, limit=60)
    res = run_sweep(digits_model, digits, cfg, log=lambda *_: None)
    x, y = digits.test_x[:60].numpy(), digits.test_y[:60].numpy()
    direct = backends.get("reference").run(digits_graphs["maxnorm-zero"], x, 8)
    assert res["runs"][0]["accuracy"] == direct.accuracy(y)
    assert res["runs"][0]["spikes_per_sample"] == direct.spikes_per_sample
