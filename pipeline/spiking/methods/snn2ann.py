"""SNN2ANN (Tang et al., "SNN2ANN: A Fast and Memory-Efficient Training Framework for Spiking Neural Networks").

A weight-shared ANN and IF-neuron SNN (Fig. 4, Algorithm 1): per layer the SNN runs T steps without gradient,
its accumulated spikes replace the ANN activation through ReSU (Eq. 8, straight-through Eq. 10-12) or STSU
(Eq. 13-15), and backpropagation runs on the ANN branch only. Adaptive threshold adjustment (Eq. 16-17) raises
a layer's thresholds while the ANN-inactive neurons fire; batch norm reaches the SNN as weights and biases
folded with the moving averages of Eq. 19-20. Max pooling acts on each step's convolution output (Sec. IV.B.2).

Readings where the paper leaves room, kept explicit:
- Alg. 1 sets x_q^0 = x; the ANN branch here takes the accumulated input T x, the SNN encoder's total input over
  T steps, so that every ANN pre-activation is exactly the total input current of the SNN layer (Eq. 20 spreads
  the bias over T steps for that reason).
- Eq. 20 as printed omits gamma on (b - mu); the fold here keeps it (b_s = ((b - mu) gamma/s + beta)/T), the only
  fold under which the SNN's total current equals BN(W x_q + b) of Eq. 18.
- mu~ and sigma~ of Eq. 19-20 are batch norm's running averages with momentum alpha = 0.1 (Sec. IV.B.3); the
  variance is averaged rather than the standard deviation, as torch's BatchNorm does.
- Omega of Eq. 17, "the positions of noisy spikes", is read as the positions where the ANN branch is inactive
  (ReLU output 0): every spike there is noise, and the mean accumulated spike count over them is compared with
  epsilon. Thresholds are per channel (conv) or per neuron (linear), drawn from U(0, 1) (Alg. 1, Init) and scaled
  together per layer by Eq. 16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.training import distributed
from pipeline.spiking.registry import TrainingMethod, register
from pipeline.errors import SpikeportError
from pipeline.spiking.hybrid import chain_blocks, export_blocks, repeat_steps
from pipeline.spiking.train import SpikingNet, train_on
from pipeline.spiking.surrogate import Neuron
from pipeline.training.ann import seed_everything

UNITS = ("stsu", "resu", "none")
ATA_TAU = 0.1     # Sec. IV.B.3
ATA_ALPHA = 0.1   # Sec. IV.B.3
ATA_EPSILON = 0.1  # not given in the paper; at 0.2 ATA never fires on digits
BN_MOMENTUM = 0.1  # alpha of Eq. 19-20, Sec. IV.B.3


def stsu(x_r: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Eq. 13: x_q = sum_t o^t + x_r - c with c = x_r held constant: forward exactly the spike count, gradient
    d x_q / d x_r = 1 (Eq. 14-15). (x_r - x_r) is exactly 0, so the count is returned bit for bit."""
    return (x_r - x_r.detach()) + counts


def resu(x_r: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Eq. 8: x_q = Sign(x_r) o sum_t o^t (spikes only where the ReLU is active), with the straight-through
    gradient d L/d x_r = d L/d x_q of Eq. 10 (spike counts carry no gradient, Eq. 9)."""
    return (x_r - x_r.detach()) + (x_r > 0).to(x_r.dtype) * counts


def ata_update(v_threshold: torch.Tensor, x_r: torch.Tensor, counts: torch.Tensor, *, tau: float = ATA_TAU,
               alpha: float = ATA_ALPHA, epsilon: float = ATA_EPSILON) -> bool:
    """Eq. 16-17 in place: V_th <- V_th + xi (1 - alpha) V_th, xi = tau max(0, Sign(mean_Omega(counts) - eps)),
    Omega = positions where the ANN branch is inactive (x_r <= 0). Summed over processes when distributed.
    Returns whether the thresholds were raised."""
    inactive = x_r.detach() <= 0
    noise, positions = distributed.all_sum(counts[inactive].sum(), inactive.sum())
    raised = bool(positions > 0 and noise / positions > epsilon)
    if raised:
        v_threshold.mul_(1.0 + tau * (1.0 - alpha))
    return raised


class SNN2ANN(SpikingNet):
    """Weight-shared ANN/SNN branches over the blocks of a chain model (Fig. 4); `forward(x, y)` is Algorithm 1's
    loss on the ANN branch. `unit` is stsu, resu or none (plain ReLU: the ablation without spiking mapping)."""

    method = "snn2ann"

    def __init__(self, blocks: nn.ModuleList, T: int, unit: str = "stsu", ata: bool = True,
                 epsilon: float = ATA_EPSILON):
        super().__init__()
        if unit not in UNITS:
            raise SpikeportError(f"snn2ann: unit must be one of {UNITS}, got {unit!r}")
        if int(T) < 1:
            raise SpikeportError(f"snn2ann: T must be a positive integer, got {T!r}")
        self.blocks, self.T, self.unit, self.ata, self.epsilon = blocks, int(T), unit, bool(ata), float(epsilon)
        self.neuron = Neuron("if")
        for i, block in enumerate(blocks):
            if block.bn is not None:
                block.bn.momentum = BN_MOMENTUM
            if block.spiking:
                shape = (block.layer.out_channels, 1, 1) if isinstance(block.layer, nn.Conv2d) \
                    else (block.layer.out_features,)
                self.register_buffer(f"v_th{i}", torch.rand(shape))  # Alg. 1 Init: V_th ~ U(0, 1)

    def threshold(self, i: int) -> torch.Tensor:
        return getattr(self, f"v_th{i}")

    def folded(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The SNN's per-step (W_s, b_s) of block i: Eq. 19-20 with the running averages mu~, sigma~."""
        block = self.blocks[i]
        w = block.layer.weight.detach()
        b = block.layer.bias.detach() if block.layer.bias is not None else w.new_zeros(w.shape[0])
        bn = block.bn
        if bn is not None:
            s = torch.rsqrt(bn.running_var + bn.eps)
            if bn.affine:
                s = s * bn.weight.detach()
            w = w * s.reshape(-1, *([1] * (w.ndim - 1)))
            b = (b - bn.running_mean) * s + (bn.bias.detach() if bn.affine else 0.0)
        return w, b / self.T

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ANN branch logits, SNN logits = classifier input current summed over T) for a batch, layer by layer
        as Algorithm 1; in training mode batch norm updates its averages and ATA adjusts the thresholds."""
        T, batch = self.T, x.shape[0]
        x_q, spikes = T * x, repeat_steps(x, T)
        for i, block in enumerate(self.blocks):
            x_q, spikes = block.pre(x_q), block.pre(spikes)
            z = block.after(block.weighted(x_q, block.layer.weight, block.layer.bias))
            with torch.no_grad():
                c = block.weighted(spikes, *self.folded(i))
                c = block.pool(c) if block.pool is not None else c
                c = c.reshape(T, batch, *c.shape[1:])
            if not block.spiking:
                return z, c.sum(0)
            x_r = torch.relu(z)
            with torch.no_grad():
                o = self.neuron.run(c, self.threshold(i))
                counts = o.sum(0)
                if self.training and self.ata:
                    ata_update(self.threshold(i), x_r, counts, epsilon=self.epsilon)
            x_q = stsu(x_r, counts) if self.unit == "stsu" else resu(x_r, counts) if self.unit == "resu" else x_r
            spikes = o.reshape(T * batch, *o.shape[2:])
        raise AssertionError("chain_blocks guarantees a final classifier")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.branches(x)[0], y)

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        ann, snn = self.branches(x)
        return {"ann": ann, "snn": snn}

    def export(self, input_shape, source: str = ""):
        """IF neurons with reset to zero (Eq. 1-2) at the trained thresholds; BN folded, bias spread over T."""
        blocks = self.blocks
        return export_blocks(blocks, input_shape, weights=[(b.layer.weight, b.layer.bias) for b in blocks],
                             bns=[b.bn for b in blocks],
                             thresholds=[self.threshold(i) if b.spiking else None for i, b in enumerate(blocks)],
                             neuron=self.neuron, bias_steps=self.T, method=self.method, source=source)

    def settings(self) -> dict:
        return {"method": self.method, "T": self.T, "unit": self.unit, "ata": self.ata, "epsilon": self.epsilon}


def train(ann: nn.Module, dataset, epochs: int, *, seed: int = 0, device: str = "cpu", progress: bool = False,
          T: int = 4, unit: str = "stsu", ata: bool = True, epsilon: float = ATA_EPSILON, batch_size: int = 64,
          lr: float = 1e-3, state_path=None, train_slice: slice | None = None) -> SNN2ANN:
    """SNN2ANN from `ann`'s architecture and initial weights, trained `epochs` epochs on `dataset` (Adam, lr 1e-3,
    Sec. IV.B.3). The returned net keeps its per-epoch `history`."""
    seed_everything(seed)
    net = SNN2ANN(chain_blocks(ann, dataset.input_shape), T, unit=unit, ata=ata, epsilon=epsilon)
    return train_on(net, dataset, epochs, seed=seed, device=device, progress=progress, batch_size=batch_size, lr=lr,
                    state_path=state_path, train_slice=train_slice)


register(TrainingMethod("snn2ann", "weight-shared ANN/SNN training through ReSU/STSU spike mapping with adaptive thresholds "
                        "(Tang et al., Alg. 1); IF neurons, reset to zero", train))
