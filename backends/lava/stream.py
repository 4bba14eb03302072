"""The input of a Lava run as a stream of blocks of steps, the dataset Lava's own `SpikeDataloader` reads:
the samples play back to back, T steps each, and only one block is ever materialised in Lava's layout.

Direct encoding repeats a sample's tensor at each of its steps; time-varying input (N, T, ...) gives step t
`x[:, t]`. Binary, signed and graded values pass unchanged (graded spikes); a quantized graph gets the
integers of its input format (`backends.fixedpoint.quantize_input`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends import fixedpoint
from backends.lava.layout import Signal

BLOCK_BYTES = 4 * 2**20   # a block of the stream holds at most this many bytes (at least one step)
SOURCE_DELAY = 1           # SpikeDataloader sends a block's first step one step after it loads it


@dataclass(frozen=True)
class InputFormat:
    """A quantized graph's input format (graph metadata `fixed_point`): integers of `bits` bits per `scale`."""

    scale: float
    bits: int
    signed: bool

    @classmethod
    def of(cls, table: dict | None) -> "InputFormat | None":
        if table is None:
            return None
        return cls(float(table["input_scale"]), int(table["input_bits"]), bool(table["input_signed"]))


def time_varying(inputs_shape: tuple[int, ...], input_shape: tuple[int, ...], T: int) -> bool:
    """Whether inputs of shape `inputs_shape` are time-varying (N, T, *input_shape) rather than direct
    (N, *input_shape); ValueError for anything else."""
    inputs_shape, input_shape = tuple(inputs_shape), tuple(input_shape)
    if inputs_shape[1:] == input_shape:
        return False
    if inputs_shape[1:] == (T, *input_shape):
        return True
    raise ValueError(f"inputs have shape {inputs_shape}; the graph's Input expects (N, *{input_shape}) (direct "
                     f"encoding) or (N, T={T}, *{input_shape}) (one tensor per step)")


class InputStream:
    """`inputs` (N, *shape) direct, or (N, T, *shape) when `varying`, as blocks of `block` global steps.

    Item j is `(data, 0)`: data (*lava_shape, block) holds global steps j*block .. (j+1)*block - 1, global
    step g being step g % T of sample g // T; steps past the last sample are zeros. `fmt` quantizes (fixed
    point, int32), else float64. Blocks hold at most `block_bytes` (default `BLOCK_BYTES`).
    """

    def __init__(self, inputs: np.ndarray, T: int, varying: bool, signal: Signal, fmt: InputFormat | None = None,
                 block_bytes: int | None = None) -> None:
        self.inputs, self.T, self.varying, self.signal, self.fmt = inputs, int(T), bool(varying), signal, fmt
        self.steps = len(inputs) * self.T
        step_bytes = 8 * int(np.prod(signal.lava_shape))
        self.block = int(min(self.steps, max(1, (block_bytes or BLOCK_BYTES) // step_bytes)))

    def __len__(self) -> int:
        return -(-self.steps // self.block)

    def __getitem__(self, j: int) -> tuple[np.ndarray, int]:
        n_flat = int(np.prod(self.signal.lava_shape))
        flat = np.zeros((self.block, n_flat), np.int32 if self.fmt is not None else np.float64)
        g, end = j * self.block, min((j + 1) * self.block, self.steps)
        while g < end:   # one run of consecutive steps of one sample at a time
            sample, t = divmod(g, self.T)
            stop = min(end - g, self.T - t)
            steps = self.inputs[sample, t:t + stop] if self.varying else self.inputs[sample][None]
            values = self._encode(np.asarray(steps).reshape(len(steps), -1)[:, self.signal.perm])
            flat[g - j * self.block:g - j * self.block + stop] = values
            g += stop
        data = flat.reshape(self.block, *self.signal.lava_shape)
        return np.ascontiguousarray(np.moveaxis(data, 0, -1)), 0

    def _encode(self, values: np.ndarray) -> np.ndarray:
        if self.fmt is None:
            return values.astype(np.float64)
        return fixedpoint.quantize_input(values, self.fmt.scale, self.fmt.bits, self.fmt.signed).astype(np.int32)
