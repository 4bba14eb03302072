"""lava-dl 0.6.0's netx HDF5 layout and CUBA neuron semantics, as `lava.lib.dl.netx.hdf5.Network` reads them.

Shared by the exporter and the importer so that both speak exactly the dialect netx runs (docs/parity.md).

File: group `layer` with groups `0`, `1`, ... in network order, each with a `type` dataset
(`input`, `conv`, `dense`, `flatten`; netx raises NotImplementedError for `pool`, `average`, ...):
  - shapes in torch order ((C, H, W) or (n,)); netx reverses them to Lava's (W, H, C);
  - `conv`: `weight` (C_out, C_in/groups, kH, kW) as torch stores it, `stride`/`padding`/`dilation` (h, w),
    `groups`, optional `bias` per channel; `dense`: `weight` (out, in), optional `bias`;
  - a `dense` after a conv layer is fed the C-order (C, H, W) flatten (netx transposes Lava's (W, H, C));
  - netx reads `weight` and `bias` with `.astype(int)`: the file holds integer mantissas;
  - `neuron`: `type` CUBA, `iDecay`, `vDecay` (12-bit, 4096 = 1), `vThMant`, `refDelay`, `gradedSpike`.
CUBA (lava.proc.lif PyLifModelBitAcc, fixed point, everything in units of 2**6):
  u = u * (4096 - iDecay) >> 12 + W s;  v = v * (4096 - vDecay) >> 12 + u + bias;
  z = v > vThMant;  v = 0 where z   (reset to zero; u, v clipped/wrapped to 24 bits).
With iDecay = 4096 and vDecay = 0 this is exactly NIR's IF with r = 1, v_reset = 0 and core reset
(`v > threshold`, reset to 0), in integer arithmetic: the one neuron both sides express exactly.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

IF_DECAYS = {"iDecay": 4096, "vDecay": 0}    # CUBA without current or voltage leak: integrate-and-fire
NEVER_FIRES = (1 << 18) - 1                  # vThMant above the 24-bit clip of v (slayer's readout value)
V_LIMIT = (1 << 23) - 1                      # |v| and |u| in units of 2**6 (Loihi's 24-bit state)
STATE_SHIFT = 6                              # netx's vThMant, bias and inputs are left-shifted by 6 bits
MAX_WEIGHT = 127                             # signed 8-bit weight mantissas (netx's optimize_weight_bits)
MAX_BIAS = 4095                              # signed 13-bit bias mantissa (bias_exp = 6 in netx)
MAX_THRESHOLD = (1 << 17) - 1                # unsigned 17-bit vThMant
ATTR = "spikeport"                           # root attribute: JSON with input/output scales and approximations


def never_fires(v_th_mant: int) -> bool:
    """A CUBA threshold that v (clipped to 24 bits) can never exceed: the neuron is a pure integrator."""
    return (int(v_th_mant) << STATE_SHIFT) >= V_LIMIT


def write_str(group: h5py.Group, key: str, value: str) -> None:
    """A string dataset as slayer writes `type` (netx's NetDict decodes element 0)."""
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def read_str(group: h5py.Group, key: str) -> str:
    value = group[key]
    raw = value[0] if len(value.shape) > 0 else value[()]
    return raw.decode("ascii") if isinstance(raw, bytes) else str(raw)


def read_int(group: h5py.Group, key: str) -> np.ndarray:
    """An integer array the way netx reads it (`.astype(int)`, so fractions are truncated)."""
    return np.asarray(group[key][()]).astype(int)


def file_info(f: h5py.File) -> dict:
    """spikeport's root attribute (absent in files written by lava-dl itself)."""
    raw = f.attrs.get(ATTR)
    return json.loads(raw) if raw is not None else {}
