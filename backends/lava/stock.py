"""Which NIR neuron nodes run on Lava's own LIF process (`lava.proc.lif.process.LIFReset`), and with what
parameters; the rest run on spikeport's `NeuronLayer` (backends/lava/procs/neuron.py).

Lava's LIF (lava/proc/lif/models.py): u = u (1 - du) + a; v = v (1 - dv) + u + bias; spike where v > vth;
v = 0 there. Floating point: du, dv, vth are one float each for the population, bias = bias_mant. Fixed
point (PyLifResetModelBitAcc, Loihi's CUBA neuron): 12-bit du, dv with sign-magnitude decay, a << 6, 24-bit
u and v, bias = bias_mant << bias_exp (13-bit mantissa, exponent 0..7), a 17-bit vth << 6. LIFReset zeroes
u and v every `reset_interval` steps, which is how each sample window starts. A graph imported from lava-dl
netx (`lava_cuba` neurons) runs on the fixed-point model with the file's own integers (`netx_params`).
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from backends import fixedpoint
from backends.graph import GraphView
from backends.nirext import LAVA_CUBA, NEURON_TYPES, neuron_semantics

STOCK_KINDS = (nir.IF, nir.LIF, nir.CubaLIF)
BIAS_MANT = 1 << 12     # bias_mant is a signed 13-bit integer: [-4096, 4095]
BIAS_EXP_MAX = 7        # bias_exp is an unsigned 3-bit integer


@dataclass(frozen=True)
class StockLIF:
    """LIFReset parameters for one node; `bias_mant` and `bias_exp` per neuron in torch layout."""

    du: float
    dv: float
    vth: float   # an int in fixed point, as Lava's bit-accurate model shifts it
    bias_mant: np.ndarray
    bias_exp: np.ndarray


def _uniform(value) -> float | None:
    """The single value of an array, or None if its elements differ (Lava's du, dv, vth are one per process)."""
    flat = np.unique(np.asarray(value, np.float64))
    return float(flat[0]) if flat.size == 1 else None


def float_params(view: GraphView, name: str, offset) -> StockLIF | str:
    """The stock float LIF equivalent to node `name` whose input carries the constant `offset` (torch layout,
    or None), or the reason there is none.

    The state is rescaled so that Lava's u takes the input unscaled: IF v' = v / r; LIF v' = v / (dv r) with
    dv = dt/tau, v_leak entering as bias / r; CubaLIF u = i / (du w_in), v' = v / (dv r du w_in) with du =
    dt/tau_syn, dv = dt/tau_mem. The threshold becomes vth = v_threshold / scale. In real numbers these are the
    node's equations; in floats they round differently unless the scales are powers of two and the values
    dyadic (docs/nir-extensions.md, "Lava processes")."""
    node = view.node(name)
    reason = _semantics(name, node)
    if reason:
        return reason
    f64 = lambda a: np.broadcast_to(np.asarray(a, np.float64), view.shape(name))  # noqa: E731
    off = f64(0.0 if offset is None else offset)
    dt = view.dt
    if isinstance(node, nir.IF):
        du, dv, scale, bias = 1.0, 0.0, f64(node.r), off
    elif isinstance(node, nir.LIF):
        du, dv = 1.0, _uniform(dt / f64(node.tau))
        scale, bias = (dv or 0.0) * f64(node.r), f64(node.v_leak) / f64(node.r) + off
    else:
        if offset is not None and np.any(off):
            return "a CubaLIF whose input carries a constant bias (Lava's LIF has a bias on v, not on u)"
        du, dv = _uniform(dt / f64(node.tau_syn)), _uniform(dt / f64(node.tau_mem))
        if du is None:
            return "tau_syn differs between neurons (Lava's du is one value per process)"
        scale = (dv or 0.0) * f64(node.r) * du * f64(node.w_in)
        bias = f64(node.v_leak) / (f64(node.r) * du * f64(node.w_in))
    if dv is None:
        return "tau (tau_mem) differs between neurons (Lava's dv is one value per process)"
    if np.any(scale <= 0):
        return "a non-positive input scale (r, w_in, dt/tau) would flip Lava's threshold comparison"
    vth = _uniform(f64(node.v_threshold) / scale)
    if vth is None:
        return "the threshold (over the input scale) differs between neurons (Lava's vth is one value per process)"
    return StockLIF(du, dv, vth, bias, np.zeros(view.shape(name)))


def fixed_params(view: GraphView, name: str) -> StockLIF | str:
    """The stock bit-accurate LIF equivalent to node `name` of a quantized graph (its du, dv, vth and bias as
    `backends.fixedpoint.layer_params` reads them: an IF is du = 4095, dv = 0), or the reason there is none."""
    node = view.node(name)
    reason = _semantics(name, node)
    if reason:
        return reason
    p = fixedpoint.layer_params(view, name)
    values = {}
    for what, arr in (("du", p.du), ("dv", p.dv), ("vth", p.vth)):
        values[what] = _uniform(arr)
        if values[what] is None:
            return f"{what} differs between neurons (Lava's {what} is one value per process)"
    if np.any(p.bias_u):
        return "a CubaLIF whose input carries a constant bias (Lava's LIF has a bias on v, not on u)"
    split = bias_mant_exp(p.bias)
    if split is None:
        return "a bias that is no 13-bit mantissa << 0..7 (Lava's bias_mant, bias_exp)"
    return StockLIF(int(values["du"]), int(values["dv"]), int(values["vth"]), *split)


def is_netx_graph(view: GraphView) -> bool:
    """Whether the graph holds neurons with Lava's 12-bit CUBA decays (`lava_cuba`, imported from lava-dl netx):
    such a graph is integer arithmetic throughout and runs on Lava's fixed-point models."""
    return any(neuron_semantics(n, view.node(n), honours=(LAVA_CUBA,)).lava_cuba is not None
               for n in view.order if isinstance(view.node(n), NEURON_TYPES))


def netx_params(view: GraphView, name: str, offset) -> StockLIF | str:
    """The stock bit-accurate LIF that netx builds for neuron node `name` of a graph imported from lava-dl netx
    (lava/lib/dl/netx/hdf5.py get_neuron_params: du = iDecay - 1, dv = vDecay, vth = vThMant; the layer bias as
    bias_mant << 6), whose input carries the constant integer `offset` (torch layout, or None); or the reason
    there is none. An IF of such a graph is netx's iDecay 4096, vDecay 0 neuron."""
    node = view.node(name)
    reason = _semantics(name, node, honours=(LAVA_CUBA,))
    if reason:
        return reason
    sem = neuron_semantics(name, node, honours=(LAVA_CUBA,))
    if sem.lava_cuba is not None:
        i_decay, v_decay = sem.lava_cuba
    elif isinstance(node, nir.IF) and np.all(np.asarray(node.r) == 1):
        i_decay, v_decay = fixedpoint.DECAY_UNITY, 0
    else:
        return f"a {type(node).__name__} without Lava's CUBA decays in a graph imported from lava-dl netx"
    vth = _uniform(node.v_threshold)
    if vth is None or vth != int(vth):
        return "the threshold is no single integer mantissa (Lava's vth is one value per process)"
    bias = np.broadcast_to(np.asarray(0.0 if offset is None else offset, np.float64), view.shape(name))
    if np.any(bias) and i_decay != fixedpoint.DECAY_UNITY:
        return "a bias with a decaying current (netx adds the bias to v, NIR's synapse to the current)"
    split = bias_mant_exp(np.rint(bias * (1 << fixedpoint.ACT_SHIFT)).astype(np.int64))
    if split is None or np.any(bias != np.rint(bias)):
        return "a bias that is no integer 13-bit mantissa << 0..7 (Lava's bias_mant, bias_exp)"
    return StockLIF(i_decay - 1, v_decay, int(vth), *split)


def bias_mant_exp(bias: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Integers `bias` as bias_mant << bias_exp with the smallest exponent per element, or None if some
    element has no such form."""
    bias = np.asarray(bias, np.int64)
    exp = np.full(bias.shape, -1, np.int64)
    for e in range(BIAS_EXP_MAX + 1):
        mant = bias >> e
        fits = (mant << e == bias) & (-BIAS_MANT <= mant) & (mant < BIAS_MANT)
        exp = np.where((exp < 0) & fits, e, exp)
    if np.any(exp < 0):
        return None
    return bias >> exp, exp


def _semantics(name: str, node, honours: tuple[str, ...] = ()) -> str:
    """Why the node's semantics are not Lava's LIF ('' if they are, parameters aside)."""
    if not isinstance(node, STOCK_KINDS):
        return f"Lava's LIF has no {type(node).__name__}"
    sem = neuron_semantics(name, node, honours)
    if sem.signed or sem.reset != "zero":
        return f"reset '{sem.reset}' (Lava's LIF resets to zero)"
    if sem.v_init is not None and np.any(np.asarray(sem.v_init)):
        return "v_init (Lava's LIFReset starts every window at v = 0)"
    if np.any(np.asarray(node.v_reset)):
        return "v_reset != 0 (Lava's LIF resets to zero)"
    return ""
