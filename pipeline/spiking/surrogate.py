"""Spiking neurons that backpropagate: the rectangular surrogate gradient and IF/LIF steps built on it.

Forward passes are those of backends/neurons.py with core NIR's reset to zero; STBP and Joint A-SNN train with them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

NEURONS = ("if", "lif")


class RectangularSpike(torch.autograd.Function):
    """o = [u > V_th] forward; do/du = (1/a) [|u - V_th| < a/2] backward (SNN2ANN Eq. 3, Joint A-SNN Eq. 5)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, v_threshold: torch.Tensor, a: float) -> torch.Tensor:
        ctx.save_for_backward(u, v_threshold)
        ctx.a = a
        return (u > v_threshold).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, v_threshold = ctx.saved_tensors
        window = ((u - v_threshold).abs() < ctx.a / 2).to(grad.dtype) / ctx.a
        return grad * window, None, None


@dataclass(frozen=True)
class Neuron:
    """A spiking layer's dynamics: `if` (SNN2ANN Eq. 1-2) or `lif` (Joint A-SNN Eq. 1-2) with decay `decay`.

    Both fire on u > V_th and reset to 0; the reset uses the spike detached from the graph (the "detaching
    o^{t-1}" of SNN2ANN Eq. 4), so gradients flow through the membrane but not through the reset decision.
    """

    kind: str = "if"
    v_threshold: float = 0.5
    decay: float = 0.5
    width: float = 1.0

    def __post_init__(self):
        if self.kind not in NEURONS:
            raise ValueError(f"neuron must be one of {NEURONS}, got {self.kind!r}")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"LIF decay must be in (0, 1), got {self.decay}")
        if self.width <= 0 or self.v_threshold <= 0:
            raise ValueError("surrogate width a and threshold must be positive")

    def run(self, currents: torch.Tensor, v_threshold: torch.Tensor | None = None) -> torch.Tensor:
        """Spikes o^t for input currents c^t of shape (T, B, ...): u^t = k u^{t-1}(1 - o^{t-1}) + c^t with k = 1
        (IF) or the decay tau (LIF); o^t = [u^t > V_th]. `v_threshold` (broadcast to (B, ...)) overrides the scalar."""
        th = torch.as_tensor(self.v_threshold, dtype=currents.dtype, device=currents.device) \
            if v_threshold is None else v_threshold
        keep = 1.0 if self.kind == "if" else self.decay
        u = torch.zeros_like(currents[0])
        spikes = []
        grad = torch.is_grad_enabled()
        for c in currents:
            u = keep * u + c
            o = RectangularSpike.apply(u, th, self.width) if grad else (u > th).to(u.dtype)
            u = u * (1.0 - o.detach())
            spikes.append(o)
        return torch.stack(spikes)
