"""Shared fixtures: a digits CNN trained once per session and its conversions; the --run-slow switch."""
from __future__ import annotations

import pytest
import torch

from pipeline.data.datasets import load_dataset
from pipeline.data.zoo import build_model
from pipeline.training.ann import TrainConfig, seed_everything, train_ann


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def digits_model(digits):
    """The demo's digits CNN, trained with the demo's settings (seeded, about 10 s on 2 cores)."""
    torch.set_num_threads(2)
    seed_everything(0)
    model = build_model("digits-cnn", digits.input_shape, digits.num_classes)
    train_ann(model, digits.train_x, digits.train_y, digits.test_x, digits.test_y, TrainConfig(epochs=30, seed=0),
              progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def digits_graphs(digits, digits_model):
    """The digits CNN converted by each baseline method (reset by subtraction), and "maxnorm-zero": maxnorm
    with reset to zero (core NIR, which Norse and netx run)."""
    from pipeline.conversion.registry import convert
    graphs = {m: convert(digits_model, digits.input_shape, digits.train_x, method=m) for m in ("maxnorm", "robustnorm")}
    graphs["maxnorm-zero"] = convert(digits_model, digits.input_shape, digits.train_x, method="maxnorm", reset="zero")
    return graphs
