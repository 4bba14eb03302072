"""Stateless Lava processes between layers: a fixed delay line, elementwise scaling, 2-d pooling, and (fixed
point only) the power-of-two shift that applies a Conv layer's shared weight exponent.

Scale, Pool2d and Shift act within the step they receive (no added delay), like the synchronous semantics of
docs/nir-extensions.md; Delay holds a signal back so paths of different depth meet in step.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from backends import fixedpoint
from backends.lava.procs.guard import GuardedModel
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class Delay(AbstractProcess):
    """Sends at step t what it received at step t - `steps` (zeros before that)."""

    def __init__(self, *, shape: tuple[int, ...], steps: int, name: str, error_dir: str) -> None:
        if int(steps) < 1:
            raise ValueError(f"Delay {name!r} needs at least one step, got {steps}")
        super().__init__(shape=tuple(shape), steps=int(steps), name=name, error_dir=str(error_dir))
        self.a_in = InPort(shape=tuple(shape))
        self.a_out = OutPort(shape=tuple(shape))


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayModelFloat(GuardedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.out_shape = self.proc_params["shape"]
        self.line = deque(np.zeros(self.out_shape) for _ in range(self.proc_params["steps"]))

    def compute(self, x: np.ndarray) -> np.ndarray:
        self.line.append(x)
        return self.line.popleft()


@implements(proc=Delay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayModelFixed(PyDelayModelFloat):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    zero_dtype = np.int32

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.line = deque(np.zeros(self.out_shape, np.int32) for _ in range(self.proc_params["steps"]))


class Scale(AbstractProcess):
    """Elementwise `y = scale * x` (NIR `Scale`); `scale` has the port shape."""

    def __init__(self, *, scale: np.ndarray, name: str, error_dir: str) -> None:
        scale = np.asarray(scale, np.float64)
        super().__init__(scale=scale, name=name, error_dir=str(error_dir))
        self.a_in = InPort(shape=scale.shape)
        self.a_out = OutPort(shape=scale.shape)


@implements(proc=Scale, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyScaleModelFloat(GuardedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.scale = self.proc_params["scale"]
        self.out_shape = self.scale.shape

    def compute(self, x: np.ndarray) -> np.ndarray:
        return self.scale * x


@implements(proc=Scale, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyScaleModelFixed(PyScaleModelFloat):
    """Integer scaling: a spike times its graded payload (`scale` holds integers in fixed point)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    zero_dtype = np.int32

    def compute(self, x: np.ndarray) -> np.ndarray:
        return np.rint(self.scale).astype(np.int64) * np.asarray(x, np.int64)


class Shift(AbstractProcess):
    """Fixed point only: `y = shift(x, exp)` (`backends.fixedpoint.shift`), the shared weight exponent of a
    Conv layer, which Lava's fixed-point Conv model does not apply itself."""

    def __init__(self, *, shape: tuple[int, ...], exp: int, name: str, error_dir: str) -> None:
        super().__init__(shape=tuple(shape), exp=int(exp), name=name, error_dir=str(error_dir))
        self.a_in = InPort(shape=tuple(shape))
        self.a_out = OutPort(shape=tuple(shape))


@implements(proc=Shift, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyShiftModelFixed(GuardedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    zero_dtype = np.int32

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.out_shape = self.proc_params["shape"]

    def compute(self, x: np.ndarray) -> np.ndarray:
        return fixedpoint.shift(np.asarray(x, np.int64), self.proc_params["exp"])


def pool_output_shape(in_shape, kernel, stride, padding) -> tuple[int, int, int]:
    """Output (X, Y, C) of a pooling window over (X, Y, C), torch's floor rounding."""
    x, y, c = in_shape
    out = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip((x, y), kernel, stride, padding)]
    if min(out) < 1:
        raise ValueError(f"pooling {kernel} with stride {stride}, padding {padding} leaves nothing of {in_shape}")
    return out[0], out[1], c


def pool(x: np.ndarray, kernel, stride, padding, divisor: float) -> np.ndarray:
    """Sum of each (X, Y) window of `x` (zero padding included) divided by `divisor`."""
    (kx, ky), (sx, sy), (px, py) = kernel, stride, padding
    ox, oy, _ = pool_output_shape(x.shape, kernel, stride, padding)
    xp = np.pad(x, ((px, px), (py, py), (0, 0)))
    out = np.zeros((ox, oy, x.shape[2]))
    for i in range(kx):
        for j in range(ky):
            out += xp[i:i + sx * (ox - 1) + 1:sx, j:j + sy * (oy - 1) + 1:sy, :]
    return out / divisor


class Pool2d(AbstractProcess):
    """Sum or average pooling over (X, Y, C) tensors; kernel, stride and padding in (X, Y) order.

    `divisor` is the kernel area for average pooling (torch `avg_pool2d` with padding counted) and 1
    for sum pooling (docs/nir-extensions.md).
    """

    def __init__(self, *, input_shape: tuple[int, int, int], kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], divisor: float, name: str, error_dir: str) -> None:
        out_shape = pool_output_shape(input_shape, kernel, stride, padding)
        super().__init__(input_shape=tuple(input_shape), kernel=tuple(kernel), stride=tuple(stride),
                         padding=tuple(padding), divisor=float(divisor), output_shape=out_shape, name=name,
                         error_dir=str(error_dir))
        self.output_shape = out_shape
        self.a_in = InPort(shape=tuple(input_shape))
        self.a_out = OutPort(shape=out_shape)


@implements(proc=Pool2d, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPool2dModelFloat(GuardedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.out_shape = self.proc_params["output_shape"]

    def compute(self, x: np.ndarray) -> np.ndarray:
        pp = self.proc_params
        return pool(x, pp["kernel"], pp["stride"], pp["padding"], pp["divisor"])
