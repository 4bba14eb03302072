"""A Lava sink that counts the non-zero input elements a weighted node receives in each sample window.

These counts are `RunResult.input_events` (backends/result.py), from which the energy model prices
synaptic operations.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backends.lava.procs.guard import GuardedModel
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class EventCounter(AbstractProcess):
    """Counts, per element, the steps at which input + `bias` is non-zero inside the sample windows
    (`n_samples` windows of `T` steps from step `offset`, as for `NeuronLayer`), summed over samples;
    writes them as `events` to the .npz file `dump` at the end of the last window."""

    def __init__(self, *, shape: tuple[int, ...], bias: np.ndarray, T: int, n_samples: int, offset: int,
                 dump: str, name: str, error_dir: str) -> None:
        super().__init__(shape=tuple(shape), bias=np.broadcast_to(np.asarray(bias, np.float64), shape).copy(),
                         T=int(T), n_samples=int(n_samples), offset=int(offset), dump=str(dump), name=name,
                         error_dir=str(error_dir))
        self.a_in = InPort(shape=tuple(shape))


@implements(proc=EventCounter, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyEventCounterModelFloat(GuardedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    out_port = None

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        pp = self.proc_params
        self.events = np.zeros(pp["shape"])
        self.steps = pp["n_samples"] * pp["T"]

    def compute(self, x: np.ndarray) -> None:
        k = self.time_step - 1 - self.proc_params["offset"]
        if 0 <= k < self.steps:
            self.events += (x + self.proc_params["bias"]) != 0
        if k == self.steps - 1:
            path = Path(self.proc_params["dump"])
            tmp = path.with_suffix(".part.npz")
            np.savez(tmp, events=self.events)
            tmp.replace(path)


@implements(proc=EventCounter, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyEventCounterModelFixed(PyEventCounterModelFloat):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
