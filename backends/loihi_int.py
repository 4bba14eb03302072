"""Loihi's CUBA neuron integer arithmetic (AbstractPyLifModelFixed.subthr_dynamics, lava-nc 0.10.0): 12-bit decays,
the 24-bit current wrap and the 6-bit activation shift, on numpy integer arrays and torch int64 tensors alike."""
from __future__ import annotations

STATE_BITS = 24                        # u and v are 24-bit (uv_bitwidth)
STATE_LIMIT = 1 << (STATE_BITS - 1)
V_LIMIT = STATE_LIMIT - 1              # v saturates at +-(2^23 - 1)
ACT_SHIFT = 6                          # synaptic input and threshold are MSB-aligned by 6 bits (act_shift, vth_shift)
DECAY_BITS = 12                        # du and dv are 12-bit fractions of 4096 (decay_shift)
DECAY_UNITY = 1 << DECAY_BITS


def decay(x, d):
    """x (4096 - d) / 4096 rounded toward zero: sign(y) (|y| >> 12) with y = x (4096 - d); x holds int64 (an
    array or a tensor), d an integer or integers broadcast to it."""
    y = x * (DECAY_UNITY - d)
    return (abs(y) >> DECAY_BITS) * ((y > 0) * 1 - (y < 0) * 1)


def wrap_current(u):
    """The 24-bit wrap of the current u: u > 2^23 -> u - 2^24, u <= -2^23 -> u + 2^24 (note: +2^23 is kept)."""
    return u - (2 * STATE_LIMIT) * (u > STATE_LIMIT) + (2 * STATE_LIMIT) * (u <= -STATE_LIMIT)
