"""spikeport's Python API: convert, simulate, energy, quantize, deploy, parity, train, train_snn, load, save.

Each function validates its arguments the way the CLI does (the CLI is a thin layer over these) and raises a
one-line `SpikeportError` for a user mistake. Re-exported from `pipeline`; walk-through: docs/api.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import nir
import numpy as np
import torch
from torch import nn

import backends as _backends
from backends.nirext import fixed_point, graph_info, with_encoding
from backends.result import RunResult
from pipeline import checks
from pipeline.data import encoding as enc
from pipeline.data.datasets import Dataset
from pipeline.errors import SpikeportError
from pipeline.hardware.deploy import Bundle
from pipeline.hardware.energy import EnergyReport
from pipeline.hardware.quantize import Quantized
from pipeline.reports.parity import Tolerances
from pipeline.training.ann import History

def load(path: str | Path, *, convention: str = "auto") -> nir.NIRGraph:
    """Read and validate a NIR file; `convention` names the tool that wrote it (pipeline.io.nirimport.CONVENTIONS;
    "auto": from the file's metadata or its writer's fingerprint).

    >>> import pathlib, tempfile, pipeline, torch
    >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> g = pipeline.convert(ann, torch.rand(64, 4), method="maxnorm")
    >>> path = pipeline.save(g, pathlib.Path(tempfile.mkdtemp()) / "model.nir")
    >>> sorted(pipeline.load(path).nodes) == sorted(g.nodes)
    True
    """
    from pipeline.io.nirio import read_graph
    return read_graph(path, convention)


def save(graph: nir.NIRGraph, path: str | Path) -> Path:
    """Write `graph` as a NIR file atomically (complete or absent); returns the path written."""
    from pipeline.io.atomic import write_nir
    if not isinstance(graph, nir.NIRGraph):
        raise SpikeportError(f"save() needs a nir.NIRGraph, got {type(graph).__name__}")
    return write_nir(path, graph)


def _graph(graph) -> nir.NIRGraph:
    if isinstance(graph, nir.NIRGraph):
        return graph
    if isinstance(graph, (str, Path)):
        return load(graph)
    raise SpikeportError(f"expected a nir.NIRGraph or the path of a NIR file, got {type(graph).__name__}")


def _samples(data, what: str) -> torch.Tensor:
    """A float tensor (N, ...) from a tensor, an array, a Dataset (its training images) or an iterable of
    batches (tensors, or (x, y) pairs as a torch DataLoader yields)."""
    if isinstance(data, Dataset):
        return data.train_x
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, torch.Tensor):
        if not isinstance(data, Iterable):
            raise SpikeportError(f"{what}: expected a tensor, an array, a Dataset or batches, got {type(data).__name__}")
        parts = [b[0] if isinstance(b, (tuple, list)) else b for b in data]
        if not parts:
            raise SpikeportError(f"{what}: no batches")
        data = torch.cat([torch.as_tensor(p) for p in parts])
    if data.ndim < 2 or len(data) == 0:
        raise SpikeportError(f"{what}: expected samples (N, *input shape) with N >= 1, got shape {tuple(data.shape)}")
    data = data.float()
    if not bool(torch.isfinite(data).all()):
        raise SpikeportError(f"{what} contain NaN or Inf values")
    return data


def convert(model: nn.Module, calibration_data, method: str = "robustnorm", *, input_shape: Sequence[int] | None = None,
            T: int | None = None, source: str = "", progress: bool = False, encoding: str = "direct",
            **options) -> nir.NIRGraph:
    """The spiking NIR graph of a trained ANN by conversion method `method`.

    `calibration_data`: training samples (N, *input shape) as a tensor, array, Dataset or DataLoader; it fixes
    the thresholds (activation statistics) and, unless `input_shape` is given, the input shape. `options` are
    the method's own (`pipeline.conversion.registry.get_method(method).options()`, e.g. `granularity`,
    `percentile`, `reset`); one the method does not take is refused. `T` only for methods whose graph depends
    on it (optimal-shift). Methods that fine-tune the ANN first: `prepare`. `encoding` (direct, rate, latency,
    event; `pipeline.data.encoding`) is written into the graph's metadata, and calibration sees what it delivers
    per step on average (`calibration_input`: for `event`, images become (2, H, W) event rates).

    >>> import pipeline, torch
    >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> g = pipeline.convert(ann, torch.rand(64, 4), method="maxnorm", granularity="channel")
    >>> sorted(type(n).__name__ for n in g.nodes.values())
    ['Affine', 'Affine', 'I', 'IF', 'Input', 'Output']
    """
    from pipeline.conversion.registry import convert as _convert
    from pipeline.spiking.registry import trainer_names
    if method in trainer_names():
        raise SpikeportError(f"{method} is not a conversion method: it trains a spiking network directly "
                             "(pipeline.train_snn, spikeport train-snn)")
    if not isinstance(model, nn.Module):
        raise SpikeportError(f"convert() needs a torch.nn.Module, got {type(model).__name__}")
    x = _samples(calibration_data, "calibration_data")
    if enc.check(encoding) != "direct":
        x = torch.from_numpy(enc.calibration_input(x.numpy(), encoding, T or 32))
    shape = tuple(int(d) for d in (input_shape if input_shape is not None else x.shape[1:]))
    if tuple(x.shape[1:]) != shape:
        raise SpikeportError(f"calibration_data have per-sample shape {tuple(x.shape[1:])}, input_shape is {shape}")
    if T is not None:
        T = checks.time_steps(T)
    if "percentile" in options:
        options["percentile"] = checks.percentile(options["percentile"])
    _check_accepts(model, x, shape)
    graph = _convert(model.eval(), shape, x, method=method, source=source, progress=progress, T=T, **options)
    graph.metadata = with_encoding(graph.metadata, encoding)
    return graph


def _check_accepts(model: nn.Module, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Run `model` on one sample, so a model built for other data fails here with both shapes named (and not
    deep inside torch.fx shape propagation)."""
    try:
        with torch.no_grad():
            out = model.eval()(x[:64])
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpikeportError(f"the model does not accept samples of shape {shape} ({first[:160]}); it was built for "
                             "other data: check --dataset, or the checkpoint's input shape") from None
    if isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
        peak = max((float(p.detach().abs().max()) for p in model.parameters() if p.numel()), default=0.0)
        raise SpikeportError(f"the model's outputs on the calibration data overflow float32 (NaN/Inf; its largest "
                             f"weight is {peak:.3g}); retrain it (e.g. with a lower --lr or weight decay)")


def prepare(method: str, ann: nn.Module, dataset: Dataset, epochs: int = 10, *, seed: int = 0, device: str = "cpu",
            progress: bool = False, **options) -> nn.Module:
    """The model `method` converts: `ann` itself, or a copy fine-tuned the method's way (optimal-shift's clipped
    ReLU, rnl-ril's Rate Norm Layers) for `epochs` on `dataset`; `options` go to that training step."""
    from pipeline.conversion.registry import prepare as _prepare
    return _prepare(method, ann, dataset, checks.positive_int("epochs", epochs) if epochs else 0,
                    seed=checks.seed(seed), device=checks.device(device), progress=progress, **options)


CALIBRATION_SPIKE_SAMPLES = 1024   # encoded calibration samples for the input format under a spike encoding


def encoded(graph, inputs, T: int, encoding: str | None = None, seed: int = 0, *, what: str = "inputs") -> np.ndarray:
    """`inputs` as `graph` receives them under `encoding` (default: the graph's metadata encoding): images are
    encoded for T steps (`pipeline.data.encoding.encode`, seeded), and inputs already (N, T, *input shape) are
    passed on as they are (time-varying input needs no encoding)."""
    graph = _graph(graph)
    name = enc.check(encoding if encoding is not None else graph_info(graph)["encoding"])
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    x = np.asarray(inputs)
    shape = checks.graph_input_shape(graph)
    if name != "direct" and x.ndim >= 2 and (shape is None or tuple(x.shape[1:]) != (T, *shape)):
        x = enc.encode(x, name, T, checks.seed(seed))
    return checks.inputs_for(graph, x, what=what, T=T)


def simulate(graph, inputs, T: int = 32, *, backend: str = "reference", progress: bool = False, max_T: int =
             checks.DEFAULT_MAX_T, encoding: str | None = None, seed: int = 0, **backend_options) -> RunResult:
    """Run `graph` (a NIRGraph or a .nir path) on `inputs` for `T` steps on `backend`: images (N, *input shape)
    under `encoding` (`encoded`; default the graph's own, `direct` unless it says otherwise; `seed` for `rate`)
    or time-varying inputs (N, T, *input shape), step t receiving x[:, t].

    A quantized graph runs in integer arithmetic on the reference as Lava runs it on its fixed_pt models.
    `backend_options` go to the backend's `run` (e.g. `approximate=True`, `record=True`, `device="cuda"`).

    >>> import pipeline, torch
    >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> g = pipeline.convert(ann, torch.rand(64, 4), method="maxnorm")
    >>> run = pipeline.simulate(g, torch.rand(5, 4), T=16)
    >>> run.outputs.shape, run.T
    ((5, 3), 16)
    """
    if backend not in _backends.names():
        raise SpikeportError(f"unknown backend {backend!r}; choose one of: {', '.join(_backends.names())}")
    graph = _graph(graph)
    T = checks.time_steps(T, max_T)
    x = encoded(graph, inputs, T, encoding, seed)
    if "device" in backend_options:
        checks.device(backend_options["device"])
    if backend == "reference" and fixed_point("graph", graph.metadata, "graph") is not None:
        backend_options.setdefault("fixed_point", True)
    return _backends.get(backend).run(graph, x, T, progress=progress, **backend_options)


def energy(graph, inputs=None, *, run: RunResult | None = None, target: str | Path = "cmos45nm", T: int = 32,
           data_movement: bool = False, memory_level: str = "cache_8kb", encoding: str | None = None,
           seed: int = 0) -> EnergyReport:
    """Energy per inference of `graph` on hardware `target` (hwconfigs/NAME.toml or a path), ANN against SNN,
    per layer; spikes come from `run`, or from a reference run on `inputs` for `T` steps under `encoding`
    (default the graph's; the first layer pays ACs per input event under any but `direct`).

    >>> import pipeline, torch
    >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> g = pipeline.convert(ann, torch.rand(64, 4), method="maxnorm")
    >>> report = pipeline.energy(g, torch.rand(5, 4), target="cmos45nm", T=8)
    >>> round(report.ann_joules_per_inference * 1e12, 1)  # (4*8 + 8*3) MACs x 4.6 pJ
    257.6
    """
    from pipeline.hardware.energy import energy_report
    from pipeline.hardware.hwconfig import load_hwconfig
    graph = _graph(graph)
    hw = load_hwconfig(target)
    name = enc.check(encoding if encoding is not None else graph_info(graph)["encoding"])
    if run is None:
        if inputs is None:
            raise SpikeportError("energy() needs the inputs to simulate, or a RunResult as run=")
        run = simulate(graph, inputs, T, backend="reference", encoding=name, seed=seed)
    return energy_report(graph, run, hw, run.T, data_movement=data_movement, memory_level=memory_level,
                         encoding=name)


def quantize(graph, calibration_data, *, target: str | Path = "loihi2", weight_bits: int | None = None,
             input_bits: int = 8, payload_bits: int = 8, netx: bool = False) -> Quantized:
    """`graph` in `target`'s fixed-point formats (integer mantissas, shared exponents in the NIR metadata);
    `calibration_data` (input samples) sets the input and output ranges. `.graph` is the quantized NIRGraph,
    `.layers` the per-layer exponents and clipping. `netx` lays lava-dl netx's formats over the target's
    (pipeline.hardware.quantize.NETX_FORMATS), so that `backends.netx.export_quantized` can write the integers."""
    from pipeline.hardware.quantize import quantize as _quantize
    graph = _graph(graph)
    x = checks.inputs_for(graph, _samples(calibration_data, "calibration_data"), what="calibration_data")
    if weight_bits is not None:
        checks.positive_int("weight_bits", weight_bits)
    return _quantize(graph, target, x, weight_bits=weight_bits, input_bits=checks.positive_int("input_bits", input_bits),
                     payload_bits=checks.positive_int("payload_bits", payload_bits), netx=bool(netx))


def deploy(graph, calibration_data, inputs, labels, out: str | Path, *, target: str | Path = "loihi2", T: int = 32,
           progress: bool = False, encoding: str | None = None, seed: int = 0) -> Bundle:
    """Quantize for `target`, map to cores, measure float vs fixed-point accuracy on (inputs, labels) at `T`
    and write the bundle (model.q.nir, resources.json, report.md/json, model.net where lava-dl's netx can run the
    network: from the target's integers, else from the netx-targeted quantization model.netx.q.nir) into `out`.
    Under a spike `encoding` (default: the graph's) the inputs are encoded (`encoded`), and the input format is
    calibrated on the first CALIBRATION_SPIKE_SAMPLES calibration samples encoded for the quantizer's T = 32."""
    from pipeline.hardware.deploy import deploy as _deploy
    from pipeline.hardware.quantize import CALIBRATION_T
    graph = _graph(graph)
    T = checks.time_steps(T)
    name = enc.check(encoding if encoding is not None else graph_info(graph)["encoding"])
    x = encoded(graph, inputs, T, name, seed)
    y = checks.labels_for(labels, len(x), checks.graph_output_size(graph))
    calib = _samples(calibration_data, "calibration_data")
    if name != "direct":
        calib = calib[:CALIBRATION_SPIKE_SAMPLES]
    calib = encoded(graph, calib, CALIBRATION_T, name, seed, what="calibration_data")
    return _deploy(graph, target, out, calib, x, y, T=T, progress=progress, encoding=name)


def parity(graph, inputs, labels, *, backends: Sequence[str] = ("reference", "lava", "norse", "netx"), T: int = 32,
           approximate: bool = False, tolerances: Tolerances = Tolerances(), progress: bool = False,
           encoding: str | None = None, seed: int = 0) -> dict:
    """`graph` on several backends against the reference: per backend accuracy, agreement, per-layer spike-count
    and output differences, pass/fail with causes (a backend that refuses the graph gets a `refused` row).
    Every backend gets the same inputs, encoded under `encoding` (`encoded`; default the graph's)."""
    from pipeline.reports.parity import run_parity
    names = list(backends)
    unknown = [n for n in names if n not in _backends.names()]
    if unknown or not names:
        raise SpikeportError(f"unknown backend(s) {unknown or names}; choose from: {', '.join(_backends.names())}")
    graph = _graph(graph)
    T = checks.time_steps(T)
    x = encoded(graph, inputs, T, encoding, seed)
    y = checks.labels_for(labels, len(x), checks.graph_output_size(graph))
    return run_parity(graph, x, y, names, T, approximate=approximate, tol=tolerances, progress=progress)


def train(model: nn.Module, dataset: Dataset, *, epochs: int = 30, batch_size: int = 64, lr: float = 3e-3,
          seed: int = 0, device: str = "cpu", progress: bool = False, state_path: str | Path | None = None,
          max_memory_gb: float | None = None, augment: str = "none") -> History:
    """Train an ANN in place on `dataset` (Adam, cosine decay, cross-entropy); per-epoch loss and test accuracy.
    `augment`: "none", "crop" (random crop after 2-pixel zero padding) or "crop-flip" (also left-right flips).
    With `state_path` the state is saved every epoch and an existing one is resumed bit for bit. A run estimated
    to need more than `max_memory_gb` (default: the memory available) is refused."""
    from pipeline.training.ann import TrainConfig, check_augment, train_ann
    if not isinstance(dataset, Dataset):
        raise SpikeportError(f"train() needs a pipeline Dataset (pipeline.load_dataset), got {type(dataset).__name__}")
    checks.dataset_samples(dataset)
    _check_training_memory(model, dataset, "training", 1, batch_size, max_memory_gb)
    cfg = TrainConfig(epochs=checks.positive_int("epochs", epochs), batch_size=checks.positive_int("batch_size",
                      batch_size), lr=checks.finite_positive("lr", lr), seed=checks.seed(seed),
                      device=checks.device(device), augment=check_augment(augment))
    return train_ann(model, dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y, cfg, progress=progress,
                     state_path=state_path)


def train_snn(model: nn.Module, dataset: Dataset, method: str = "snn2ann", *, T: int = 4, epochs: int = 20,
              batch_size: int = 64, lr: float | None = None, seed: int = 0, device: str = "cpu", progress: bool = False,
              state_path: str | Path | None = None, max_T: int = checks.DEFAULT_MAX_T,
              max_memory_gb: float | None = None, **options) -> nn.Module:
    """Train a spiking network directly (snn2ann, joint-asnn, stbp) with `model`'s architecture (a plain chain);
    `options` are the method's own (`pipeline.spiking.registry.get_trainer(method).options()`, e.g. `unit`
    for snn2ann, `neuron` for stbp). The returned net has `history` and `export(input_shape) -> NIRGraph`.
    T above `max_T`, or a run estimated to need more than `max_memory_gb` (default: available), is refused."""
    from pipeline.spiking.registry import check_options, get_trainer
    trainer = get_trainer(method)
    check_options(trainer, options)
    if lr is not None:
        options["lr"] = checks.finite_positive("lr", lr)
    if not isinstance(dataset, Dataset):
        raise SpikeportError(f"train_snn() needs a pipeline Dataset, got {type(dataset).__name__}")
    checks.dataset_samples(dataset)
    T = checks.time_steps(T, max_T)
    _check_training_memory(model, dataset, f"{method} training at T={T}", T, batch_size, max_memory_gb)
    return trainer.train(model, dataset, checks.positive_int("epochs", epochs), seed=checks.seed(seed),
                         device=checks.device(device), progress=progress, T=T,
                         batch_size=checks.positive_int("batch_size", batch_size), state_path=state_path, **options)


# bytes kept per activation value per time step for the backward pass: value, gradient, and for spiking layers
# membrane potential and surrogate derivative, in float32
TRAINING_BYTES_PER_ACTIVATION = 16


def _check_training_memory(model: nn.Module, dataset: Dataset, what: str, T: int, batch_size: int,
                           max_memory_gb: float | None) -> None:
    per_sample = checks.activations_per_sample(model, dataset.input_shape)
    needed = TRAINING_BYTES_PER_ACTIVATION * per_sample * T * checks.positive_int("batch_size", batch_size)
    checks.memory(f"{what} with batches of {batch_size}", needed, max_memory_gb)
