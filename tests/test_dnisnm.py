"""DNISNM conversion (pipeline/conversion/methods/dnisnm.py): DNI thresholds, v(0) = theta/2 through a written file,
SNM neurons, both forms of Algorithm 1, and digits accuracy against layer-wise maxnorm.
"""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from torch import nn

import backends
import pipeline.conversion.methods.dnisnm  # noqa: F401  (registers "dnisnm")
from backends.nirext import neuron_semantics
from pipeline.io.atomic import write_nir
from pipeline.conversion.registry import convert, get_method
from pipeline.errors import ConversionError
from pipeline.io.nirio import read_graph

REF = backends.get("reference")


@pytest.fixture(scope="module")
def dnisnm_graph(digits, digits_model):
    return convert(digits_model, digits.input_shape, digits.train_x, method="dnisnm")


def relu_maxima(model: nn.Module, x) -> dict[str, np.ndarray]:
    """numpy max over the training samples of every nn.ReLU's output, per neuron."""
    out: dict[str, list[np.ndarray]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, y, name=name: out.setdefault(name, []).append(y.numpy()))
             for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(torch.as_tensor(x))
    for h in hooks:
        h.remove()
    return {name: np.concatenate(v).max(axis=0) for name, v in out.items()}


def accuracy(graph, digits, T, n=None) -> float:
    x, y = digits.test_x[:n], np.asarray(digits.test_y[:n])
    return float((REF.run(graph, x, T).outputs.argmax(1) == y).mean())


def test_registered_and_not_t_dependent():
    m = get_method("dnisnm")
    assert m.train is None and not m.t_dependent


def test_dni_thresholds_are_the_per_neuron_training_maxima(digits, digits_model, dnisnm_graph):
    maxima = relu_maxima(digits_model, digits.train_x)
    ifs = {n: node for n, node in dnisnm_graph.nodes.items() if isinstance(node, nir.IF)}
    assert set(ifs) == set(maxima) and len(ifs) == 2
    for name, node in ifs.items():
        expect = np.where(maxima[name] > 0, maxima[name], 1.0)  # never-active neurons keep threshold 1
        np.testing.assert_allclose(node.v_threshold, expect, rtol=1e-5)
        assert len(np.unique(node.v_threshold)) > 10  # really neuron-wise, not per layer
        # threshold form: every spike is scaled back by its neuron's theta
        np.testing.assert_array_equal(dnisnm_graph.nodes[f"{name}_amplitude"].scale, node.v_threshold)


def test_v_init_is_half_theta_and_neurons_are_snm_after_a_file_round_trip(tmp_path, dnisnm_graph):
    write_nir(tmp_path / "dnisnm.nir", dnisnm_graph)
    g = read_graph(tmp_path / "dnisnm.nir")
    assert g.metadata["spikeport"]["method"] == "dnisnm"
    n_if = 0
    for name, node in g.nodes.items():
        if isinstance(node, nir.IF):
            n_if += 1
            sem = neuron_semantics(name, node)
            assert sem.signed and sem.reset == "signed-memory"
            np.testing.assert_array_equal(sem.v_init, np.asarray(node.v_threshold, np.float64) / 2)
            np.testing.assert_array_equal(node.v_threshold, dnisnm_graph.nodes[name].v_threshold)
    assert n_if == 2


def test_weight_form_refuses_neuron_wise_conv_thresholds(digits, digits_model):
    with pytest.raises(ConversionError, match="form='weights' cannot express neuron-wise.*'relu1'"):
        convert(digits_model, digits.input_shape, digits.train_x, method="dnisnm", form="weights")
    with pytest.raises(ConversionError, match="form must be one of"):
        convert(digits_model, digits.input_shape, digits.train_x, method="dnisnm", form="both")


def test_weight_form_equals_threshold_form_channel_wise_on_the_cnn(digits, digits_model):
    """Algorithm 1's two branches give the same SNN (same spikes in units of theta); channel-wise for the CNN."""
    kw = dict(method="dnisnm", granularity="channel")
    gw = convert(digits_model, digits.input_shape, digits.train_x, form="weights", **kw)
    gt = convert(digits_model, digits.input_shape, digits.train_x, form="thresholds", **kw)
    assert all(np.all(n.v_threshold == 1) for n in gw.nodes.values() if isinstance(n, nir.IF))
    assert all(np.all(neuron_semantics(k, n).v_init == 0.5) for k, n in gw.nodes.items() if isinstance(n, nir.IF))
    x = digits.test_x[:120]
    rw, rt = REF.run(gw, x, 8), REF.run(gt, x, 8)
    assert (rw.outputs.argmax(1) == rt.outputs.argmax(1)).mean() >= 0.97


def test_weight_form_takes_neuron_wise_thresholds_on_an_mlp(digits):
    """Fully connected layers fold per-neuron lambda into W (Eq. 18); same predictions as the threshold form."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(digits.input_shape)), 32), nn.ReLU(),
                        nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    gw = convert(mlp, digits.input_shape, digits.train_x, method="dnisnm", form="weights")
    gt = convert(mlp, digits.input_shape, digits.train_x, method="dnisnm", form="thresholds")
    assert all(np.all(n.v_threshold == 1) for n in gw.nodes.values() if isinstance(n, nir.IF))
    x = digits.test_x[:120]
    rw, rt = REF.run(gw, x, 8), REF.run(gt, x, 8)
    assert (rw.outputs.argmax(1) == rt.outputs.argmax(1)).mean() >= 0.97


# Measured on the session's digits CNN, 360 test samples (1 sample = 0.28 points), reference backend, in %
# (the fixture's model differs between sessions, e.g. with the test order; in a full-suite run maxnorm
# reached 99.44 at T = 8 against dnisnm's 98.33, hence 2 points of room at T >= 8):
#   T                 1      2      4      8      16     32
#   ANN 98.33 dnisnm  96.39  96.39  98.33  98.61  98.61  98.61
#             maxnorm 10.00  15.28  85.83  97.50  98.89  98.06
#   ANN 98.06 dnisnm  94.44  96.94  97.78  97.78  97.78  98.06
#             maxnorm  9.72  13.33  93.06  97.78  98.06  98.06
@pytest.mark.parametrize("T", [2, 4, 8, 16])
def test_dnisnm_beats_or_matches_layerwise_maxnorm_on_digits(digits, digits_model, digits_graphs, dnisnm_graph, T):
    acc = accuracy(dnisnm_graph, digits, T)
    base = accuracy(digits_graphs["maxnorm"], digits, T)
    with torch.no_grad():
        ann = float((digits_model(torch.as_tensor(digits.test_x)).argmax(1).numpy()
                     == np.asarray(digits.test_y)).mean())
    assert acc >= base - 0.02, (T, acc, base)   # never more than 2 points below maxnorm
    assert acc >= ann - 0.03, (T, acc, ann)     # within 3 points of the ANN already at T = 2
    if T == 2:
        assert acc >= base + 0.50, (T, acc, base)  # the low-latency gain the paper is about


@pytest.mark.lava
def test_lava_agrees_with_reference_on_dnisnm_digits(digits, dnisnm_graph):
    x = digits.test_x[:40]
    ref = REF.run(dnisnm_graph, x, 32)
    lava = backends.get("lava").run(dnisnm_graph, x, 32)
    agree = (lava.outputs.argmax(1) == ref.outputs.argmax(1)).mean()
    assert agree >= 0.99, agree
    np.testing.assert_allclose(lava.outputs, ref.outputs, rtol=1e-3, atol=1e-2)
