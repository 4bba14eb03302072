"""`spikeport demo` end to end: the issue's acceptance numbers, read back from the files it writes."""
from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.io.atomic import MARKER


@pytest.mark.slow
@pytest.mark.lava
def test_demo_meets_the_foundation_bars(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER, "accuracy_vs_T.png", "ann.pt", "energy_per_layer.png", "model.nir", "report.md", "results.json"]
    res = json.loads((out / "results.json").read_text())
    ann = res["ann"]["accuracy"]
    assert ann >= 0.97
    ref = {r["T"]: r for r in res["runs"] if r["backend"] == "reference" and r["encoding"] == "direct"}
    assert sorted(ref) == [4, 8, 16, 32, 64]
    assert ref[32]["accuracy"] >= ann - 0.01
    rate = {r["T"]: r for r in res["runs"] if r["backend"] == "reference" and r["encoding"] == "rate"}
    assert sorted(rate) == [4, 8, 16, 32, 64] and rate[64]["accuracy"] > rate[4]["accuracy"]
    by_enc = res["energy_by_encoding"]
    assert by_enc["direct"]["encoding"] == "direct" and by_enc["rate"]["encoding"] == "rate"
    first = {e: by_enc[e]["layers"][0] for e in by_enc}
    assert first["direct"]["snn_macs"] > 0 and first["rate"]["snn_macs"] == 0 and first["rate"]["snn_acs"] > 0
    (lava,) = [r for r in res["runs"] if r["backend"] == "lava"]
    assert lava["T"] == 32 and lava["samples"] == 360 and lava["agreement"] >= 0.99
    energy = res["energy"]
    assert energy["hwconfig"] == "cmos45nm" and energy["T"] == 32
    assert energy["ann_joules_per_inference"] > 0 and energy["snn_joules_per_inference"] > 0
    report = (out / "report.md").read_text()
    assert "![accuracy vs T](accuracy_vs_T.png)" in report and "Assumptions" in report
    assert (out / "accuracy_vs_T.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
