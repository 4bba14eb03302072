"""Neuron models as pure step functions: state and input in, new state and output out.

One definition per model (docs/nir-extensions.md, "Time step semantics"), called by the reference
simulator and by the tests; parameters are small named tuples of tensors broadcast to the node shape.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from backends import loihi_int as loihi


class IFParams(NamedTuple):
    r: torch.Tensor
    v_threshold: torch.Tensor
    v_reset: torch.Tensor
    subtract: bool


class SNMParams(NamedTuple):
    r: torch.Tensor
    v_threshold: torch.Tensor


class LIFParams(NamedTuple):
    tau: torch.Tensor
    r: torch.Tensor
    v_leak: torch.Tensor
    v_threshold: torch.Tensor
    v_reset: torch.Tensor
    subtract: bool


class CubaLIFParams(NamedTuple):
    tau_syn: torch.Tensor
    tau_mem: torch.Tensor
    r: torch.Tensor
    v_leak: torch.Tensor
    v_threshold: torch.Tensor
    v_reset: torch.Tensor
    w_in: torch.Tensor
    subtract: bool


class LIParams(NamedTuple):
    tau: torch.Tensor
    r: torch.Tensor
    v_leak: torch.Tensor


def fire(v: torch.Tensor, v_threshold, v_reset, subtract: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike and reset: by subtraction (fires on v >= threshold) or to v_reset (fires on v > threshold)."""
    if subtract:
        z = (v >= v_threshold).to(v.dtype)
        return v - v_threshold * z, z
    z = (v > v_threshold).to(v.dtype)
    return torch.where(z.bool(), v_reset.expand_as(v), v), z


def if_step(v: torch.Tensor, x: torch.Tensor, p: IFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate-and-fire: v += r*x, then `fire`. Returns (new v, spikes)."""
    return fire(v + p.r * x, p.v_threshold, p.v_reset, p.subtract)


def if_step_into(v: torch.Tensor, x: torch.Tensor, p: IFParams, out: torch.Tensor, unit_r: bool) -> torch.Tensor:
    """`if_step` in place, for speed: `v` is updated and the spikes written into `out`; returns `v`.

    The floats are those of `if_step`: `unit_r` (all r == 1) skips r*x, which is then exact; the reset
    v - θ·z is one rounding either way because θ·z is exact for z in {0, 1}.
    """
    v.add_(x if unit_r else p.r * x)
    if p.subtract:
        torch.ge(v, p.v_threshold, out=out)   # 1.0 / 0.0 written straight into the float spike tensor
        return v.addcmul_(out, p.v_threshold, value=-1)
    fired = torch.gt(v, p.v_threshold)
    out.copy_(fired)
    return torch.where(fired, p.v_reset, v, out=v)


def snm_step(state: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor,
             p: SNMParams) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Signed neuron with memory (DNISNM, Wang et al. 2024, Eq. 19-23), with spikes in units of the threshold.

    state = (v, m); m is the neuron's memory, the net number of spikes it has sent (positive minus negative).
      v~ = v + r*x                                       (Eq. 19)
      z  = +1 if v~ >= θ; -1 if v~ <= -θ and m > 0; else 0  (Eq. 20-21, θ+ = θ, θ- = -θ)
      v  = v~ - θ z                                       (Eq. 22)
      m  = m + z                                          (Eq. 23)
    The paper's spike s = θ z and memory θ m; with θ > 0, m > 0 is the paper's memory condition.
    Returns ((new v, new m), z); z is in {-1, 0, +1} and m >= 0 always.
    """
    v, m = state
    v = v + p.r * x
    pos = v >= p.v_threshold
    neg = (v <= -p.v_threshold) & (m > 0) & ~pos
    z = pos.to(v.dtype) - neg.to(v.dtype)
    return (v - p.v_threshold * z, m + z), z


def lif_step(v: torch.Tensor, x: torch.Tensor, p: LIFParams, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaky integrate-and-fire, forward Euler: v += dt/tau (v_leak - v + r x), then `fire`."""
    return fire(v + dt / p.tau * (p.v_leak - v + p.r * x), p.v_threshold, p.v_reset, p.subtract)


def cubalif_step(state: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, p: CubaLIFParams, dt: float):
    """Current-based LIF: i += dt/tau_syn (-i + w_in x); v += dt/tau_mem (v_leak - v + r i); `fire`."""
    i, v = state
    i = i + dt / p.tau_syn * (p.w_in * x - i)
    v, z = fire(v + dt / p.tau_mem * (p.v_leak - v + p.r * i), p.v_threshold, p.v_reset, p.subtract)
    return (i, v), z


def integrator_step(v: torch.Tensor, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Integrate-only (NIR `I`): v += r*x; the output is v."""
    return v + r * x


def li_step(v: torch.Tensor, x: torch.Tensor, p: LIParams, dt: float) -> torch.Tensor:
    """Leaky integrator (NIR `LI`): v += dt/tau (v_leak - v + r x); the output is v."""
    return v + dt / p.tau * (p.v_leak - v + p.r * x)


class LavaCubaParams(NamedTuple):
    """Lava's bit-accurate CUBA neuron (lava/proc/lif/models.py, AbstractPyLifModelFixed) as netx builds it
    from a lava-dl layer: iDecay, vDecay in 1/4096 per step, threshold vth = vThMant << 6 (state units)."""
    i_decay: int
    v_decay: int
    vth: torch.Tensor


def lava_cuba_step(state: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, p: LavaCubaParams):
    """One step of Lava's fixed-point LIF on int64 state (u, v), x the integer synaptic input (weight units):
      u = wrap24(decay12(u, iDecay) + (x << 6))     (wrap: u > 2^23 -> u - 2^24, u <= -2^23 -> u + 2^24)
      v = clip(decay12(v, vDecay) + u, +-(2^23 - 1))
      z = v > vth; v = 0 where z (u keeps its value)
    Returns ((u, v), z as x's dtype)."""
    u, v = state
    u = loihi.wrap_current(loihi.decay(u, p.i_decay) + (torch.round(x).to(torch.int64) << loihi.ACT_SHIFT))
    v = torch.clamp(loihi.decay(v, p.v_decay) + u, -loihi.V_LIMIT, loihi.V_LIMIT)
    z = v > p.vth
    return (u, torch.where(z, torch.zeros_like(v), v)), z.to(x.dtype)
