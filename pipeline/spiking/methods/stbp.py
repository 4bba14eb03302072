"""STBP (Wu et al. 2018/2019), the baseline SNN2ANN and Joint A-SNN measure their cost against: the SNN alone,
trained by backpropagation through time with the rectangular surrogate gradient (SNN2ANN Eq. 3-4).

IF (SNN2ANN Eq. 1-2) or LIF (Joint A-SNN Eq. 1-2) neurons with reset to zero, batch norm over all time steps,
an integrate-only classifier (Joint A-SNN Eq. 3); the same chain blocks and export as the other two methods.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.spiking.registry import TrainingMethod, register
from pipeline.errors import SpikeportError
from pipeline.spiking.hybrid import chain_blocks, export_blocks, run_snn
from pipeline.spiking.train import SpikingNet, train_on
from pipeline.spiking.surrogate import Neuron
from pipeline.training.ann import seed_everything


class STBP(SpikingNet):
    """The SNN over the blocks of a chain model; `forward(x, y)` is the cross-entropy of its averaged output."""

    method = "stbp"

    def __init__(self, blocks: nn.ModuleList, T: int, neuron: Neuron):
        super().__init__()
        if int(T) < 1:
            raise SpikeportError(f"stbp: T must be a positive integer, got {T!r}")
        self.blocks, self.T, self.neuron = blocks, int(T), neuron

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.blocks
        return run_snn(blocks, x, self.T, self.neuron, lambda i: (blocks[i].layer.weight, blocks[i].layer.bias),
                       lambda i: blocks[i].bn)[0]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(x), y)

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"snn": self.logits(x)}

    def export(self, input_shape, source: str = ""):
        blocks, th = self.blocks, torch.tensor(self.neuron.v_threshold)
        return export_blocks(blocks, input_shape, weights=[(b.layer.weight, b.layer.bias) for b in blocks],
                             bns=[b.bn for b in blocks], thresholds=[th] * len(blocks), neuron=self.neuron,
                             bias_steps=1, method=self.method, source=source)

    def settings(self) -> dict:
        return {"method": self.method, "T": self.T,
                "neuron": [self.neuron.kind, self.neuron.v_threshold, self.neuron.decay, self.neuron.width]}


def train(ann: nn.Module, dataset, epochs: int, *, seed: int = 0, device: str = "cpu", progress: bool = False,
          T: int = 4, neuron: str = "if", decay: float = 0.5, v_threshold: float = 0.5, batch_size: int = 64,
          lr: float = 3e-3, state_path=None, train_slice: slice | None = None) -> STBP:
    """STBP from `ann`'s architecture and initial weights, trained `epochs` epochs (Adam, cosine decay)."""
    seed_everything(seed)
    net = STBP(chain_blocks(ann, dataset.input_shape), T, Neuron(neuron, v_threshold=v_threshold, decay=decay))
    return train_on(net, dataset, epochs, seed=seed, device=device, progress=progress, batch_size=batch_size, lr=lr,
                    state_path=state_path, train_slice=train_slice)


register(TrainingMethod("stbp", "spatio-temporal backpropagation with the rectangular surrogate gradient (SNN2ANN Eq. 3); "
                        "IF or LIF neurons, reset to zero", train))
