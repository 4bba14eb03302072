"""ANN training with a progress bar, a fixed seed, and a checkpoint written atomically.

`train_ann` trains a model from `pipeline.models`; `save_checkpoint`/`load_checkpoint` keep what is
needed to rebuild it (model name, options, input shape, classes) beside the weights.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pipeline.atomic import write_with


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             device: str = "cpu") -> float:
    """Top-1 accuracy of `model` on (x, y)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            out = model(x[lo:lo + batch_size].to(device))
            correct += int((out.argmax(1).cpu() == y[lo:lo + batch_size]).sum())
    return correct / max(len(x), 1)


def train_ann(model: torch.nn.Module, train_x, train_y, test_x, test_y, cfg: TrainConfig,
              progress: bool = True) -> History:
    """Adam with cosine learning-rate decay and cross-entropy; returns per-epoch loss and accuracies."""
    seed_everything(cfg.seed)
    model.to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    gen = torch.Generator().manual_seed(cfg.seed)
    history = History()
    bar = tqdm(range(cfg.epochs), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        total = 0.0
        for lo in range(0, len(order), cfg.batch_size):
            idx = order[lo:lo + cfg.batch_size]
            loss = F.cross_entropy(model(train_x[idx].to(cfg.device)), train_y[idx].to(cfg.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        acc = evaluate(model, test_x, test_y, device=cfg.device)
        history.epochs.append({"epoch": epoch + 1, "loss": total / len(train_x), "test_accuracy": acc})
        bar.set_postfix(loss=f"{total / len(train_x):.3f}", test_acc=f"{acc:.3f}")
    return history


def save_checkpoint(path, model: torch.nn.Module, *, model_name: str, input_shape, num_classes: int,
                    options: dict | None = None, extra: dict | None = None) -> Path:
    """Write the weights and what rebuilds the model, atomically."""
    state = {
        "format": "spikeport-checkpoint-1",
        "model": model_name,
        "options": dict(options or {}),
        "input_shape": tuple(int(d) for d in input_shape),
        "num_classes": int(num_classes),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    return write_with(path, lambda p: torch.save(state, p))
