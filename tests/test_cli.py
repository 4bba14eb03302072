"""The `spikeport` command line end to end, and its answers to bad input (one line, exit 2, no traceback)."""
from __future__ import annotations

import json
import subprocess
import sys

import nir
import numpy as np
import pytest

from pipeline.io.atomic import write_nir
from pipeline.cli import main
from tests.graphs import mlp


def test_train_convert_simulate_energy(tmp_path, capsys):
    ckpt, model_nir, res = tmp_path / "ann.pt", tmp_path / "m.nir", tmp_path / "sim.json"
    assert main(["train", "--epochs", "3", "--out", str(ckpt), "--quiet"]) == 0
    assert main(["convert", "--checkpoint", str(ckpt), "--method", "maxnorm", "--out", str(model_nir), "--quiet"]) == 0
    assert main(["simulate", str(model_nir), "--T", "4", "16", "--limit", "50", "--json", str(res), "--quiet"]) == 0
    rows = json.loads(res.read_text())["runs"]
    assert [r["T"] for r in rows] == [4, 16] and all(r["samples"] == 50 for r in rows)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows) and rows[1]["spikes_per_sample"] > rows[0]["spikes_per_sample"]
    assert main(["energy", str(model_nir), "--T", "8", "--limit", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "reference T=16: accuracy" in out and "cmos45nm" in out
    rate_json = tmp_path / "rate.json"
    assert main(["simulate", str(model_nir), "--T", "16", "--limit", "50", "--encoding", "rate", "--seed", "3",
                 "--json", str(rate_json), "--quiet"]) == 0
    from pipeline import api
    from pipeline.data.datasets import load_dataset
    test = load_dataset("digits", seed=3)
    expected = api.simulate(model_nir, test.test_x[:50], 16, encoding="rate", seed=3).accuracy(test.test_y[:50])
    assert json.loads(rate_json.read_text())["runs"][0]["accuracy"] == expected
    assert main(["energy", str(model_nir), "--T", "8", "--limit", "20", "--encoding", "rate", "--quiet"]) == 0
    assert "input encoding `rate`" in capsys.readouterr().out
    rate_json.unlink()
    assert main(["convert", "--checkpoint", str(ckpt), "--method", "maxnorm", "--reset", "zero", "--out",
                 str(tmp_path / "z.nir"), "--quiet"]) == 0
    nodes = nir.read(tmp_path / "z.nir").nodes.values()
    assert {n.metadata["spikeport"]["reset"] for n in nodes if isinstance(n, nir.IF)} == {"zero"}
    assert main(["convert", "--checkpoint", str(ckpt), "--method", "dnisnm", "--reset", "zero", "--out",
                 str(tmp_path / "d.nir"), "--quiet"]) == 2
    assert "dnisnm fixes its own neuron reset" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.pt", "m.nir", "sim.json", "z.nir"]  # no leftovers


def test_user_model_from_factory(tmp_path, capsys):
    """--model package.module:factory with a bare state_dict: the user's own architecture converts."""
    import torch
    from tests import user_model
    torch.save(user_model.build().state_dict(), tmp_path / "w.pt")
    assert main(["convert", "--checkpoint", str(tmp_path / "w.pt"), "--model", "tests.user_model:build",
                 "--method", "maxnorm", "--calib-samples", "100", "--out", str(tmp_path / "u.nir"), "--quiet"]) == 0
    graph = nir.read(tmp_path / "u.nir", type_check=False)
    assert sum(isinstance(n, nir.IF) for n in graph.nodes.values()) == 2


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["unknown-node", "cycle", "shapes", "missing", "unknown-method", "bad-checkpoint",
                                  "sweep-entry"])
def test_bad_input_is_one_clear_line(tmp_path, case):
    g = mlp(np.ones((2, 64)), np.zeros(2), np.ones((10, 2)), np.zeros(10))
    path = tmp_path / "bad.nir"
    if case == "unknown-node":
        nodes = dict(g.nodes)
        nodes["fc2"] = nir.Threshold(threshold=np.ones(2))
        nodes["fc3"] = g.nodes["fc2"]
        edges = [e for e in g.edges if e != ("fc2", "out") and e != ("if1", "fc2")]
        nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges + [("if1", "fc2"), ("fc2", "fc3"), ("fc3", "out")]))
        args, expect = ["simulate", str(path)], "node 'fc2' has type 'Threshold'"
    elif case == "cycle":
        nir.write(path, nir.NIRGraph(nodes=dict(g.nodes), edges=g.edges + [("if1", "fc1")], type_check=False))
        args, expect = ["simulate", str(path)], "cycle through node"
    elif case == "shapes":
        bad = mlp(np.ones((2, 64)), np.zeros(2), np.ones((10, 3)), np.zeros(10))
        nir.write(path, nir.NIRGraph(nodes=bad.nodes, edges=bad.edges, type_check=False))
        args, expect = ["simulate", str(path)], "node 'fc2' (Affine) expects input of shape (3,), gets (2,)"
    elif case == "missing":
        args, expect = ["simulate", str(tmp_path / "nope.nir")], "no such NIR file"
    elif case == "unknown-method":
        args, expect = ["convert", "--checkpoint", "x.pt", "--method", "magic"], "invalid choice: 'magic'"
    elif case == "sweep-entry":
        args = ["sweep", "--methods", "maxnorm:zero,dnisnm:zero", "--out", str(tmp_path / "s")]
        expect = "dnisnm fixes its own neuron reset"
    else:
        (tmp_path / "x.pt").write_bytes(b"\x80\x02garbage")
        args = ["convert", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path / "o.nir")]
        expect = "cannot be read"
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.nir").exists()


def test_failed_nir_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "m.nir"
    good = mlp(np.ones((2, 3)), np.zeros(2), np.ones((1, 2)), np.zeros(1))
    write_nir(target, good)
    before = target.read_bytes()

    def crash(buffer, graph):
        buffer.write(b"\x89HDF partial")
        raise RuntimeError("killed mid-write")
    monkeypatch.setattr(nir, "write", crash)
    with pytest.raises(RuntimeError):
        write_nir(target, good)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.nir"]


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os
    mask = os.umask(0o022)
    try:
        path = write_nir(tmp_path / "m.nir", mlp(np.ones((2, 3)), np.zeros(2), np.ones((1, 2)), np.zeros(1)))
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
