"""One NIR neuron layer (IF, LIF, CubaLIF, I, LI) as a Lava process that runs many samples back to back.

Its floating-point model calls the step functions of `backends.neurons`, its fixed-point model those of
`backends.fixedpoint`, so Lava and the reference simulator run one definition of each neuron in each mode.
"""
from __future__ import annotations

import typing as ty

import numpy as np
import torch

from backends import fixedpoint, neurons
from backends.lava.procs.guard import GuardedModel
from backends.lava.procs.probe import WindowBook
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

SPIKING = ("IF", "LIF", "CubaLIF")
KINDS = SPIKING + ("I", "LI")
PARAMS = {
    "IF": ("r", "v_threshold", "v_reset"),
    "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
    "I": ("r",),
    "LI": ("tau", "r", "v_leak"),
}
FIXED_EXTRA = ("du", "dv", "bias_u")   # fixed point only: Loihi's 12-bit decays and a bias on the current


class NeuronLayer(AbstractProcess):
    """A layer of neurons that runs `n_samples` windows of `T` steps, starting at step `offset`.

    At global step g (0-based) the layer works on step (g - offset) % T of sample (g - offset) // T; at
    the first step of each window every state is reset to its initial value (v := v_init, i := 0), so
    no state leaks between samples. `offset` is the layer's delay behind the input in Lava. Outside
    its windows the layer sends zeros. `error_dir`: see `GuardedModel`.

    signed: the IF layer is the signed neuron with memory (reset 'signed-memory'), sending -1/0/+1.
    params: the NIR node's parameters in Lava layout (`PARAMS[kind]`); bias: a constant added to the
    input every step (biases of upstream Affine/Conv2d nodes); v_init: membrane potential at the start
    of each window. At the end of its last window the model writes `dump` (an .npz file) holding
    `per_sample` (spikes per sample), `per_neuron` (spikes per neuron over all samples), `raster`
    (spikes per sample and step, only when `record`) and, for integrators, `final` (v at each
    window's last step).
    """

    def __init__(self, *, shape: tuple[int, ...], kind: str, params: dict[str, np.ndarray], subtract: bool,
                 dt: float, bias: np.ndarray, v_init: np.ndarray, T: int, n_samples: int, offset: int,
                 record: bool, dump: str, name: str, error_dir: str, signed: bool = False) -> None:
        if kind not in KINDS:
            raise ValueError(f"NeuronLayer kind must be one of {KINDS}, got {kind!r}")
        if signed and kind != "IF":
            raise ValueError(f"NeuronLayer {name!r}: the signed neuron with memory is an IF neuron, not {kind}")
        missing = set(PARAMS[kind]) - set(params)
        if missing:
            raise ValueError(f"NeuronLayer {name!r} ({kind}) lacks parameter(s) {sorted(missing)}")
        keys = PARAMS[kind] + tuple(k for k in FIXED_EXTRA if k in params)
        arrays = {k: np.broadcast_to(np.asarray(params[k], np.float64), shape).copy() for k in keys}
        super().__init__(shape=tuple(shape), kind=kind, params=arrays, subtract=bool(subtract), dt=float(dt),
                         bias=np.broadcast_to(np.asarray(bias, np.float64), shape).copy(),
                         v_init=np.broadcast_to(np.asarray(v_init, np.float64), shape).copy(),
                         T=int(T), n_samples=int(n_samples), offset=int(offset), record=bool(record),
                         dump=str(dump), name=name, error_dir=str(error_dir), signed=bool(signed))
        self.a_in = InPort(shape=tuple(shape))
        self.s_out = OutPort(shape=tuple(shape))


class _Dynamics(ty.NamedTuple):
    """`init()` gives a fresh state; `step(state, x)` gives (new state, output: spikes, or v for integrators)."""

    init: ty.Callable[[], ty.Any]
    step: ty.Callable[[ty.Any, torch.Tensor], tuple[ty.Any, torch.Tensor]]


def dynamics(kind: str, params: dict[str, np.ndarray], subtract: bool, dt: float, v_init: np.ndarray,
             signed: bool = False) -> _Dynamics:
    """State initialiser and step function of one neuron kind, built on `backends.neurons`."""
    p = {k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in params.items()}
    v0 = torch.from_numpy(np.asarray(v_init, np.float64))
    if signed:
        if kind != "IF":
            raise ValueError(f"the signed neuron with memory is an IF neuron, not {kind}")
        snm = neurons.SNMParams(p["r"], p["v_threshold"])
        return _Dynamics(lambda: (v0.clone(), torch.zeros_like(v0)), lambda s, x: neurons.snm_step(s, x, snm))
    if kind == "IF":
        prm = neurons.IFParams(p["r"], p["v_threshold"], p["v_reset"], subtract)
        return _Dynamics(v0.clone, lambda v, x: neurons.if_step(v, x, prm))
    if kind == "LIF":
        prm = neurons.LIFParams(p["tau"], p["r"], p["v_leak"], p["v_threshold"], p["v_reset"], subtract)
        return _Dynamics(v0.clone, lambda v, x: neurons.lif_step(v, x, prm, dt))
    if kind == "CubaLIF":
        prm = neurons.CubaLIFParams(p["tau_syn"], p["tau_mem"], p["r"], p["v_leak"], p["v_threshold"],
                                    p["v_reset"], p["w_in"], subtract)
        return _Dynamics(lambda: (torch.zeros_like(v0), v0.clone()),
                         lambda s, x: neurons.cubalif_step(s, x, prm, dt))
    if kind == "I":

        def integrate(v, x):
            v = neurons.integrator_step(v, x, p["r"])
            return v, v
        return _Dynamics(v0.clone, integrate)
    if kind == "LI":
        prm = neurons.LIParams(p["tau"], p["r"], p["v_leak"])

        def leak(v, x):
            v = neurons.li_step(v, x, prm, dt)
            return v, v
        return _Dynamics(v0.clone, leak)
    raise ValueError(f"no dynamics for neuron kind {kind!r}")


class _NeuronLayerModel(GuardedModel):
    """What both models of `NeuronLayer` share: windowed reset, the neuron step, per-window bookkeeping.
    A subclass gives `dynamics(proc_params)`: an `_Dynamics` whose step takes and returns numpy arrays."""

    out_port = "s_out"

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        torch.set_num_threads(1)  # this OS process was forked; keep torch off its thread pool
        pp = self.proc_params
        self.dyn = self.dynamics(pp)
        self.state = self.dyn.init()
        self.out_shape = tuple(pp["shape"])
        self.book = WindowBook(pp, spiking=pp["kind"] in SPIKING)

    def dynamics(self, pp: dict) -> _Dynamics:
        raise NotImplementedError

    def compute(self, x: np.ndarray) -> np.ndarray:
        where = self.book.window(self.time_step)
        if where is None:
            return np.zeros(self.out_shape, self.zero_dtype)
        if where[1] == 0:
            self.state = self.dyn.init()
        self.state, out = self.dyn.step(self.state, x)
        self.book.note(*where, out)
        return out


@implements(proc=NeuronLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNeuronLayerModelFloat(_NeuronLayerModel):
    """Floating-point model of `NeuronLayer` (`backends.neurons`); the input bias is added to the input."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def dynamics(self, pp: dict) -> _Dynamics:
        dyn = dynamics(pp["kind"], pp["params"], pp["subtract"], pp["dt"], pp["v_init"], pp.get("signed", False))
        bias = torch.from_numpy(pp["bias"])

        def step(state, x):
            state, y = dyn.step(state, torch.from_numpy(x) + bias)
            return state, y.numpy()
        return _Dynamics(dyn.init, step)


@implements(proc=NeuronLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyNeuronLayerModelFixed(_NeuronLayerModel):
    """Fixed-point model of `NeuronLayer` (`backends.fixedpoint.neuron_step`, Loihi's CUBA neuron as Lava's
    bit-accurate LIF): kind "IF" (spiking) or "I" (integrator); the parameters are integers -- v_threshold the
    threshold mantissa vth, bias, bias_u, v_reset and v_init in v units, du and dv 12-bit decays (default 4095
    and 0: an IF)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    zero_dtype = np.int32

    def dynamics(self, pp: dict) -> _Dynamics:
        if pp["kind"] not in ("IF", "I"):
            raise ValueError(f"the fixed-point model runs kinds IF and I (LIF, CubaLIF, LI are IF and I with "
                             f"decays du, dv), got {pp['kind']}")
        reset = fixedpoint.SIGNED if pp.get("signed") else ("subtract" if pp["subtract"] else "zero")
        ints = {k: np.rint(v).astype(np.int64) for k, v in pp["params"].items()}
        zeros = np.zeros(pp["shape"], np.int64)
        p = fixedpoint.NeuronParams(kind=pp["kind"], reset=reset, vth=ints.get("v_threshold", zeros),
                                    v_reset=ints.get("v_reset", zeros), bias=np.rint(pp["bias"]).astype(np.int64),
                                    v_init=np.rint(pp["v_init"]).astype(np.int64),
                                    du=ints.get("du", zeros + fixedpoint.FULL_DECAY), dv=ints.get("dv", zeros),
                                    bias_u=ints.get("bias_u", zeros))

        def step(state, x):
            state, y = fixedpoint.neuron_step(p, state, np.asarray(x, np.int64)[None])
            return state, y[0]
        return _Dynamics(lambda: fixedpoint.neuron_init(p, 1), step)
