"""`spikeport quantize` and `spikeport deploy` end to end: the bundle's accuracy against the written quantized
graph run on Lava's fixed_pt models (a second backend), its resource totals, and one-line user errors."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

import backends
from pipeline.io.atomic import write_nir
from pipeline.cli import main
from pipeline.io.nirio import read_graph

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
    assert "no lava-dl netx HDF5 written" in text and "node 'relu1': reset 'subtract'" in text
    assert "spikeport quantize --netx" not in text   # reset by subtraction: no integers make it netx's neuron


def test_deploy_to_a_float_target_is_one_clear_line(tmp_path, digits_graphs, capsys):
    model = write_nir(tmp_path / "m.nir", digits_graphs["maxnorm"])
    assert main(["deploy", str(model), "--target", "cmos45nm", "--out", str(tmp_path / "b"), "--limit", "5",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no key 'formats.weight_bits'" in err


def test_netx_export_names_why_it_cannot_run_the_quantized_digits_cnn(digits, digits_graphs):
    """The digits CNN converted with reset to zero is netx's own neuron, but its loihi2 integers are not netx's:
    every refusal reason is checked against the quantized graph's own integers."""
    from backends import fixedpoint as fx
    from backends.graph import analyse
    from backends.netx import export_quantized
    from pipeline.hardware.quantize import quantize
    q = quantize(digits_graphs["maxnorm-zero"], "loihi2", digits.train_x.numpy()).graph
    view = analyse(q)
    with pytest.raises(backends.Unsupported, match="^netx cannot run the quantized integers bit for bit") as err:
        export_quantized(q, io.BytesIO())
    note = str(err.value)
    assert note.endswith("; integers quantized to netx's formats (`spikeport quantize --netx`) have one")
    exps = {n: fx.weights(n, q.nodes[n]).exp for n in ("conv1", "conv2", "fc")}
    assert exps["conv1"] < 0 and f"node 'conv1': weight exponent {exps['conv1']}" in note
    assert "'conv2': weight exponent" not in note
    fc = np.left_shift(fx.weights("fc", q.nodes["fc"]).m, exps["fc"])
    assert fc.max() > 254 and f"node 'fc': weights m << {exps['fc']} span [{fc.min()}, {fc.max()}]" in note
    for neuron in ("relu1", "relu2", "integrator"):
        bias = fx.layer_params(view, neuron).bias
        per_channel = bias.reshape(bias.shape[0], -1)[:, 0]
        odd = int((per_channel % 64 != 0).sum())
        assert odd > 0 and f"node {neuron!r}: bias" in note and f"{odd} of {len(per_channel)} biases" in note


def test_quantize_netx_option_gives_integers_netx_holds(tmp_path, digits_graphs):
    """`spikeport quantize --netx` on the digits CNN converted with reset to zero: every weight exponent 0, dense
    mantissas inside [-256, 254], every bias a multiple of 2^6 v units, and the netx export accepts the file."""
    from backends import fixedpoint as fx
    from backends.graph import analyse
    from backends.netx import export_quantized
    model = write_nir(tmp_path / "m.nir", digits_graphs["maxnorm-zero"])
    assert main(["quantize", str(model), "--target", "loihi2", "--netx", "-o", str(tmp_path / "q.nir"), "--quiet"]) == 0
    q = read_graph(tmp_path / "q.nir")
    assert q.metadata["spikeport"]["fixed_point"]["target"] == "loihi2 (netx formats)"
    assert {fx.weights(n, q.nodes[n]).exp for n in ("conv1", "conv2", "fc")} == {0}
    fc = fx.weights("fc", q.nodes["fc"]).m
    assert -256 <= fc.min() and fc.max() <= 254
    view = analyse(q)
    for neuron in ("relu1", "relu2", "integrator"):
        assert not np.any(np.mod(fx.layer_params(view, neuron).bias, 64)), neuron
    export_quantized(q, io.BytesIO())


def test_quantize_netx_says_when_netx_cannot_run_the_graph(tmp_path, digits_graphs, capsys):
    """Reset by subtraction is not netx's neuron: `quantize --netx` still writes the integers, and says on stderr
    that netx will not run them and why; on a reset-to-zero graph it says nothing."""
    for name, expected in (("maxnorm", "node 'relu1': reset 'subtract'"), ("maxnorm-zero", None)):
        model = write_nir(tmp_path / f"{name}.nir", digits_graphs[name])
        out = tmp_path / f"{name}.q.nir"
        assert main(["quantize", str(model), "--target", "loihi2", "--netx", "-o", str(out), "--quiet"]) == 0
        err = capsys.readouterr().err
        assert out.exists()
        if expected is None:
            assert "netx cannot run" not in err
        else:
            assert err.startswith("note: the integers are in netx's formats, but lava-dl's netx cannot run this "
                                  "graph: ") and expected in err and err.count("\n") == 1


def _assert_netx_file_runs_like_the_reference(graph_path, netx_path, x, T: int, layers) -> None:
    """lava-dl's own netx.hdf5.Network running `netx_path` on the quantized graph's integer input gives the
    reference fixed-point mode's spikes in every layer at every step and its outputs (the same integers, each
    side scaling them to floats in its own order)."""
    from backends import fixedpoint as fx
    from backends.graph import analyse
    from backends.netx.backend import run_file
    q = read_graph(graph_path)
    fmt = fx.input_format(q)
    ref = backends.get("reference").run(q, x, T, fixed_point=True, record=True)
    ints = fx.quantize_input(x, float(fmt["input_scale"]), int(fmt["input_bits"]), bool(fmt["input_signed"]))
    netx = run_file(netx_path, ints, T, record=True)
    assert set(netx.spikes) == set(ref.spikes) == set(layers)
    for layer in layers:
        assert ref.spikes[layer].any(), f"{layer} must spike for this to test"
        assert np.array_equal(netx.spikes[layer], ref.spikes[layer]), layer
    step = fx.output_unit(analyse(q))
    np.testing.assert_array_equal(np.rint(netx.outputs / step), np.rint(ref.outputs.reshape(len(x), -1) / step))
    np.testing.assert_allclose(netx.outputs / step, np.rint(netx.outputs / step), rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.lava
def test_deploy_model_net_runs_bit_for_bit_on_lavadl_netx(tmp_path):
    """A CNN whose loihi2 integers netx can hold (exponents >= 0, dense weights within [-256, 254], biases in
    multiples of 2^6): deploy writes model.net from them, and lava-dl's own netx.hdf5.Network fed with the graph's
    integer input gives the reference fixed-point mode's spikes in every layer at every step."""
    from pipeline.hardware.deploy import deploy
    from tests.graphs import netx_exact_cnn
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (64, 1, 6, 6)).astype(np.float32)
    T, n = 48, 3
    bundle = deploy(netx_exact_cnn(rng), "loihi2", tmp_path / "b", x, x[:n], np.zeros(n, int), T=T)
    assert "netx_graph" not in bundle.files and [r["weights"] for r in bundle.accuracy][-1] == "2-bit"
    _assert_netx_file_runs_like_the_reference(bundle.files["graph"], bundle.files["netx"], x[:n], T,
                                              ("if1", "if2", "if3"))


@pytest.mark.slow
@pytest.mark.lava
def test_deploy_writes_a_netx_targeted_model_net_for_the_digits_cnn(tmp_path, digits, digits_graphs):
    """The digits CNN converted with reset to zero, whose loihi2 integers netx cannot hold (see the test above):
    deploy quantizes it again to netx's formats, writes that graph as model.netx.q.nir, measures it as the row
    '8-bit netx' and writes model.net from it; lava-dl's own netx.hdf5.Network gives the reference fixed-point
    mode's spikes in both IF layers at every step and its readout, on 6 test samples at T = 16."""
    from pipeline.hardware.deploy import deploy
    T, n = 16, 6
    x, y = digits.test_x[:n].numpy(), digits.test_y[:n].numpy()
    bundle = deploy(digits_graphs["maxnorm-zero"], "loihi2", tmp_path / "b", digits.train_x.numpy(), x, y, T=T)
    assert bundle.report["netx"]["why"].startswith("loihi2's own integers: netx cannot run the quantized integers")
    row = bundle.accuracy[-1]
    assert row["weights"] == "8-bit netx"
    targeted = read_graph(bundle.files["netx_graph"])
    assert row["accuracy"] == backends.get("reference").run(targeted, x, T, fixed_point=True).accuracy(y)
    assert "model.netx.q.nir" in bundle.files["report"].read_text()
    _assert_netx_file_runs_like_the_reference(bundle.files["netx_graph"], bundle.files["netx"], x, T,
                                              ("relu1", "relu2"))


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


def _lif_pool_residual(rng) -> "nir.NIRGraph":
    """Input (1, 6, 6) -> Conv2d -> LIF -> AvgPool2d 2x2 -> Conv2d -> IF (+ Scale from a second IF branch:
    residual fan-in) -> Flatten -> Affine -> LI -> Output: every node kind the fixed-point path added, reset to zero."""
    import nir
    from backends.nirext import graph_metadata, neuron_metadata
    from tests.graphs import if_node

    def conv(c_in, c_out, size):
        return nir.Conv2d(input_shape=(size, size), weight=rng.normal(0, 0.6, (c_out, c_in, 3, 3)).astype(np.float32),
                          stride=1, padding=1, dilation=1, groups=1, bias=rng.normal(0, 0.1, c_out).astype(np.float32))
    f32 = lambda shape, v: np.full(shape, v, np.float32)  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 6, 6])}),
        "conv1": conv(1, 2, 6),
        "lif": nir.LIF(tau=f32((2, 6, 6), 4e-3), r=f32((2, 6, 6), 2.0), v_leak=f32((2, 6, 6), 0.0),
                       v_threshold=f32((2, 6, 6), 0.3), v_reset=f32((2, 6, 6), 0.0), metadata=neuron_metadata("zero")),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv2": conv(2, 2, 3),
        "side": conv(2, 2, 3),
        "side_if": if_node((2, 3, 3), 0.4, reset="zero"),
        "skip": nir.Scale(scale=f32((2, 3, 3), 0.25)),
        "if": if_node((2, 3, 3), 0.5, reset="zero"),
        "flatten": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0),
        "fc": nir.Affine(weight=rng.normal(0, 0.5, (3, 18)).astype(np.float32), bias=np.zeros(3, np.float32)),
        "li": nir.LI(tau=f32(3, 8e-3), r=f32(3, 1.0), v_leak=f32(3, 0.0)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "conv1"), ("conv1", "lif"), ("lif", "pool"), ("pool", "conv2"), ("conv2", "if"),
             ("pool", "side"), ("side", "side_if"), ("side_if", "skip"), ("skip", "if"), ("if", "flatten"),
             ("flatten", "fc"), ("fc", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata=graph_metadata("test", dt=1e-3))


@pytest.mark.lava
def test_deploy_quantizes_lif_pooling_residual_and_li_nodes(tmp_path):
    """The bundle of a graph with LIF, average pooling, a residual Scale and an LI readout: its 8-bit accuracy
    is the bundled graph's fixed-point accuracy, which Lava's fixed_pt models reproduce spike for spike, with the
    LIF (dv = 4096 dt / tau = 1024) and both IF layers on Lava's stock LIFReset."""
    from pipeline.hardware.deploy import deploy
    rng = np.random.default_rng(3)
    g = _lif_pool_residual(rng)
    calib = rng.uniform(0, 1, (32, 1, 6, 6)).astype(np.float32)
    x, y = calib[:6], rng.integers(0, 3, 6)
    bundle = deploy(g, "loihi2", tmp_path / "b", calib, x, y, T=12)
    q = read_graph(tmp_path / "b" / "model.q.nir")
    assert [r["weights"] for r in bundle.accuracy][:2] == ["float", "8-bit"]
    assert q.nodes["lif"].tau.flat[0] == np.float32(4096e-3 / 1024)
    lava, ref = backends.get("lava"), backends.get("reference")
    assert {n: p for n, p in lava.neuron_processes(q).items() if p == "LIFReset"} == \
        {"lif": "LIFReset", "side_if": "LIFReset", "if": "LIFReset"}
    fixed = ref.run(q, x, 12, fixed_point=True, record=True)
    assert bundle.accuracy[1]["accuracy"] == fixed.accuracy(y)
    ours = lava.run(q, x, 12, record=True)
    for name in fixed.spikes:
        np.testing.assert_array_equal(ours.spikes[name], fixed.spikes[name], err_msg=name)
        assert fixed.spikes[name].any(), name
    np.testing.assert_array_equal(ours.outputs, fixed.outputs)
    resources = json.loads((tmp_path / "b" / "resources.json").read_text())
    assert [layer["name"] for layer in resources["layers"]] == ["lif", "side_if", "if", "li"]
