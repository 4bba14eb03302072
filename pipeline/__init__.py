"""spikeport's pipeline: from a torch model to a NIR file, its simulation, energy, quantization and reports.

The public API (`pipeline.api`, walk-through in docs/api.md) is re-exported here:

    import pipeline
    graph = pipeline.convert(model, calibration_images, method="robustnorm")
    run = pipeline.simulate(graph, test_images, T=32, backend="reference")

The names are imported on first use (PEP 562), so that `import pipeline` is quick and `spikeport` can answer
Ctrl-C while torch loads.
"""
from pipeline.errors import SpikeportError

_API = ("convert", "deploy", "energy", "load", "parity", "prepare", "quantize", "save", "simulate", "train",
        "train_snn")
__all__ = ["Dataset", "SpikeportError", *_API, "load_dataset"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _API:
        from pipeline import api
        return getattr(api, name)
    if name in ("Dataset", "load_dataset"):
        from pipeline.data import datasets
        return getattr(datasets, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
