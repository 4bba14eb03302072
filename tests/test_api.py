"""The public Python API (`pipeline.*`): docs/api.md and the docstring examples run as doctests; each function is
checked through the API against an independent computation; every option either changes the graph or is refused."""
from __future__ import annotations

import doctest
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import pipeline
import pipeline.api
from pipeline.conversion.registry import get_method, method_names
from pipeline.errors import SpikeportError
from pipeline.spiking.registry import get_trainer, trainer_names

ROOT = Path(__file__).resolve().parents[1]


def _mlp(w1, b1, w2) -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(w1.shape[1], w1.shape[0]), torch.nn.ReLU(),
                                torch.nn.Linear(w2.shape[1], w2.shape[0], bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(w1))
        model[0].bias.copy_(torch.tensor(b1))
        model[2].weight.copy_(torch.tensor(w2))
    return model.eval()


@pytest.mark.lava
def test_api_walkthrough_runs(tmp_path, monkeypatch):
    """docs/api.md, executed: the document cannot drift from the code."""
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False, verbose=False,
                              optionflags=doctest.ELLIPSIS)
    assert result.attempted > 25 and result.failed == 0


def test_docstring_examples_run():
    result = doctest.testmod(pipeline.api, verbose=False)
    assert result.attempted >= 15 and result.failed == 0


def test_public_names():
    assert {"convert", "simulate", "energy", "quantize", "deploy", "parity", "train", "train_snn", "load", "save",
            "load_dataset", "prepare"} <= set(pipeline.__all__)


def test_convert_maxnorm_divides_by_the_layer_maximum():
    """maxnorm in weight form: W1' = W1 / lambda1 with lambda1 the largest ReLU output over the calibration data
    (Diehl et al. 2015), computed here in numpy."""
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=5).astype(np.float32), \
        rng.normal(size=(2, 5)).astype(np.float32)
    x = rng.random((40, 3)).astype(np.float32)
    lam = np.maximum(x @ w1.T + b1, 0).max()
    graph = pipeline.convert(_mlp(w1, b1, w2), x, method="maxnorm")
    (first,) = [n for n in graph.nodes.values() if isinstance(n, nir.Affine) and n.weight.shape == (5, 3)]
    np.testing.assert_allclose(first.weight, w1 / lam, rtol=1e-6)
    np.testing.assert_allclose(first.bias, b1 / lam, rtol=1e-6)


def test_simulate_matches_closed_form_if_counts():
    """One IF layer with threshold 1, reset by subtraction, constant input a in [0, 1): it fires floor(a T) or
    floor(a T) + 1 times in T steps (v(0) = 0, fires on v >= 1); the output integrates W2 times the spikes."""
    a = np.array([0.0, 0.25, 0.5, 0.8125], np.float32)
    w1 = np.eye(4, dtype=np.float32)
    graph = pipeline.convert(_mlp(w1, np.zeros(4, np.float32), np.eye(4, dtype=np.float32)),
                             np.vstack([np.ones((1, 4), np.float32), a[None]]), method="maxnorm")
    T = 16
    run = pipeline.simulate(graph, a[None], T)
    np.testing.assert_allclose(run.outputs[0], np.floor(a * T), atol=1e-5)   # dyadic rates: exact
    assert run.spikes_per_sample == pytest.approx(float(np.floor(a * T).sum()))


def test_energy_ann_side_is_macs_times_mac_energy():
    rng = np.random.default_rng(1)
    model = _mlp(rng.normal(size=(6, 4)).astype(np.float32), np.zeros(6, np.float32),
                 rng.normal(size=(3, 6)).astype(np.float32))
    x = rng.random((16, 4)).astype(np.float32)
    graph = pipeline.convert(model, x, method="maxnorm")
    report = pipeline.energy(graph, x, target="cmos45nm", T=8)
    assert report.ann_joules_per_inference == pytest.approx((6 * 4 + 3 * 6) * 4.6e-12)
    with pytest.raises(SpikeportError, match="needs the inputs"):
        pipeline.energy(graph)


def test_quantize_mantissas_reconstruct_the_weights(digits, digits_graphs):
    q = pipeline.quantize(digits_graphs["maxnorm"], digits, target="loihi2")
    """Each layer's weights are integer mantissas times the step recorded in its metadata, within half a step of
    the float weights (where nothing was clipped)."""
    for name, layer in q.layers.items():
        node = q.graph.nodes[name]
        step = node.metadata["spikeport"]["fixed_point"]["weight_step"]
        mant = np.asarray(node.weight, np.float64) / step
        assert np.abs(mant - np.round(mant)).max() < 1e-3 and np.abs(mant).max() <= 2 ** (layer["weight_bits"] - 1)
        ref = np.asarray(digits_graphs["maxnorm"].nodes[name].weight, np.float64)
        assert layer["clipped"] > 0 or np.abs(np.asarray(node.weight, np.float64) - ref).max() <= step * 0.5001


def test_save_load_round_trip_and_refusals(tmp_path, digits_graphs):
    path = pipeline.save(digits_graphs["maxnorm"], tmp_path / "m.nir")
    back = pipeline.load(path)
    for name, node in digits_graphs["maxnorm"].nodes.items():
        if hasattr(node, "weight"):
            np.testing.assert_array_equal(back.nodes[name].weight, node.weight)
    with pytest.raises(SpikeportError, match="needs a nir.NIRGraph"):
        pipeline.save({"not": "a graph"}, tmp_path / "x.nir")
    with pytest.raises(SpikeportError, match="no such NIR file"):
        pipeline.load(tmp_path / "missing.nir")


def test_parity_reference_against_itself_and_norse(digits, digits_graphs):
    x, y = digits.test_x[:30], digits.test_y[:30]
    result = pipeline.parity(digits_graphs["maxnorm-zero"], x, y, backends=["reference", "norse"], T=16)
    rows = {r["backend"]: r for r in result["rows"]}
    assert rows["reference"]["agreement"] == 1.0 and rows["norse"]["agreement"] == 1.0
    with pytest.raises(SpikeportError, match="unknown backend"):
        pipeline.parity(digits_graphs["maxnorm"], x, y, backends=["loihi9"])
    with pytest.raises(SpikeportError, match="labels reach class 12 but the graph has 10 outputs"):
        pipeline.parity(digits_graphs["maxnorm"], x[:2], [12, 0], backends=["reference"])


def test_deploy_writes_the_bundle(tmp_path, digits, digits_graphs):
    bundle = pipeline.deploy(digits_graphs["maxnorm"], digits.train_x[:64], digits.test_x[:24], digits.test_y[:24],
                             tmp_path / "d", target="loihi2", T=16)
    assert [row["weights"] for row in bundle.accuracy][:2] == ["float", "8-bit"]
    assert (tmp_path / "d" / "model.q.nir").is_file() and (tmp_path / "d" / "resources.json").is_file()


def test_train_and_train_snn(digits):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    history = pipeline.train(model, digits, epochs=3)
    assert len(history.epochs) == 3 and history.epochs[-1]["test_accuracy"] > 0.85
    with pytest.raises(SpikeportError, match="lr must be a finite number > 0"):
        pipeline.train(model, digits, lr=float("nan"))
    with pytest.raises(SpikeportError, match="seed must be an integer"):
        pipeline.train(model, digits, seed=-1)
    net = pipeline.train_snn(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                                 torch.nn.Linear(32, 10)), digits, "stbp", T=2, epochs=1, neuron="lif")
    graph = net.export(digits.input_shape)
    assert any(isinstance(n, nir.LIF) for n in graph.nodes.values())
    with pytest.raises(SpikeportError, match="stbp does not take option.s. unit"):
        pipeline.train_snn(model, digits, "stbp", unit="resu")
    with pytest.raises(SpikeportError, match="is a conversion method"):
        pipeline.train_snn(model, digits, "maxnorm")


# every option a conversion method might take, with a value other than any method's default
OPTION_VALUES = {"granularity": ["channel", "layer"], "percentile": [90.0], "reset": ["zero"], "form": ["weights"],
                 "signed": [False], "shift": [False], "T": [7]}


def _arrays(graph: nir.NIRGraph) -> dict[str, np.ndarray]:
    out = {}
    for name, node in graph.nodes.items():
        for key, value in vars(node).items():
            if isinstance(value, np.ndarray) and key not in ("input_type", "output_type"):
                out[f"{name}.{key}"] = value
        out[f"{name}.meta"] = np.frombuffer(repr(sorted(getattr(node, "metadata", {}).items())).encode(), np.uint8)
    return out


def _differs(a: nir.NIRGraph, b: nir.NIRGraph) -> bool:
    x, y = _arrays(a), _arrays(b)
    return x.keys() != y.keys() or any(x[k].shape != y[k].shape or not np.array_equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("method", ["maxnorm", "robustnorm", "dnisnm", "optimal-shift", "optimal-noshift", "rnl-ril"])
def test_every_option_changes_the_graph_or_is_refused(method, digits):
    """An option accepted but without effect fails here: each option of OPTION_VALUES must either give a graph
    that differs from the method's default graph, or be refused with a SpikeportError naming it."""
    assert set(method_names()) == {"maxnorm", "robustnorm", "dnisnm", "optimal-shift", "optimal-noshift", "rnl-ril"}
    torch.manual_seed(0)
    ann = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(256, 10)).eval()
    model = pipeline.prepare(method, ann, digits, 0) if get_method(method).train else ann
    calib = digits.train_x[:200]
    spec = get_method(method)
    base = pipeline.convert(model, calib, method=method, T=4 if spec.t_dependent else None)
    accepted = []
    for option, values in OPTION_VALUES.items():
        for value in values:
            kwargs = {option: value}
            if spec.t_dependent and option != "T":
                kwargs["T"] = 4
            try:
                graph = pipeline.convert(model, calib, method=method, **kwargs)
            except SpikeportError as err:
                assert option in str(err) or "T" in str(err), err
                continue
            if (option, value) == ("granularity", "layer") and method != "dnisnm":
                continue   # the default of the balancing methods
            assert _differs(graph, base), f"{method}: {option}={value!r} accepted but the graph is unchanged"
            accepted.append(option)
    assert set(accepted) <= set(spec.options()) | ({"T"} if spec.t_dependent else set())
    if method in ("maxnorm", "robustnorm", "dnisnm"):
        assert "granularity" in accepted


def test_training_method_options_are_the_parameters_they_reach():
    for name in trainer_names():
        options = get_trainer(name).options()
        assert options and not {"T", "lr", "epochs", "seed"} & set(options), (name, options)
