"""Resumable training: one atomic file holding model, optimizer, scheduler, epoch, history and every RNG state.

A loop calls `save_state` after each epoch and `load_state` at start, so a killed run continues bit for bit.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.io.atomic import write_with
from pipeline.errors import SpikeportError

FORMAT = "spikeport-training-state-1"


@dataclass
class TrainingState:
    """What a loop needs besides the objects `load_state` restores in place."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def save_state(path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int, history: list[dict],
               scheduler=None, generator: torch.Generator | None = None, extra: dict | None = None) -> Path:
    """Write the state after `epoch` completed epochs, atomically (the previous file survives a crash)."""
    np_state = np.random.get_state()
    state = {
        "format": FORMAT,
        "epoch": int(epoch),
        "history": list(history),
        "extra": dict(extra or {}),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
            "python": random.getstate(),
            "generator": None if generator is None else generator.get_state(),
        },
    }
    return write_with(path, lambda p: torch.save(state, p))


def load_state(path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler=None,
               generator: torch.Generator | None = None) -> TrainingState:
    """Restore model, optimizer, scheduler and RNGs from `path` in place; return epoch, history and extras."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise SpikeportError(f"training state {path} cannot be read ({type(err).__name__}); delete it to start "
                             "afresh") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SpikeportError(f"{path} is not a spikeport training state ({FORMAT}); delete it to start afresh")
    missing = [key for key in ("epoch", "history", "extra", "model", "optimizer", "scheduler", "rng") if key not in state]
    if missing:
        raise SpikeportError(f"training state {path} lacks {', '.join(map(repr, missing))} (damaged or hand-edited); "
                             "delete it to start afresh")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise SpikeportError(f"training state {path} was written for another architecture "
                             f"({str(err).splitlines()[1].strip()[:200]}); delete it or choose another path") from None
    try:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        random.setstate(rng["python"])
        if generator is not None and rng["generator"] is not None:
            generator.set_state(rng["generator"])
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as err:
        raise SpikeportError(f"training state {path}: its optimizer, scheduler or random-number state cannot be "
                             f"restored ({type(err).__name__}: {str(err)[:120]}); delete it to start afresh") from None
    return TrainingState(epoch=state["epoch"], history=state["history"], extra=state["extra"])
