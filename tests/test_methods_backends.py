"""Every conversion method end to end: its NIR file on reference and Lava (digits), and on CIFAR-size nets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import backends
from pipeline.io.atomic import write_nir
from pipeline.conversion.registry import convert, get_method, method_names, prepare
from pipeline.data.datasets import synthetic_cifar
from pipeline.data.zoo import build_model
from pipeline.io.nirio import read_graph

PAPER_METHODS = ("optimal-shift", "rnl-ril", "dnisnm")


def test_all_methods_registered():
    assert {"maxnorm", "robustnorm", "optimal-shift", "optimal-noshift", "rnl-ril", "dnisnm"} <= set(method_names())


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.parametrize("name", ["maxnorm", "robustnorm", *PAPER_METHODS])
def test_method_nir_file_agrees_on_reference_and_lava(name, tmp_path, digits, digits_model):
    """Each method's NIR file, read back from disk, gives the same predictions on both backends at T=32,
    on the whole digits test split."""
    model = prepare(name, digits_model, digits, 3, seed=0)
    graph = convert(model, digits.input_shape, digits.train_x, method=name,
                    T=32 if get_method(name).t_dependent else None)
    graph = read_graph(write_nir(tmp_path / f"{name}.nir", graph))
    x = digits.test_x.numpy()
    ref = backends.get("reference").run(graph, x, 32, dtype=torch.float64)
    lava = backends.get("lava").run(graph, x, 32)
    assert lava.agreement(ref) >= 0.99
    np.testing.assert_allclose(lava.outputs, ref.outputs, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vgg16", "resnet18", "resnet20"])
def test_methods_run_cifar_size_networks_end_to_end(arch, tmp_path):
    """Synthetic 32x32x3 data: each method trains (1 epoch where it trains), converts, writes, reads, runs."""
    torch.manual_seed(0)
    ds = synthetic_cifar(n_train=64, n_test=8, seed=0)
    ann = build_model(arch, ds.input_shape, ds.num_classes).eval()
    for name in PAPER_METHODS:
        model = prepare(name, ann, ds, 1, seed=0)
        graph = read_graph(write_nir(tmp_path / f"{arch}-{name}.nir",
                                     convert(model, ds.input_shape, ds.train_x[:32], method=name,
                                             T=4 if get_method(name).t_dependent else None)))
        run = backends.get("reference").run(graph, ds.test_x.numpy(), 4)
        assert run.outputs.shape == (8, 10) and np.isfinite(run.outputs).all(), name
        assert get_method(name).name == name
