"""Where the values of a NIR edge live in Lava: which ports carry them, in what element order, how late.

Lava holds images as (X, Y, C) = torch's (C, H, W) transposed to (W, H, C); a `Signal` records the
permutation from Lava's flat order to torch's C-order so weights, parameters and recordings line up.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def lava_shape(torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's shape for a torch tensor shape: (C, H, W) -> (W, H, C); vectors unchanged."""
    if len(torch_shape) == 3:
        c, h, w = torch_shape
        return (w, h, c)
    if len(torch_shape) == 1:
        return tuple(torch_shape)
    raise ValueError(f"tensors of shape {tuple(torch_shape)} have no Lava layout (only (C, H, W) and (features,))")


def canonical_perm(torch_shape: tuple[int, ...]) -> np.ndarray:
    """perm[i] = torch C-order flat index of the element at Lava flat index i."""
    idx = np.arange(int(np.prod(torch_shape)))
    if len(torch_shape) == 3:
        return idx.reshape(torch_shape).transpose(2, 1, 0).ravel()
    return idx


@dataclass(frozen=True, eq=False)
class Signal:
    """The value on a NIR edge: the sum of what `ports` send, plus the constant `offset`.

    `offset` (torch layout, or None for zero) carries biases forward until a neuron takes them as its
    input bias. `delay` is how many steps after the input the value for sample step 0 appears.
    """

    ports: tuple
    torch_shape: tuple[int, ...]
    lava_shape: tuple[int, ...]
    perm: np.ndarray
    delay: int
    offset: np.ndarray | None = None

    @classmethod
    def canonical(cls, ports, torch_shape, delay: int, offset=None) -> "Signal":
        torch_shape = tuple(int(d) for d in torch_shape)
        return cls(tuple(ports), torch_shape, lava_shape(torch_shape), canonical_perm(torch_shape), delay, offset)

    @property
    def is_canonical(self) -> bool:
        return (self.lava_shape == lava_shape(self.torch_shape)
                and np.array_equal(self.perm, canonical_perm(self.torch_shape)))

    def to_lava(self, value) -> np.ndarray:
        """A parameter given in torch layout (broadcast to `torch_shape`) rearranged into Lava's layout."""
        flat = np.broadcast_to(np.asarray(value, np.float64), self.torch_shape).reshape(-1)
        return flat[self.perm].reshape(self.lava_shape)

    def to_torch(self, value: np.ndarray, lead: int) -> np.ndarray:
        """Arrays with `lead` leading axes followed by Lava's layout, returned in torch layout."""
        value = np.asarray(value)
        head = value.shape[:lead]
        flat = value.reshape(*head, -1)
        out = np.empty_like(flat)
        out[..., self.perm] = flat
        return out.reshape(*head, *self.torch_shape)

    def bias(self) -> np.ndarray:
        """The constant offset in Lava layout (zeros when there is none)."""
        return self.to_lava(0.0 if self.offset is None else self.offset)
