"""Lava processes between layers: a fixed delay line, NIR's Delay, elementwise scaling, 2-d pooling, and (fixed
point only) the power-of-two shift that applies a Conv layer's shared weight exponent.

Scale, Pool2d and Shift act within the step they receive (no added delay), like the synchronous semantics of
docs/nir-extensions.md; Delay holds a signal back so paths of different depth meet in step; DelayLine is a
nir.Delay node (per-element delays within each sample window, e.g. lava-dl's axonal delays).
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


class DelayLine(AbstractProcess):
    """NIR's Delay: element i sends at step t what it received at step t - steps[i] of the same sample window
    (zeros before; windows of `T` steps start at Lava's time_step 1 + `offset` (mod T), as for `NeuronLayer`)."""

    def __init__(self, *, steps: np.ndarray, T: int, offset: int, name: str, error_dir: str) -> None:
        steps = np.asarray(steps, np.int64)
        super().__init__(steps=steps, T=int(T), offset=int(offset), name=name, error_dir=str(error_dir))
        self.a_in = InPort(shape=steps.shape)
        self.a_out = OutPort(shape=steps.shape)


@implements(proc=DelayLine, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayLineModelFloat(GuardedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.steps = self.proc_params["steps"]
        self.out_shape = self.steps.shape
        self.history = np.zeros((int(self.steps.max(initial=0)) + 1, *self.out_shape), self.zero_dtype)

    def compute(self, x: np.ndarray) -> np.ndarray:
        if (self.time_step - 1 - self.proc_params["offset"]) % self.proc_params["T"] == 0:
            self.history[:] = 0   # a new sample window: nothing of the previous sample is still on its way
        self.history[1:] = self.history[:-1].copy()
        self.history[0] = x
        return np.take_along_axis(self.history, self.steps[None], 0)[0]


@implements(proc=DelayLine, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayLineModelFixed(PyDelayLineModelFloat):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    zero_dtype = np.int32


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
