"""Trainable activations that a conversion method puts in place of ReLU before training.

Each converts to one IF layer; `scale()` is the activation value that maps to a spike at every step.
"""
from __future__ import annotations

import torch
from torch import nn


class SpikingActivation(nn.Module):
    """Base class: the tracer turns every instance into an IF node whose balancing scale is `scale()`."""

    def scale(self) -> torch.Tensor:
        """lambda of this layer: a scalar tensor (layer-wise) or one value per channel, shape (C, 1, 1)."""
        raise NotImplementedError


def replace_relus(model: nn.Module, factory, prefix: str = "") -> nn.Module:
    """Replace every nn.ReLU module of `model` in place by `factory(qualified_name)` (the dotted name
    `named_modules` gives it); returns `model`."""
    for name, child in list(model.named_children()):
        qualified = f"{prefix}{name}"
        if isinstance(child, nn.ReLU):
            setattr(model, name, factory(qualified))
        else:
            replace_relus(child, factory, prefix=f"{qualified}.")
    return model
