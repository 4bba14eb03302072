"""Integer arithmetic of Lava's bit-accurate (`fixed_pt`) process models, and a fixed-point run of a quantized
NIR graph built on it (the reference simulator's `fixed_point=True` mode), spike-for-spike equal to Lava.

Mirrors lava-nc 0.10.0: Dense (lava/proc/dense/models.py, PyDenseModelBitAcc, with lava/utils/weightutils.py),
Sparse holding a convolution (lava/proc/sparse/models.py, PySparseModelBitAcc, the same integers as Dense; sum and
average pooling as a grouped convolution of ones) and the
CUBA neuron of AbstractPyLifModelFixed (lava/proc/lif/models.py: 12-bit du, dv) that Lava's stock LIF and
spikeport's own neuron process run in their fixed_pt models (docs/nir-extensions.md, "Fixed point").
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import nir
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from backends import inputs as feed
from backends.graph import GraphView, analyse
from backends.loihi_int import (ACT_SHIFT, DECAY_UNITY, STATE_BITS, STATE_LIMIT, V_LIMIT,  # noqa: F401
                                decay, wrap_current)
from backends.nirext import ExtensionError, SIGNED, fixed_point, neuron_semantics
from backends.result import RunResult, Unsupported

DENSE_STORE_BITS = 8              # Dense clips its stored weights to 8 bits (+ sign in mixed mode)
CONV_LIMIT = STATE_LIMIT           # Lava's Conv process (conv='conv') wraps its sum to 24 bits: below this it
                                    # gives Sparse's integers (its float32 sum is exact too)
INT32_LIMIT = 2 ** 31             # Dense accumulates in int32
FULL_DECAY = DECAY_UNITY - 1      # du = 4095: with Loihi's ds_offset of 1, u keeps only the new input
SPIKING = (nir.IF, nir.LIF, nir.CubaLIF)
INTEGRATORS = (nir.I, nir.LI)
NEURONS = SPIKING + INTEGRATORS
POOLS = (nir.AvgPool2d, nir.SumPool2d)
SUPPORTED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.Scale, *POOLS, *NEURONS)


# --- the integer operations --------------------------------------------------------------------------------

def shift(x: np.ndarray, exp: int) -> np.ndarray:
    """x * 2^exp as Dense applies weight_exp: a left shift, or an arithmetic right shift (rounds toward -inf)."""
    return np.left_shift(x, exp) if exp > 0 else np.right_shift(x, -exp)


def sign_mode(m: np.ndarray) -> str:
    """Lava's determine_sign_mode: excitatory if no weight is negative, inhibitory if none is positive."""
    if np.min(m) >= 0:
        return "excitatory"
    if np.max(m) <= 0:
        return "inhibitory"
    return "mixed"


def mantissa_range(bits: int, mode: str) -> tuple[int, int]:
    """Integer range of a `bits`-bit weight mantissa: signed in mixed mode, a magnitude otherwise."""
    if mode == "mixed":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    top = (1 << bits) - 1
    return (0, top) if mode == "excitatory" else (-top, 0)


def dense_storage(m: np.ndarray, bits: int) -> tuple[np.ndarray, int, str]:
    """Dense's stored weights for mantissas `m`: (m << k, k, sign mode), k = 8 - bits (+1 in mixed mode), the
    low bits Dense's truncate_weights zeroes; Dense's weight_exp is then E - k for a shared exponent E."""
    mode = sign_mode(m)
    k = DENSE_STORE_BITS - bits + (mode == "mixed")
    return np.left_shift(m.astype(np.int64), k), k, mode


def dense_accumulate(stored: np.ndarray, weight_exp: int, s: np.ndarray) -> np.ndarray:
    """PyDenseModelBitAcc.run_spk for graded input s (batch, n_in): shift(W s, weight_exp)."""
    return shift(s @ stored.T, weight_exp)


def conv_accumulate(stored: np.ndarray, s: np.ndarray, kw: dict) -> np.ndarray:
    """PySparseModelBitAcc.run_spk's product W s for the matrix of a convolution with kernel `stored`: the exact
    integer convolution (torch layout, batch first; float64 is exact for these sums, int32 in Lava, whose range
    the quantizer keeps)."""
    acc = F.conv2d(torch.from_numpy(s.astype(np.float64)), torch.from_numpy(stored.astype(np.float64)), **kw)
    return np.rint(acc.numpy()).astype(np.int64)


def quantize_input(x: np.ndarray, scale: float, bits: int, signed: bool) -> np.ndarray:
    """Input (direct, or one step of a time-varying input) as integers: round(x / scale) (half to even), clipped to the input format."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return np.clip(np.rint(np.asarray(x, np.float64) / scale), lo, hi).astype(np.int64)


def to_integer(where: str, value, step: float, limit: int) -> np.ndarray:
    """value / step as exact integers (a quantized graph stores integer multiples of `step`, in float32: the
    tolerance is float32's relative precision), |.| <= limit."""
    q = np.asarray(value, np.float64) / step
    ints = np.rint(q)
    slack = 1e-3 + 1e-6 * np.abs(ints)
    if np.any(np.abs(q - ints) > slack) or np.max(np.abs(ints), initial=0) > limit:
        raise ExtensionError(f"{where}: values are not integer multiples of {step!r} within +-{limit}; "
                             "re-run `spikeport quantize` on the float graph")
    return ints.astype(np.int64)


# --- the neuron ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NeuronParams:
    """One fixed-point neuron layer; every value in v units (unit / 2^6) except `vth`, the 17-bit threshold
    mantissa (effective threshold vth << 6), and the 12-bit decays du (current; Lava adds ds_offset 1) and dv
    (voltage). kind: "IF" (spiking: NIR IF, LIF, CubaLIF) or "I" (integrator, the output is v: NIR I, LI);
    reset: as in docs/nir-extensions.md; bias_u: a constant added to the current u (a CubaLIF's input bias)."""

    kind: str
    reset: str
    vth: np.ndarray
    v_reset: np.ndarray
    bias: np.ndarray
    v_init: np.ndarray
    du: np.ndarray = FULL_DECAY
    dv: np.ndarray = 0
    bias_u: np.ndarray = 0


class NeuronState(NamedTuple):
    """Current u, voltage v and, for the signed neuron with memory, the net spike count m (else None)."""

    u: np.ndarray
    v: np.ndarray
    m: np.ndarray | None = None


def neuron_init(p: NeuronParams, batch: int) -> NeuronState:
    v = np.broadcast_to(p.v_init, (batch, *p.v_init.shape)).astype(np.int64)
    return NeuronState(np.zeros_like(v), v, np.zeros_like(v) if p.reset == SIGNED else None)


def neuron_step(p: NeuronParams, state: NeuronState, a: np.ndarray) -> tuple[NeuronState, np.ndarray]:
    """One step of AbstractPyLifModelFixed.subthr_dynamics (lava-nc 0.10.0, Loihi's CUBA neuron):
    u = wrap24(decay(u, du + 1) + (a << 6) + bias_u); v = clip(decay(v, dv) + u + bias, +-(2^23 - 1)); then the
    spike and reset of `p.reset` against vth << 6 (fire on v > vth for reset to v_reset, v >= vth for
    subtraction and the signed neuron). An IF is du = 4095 (u takes the new input only), dv = 0 (no leak).
    Returns (state, output): spikes in {-1, 0, 1}, or v for an integrator."""
    u = wrap_current(decay(state.u, p.du + 1) + np.left_shift(a, ACT_SHIFT) + p.bias_u)
    v = np.clip(decay(state.v, p.dv) + u + p.bias, -V_LIMIT, V_LIMIT)
    if p.kind == "I":
        return NeuronState(u, v), v
    theta = np.left_shift(p.vth, ACT_SHIFT)
    if p.reset == SIGNED:
        pos = v >= theta
        neg = (v <= -theta) & (state.m > 0) & ~pos
        z = pos.astype(np.int64) - neg
        return NeuronState(u, v - theta * z, state.m + z), z
    if p.reset == "subtract":
        z = (v >= theta).astype(np.int64)
        return NeuronState(u, v - theta * z), z
    z = (v > theta).astype(np.int64)
    return NeuronState(u, np.where(z.astype(bool), p.v_reset, v)), z


def decays(where: str, node, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The 12-bit (du, dv) of a neuron node: IF and I keep u = the input and v undecayed (4095, 0); LIF and
    LI have dv = 4096 dt / tau; CubaLIF du = 4096 dt / tau_syn - 1 (Lava adds ds_offset 1), dv = 4096 dt /
    tau_mem. A quantized graph holds taus at which these are integers."""
    if isinstance(node, (nir.IF, nir.I)):
        return np.asarray(FULL_DECAY), np.asarray(0)

    def twelve_bit(attr: str, hi: int) -> np.ndarray:
        return to_integer(f"{where} 4096 dt/{attr}", DECAY_UNITY * dt / np.asarray(getattr(node, attr), np.float64),
                          1, hi)
    if isinstance(node, (nir.LIF, nir.LI)):
        return np.asarray(FULL_DECAY), twelve_bit("tau", FULL_DECAY)
    return twelve_bit("tau_syn", DECAY_UNITY) - 1, twelve_bit("tau_mem", FULL_DECAY)


def input_gain(node, dt: float) -> np.ndarray:
    """What one unit of a neuron node's input adds to its v in the node's own float equations (docs/nir-
    extensions.md, "Time step semantics"): r (IF, I); dt/tau r (LIF, LI); dt/tau_syn w_in dt/tau_mem r (CubaLIF,
    through the current)."""
    r = np.asarray(node.r, np.float64)
    if isinstance(node, (nir.IF, nir.I)):
        return r
    if isinstance(node, (nir.LIF, nir.LI)):
        return dt / np.asarray(node.tau, np.float64) * r
    w_in = np.asarray(node.w_in, np.float64)
    return dt / np.asarray(node.tau_syn, np.float64) * w_in * dt / np.asarray(node.tau_mem, np.float64) * r


def leak_gain(node, dt: float) -> float:
    """What one unit of v_leak adds to v every step: dt/tau (LIF, LI), dt/tau_mem (CubaLIF), 0 (IF, I)."""
    if isinstance(node, (nir.LIF, nir.LI)):
        return dt / np.asarray(node.tau, np.float64)
    if isinstance(node, nir.CubaLIF):
        return dt / np.asarray(node.tau_mem, np.float64)
    return np.zeros(())


def neuron_params(where: str, kind: str, reset: str, threshold, v_reset, v_init, bias, unit: float,
                  du=FULL_DECAY, dv=0, bias_u=None) -> NeuronParams:
    """Integer parameters from a quantized graph's floats (threshold = vth * unit, the rest = n * unit / 2^6)."""
    vunit = unit / (1 << ACT_SHIFT)
    zeros = np.zeros_like(np.asarray(bias, np.float64))
    return NeuronParams(
        kind=kind, reset=reset,
        vth=to_integer(f"{where} v_threshold", zeros if threshold is None else threshold, unit, 2 ** 17 - 1),
        v_reset=to_integer(f"{where} v_reset", zeros if v_reset is None else v_reset, vunit, V_LIMIT),
        bias=to_integer(f"{where} bias", bias, vunit, V_LIMIT),
        v_init=to_integer(f"{where} v_init", zeros if v_init is None else v_init, vunit, V_LIMIT),
        du=np.broadcast_to(du, zeros.shape).astype(np.int64), dv=np.broadcast_to(dv, zeros.shape).astype(np.int64),
        bias_u=to_integer(f"{where} current bias", zeros if bias_u is None else bias_u, vunit, V_LIMIT))


# --- reading a quantized graph ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Weights:
    """A weighted node's integer form: mantissas m (NIR layout), shared exponent E, mantissa bits."""

    m: np.ndarray
    exp: int
    bits: int


def input_format(graph: nir.NIRGraph) -> dict:
    """The graph's `fixed_point` table (input scale and format); Unsupported for a float graph."""
    table = fixed_point("graph", graph.metadata, "graph")
    if table is None:
        raise Unsupported("the graph is not quantized (no 'fixed_point' in its metadata); "
                          "run `spikeport quantize` first")
    return table


def weights(name: str, node) -> Weights:
    table = fixed_point(f"node {name!r}", node.metadata, "weighted")
    if table is None:
        raise Unsupported(f"node {name!r}: weighted node without 'fixed_point' metadata in a quantized graph")
    bits = int(table["weight_bits"])
    m = to_integer(f"node {name!r} weight", node.weight, float(table["weight_step"]), 1 << bits)
    lo, hi = mantissa_range(bits, sign_mode(m))
    if m.min() < lo or m.max() > hi:
        raise ExtensionError(f"node {name!r}: weight mantissas span [{m.min()}, {m.max()}], outside the "
                             f"{bits}-bit range [{lo}, {hi}]")
    return Weights(m, int(table["weight_exp"]), bits)


def exact_weights(name: str, node) -> Weights:
    """The integer weights of a graph imported from lava-dl netx as 8-bit mantissas with a shared exponent
    (m << exp = weight exactly, as lava-dl's optimize_weight_bits stores them), or Unsupported naming the node."""
    w = to_integer(f"node {name!r} weight", node.weight, 1.0, INT32_LIMIT)
    for exp in range(DENSE_STORE_BITS + 1):
        m = w >> exp
        lo, hi = mantissa_range(DENSE_STORE_BITS, sign_mode(m))
        if np.array_equal(m << exp, w) and lo <= m.min() and m.max() <= hi:
            return Weights(m, exp, DENSE_STORE_BITS)
    raise Unsupported(f"node {name!r}: integer weights in [{w.min()}, {w.max()}] are no 8-bit mantissa times a "
                      "power of two (Lava's Dense/Sparse weight format)")


def unit(name: str, node, kind: str) -> float:
    table = fixed_point(f"node {name!r}", node.metadata, kind)
    if table is None:
        raise Unsupported(f"node {name!r}: {type(node).__name__} without 'fixed_point' metadata in a quantized graph")
    return float(table["unit"])


def neuron_bias(view: GraphView, name: str) -> np.ndarray:
    """The float bias a neuron integrates every step: the biases of the Affine/Conv2d nodes feeding it."""
    shape = view.shape(name)
    total = np.zeros(shape)
    for p in view.preds[name]:
        node = view.node(p)
        if isinstance(node, nir.Affine):
            total = total + np.asarray(node.bias, np.float64)
        elif isinstance(node, nir.Conv2d):
            total = total + np.asarray(node.bias, np.float64).reshape(-1, 1, 1)
    return total


def layer_params(view: GraphView, name: str) -> NeuronParams:
    """Integer parameters of neuron node `name` of a quantized graph: the upstream biases enter v through the
    node's input gain (`input_gain`), or u for a CubaLIF; v_leak enters v through `leak_gain`."""
    node = view.node(name)
    where = f"node {name!r}"
    u = unit(name, node, "neuron")
    sem = neuron_semantics(name, node)
    du, dv = decays(where, node, view.dt)
    drive = input_gain(node, view.dt) * neuron_bias(view, name)
    leak = np.broadcast_to(leak_gain(node, view.dt) * np.asarray(getattr(node, "v_leak", 0.0), np.float64), drive.shape)
    bias, bias_u = (leak, drive) if isinstance(node, nir.CubaLIF) else (drive + leak, None)
    if isinstance(node, INTEGRATORS):
        return neuron_params(where, "I", "zero", None, None, sem.v_init, bias, u, du, dv)
    return neuron_params(where, "IF", sem.reset, node.v_threshold, node.v_reset, sem.v_init, bias, u, du, dv,
                         bias_u)


def pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return int(a[0]), int(a[-1])


def pool_kwargs(node, channels: int) -> dict:
    """Sum pooling as the grouped convolution with a kernel of ones (Lava runs it as a Sparse matrix of ones);
    average pooling too: in a quantized graph its 1 / kernel area lives in the next layer's weight step
    (docs/nir-extensions.md, "Fixed point")."""
    return dict(kernel=pair(node.kernel_size), stride=pair(node.stride), padding=pair(node.padding), dilation=(1, 1),
                groups=int(channels))


def conv_kwargs(node: nir.Conv2d) -> dict:
    padding = node.padding if isinstance(node.padding, str) else pair(node.padding)
    return dict(stride=pair(node.stride), padding=padding, dilation=pair(node.dilation), groups=int(node.groups))


# --- the fixed-point run ---------------------------------------------------------------------------------------

Step = Callable[[object, np.ndarray], tuple[object, np.ndarray]]


@dataclass
class _Op:
    step: Step
    init: Callable[[int], object] = lambda batch: None
    spiking: bool = False
    neuron: bool = False


def _stateless(fn) -> _Op:
    return _Op(lambda s, x: (s, fn(x)))


def lower(view: GraphView, name: str) -> _Op:
    """One node of a quantized graph as an integer operation."""
    node = view.node(name)
    if isinstance(node, (nir.Input, nir.Output)):
        return _stateless(lambda x: x)
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = weights(name, node)
        stored, k, _ = dense_storage(w.m, w.bits)
        return _stateless(lambda x: dense_accumulate(stored, w.exp - k, x))
    if isinstance(node, nir.Conv2d):
        w, kw = weights(name, node), conv_kwargs(node)
        stored, k, _ = dense_storage(w.m, w.bits)
        return _stateless(lambda x: shift(conv_accumulate(stored, x, kw), w.exp - k))
    if isinstance(node, nir.Flatten):
        shape = view.shape(name)
        return _stateless(lambda x: x.reshape(x.shape[0], *shape))
    if isinstance(node, nir.Scale):
        payload = to_integer(f"node {name!r} scale", node.scale, unit(name, node, "scale"), V_LIMIT)
        return _stateless(lambda x: x * payload)
    if isinstance(node, POOLS):
        kw = pool_kwargs(node, view.shape(view.preds[name][0])[0])
        ones = np.ones((kw["groups"], 1, *kw.pop("kernel")), np.int64)
        return _stateless(lambda x: conv_accumulate(ones, x, kw))
    if isinstance(node, NEURONS):
        p = layer_params(view, name)
        return _Op(lambda s, x: neuron_step(p, s, x), init=lambda batch: neuron_init(p, batch),
                   spiking=p.kind == "IF", neuron=True)
    raise Unsupported(f"node {name!r}: fixed point has no {type(node).__name__} (supported: "
                      f"{', '.join(sorted(t.__name__ for t in SUPPORTED))})")


def output_unit(view: GraphView) -> float:
    """Value of one integer unit of what reaches the Output node (v units for an integrator, else spikes)."""
    pred = view.preds[view.output][0]
    node = view.node(pred)
    if isinstance(node, INTEGRATORS):
        return unit(pred, node, "neuron") / (1 << ACT_SHIFT)
    if isinstance(node, nir.Scale):
        return unit(pred, node, "scale")
    if isinstance(node, SPIKING):
        return 1.0
    raise Unsupported(f"Output is fed by {type(node).__name__} {pred!r}; fixed point needs a neuron or Scale there")


def run(graph: nir.NIRGraph, inputs, T: int, *, batch_size: int = 256, record: bool = False,
        progress: bool = False) -> RunResult:
    """Run quantized `graph` in integer arithmetic on direct (N, *input shape) or time-varying (N, T, *input
    shape) inputs (`backends.inputs`), each step's values quantized by the graph's input format; outputs are
    converted back to floats (x unit)."""
    view = analyse(graph, SUPPORTED)
    fmt = input_format(graph)
    if len(view.preds[view.output]) != 1:
        raise Unsupported("fixed point needs exactly one node feeding Output")
    ops = {n: lower(view, n) for n in view.order}
    out_unit = output_unit(view)
    out_is_state = isinstance(view.node(view.preds[view.output][0]), INTEGRATORS)
    x_all = feed.compact(inputs)
    varying = feed.time_varying(x_all.shape, view.shape(view.input), T)

    def integers(x: torch.Tensor) -> np.ndarray:
        return quantize_input(x.to_dense().numpy(), float(fmt["input_scale"]), int(fmt["input_bits"]),
                              bool(fmt["input_signed"]))
    weighted = [n for n in view.order if isinstance(view.node(n), (nir.Affine, nir.Linear, nir.Conv2d))]
    spiking = [n for n in view.order if ops[n].spiking]
    start = time.perf_counter()
    parts = []
    for lo in tqdm(range(0, len(x_all), batch_size), desc=f"fixed point T={T}", disable=not progress, leave=False):
        x = feed.rows(x_all, lo, batch_size)
        if varying:
            def step_input(t, x=x):
                return integers(feed.steps(x, t, 1, torch.float64)[0])
        else:
            def step_input(t, x=integers(x)):
                return x
        parts.append(_run_batch(view, ops, step_input, len(x), int(T), record, weighted, spiking, out_is_state))
    n = len(x_all)
    counts = {k: np.concatenate([p["counts"][k] for p in parts]) for k in spiking}
    return RunResult(
        backend="reference-fixed", T=int(T),
        outputs=np.concatenate([p["out"] for p in parts]).astype(np.float64) * out_unit,
        spike_counts={k: v.reshape(n, -1).sum(1).astype(np.float64) for k, v in counts.items()},
        neuron_counts={k: v.mean(0) for k, v in counts.items()},
        input_events={k: sum(p["events"][k] for p in parts) / n for k in weighted},
        spikes={k: np.concatenate([p["trains"][k] for p in parts]) for k in spiking} if record else None,
        seconds=time.perf_counter() - start)


def _run_batch(view, ops, step_input, batch, T, record, weighted, spiking, out_is_state) -> dict:
    """One batch; `step_input(t)` is the integer input at step t."""
    states = {n: ops[n].init(batch) for n in view.order}
    counts = {n: np.zeros((batch, *view.shape(n)), np.int64) for n in spiking}
    events = {n: np.zeros(view.shape(view.preds[n][0])) for n in weighted}
    trains = {n: np.zeros((batch, T, *view.shape(n)), np.int8) for n in spiking} if record else None
    total = np.zeros((batch, *view.shape(view.output)), np.int64)
    for t in range(T):
        values: dict[str, np.ndarray] = {}
        x = step_input(t)
        for n in view.order:
            inp = x if n == view.input else sum(values[p] for p in view.preds[n])
            if n in events:
                events[n] += (inp != 0).sum(0)
            states[n], values[n] = ops[n].step(states[n], inp)
            if n in counts:
                counts[n] += np.abs(values[n])
                if record:
                    trains[n][:, t] = values[n]
        y = values[view.output]
        total = y if out_is_state else total + y
    return {"out": total.reshape(batch, -1), "counts": counts, "events": events, "trains": trains}
