"""Reproducibility: the same seed and inputs give the same checkpoint, graph, .nir bytes and spikes, bit for bit
on CPU; every results.json records the seed and the library versions.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import backends
from benchmarks.badinputs import small_graph
from pipeline.io.atomic import write_nir
from pipeline.cli import main
from pipeline.conversion.registry import convert
from pipeline.data.zoo import build_model
from pipeline.io.provenance import LIBRARIES, provenance
from pipeline.training.ann import TrainConfig, seed_everything, train_ann


def _train(digits, seed: int):
    seed_everything(seed)
    model = build_model("digits-cnn", digits.input_shape, digits.num_classes)
    train_ann(model, digits.train_x, digits.train_y, digits.test_x, digits.test_y, TrainConfig(epochs=2, seed=seed),
              progress=False)
    return model.eval()


def _pipeline(digits, seed: int, tmp_path, tag: str) -> dict:
    """train -> convert -> write .nir -> simulate, all from `seed`."""
    model = _train(digits, seed)
    graph = convert(model, digits.input_shape, digits.train_x[:256], method="robustnorm")
    path = write_nir(tmp_path / f"{tag}.nir", graph)
    run = backends.get("reference").run(graph, digits.test_x[:64].numpy(), 8, record=True)
    return {"weights": {k: v.clone() for k, v in model.state_dict().items()}, "nir": path.read_bytes(), "run": run}


def test_same_seed_same_bits(digits, tmp_path):
    a, b = _pipeline(digits, 3, tmp_path, "a"), _pipeline(digits, 3, tmp_path, "b")
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert a["nir"] == b["nir"]
    np.testing.assert_array_equal(a["run"].outputs, b["run"].outputs)
    for name in a["run"].spikes:
        np.testing.assert_array_equal(a["run"].spikes[name], b["run"].spikes[name])
    c = _train(digits, 4).state_dict()  # and the comparison can tell runs apart
    assert not all(torch.equal(a["weights"][k], c[k]) for k in a["weights"])


def test_provenance_names_seed_and_every_library():
    env = provenance(7)
    assert env["seed"] == 7 and env["python"].count(".") == 2 and env["torch_threads"] >= 1
    for lib in ("torch", "numpy", "nir", "norse", "lava-nc", "lava-dl", "h5py"):
        assert lib in LIBRARIES and env["libraries"][lib], lib
    assert env["libraries"]["torch"].startswith(torch.__version__.split("+")[0])
    assert env["libraries"]["numpy"] == np.__version__


def test_simulate_json_records_provenance(tmp_path):
    path = write_nir(tmp_path / "m.nir", small_graph())
    out = tmp_path / "r.json"
    assert main(["simulate", str(path), "--T", "2", "--limit", "8", "--seed", "5", "--json", str(out), "--quiet"]) == 0
    env = json.loads(out.read_text())["environment"]
    assert env["seed"] == 5 and env["libraries"]["nir"] == provenance(0)["libraries"]["nir"]


@pytest.mark.slow
def test_cli_train_twice_gives_identical_checkpoints(tmp_path):
    for tag in ("a", "b"):
        assert main(["train", "--epochs", "2", "--seed", "1", "--out", str(tmp_path / f"{tag}.pt"), "--quiet"]) == 0
    a, b = (torch.load(tmp_path / f"{t}.pt", weights_only=True)["state_dict"] for t in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
