"""Quantize a converted NIR graph to a fixed-point target's formats (hwconfigs/<target>.toml [formats]).

Weights become integer mantissas with one shared power-of-two exponent per layer (neuron input gains folded in),
taus Loihi's 12-bit decays, thresholds, biases, leaks and v(0) integers, direct input and graded spike payloads
integers; the scheme is docs/nir-extensions.md, "Fixed point"."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import nir
import numpy as np

import backends
from backends import fixedpoint as fx
from backends.graph import WEIGHTED_TYPES, GraphView, analyse
from backends.nirext import neuron_semantics, with_fixed_point
from pipeline.errors import SpikeportError
from pipeline.hardware.hwconfig import HwConfig, load_hwconfig

HEADROOM_BITS = 3   # the largest threshold maps to 2^(state_bits - 1 - 6 - 3): v holds 8 thresholds before saturating
CALIBRATION_T = 32  # steps of the float calibration run that sets an integrator output's range
# The integer formats lava-dl 0.6.0's netx.hdf5.Network runs bit for bit (docs/parity.md, "deploy's model.net"),
# laid over the target's formats by `quantize(..., netx=True)`: netx's synapses add the whole integer sum W s
# (no exponent: E = 0, 8-bit mantissas, so a dense layer stays inside the [-256, 254] of lava-dl's
# netx.utils.optimize_weight_bits) and its neurons take bias_mant << 6 (hdf5.py fixes bias_exp = 6).
NETX_FORMATS = {"weight_bits": 8, "weight_exp_min": 0, "weight_exp_max": 0, "bias_exp_min": 6, "bias_exp_max": 6}


class QuantizeError(SpikeportError):
    """A graph cannot be mapped to the target's number formats; the message names the node."""


@dataclass
class Quantized:
    """The quantized graph and, per weighted node, what quantization chose (for the report)."""

    graph: nir.NIRGraph
    layers: dict[str, dict] = field(default_factory=dict)


def choose_exponent(w: np.ndarray, bits: int, exp_min: int, exp_max: int) -> int:
    """The smallest E in [exp_min, exp_max] at which every round(w / 2^E) fits the `bits`-bit mantissa range
    of w's sign mode (no overflow); exp_max if none does (the largest values are then clipped).

    It minimises the rounding error among the exponents without overflow: the grid 2^(E+1) Z is a subset of
    2^E Z and the in-range part of the finer grid covers w, so no weight's nearest grid point gets closer
    as E grows (tests/test_quantize.py checks this against brute force over all exponents)."""
    lo, hi = fx.mantissa_range(bits, fx.sign_mode(w))
    for exp in range(exp_min, exp_max + 1):
        m = np.rint(w / 2.0 ** exp)
        if m.min(initial=0) >= lo and m.max(initial=0) <= hi:
            return exp
    return exp_max


def quantize_weights(w: np.ndarray, bits: int, exp_min: int, exp_max: int) -> tuple[np.ndarray, int, int]:
    """(mantissas, exponent, number of clipped weights): w ~ m * 2^E, m = round half to even, then clipped."""
    exp = choose_exponent(w, bits, exp_min, exp_max)
    lo, hi = fx.mantissa_range(bits, fx.sign_mode(w))
    raw = np.rint(w / 2.0 ** exp)
    m = np.clip(raw, lo, hi)
    return m.astype(np.int64), exp, int((m != raw).sum())


def quantize_bias(b: np.ndarray, mant_bits: int, exp_max: int, exp_min: int = 0) -> np.ndarray:
    """A bias in v units as mant << exp per element (Lava's bias_mant, bias_exp): the smallest exp in
    [exp_min, exp_max] at which round(b / 2^exp) fits the signed `mant_bits` mantissa; returned as the integer."""
    top = (1 << (mant_bits - 1)) - 1
    out = np.zeros_like(b, dtype=np.int64)
    for i, value in np.ndenumerate(b):
        for exp in range(exp_min, exp_max + 1):
            mant = np.rint(value / 2.0 ** exp)
            if abs(mant) <= top or exp == exp_max:
                out[i] = int(np.clip(mant, -top - 1, top)) << exp
                break
    return out


def _payload(a: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """Graded spike payloads: integers of `bits` bits (signed if any a < 0) and their unit."""
    top = (1 << (bits - 1)) - 1 if a.min() < 0 else (1 << bits) - 1
    unit = float(np.abs(a).max()) / top or 1.0
    return np.rint(a / unit).astype(np.int64), unit


class _Quantizer:
    def __init__(self, view: GraphView, fmt: dict, weight_bits: int, input_unit: float, input_top: int,
                 payload_bits: int, output_peak: float):
        self.view, self.fmt, self.bits, self.payload_bits = view, fmt, weight_bits, payload_bits
        self.output_peak = output_peak
        self.units = {view.input: input_unit}       # unit of each node's output values
        self.tops = {view.input: input_top}         # largest |integer| a node outputs (spikes: 1)
        self.neuron_units: dict[str, float] = {}
        self.gains: dict[str, float] = {}
        self.layers: dict[str, dict] = {}

    def neuron(self, name: str) -> str:
        succs = self.view.succs(name)
        if len(succs) != 1 or not isinstance(self.view.node(succs[0]), fx.NEURONS):
            raise QuantizeError(f"node {name!r}: a weighted node must feed exactly one neuron node to be "
                                f"quantized (it feeds {list(succs)})")
        return succs[0]

    def gain(self, name: str) -> float:
        """Neuron `name`'s taus moved to Loihi's 12-bit decays (`decay_taus`), then its input gain
        (`fixedpoint.input_gain`): one value per layer, as the layer's weights share one step."""
        if name not in self.gains:
            node = self.view.node(name)
            decay_taus(name, node, self.view.dt)
            g = np.unique(np.broadcast_to(fx.input_gain(node, self.view.dt), self.view.shape(name)))
            if g.size != 1 or g[0] <= 0:
                raise QuantizeError(f"node {name!r}: fixed point needs one positive input gain per layer (r, w_in "
                                    f"and the taus equal across neurons), got {g.size} values in "
                                    f"[{g.min()}, {g.max()}]")
            self.gains[name] = float(g[0])
        return self.gains[name]

    def neuron_unit(self, name: str, w: np.ndarray, b: np.ndarray, in_unit: float, in_top: int) -> float:
        """Value of one activation unit at neuron `name` (docs/nir-extensions.md, "Fixed point"), for weights
        `w` and bias `b` already multiplied by the neuron's input gain: a spiking layer's largest threshold maps to
        2^(state_bits - 1 - 6 - HEADROOM_BITS); an integrator's unit keeps its worst per-step input (row L1 norm
        x largest input) and twice its largest calibration output inside the 2^17 units that the 24-bit state
        holds after the << 6. Either is raised if the weights would otherwise need an exponent above
        weight_exp_max, or the biases one above bias_exp_max."""
        if name not in self.neuron_units:
            node = self.view.node(name)
            _, hi = fx.mantissa_range(self.bits, "mixed")
            fits = float(np.abs(w).max()) * in_unit / (hi * 2.0 ** self.fmt["weight_exp_max"])
            bias_top = ((1 << (self.fmt["bias_mant_bits"] - 1)) - 1) << self.fmt["bias_exp_max"]
            fits = max(fits, float(np.abs(b).max(initial=0)) * (1 << fx.ACT_SHIFT) / bias_top)
            span = 2.0 ** (fx.STATE_BITS - 1 - fx.ACT_SHIFT)
            if isinstance(node, fx.INTEGRATORS):
                l1 = float(np.abs(w).reshape(w.shape[0], -1).sum(1).max()) * in_top * in_unit
                unit = max(l1, 2 * self.output_peak) / span
            else:
                top = 2 ** (self.fmt["state_bits"] - 1 - fx.ACT_SHIFT - HEADROOM_BITS)
                if top > 2 ** self.fmt["threshold_bits"] - 1:
                    raise QuantizeError(f"target formats: threshold_bits {self.fmt['threshold_bits']} cannot hold "
                                        f"2^{int(np.log2(top))}")
                unit = float(np.max(node.v_threshold)) / top
            self.neuron_units[name] = max(unit, fits) or 1.0
        return self.neuron_units[name]

    def weighted(self, name: str, node) -> None:
        pred = self.view.preds[name][0]
        in_unit, in_top = self.units[pred], self.tops[pred]
        target = self.neuron(name)
        gain = self.gain(target)
        w = np.asarray(node.weight, np.float64)
        bias = np.asarray(node.bias, np.float64) if isinstance(node, (nir.Affine, nir.Conv2d)) else np.zeros(0)
        unit = self.neuron_unit(target, w * gain, bias * gain, in_unit, in_top)
        m, exp, clipped = quantize_weights(w * gain * in_unit / unit, self.bits, self.fmt["weight_exp_min"],
                                           self.fmt["weight_exp_max"])
        step = 2.0 ** exp * unit / (in_unit * gain)
        node.weight = (m * step).astype(np.float32)
        fan_in = int(np.prod(w.shape[1:]))
        if isinstance(node, nir.Conv2d):   # below 2^23 also Sparse's int32 sum of m << k (k <= 8) is safe
            bound, limit, what = fan_in * int(np.abs(m).max(initial=0)) * in_top, fx.CONV_LIMIT, "Conv's 24-bit sum"
        else:
            stored, _, _ = fx.dense_storage(m, self.bits)
            bound, limit, what = fan_in * int(np.abs(stored).max(initial=0)) * in_top, fx.INT32_LIMIT, "Dense's int32 sum"
        if bound >= limit:
            raise QuantizeError(f"node {name!r}: fan-in {fan_in} x mantissa x input up to {in_top} can reach {bound}, "
                                f"beyond {what} ({limit}); use fewer input or payload bits")
        if isinstance(node, (nir.Affine, nir.Conv2d)):
            vunit = unit / (1 << fx.ACT_SHIFT)
            b = quantize_bias(bias * gain / vunit, self.fmt["bias_mant_bits"],
                              self.fmt["bias_exp_max"], self.fmt["bias_exp_min"])
            node.bias = (b * vunit / gain).astype(np.float32)
        node.metadata = with_fixed_point(node.metadata, {"weight_exp": exp, "weight_bits": self.bits,
                                                         "weight_step": step})
        self.layers[name] = {"neuron": target, "weight_exp": exp, "weight_bits": self.bits, "clipped": clipped,
                             "mantissa_min": int(m.min()), "mantissa_max": int(m.max()),
                             "rms_error": float(np.sqrt(np.mean((node.weight - w) ** 2)))}
        self.units[name], self.tops[name] = unit, 0

    def neuron_node(self, name: str, node) -> None:
        if name not in self.neuron_units:
            raise QuantizeError(f"node {name!r}: a neuron must be fed by an Affine, Linear or Conv2d node to be quantized")
        unit, gain = self.neuron_units[name], self.gains[name]
        vunit = unit / (1 << fx.ACT_SHIFT)
        sem = neuron_semantics(name, node)
        meta = dict(node.metadata.get("spikeport", {})) if node.metadata else {}
        if sem.v_init is not None:
            meta["v_init"] = (np.clip(np.rint(sem.v_init / vunit), -fx.V_LIMIT, fx.V_LIMIT) * vunit).astype(np.float32)
        if isinstance(node, fx.SPIKING):
            top = 2 ** self.fmt["threshold_bits"] - 1
            node.v_threshold = (np.clip(np.rint(np.asarray(node.v_threshold) / unit), 1, top) * unit).astype(np.float32)
            node.v_reset = (np.clip(np.rint(np.asarray(node.v_reset) / vunit), -fx.V_LIMIT, fx.V_LIMIT)
                            * vunit).astype(np.float32)
        if isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF)):   # v_leak enters v as dt/tau v_leak per step
            per_step = fx.leak_gain(node, self.view.dt)
            leak = quantize_bias(per_step * np.asarray(node.v_leak, np.float64) / vunit, self.fmt["bias_mant_bits"],
                                 self.fmt["bias_exp_max"], self.fmt["bias_exp_min"])
            node.v_leak = (leak * vunit / per_step).astype(np.float32)
        if meta:
            node.metadata = {**(node.metadata or {}), "spikeport": meta}
        node.metadata = with_fixed_point(node.metadata, {"unit": unit})
        for pred in self.view.preds[name]:
            if isinstance(self.view.node(pred), nir.Scale):
                self.residual(pred, self.view.node(pred), unit / gain)
        self.units[name], self.tops[name] = 1.0, 1

    def residual(self, name: str, node, unit: float) -> None:
        """A Scale that feeds a neuron beside a weighted node (a residual edge): its payloads are integers in the
        neuron's activation unit (over its input gain), so they add to the synaptic input exactly; quantized as a
        synapse weight (a weight_bits mantissa << exponent 0..weight_exp_max)."""
        self.check_spiking_source(name)
        m, exp, _ = quantize_weights(np.asarray(node.scale, np.float64) / unit, self.bits, 0,
                                     self.fmt["weight_exp_max"])
        node.scale = (np.left_shift(m, exp) * unit).astype(np.float32)
        node.metadata = with_fixed_point(node.metadata, {"unit": unit})

    def check_spiking_source(self, name: str) -> None:
        pred = self.view.preds[name][0]
        if not isinstance(self.view.node(pred), fx.SPIKING):
            raise QuantizeError(f"node {name!r}: a Scale is quantized as a graded spike payload and must follow a "
                                f"spiking neuron node, not {type(self.view.node(pred)).__name__}")

    def feeds_neuron(self, name: str) -> bool:
        return any(isinstance(self.view.node(s), fx.NEURONS) for s in self.view.succs(name))

    def scale(self, name: str, node) -> None:
        self.check_spiking_source(name)
        shape = self.view.shape(name)
        payload, unit = _payload(np.broadcast_to(np.asarray(node.scale, np.float64), shape), self.payload_bits)
        node.scale = (payload * unit).astype(np.float32)
        node.metadata = with_fixed_point(node.metadata, {"unit": unit})
        self.units[name], self.tops[name] = unit, int(np.abs(payload).max())

    def pool(self, name: str, node) -> None:
        """Pooling runs as an integer sum (fixedpoint.pool_kwargs): an average's 1 / area goes into the unit."""
        pred = self.view.preds[name][0]
        area = int(np.prod(fx.pair(node.kernel_size)))
        self.units[name] = self.units[pred] / (area if isinstance(node, nir.AvgPool2d) else 1)
        self.tops[name] = self.tops[pred] * area


def decay_taus(name: str, node, dt: float) -> None:
    """Set a LIF/LI/CubaLIF node's taus to those of Loihi's 12-bit decays (fixedpoint.decays): dt / tau =
    dv / 4096 with dv in 1..4095; a CubaLIF's dt / tau_syn = (du + 1) / 4096 with du in 0..4095."""
    def snap(attr: str, hi: int) -> None:
        ratio = np.rint(fx.DECAY_UNITY * dt / np.asarray(getattr(node, attr), np.float64))
        if np.any(ratio < 1) or np.any(ratio > hi):
            raise QuantizeError(f"node {name!r}: dt/{attr} x 4096 must round into 1..{hi} for Loihi's 12-bit decay "
                                f"(dt = {dt}), got {ratio.min():g}..{ratio.max():g}")
        setattr(node, attr, (fx.DECAY_UNITY * dt / ratio).astype(np.float32))
    if isinstance(node, (nir.LIF, nir.LI)):
        snap("tau", fx.FULL_DECAY)
    elif isinstance(node, nir.CubaLIF):
        snap("tau_syn", fx.DECAY_UNITY)
        snap("tau_mem", fx.FULL_DECAY)


def output_peak(graph: nir.NIRGraph, calib_x, calib_T: int = CALIBRATION_T, calib_samples: int = 256) -> float:
    """Largest |output| of a float run of the first `calib_samples` of `calib_x` (direct, or time-varying with
    `calib_T` steps) for `calib_T` steps."""
    x = np.asarray(calib_x, np.float64)[:calib_samples]
    return float(np.abs(backends.get("reference").run(graph, x, int(calib_T)).outputs).max())


def quantize(graph: nir.NIRGraph, target: HwConfig | str, calib_x, *, weight_bits: int | None = None,
             input_bits: int = 8, payload_bits: int = 8, peak: float | None = None, netx: bool = False) -> Quantized:
    """Quantize `graph` for `target`; `calib_x` (samples of the input) sets the input format's scale, and
    `peak` (default: `output_peak(graph, calib_x)`) the range of an integrator output.

    weight_bits: mantissa bits (default and maximum: the target's `formats.weight_bits`); input_bits: the direct
    input's integer width; payload_bits: the width of graded spike payloads (Scale nodes after a neuron); netx:
    lay NETX_FORMATS over the target's (weight exponent 0, biases in whole activation units), so that
    lava-dl's netx runs the integers bit for bit (backends.netx.export_quantized)."""
    hw = target if isinstance(target, HwConfig) else load_hwconfig(target)
    fmt = {"bias_exp_min": 0, **hw.fixed_point_formats(), **(NETX_FORMATS if netx else {})}
    if fmt["state_bits"] != fx.STATE_BITS:
        raise QuantizeError(f"{hw.path}: formats.state_bits is {fmt['state_bits']}, but spikeport's fixed-point "
                            f"arithmetic (Lava's bit-accurate models) has {fx.STATE_BITS}-bit states")
    bits = fmt["weight_bits"] if weight_bits is None else int(weight_bits)
    if not 2 <= bits <= fmt["weight_bits"]:
        raise QuantizeError(f"weight_bits must be in 2..{fmt['weight_bits']} for target {hw.name!r} (a sign bit and "
                            f"at least one magnitude bit), got {bits}")
    for what, width in (("input_bits", input_bits), ("payload_bits", payload_bits)):
        if not 2 <= int(width) <= fx.STATE_BITS:
            raise QuantizeError(f"{what} must be in 2..{fx.STATE_BITS} (the {fx.STATE_BITS}-bit neuron state), "
                                f"got {width}")
    g = copy.deepcopy(graph)
    view = analyse(g)
    for name in view.order:
        node = view.node(name)
        if not isinstance(node, fx.SUPPORTED):
            raise QuantizeError(f"node {name!r}: {type(node).__name__} has no fixed-point form (supported: "
                                f"{', '.join(sorted(t.__name__ for t in fx.SUPPORTED))})")
    x = np.asarray(calib_x, np.float64)
    signed = bool(x.min() < 0)
    top = (1 << (input_bits - 1)) - 1 if signed else (1 << input_bits) - 1
    input_unit = float(np.abs(x).max()) / top or 1.0
    peak = output_peak(graph, x) if peak is None else float(peak)
    q = _Quantizer(view, fmt, bits, input_unit, top, payload_bits, peak)
    for name in view.order:
        node = view.node(name)
        if isinstance(node, WEIGHTED_TYPES):
            q.weighted(name, node)
        elif isinstance(node, fx.NEURONS):
            q.neuron_node(name, node)
        elif isinstance(node, nir.Scale) and not q.feeds_neuron(name):
            q.scale(name, node)
        elif isinstance(node, fx.POOLS):
            q.pool(name, node)
        elif name != view.input:
            pred = view.preds[name][0]
            q.units[name], q.tops[name] = q.units[pred], q.tops[pred]
    g.metadata = with_fixed_point(g.metadata, {"target": f"{hw.name} (netx formats)" if netx else hw.name,
                                               "input_scale": input_unit,
                                               "input_bits": int(input_bits), "input_signed": signed})
    analyse(g)
    return Quantized(g, q.layers)
