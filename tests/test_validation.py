"""Validation of user input: NIR graphs (before running and on read), checkpoints, data roots, torch layers.

Each bad input must end in one line naming the file/node and the fix, exit code 2, and no output file.
"""
from __future__ import annotations

import subprocess
import sys

import nir
import numpy as np
import pytest
import torch
from torch import nn

import backends
from backends.graph import GraphError, analyse
from benchmarks.badinputs import small_graph
from pipeline.io.atomic import write_nir
from pipeline.cli import main
from pipeline.errors import SpikeportError
from pipeline.training.checkpoints import load_model
from pipeline.data.zoo import build_model
from pipeline.training.ann import save_checkpoint


def _with(graph: nir.NIRGraph, name: str, **changes) -> nir.NIRGraph:
    node = graph.nodes[name]
    fields = {k: getattr(node, k) for k in node.__dataclass_fields__ if k not in ("input_type", "output_type")}
    graph.nodes[name] = type(node)(**{**fields, **changes})
    return graph


@pytest.mark.parametrize("name, changes, words", [
    ("if1", {"v_threshold": np.full(16, np.nan, np.float32)}, ["'if1'", "v_threshold", "16 non-finite"]),
    ("fc1", {"weight": np.full((16, 64), np.inf, np.float32)}, ["'fc1'", "weight", "non-finite"]),
    ("fc2", {"bias": np.array([0] * 9 + [-np.inf], np.float32)}, ["'fc2'", "bias", "1 non-finite"]),
    ("if1", {"v_threshold": np.zeros(16, np.float32)}, ["'if1'", "threshold", "> 0", "found 0"]),
    ("if1", {"v_threshold": -np.ones(16, np.float32)}, ["'if1'", "> 0", "found -1"]),
    ("fc1", {"bias": np.zeros(15, np.float32)}, ["'fc1'", "bias has shape (15,)", "16 outputs"]),
    ("fc2", {"weight": np.zeros((10, 17), np.float32)}, ["'fc2'", "(17,)", "(16,)"]),
    ("fc1", {"weight": np.zeros((16, 64), np.complex64)}, ["'fc1'", "not real-valued"]),
])
def test_bad_parameters_are_named_before_running(name, changes, words):
    graph = _with(small_graph(), name, **changes)
    for backend in ("reference",):
        with pytest.raises(GraphError) as err:
            backends.get(backend).run(graph, np.zeros((1, 1, 8, 8), np.float32), 4)
        assert all(w in str(err.value) for w in words), str(err.value)
        assert "\n" not in str(err.value)


def test_time_constants_must_be_positive():
    lif = nir.LIF(tau=np.array([0.01, 0.0]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                  v_reset=np.zeros(2))
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}), "lif": lif,
                                "output": nir.Output(output_type={"output": np.array([2])})},
                         edges=[("input", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(GraphError, match="'lif'.*time constant.*> 0"):
        analyse(graph)


def test_the_valid_graph_passes_and_T_below_one_is_refused():
    analyse(small_graph())
    with pytest.raises(ValueError, match="T must be at least 1"):
        backends.get("reference").run(small_graph(), np.zeros((1, 1, 8, 8), np.float32), 0)


def test_cli_simulate_bad_file_one_line_exit_2_no_json(tmp_path, capsys):
    bad = write_nir(tmp_path / "bad.nir", _with(small_graph(), "if1", v_threshold=np.full(16, np.nan, np.float32)))
    out = tmp_path / "results.json"
    assert main(["simulate", str(bad), "--T", "4", "--limit", "5", "--json", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "'if1'" in err and "NaN/Inf" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]
    with pytest.raises(SpikeportError):  # --debug lets the exception (and its traceback) through
        main(["simulate", str(bad), "--T", "4", "--debug"])


def test_cli_prints_no_traceback_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "simulate", str(bad), "--T", "4"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"spikeport simulate: error: {bad}: not a NIR file (not HDF5); write one with " \
                                  "`spikeport convert`"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "ann.pt"
    torch.manual_seed(0)
    return save_checkpoint(path, build_model("digits-cnn", (1, 8, 8), 10), model_name="digits-cnn",
                           input_shape=(1, 8, 8), num_classes=10)


def test_checkpoints_truncated_empty_wrong_architecture_nan(tmp_path, tiny_checkpoint):
    raw = tiny_checkpoint.read_bytes()
    cases = {"truncated": raw[: len(raw) // 2], "empty": b"", "text": b"hello"}
    for label, data in cases.items():
        (tmp_path / f"{label}.pt").write_bytes(data)
        with pytest.raises(SpikeportError, match="cannot be read .*truncated or not a torch checkpoint"):
            load_model(tmp_path / f"{label}.pt")
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["state_dict"]["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(SpikeportError, match="'conv1.weight' has 1 NaN/Inf"):
        load_model(tmp_path / "nan.pt")
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["model"] = "resnet20"
    torch.save(state, tmp_path / "arch.pt")
    with pytest.raises(SpikeportError, match="does not fit the model's architecture: Missing key"):
        load_model(tmp_path / "arch.pt")
    state["model"] = "no-such-model"
    torch.save(state, tmp_path / "name.pt")
    with pytest.raises(SpikeportError, match="unknown model 'no-such-model'"):
        load_model(tmp_path / "name.pt")


def test_cli_convert_bad_checkpoint_leaves_no_nir(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02garbage")
    out = tmp_path / "model.nir"
    assert main(["convert", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(out), "--quiet"]) == 2
    assert "bad.pt cannot be read" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".model.nir.*"))


def test_data_root_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "f"), "--out",
                 str(tmp_path / "a.pt"), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and not (tmp_path / "a.pt").exists()


def test_unsupported_layer_is_named_with_the_supported_list():
    from pipeline.conversion.registry import convert
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Sigmoid(), nn.Linear(16, 10)).eval()
    with pytest.raises(SpikeportError, match=r"'2' \(Sigmoid\) is not supported; supported layers: Conv2d, Linear"):
        convert(model, (1, 8, 8), torch.rand(8, 1, 8, 8), method="maxnorm")
