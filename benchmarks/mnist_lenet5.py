"""The trained MNIST network the MNIST benchmarks share: LeNet-5 from the cache (trained there once if absent),
converted by the methods a benchmark asks for, calibrated on the first CALIBRATION training images.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.cli import main as cli
from pipeline.conversion.registry import convert
from pipeline.data.datasets import Dataset, load_dataset
from pipeline.data.fetch import cache_root
from pipeline.training.ann import evaluate
from pipeline.training.checkpoints import load_model

CHECKPOINT = cache_root() / "checkpoints" / "lenet5-mnist-speed.pt"
EPOCHS = 2
CALIBRATION = 5000


def trained(checkpoint: Path = CHECKPOINT) -> tuple[Dataset, object, float]:
    """MNIST, the LeNet-5 of `checkpoint` (trained `EPOCHS` epochs with seed 0 when the file is absent) and its
    accuracy on the 10,000 test images."""
    if not Path(checkpoint).exists():
        cli(["train", "--dataset", "mnist", "--model", "lenet5", "--epochs", str(EPOCHS), "--out", str(checkpoint),
             "--quiet"])
    ds = load_dataset("mnist")
    model, _ = load_model(checkpoint, input_shape=ds.input_shape)
    model.eval()
    return ds, model, evaluate(model, ds.test_x, ds.test_y)


def converted(ds: Dataset, model, methods: tuple[str, ...]) -> dict:
    """{method: NIRGraph} of `model` converted by each method (per-layer thresholds, the methods' defaults)."""
    return {m: convert(model, ds.input_shape, ds.train_x[:CALIBRATION], method=m) for m in methods}
