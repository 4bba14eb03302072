"""spikeport's pipeline: from a torch model to a NIR file, its simulation, energy, quantization and reports.

The public API (`pipeline.api`, walk-through in docs/api.md) is re-exported here:

    import pipeline
    graph = pipeline.convert(model, calibration_images, method="robustnorm")
    run = pipeline.simulate(graph, test_images, T=32, backend="reference")
"""
from pipeline.api import (convert, deploy, energy, load, parity, prepare, quantize, save, simulate, train,
                          train_snn)
from pipeline.data.datasets import Dataset, load_dataset
from pipeline.errors import SpikeportError

__all__ = ["Dataset", "SpikeportError", "convert", "deploy", "energy", "load", "load_dataset", "parity", "prepare",
           "quantize", "save", "simulate", "train", "train_snn"]
__version__ = "0.1.0"
