"""Training loop shared by snn2ann, joint-asnn and stbp: seeded, resumable (pipeline.training.resume), data-parallel
(pipeline.training.distributed), with both branches' validation accuracy recorded per epoch and plotted (SNN2ANN Fig. 11-12).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.training import distributed
from pipeline.errors import SpikeportError
from pipeline.training.resume import load_state, save_state
from pipeline.training.ann import seed_everything

BRANCHES = ("ann", "snn")


@dataclass
class SpikingConfig:
    """Optimisation settings (Adam with cosine decay, as both papers train)."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"


class SpikingNet(nn.Module):
    """What `fit` trains: `forward(x, y)` is the training loss (DistributedDataParallel calls forward);
    `predict(x)` gives each branch's logits in eval mode ({"snn": ...} and, for hybrid methods, "ann");
    `export(input_shape, source)` the trained SNN as a NIR graph; `settings()` what a resumed run must share."""

    method = ""

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def export(self, input_shape, source: str = ""):
        raise NotImplementedError

    def settings(self) -> dict:
        raise NotImplementedError


def evaluate(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
             device: str = "cpu") -> dict[str, float]:
    """Top-1 accuracy of each branch of `net` on (x, y)."""
    net.eval()
    correct: dict[str, int] = {}
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            for branch, logits in net.predict(x[lo:lo + batch_size].to(device)).items():
                hits = int((logits.argmax(1).cpu() == y[lo:lo + batch_size]).sum())
                correct[branch] = correct.get(branch, 0) + hits
    return {branch: n / max(len(x), 1) for branch, n in correct.items()}


def train_on(net: SpikingNet, dataset, epochs: int, *, seed: int, device: str, progress: bool, batch_size: int,
             lr: float, weight_decay: float = 0.0, state_path=None, train_slice: slice | None = None):
    """`fit` `net` on `dataset`'s training split (or `train_slice` of it), testing on its test split; the net
    comes back on the CPU in eval mode with its per-epoch `history`."""
    cut = train_slice or slice(None)
    cfg = SpikingConfig(epochs=int(epochs), batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                        device=device)
    net.history = fit(net, dataset.train_x[cut], dataset.train_y[cut], dataset.test_x, dataset.test_y, cfg,
                      progress=progress, state_path=state_path)
    return net.cpu().eval()


def fit(net: SpikingNet, train_x, train_y, test_x, test_y, cfg: SpikingConfig, *, progress: bool = True,
        state_path=None) -> list[dict]:
    """Train `net` by its loss; returns per epoch the mean loss, the training seconds (evaluation excluded) and
    each branch's test accuracy.

    Under torchrun each process takes its shard of every batch (same order on all, from the seed) and
    DistributedDataParallel averages the gradients; only rank 0 writes the state file. With `state_path` the
    state is saved after every epoch and an existing file is resumed bit for bit (pipeline.training.resume).
    """
    seed_everything(cfg.seed)
    net.to(cfg.device)
    engine = distributed.wrap(net)
    rank, _ = distributed.world()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    gen = torch.Generator().manual_seed(cfg.seed)
    settings = {**{k: v for k, v in asdict(cfg).items() if k != "device"}, **net.settings()}
    history: list[dict] = []
    start = 0
    if state_path is not None and Path(state_path).exists():
        resumed = load_state(state_path, model=net, optimizer=opt, scheduler=sched, generator=gen)
        if resumed.extra.get("config") != settings:
            raise SpikeportError(f"training state {state_path} was written with other settings "
                                 f"({resumed.extra.get('config')}); delete it or use the same settings")
        start, history = resumed.epoch, resumed.history
    bar = tqdm(range(start, cfg.epochs), desc=f"{net.method} training", unit="epoch", initial=start,
               total=cfg.epochs, disable=not progress or rank != 0)
    for epoch in bar:
        net.train()
        order = torch.randperm(len(train_x), generator=gen)
        total, t0 = 0.0, time.perf_counter()
        for lo in range(0, len(order), cfg.batch_size):
            idx = distributed.shard(order[lo:lo + cfg.batch_size])
            loss = engine(train_x[idx].to(cfg.device), train_y[idx].to(cfg.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        seconds = time.perf_counter() - t0
        acc = evaluate(net, test_x, test_y, device=cfg.device)
        history.append({"epoch": epoch + 1, "loss": total / len(train_x), "seconds": seconds,
                        **{f"{b}_accuracy": acc[b] for b in BRANCHES if b in acc}})
        bar.set_postfix({"loss": f"{history[-1]['loss']:.3f}", **{b: f"{a:.3f}" for b, a in acc.items()}})
        if state_path is not None and rank == 0:
            save_state(state_path, model=net, optimizer=opt, scheduler=sched, generator=gen, epoch=epoch + 1,
                       history=history, extra={"config": settings})
    return history


def branch_plot(path, history: list[dict], title: str) -> Path:
    """Validation accuracy per epoch of the ANN and SNN branches (the SNN2ANN paper's Fig. 11-12 view)."""
    from pipeline.io.render import finish, plt
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [row["epoch"] for row in history]
    for branch, style in (("ann", "o-"), ("snn", "s--")):
        values = [row.get(f"{branch}_accuracy") for row in history]
        if all(v is not None for v in values) and values:
            ax.plot(epochs, [100 * v for v in values], style, label=f"{branch.upper()} branch")
    return finish(fig, ax, path, "epoch", "validation accuracy (%)", title)
