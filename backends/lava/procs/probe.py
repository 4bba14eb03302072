"""Per-window bookkeeping of a layer's output and the Lava sinks built on it: `SpikeRecorder` (spikes of a
stock Lava neuron process) and `EventCounter` (the non-zero inputs of a weighted node, `RunResult.input_events`).
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


class WindowBook:
    """What a layer sends in `n_samples` windows of `T` steps from Lava step `offset`: spikes per sample and per
    neuron, the raster (N, T, *shape) when `record`, or an integrator's value at each window's last step;
    written to the .npz file `dump` at the end of the last window (docs: `NeuronLayer`)."""

    def __init__(self, pp: dict, spiking: bool) -> None:
        self.T, self.n, self.offset, self.spiking = pp["T"], pp["n_samples"], pp["offset"], spiking
        shape = tuple(pp["shape"])
        self.dump_path = Path(pp["dump"])
        self.per_sample = np.zeros(self.n)
        self.per_neuron = np.zeros(shape)
        self.raster = np.zeros((self.n, self.T, *shape), np.int8) if pp["record"] and spiking else None
        self.final = None if spiking else np.zeros((self.n, *shape))

    def window(self, time_step: int) -> tuple[int, int] | None:
        """(sample, step within it) of Lava's 1-based `time_step`, or None outside every window."""
        k = time_step - 1 - self.offset
        return divmod(k, self.T) if 0 <= k < self.n * self.T else None

    def note(self, sample: int, t: int, out: np.ndarray) -> None:
        if self.spiking:
            self.per_sample[sample] += np.abs(out).sum()
            self.per_neuron += np.abs(out)
            if self.raster is not None:
                self.raster[sample, t] = out
        elif t == self.T - 1:
            self.final[sample] = out
        if sample == self.n - 1 and t == self.T - 1:
            arrays = {"per_sample": self.per_sample, "per_neuron": self.per_neuron}
            if self.raster is not None:
                arrays["raster"] = self.raster
            if self.final is not None:
                arrays["final"] = self.final
            tmp = self.dump_path.with_suffix(".part.npz")
            np.savez(tmp, **arrays)
            tmp.replace(self.dump_path)


class SpikeRecorder(AbstractProcess):
    """Records the spikes of a neuron process that keeps no books itself (Lava's stock LIF): a `WindowBook`
    over its output, windows from step `offset` as for `NeuronLayer`."""

    def __init__(self, *, shape: tuple[int, ...], T: int, n_samples: int, offset: int, record: bool, dump: str,
                 name: str, error_dir: str) -> None:
        super().__init__(shape=tuple(shape), T=int(T), n_samples=int(n_samples), offset=int(offset),
                         record=bool(record), dump=str(dump), name=name, error_dir=str(error_dir))
        self.a_in = InPort(shape=tuple(shape))


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikeRecorderModelFloat(GuardedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    out_port = None

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.book = WindowBook(self.proc_params, spiking=True)

    def compute(self, x: np.ndarray) -> None:
        where = self.book.window(self.time_step)
        if where is not None:
            self.book.note(*where, x)


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeRecorderModelFixed(PySpikeRecorderModelFloat):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)


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
