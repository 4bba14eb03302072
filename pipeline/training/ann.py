"""ANN training with a progress bar, a fixed seed, optional augmentation, and a checkpoint written atomically.

`train_ann` trains a model from `pipeline.data.zoo`; `save_checkpoint`/`load_checkpoint` keep what is
needed to rebuild it (model name, options, input shape, classes) beside the weights.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pipeline.io.atomic import write_with
from pipeline.errors import SpikeportError
from pipeline.training.resume import load_state, save_state


AUGMENTATIONS = ("none", "crop", "crop-flip")
CROP_PADDING = 2  # pixels of zero padding before the random crop back to the image size


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    augment: str = "none"   # one of AUGMENTATIONS


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512, device: str = "cpu") -> np.ndarray:
    """Top-1 class of `model` for every sample of `x`."""
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(x[lo:lo + batch_size].to(device)).argmax(1).cpu().numpy()
                               for lo in range(0, len(x), batch_size)] or [np.zeros(0, np.int64)])


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             device: str = "cpu") -> float:
    """Top-1 accuracy of `model` on (x, y)."""
    return float((predict(model, x, batch_size, device) == np.asarray(y)).mean()) if len(x) else 0.0


def check_augment(mode: str) -> str:
    if mode not in AUGMENTATIONS:
        raise SpikeportError(f"unknown augmentation {mode!r}; choose one of: {', '.join(AUGMENTATIONS)}")
    return mode


def augment(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """A training batch (N, C, H, W) augmented per sample: "crop" pads CROP_PADDING zero pixels on every side and
    crops a random H x W window; "crop-flip" also mirrors each sample left-right with probability 1/2."""
    if check_augment(mode) == "none":
        return x
    n, _, height, width = x.shape
    span = 2 * CROP_PADDING + 1
    top = torch.randint(0, span, (n, 1, 1, 1), generator=generator)
    left = torch.randint(0, span, (n, 1, 1, 1), generator=generator)
    padded = F.pad(x, (CROP_PADDING,) * 4)
    rows = (top + torch.arange(height).view(1, 1, height, 1)).expand(-1, x.shape[1], -1, padded.shape[3])
    window = padded.gather(2, rows.to(x.device))
    cols = (left + torch.arange(width).view(1, 1, 1, width)).expand(-1, x.shape[1], height, -1)
    out = window.gather(3, cols.to(x.device))
    if mode == "crop-flip":
        flip = (torch.rand(n, generator=generator) < 0.5).view(n, 1, 1, 1).to(x.device)
        out = torch.where(flip, out.flip(3), out)
    return out


def _settings(cfg: TrainConfig) -> dict:
    """The settings a resumed run must share with the interrupted one (the device may differ; augment="none"
    is left out, so states written before augmentation existed still resume)."""
    return {k: v for k, v in asdict(cfg).items() if k != "device" and not (k == "augment" and v == "none")}


def train_ann(model: torch.nn.Module, train_x, train_y, test_x, test_y, cfg: TrainConfig,
              progress: bool = True, state_path=None) -> History:
    """Adam with cosine learning-rate decay and cross-entropy, on batches augmented by `cfg.augment`
    (`augment`); returns per-epoch loss and accuracies.

    With `state_path`, the full training state is saved there after every epoch and, when the file exists,
    training resumes from it: a resumed run ends with the same weights, bit for bit, as an uninterrupted one.
    """
    check_augment(cfg.augment)
    seed_everything(cfg.seed)
    model.to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    gen = torch.Generator().manual_seed(cfg.seed)
    history = History()
    start = 0
    if state_path is not None and Path(state_path).exists():
        resumed = load_state(state_path, model=model, optimizer=opt, scheduler=sched, generator=gen)
        if resumed.extra.get("config") != _settings(cfg):
            raise SpikeportError(f"training state {state_path} was written with other settings "
                                 f"({resumed.extra.get('config')}); delete it or use the same settings")
        start, history.epochs = resumed.epoch, resumed.history
    bar = tqdm(range(start, cfg.epochs), desc="training", unit="epoch", disable=not progress,
               initial=start, total=cfg.epochs)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        total = 0.0
        for lo in range(0, len(order), cfg.batch_size):
            idx = order[lo:lo + cfg.batch_size]
            batch = augment(train_x[idx], cfg.augment, gen).to(cfg.device)
            loss = F.cross_entropy(model(batch), train_y[idx].to(cfg.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        acc = evaluate(model, test_x, test_y, device=cfg.device)
        history.epochs.append({"epoch": epoch + 1, "loss": total / len(train_x), "test_accuracy": acc})
        bar.set_postfix(loss=f"{total / len(train_x):.3f}", test_acc=f"{acc:.3f}")
        if state_path is not None:
            save_state(state_path, model=model, optimizer=opt, scheduler=sched, generator=gen, epoch=epoch + 1,
                       history=history.epochs, extra={"config": _settings(cfg)})
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
