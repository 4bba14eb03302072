"""Rebuild a torch model for conversion: from a spikeport checkpoint, or a user's `package.module:factory`.

Errors name the checkpoint or factory and say what does not match.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from pipeline import checks
from pipeline.data.zoo import build_model
from pipeline.errors import SpikeportError


def import_factory(spec: str):
    """The callable named by 'package.module:factory'."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SpikeportError(f"--model {spec!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SpikeportError(f"--model {spec!r}: cannot import {module_name!r} ({err})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SpikeportError(f"--model {spec!r}: {module_name!r} has no callable {attr!r}")
    return factory


def load_model(checkpoint, model_spec: str | None = None, input_shape=None) -> tuple[torch.nn.Module, dict]:
    """The model and the checkpoint dict; `model_spec` overrides the architecture stored in the checkpoint.
    With `input_shape` (the data's), a checkpoint written for other data is refused before its model is built."""
    path = Path(checkpoint)
    if model_spec:
        factory = import_factory(model_spec)
        try:
            model = factory()
        except TypeError as err:
            raise SpikeportError(f"--model {model_spec!r} cannot be called without arguments ({err}); give a "
                                 "factory that builds the model with no arguments") from None
        if not isinstance(model, torch.nn.Module):
            raise SpikeportError(f"--model {model_spec!r} returned {type(model).__name__}, not a torch.nn.Module")
        state = _state_dict_file(path)
    else:
        state = load_checkpoint(path)
        _check_shape(path, state, input_shape)
        try:
            model = build_model(state["model"], state["input_shape"], state["num_classes"], **state.get("options", {}))
        except (KeyError, ValueError, TypeError) as err:
            raise SpikeportError(f"checkpoint {path} does not describe a model spikeport can build "
                                 f"({type(err).__name__}: {err}); write it with `spikeport train`, or pass "
                                 "--model package.module:factory") from None
    _check_finite(path, state["state_dict"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        summary = str(err).splitlines()[1:3]
        raise SpikeportError(f"checkpoint {path} does not fit the model's architecture: "
                             f"{' '.join(s.strip() for s in summary)[:300]}") from None
    return model.eval(), state


def _check_shape(path: Path, state: dict, input_shape) -> None:
    if "input_shape" not in state:
        return
    try:
        shape = checks.input_size(state["input_shape"])
    except SpikeportError as err:
        raise SpikeportError(f"checkpoint {path}: {err}") from None
    if input_shape is not None and shape != tuple(input_shape):
        raise SpikeportError(f"checkpoint {path} was trained on samples of shape {shape}, the data set's are "
                             f"{tuple(input_shape)}; choose the matching --dataset")


def _check_finite(path: Path, state_dict) -> None:
    """Name the first tensor with NaN/Inf values (a diverged training run), before conversion spreads them."""
    if not isinstance(state_dict, dict):
        raise SpikeportError(f"checkpoint {path}: 'state_dict' is a {type(state_dict).__name__}, not a dict of tensors")
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise SpikeportError(f"checkpoint {path}: tensor {key!r} has {bad} NaN/Inf value(s); the training "
                                 "diverged or the file is damaged - retrain (e.g. with a lower --lr)")


def _read(path: Path):
    if not path.is_file():
        raise SpikeportError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise SpikeportError(f"checkpoint {path} cannot be read ({type(err).__name__}); the file is truncated or "
                             "not a torch checkpoint") from None


def load_checkpoint(path) -> dict:
    """A checkpoint written by `pipeline.training.ann.save_checkpoint`."""
    path = Path(path)
    state = _read(path)
    if not isinstance(state, dict) or "state_dict" not in state or "model" not in state:
        raise SpikeportError(f"checkpoint {path} was not written by `spikeport train` (no model name); "
                             "pass --model package.module:factory for your own architecture")
    return state


def _state_dict_file(path: Path) -> dict:
    """A spikeport checkpoint or a bare state_dict saved with torch.save."""
    raw = _read(path)
    if isinstance(raw, dict) and "state_dict" in raw:
        return raw
    if isinstance(raw, dict) and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return {"state_dict": raw}
    raise SpikeportError(f"checkpoint {path} holds neither a spikeport checkpoint nor a state_dict")
