"""NIR files carry spikeport's extension intact (docs/nir-extensions.md) and bad files are refused clearly."""
from __future__ import annotations

import copy

import h5py
import nir
import numpy as np
import pytest

import backends
from backends.nirext import ExtensionError, neuron_semantics
from pipeline.io.atomic import write_nir
from pipeline.errors import SpikeportError
from pipeline.io.nirio import read_graph
from tests.graphs import mlp


def _assert_same_metadata(a: dict, b: dict, where: str):
    assert set(a) == set(b), where
    for k in a:
        if isinstance(a[k], dict):
            _assert_same_metadata(a[k], b[k], f"{where}.{k}")
        else:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=f"{where}.{k}")


def test_write_read_keeps_every_metadata_field_and_spikes(tmp_path, digits, digits_graphs):
    g = copy.deepcopy(digits_graphs["maxnorm"])   # the session fixture stays as converted
    g.nodes["relu1"].metadata["spikeport"]["v_init"] = np.full(g.nodes["relu1"].v_threshold.shape, 0.5, np.float32)
    path = write_nir(tmp_path / "m.nir", g)
    back = read_graph(path)
    _assert_same_metadata(g.metadata, back.metadata, "graph")
    for name, node in g.nodes.items():
        _assert_same_metadata(node.metadata, back.nodes[name].metadata, name)
    assert sorted(g.edges) == sorted(back.edges)
    x = digits.test_x[:20].numpy()
    a = backends.get("reference").run(g, x, 8, record=True)
    b = backends.get("reference").run(back, x, 8, record=True)
    for name in a.spikes:
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])


def test_extension_is_checked_on_read():
    g = mlp(np.ones((2, 2)), np.zeros(2), np.ones((1, 2)), np.zeros(1))
    node = g.nodes["if1"]
    node.metadata["spikeport"]["version"] = 7
    with pytest.raises(ExtensionError, match="version 7 is newer than this spikeport understands"):
        neuron_semantics("if1", node)
    node.metadata["spikeport"] = {"version": 1, "reset": "subtract", "leak_mode": "x"}
    with pytest.raises(ExtensionError, match=r"node 'if1': unknown metadata key\(s\) \['leak_mode'\]"):
        neuron_semantics("if1", node)
    node.metadata["spikeport"] = {"version": 1, "reset": "subtract", "v_init": np.zeros(3)}
    with pytest.raises(ExtensionError, match=r"v_init has shape \(3,\), node has \(2,\)"):
        neuron_semantics("if1", node)


def _rewrite(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f["node"])


def test_bad_files_are_rejected_naming_the_node(tmp_path):
    g = mlp(np.ones((2, 3)), np.zeros(2), np.ones((1, 2)), np.zeros(1))
    path = write_nir(tmp_path / "ok.nir", g)

    unknown = tmp_path / "unknown.nir"
    unknown.write_bytes(path.read_bytes())

    def retype(node):
        del node["nodes/fc2/type"]
        node["nodes/fc2"].create_dataset("type", data="Banana", dtype=h5py.string_dtype())
    _rewrite(unknown, retype)
    with pytest.raises(SpikeportError, match="node 'fc2' has type 'Banana'"):
        read_graph(unknown)

    shapes = tmp_path / "shapes.nir"
    shapes.write_bytes(path.read_bytes())

    def reshape(node):
        del node["nodes/fc2/weight"]
        node["nodes/fc2"].create_dataset("weight", data=np.ones((1, 5), np.float32))
    _rewrite(shapes, reshape)
    with pytest.raises(SpikeportError, match=r"node 'fc2' \(Affine\) expects input of shape \(5,\), gets \(2,\)"):
        read_graph(shapes)

    cycle = tmp_path / "cycle.nir"
    cyclic = nir.NIRGraph(nodes=dict(g.nodes), edges=g.edges + [("if1", "fc1")], type_check=False)
    nir.write(cycle, cyclic)
    with pytest.raises(SpikeportError, match="cycle through node"):
        read_graph(cycle)

    text = tmp_path / "notes.nir"
    text.write_text("hello")
    with pytest.raises(SpikeportError, match="not a NIR file"):
        read_graph(text)
