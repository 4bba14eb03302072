"""Energy per inference, ANN against SNN: exact operation counts times a hwconfig's per-operation energies.

ANN counts come from the NIR graph (DNISNM Eq. 24, SNN2ANN Eq. 22); SNN counts from a run's `input_events`, the
input's own events included when the input is spikes (an `encoding` other than direct).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as F

from backends.graph import WEIGHTED_TYPES as WEIGHTED, GraphView, analyse
from backends.nirext import ENCODINGS, NEURON_TYPES, SPIKING_TYPES
from backends.result import RunResult
from pipeline.hardware.hwconfig import HwConfig, HwConfigError, load_hwconfig

PJ = 1e-12
POOLS = (nir.AvgPool2d, nir.SumPool2d)
# Joint A-SNN (Guo et al.) Sec. 5.4: one activation or membrane potential is 32 bits, one spike 1 bit.
ACTIVATION_BITS = 32
SPIKE_BITS = 1
# Data-movement levels: name -> key of the hwconfig [memory] table (energy of one access of access_bits).
MEMORY_LEVELS = {
    "cache_8kb": "cache_8kb_read_pj", "cache_32kb": "cache_32kb_read_pj", "cache_1mb": "cache_1mb_read_pj",
    "dram_min": "dram_access_min_pj", "dram_max": "dram_access_max_pj",
}
ANALOG_ENCODING = "direct"   # every other encoding feeds the first layer spikes (events), priced as ACs


@dataclass(frozen=True)
class LayerOps:
    """Structural counts of one node for one ANN inference.

    `analog_input`: the node's input is reached from the Input node without passing a spiking neuron
    (direct encoding), so in the SNN it multiplies analog values every step.
    `neurons`: number of neuron states of a neuron node (IF, LIF, CubaLIF, I, LI), 0 for any other node.
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    ann_macs: int
    ann_adds: int
    analog_input: bool
    neurons: int = 0


@dataclass(frozen=True)
class EnergyRow:
    """One counted node: operations and joules per inference.

    Compute and data movement are separate: `ann_joules` / `snn_joules` are compute energy only
    (`snn_joules` = `snn_mac_joules` + `snn_ac_joules` + `snn_neuron_joules`); the `*_movement_*` columns are
    None unless the report was asked for data movement. The SNN columns are None without a run.
    """

    name: str
    kind: str
    ann_macs: int
    ann_adds: int
    snn_macs: float | None
    snn_acs: float | None
    ann_joules: float
    snn_joules: float | None
    neurons: int = 0
    snn_neuron_updates: float | None = None
    snn_spikes: float | None = None
    snn_mac_joules: float | None = None
    snn_ac_joules: float | None = None
    snn_neuron_joules: float | None = None
    ann_movement_bits: float | None = None
    snn_movement_bits: float | None = None
    ann_movement_joules: float | None = None
    snn_movement_joules: float | None = None


@dataclass(frozen=True)
class EnergyReport:
    """Per-layer counts and energies, totals, and the assumptions they rest on."""

    hwconfig: str
    T: int | None
    layers: tuple[EnergyRow, ...]
    assumptions: tuple[str, ...]
    memory_level: str | None = None
    movement_by_level: dict | None = None
    encoding: str = ANALOG_ENCODING

    @property
    def data_movement(self) -> bool:
        return self.memory_level is not None

    @property
    def ann_joules_per_inference(self) -> float:
        """ANN compute energy (MACs)."""
        return float(sum(r.ann_joules for r in self.layers))

    @property
    def snn_joules_per_inference(self) -> float | None:
        """SNN compute energy (MACs, ACs, neuron updates)."""
        if self.T is None:
            return None
        return float(sum(r.snn_joules for r in self.layers))

    @property
    def ann_movement_joules_per_inference(self) -> float | None:
        return float(sum(r.ann_movement_joules for r in self.layers)) if self.data_movement else None

    @property
    def snn_movement_joules_per_inference(self) -> float | None:
        if not self.data_movement or self.T is None:
            return None
        return float(sum(r.snn_movement_joules for r in self.layers))

    @property
    def ratio(self) -> float | None:
        """E_ANN / E_SNN of compute energy, the energy benefit of SNN2ANN Eq. 23 (None without a run or with zero SNN energy)."""
        snn = self.snn_joules_per_inference
        return self.ann_joules_per_inference / snn if snn else None

    @property
    def energy_drop(self) -> float | None:
        """(E_SNN - E_ANN) / E_ANN of compute energy, DNISNM Eq. 26 (negative when the SNN saves energy)."""
        snn, ann = self.snn_joules_per_inference, self.ann_joules_per_inference
        return (snn - ann) / ann if snn is not None and ann else None

    @property
    def ratio_with_movement(self) -> float | None:
        """(compute + data movement) of the ANN over that of the SNN; None without data movement or a run."""
        snn_move = self.snn_movement_joules_per_inference
        if snn_move is None:
            return None
        snn = self.snn_joules_per_inference + snn_move
        return (self.ann_joules_per_inference + self.ann_movement_joules_per_inference) / snn if snn else None

    def to_dict(self) -> dict:
        """JSON-serialisable form: totals, ratios, per-layer rows, assumptions."""
        return {
            "hwconfig": self.hwconfig,
            "T": self.T,
            "encoding": self.encoding,
            "ann_joules_per_inference": self.ann_joules_per_inference,
            "snn_joules_per_inference": self.snn_joules_per_inference,
            "ratio": self.ratio,
            "energy_drop": self.energy_drop,
            "data_movement": self.data_movement,
            "memory_level": self.memory_level,
            "ann_movement_joules_per_inference": self.ann_movement_joules_per_inference,
            "snn_movement_joules_per_inference": self.snn_movement_joules_per_inference,
            "movement_joules_by_level": self.movement_by_level,
            "ratio_with_movement": self.ratio_with_movement,
            "layers": [asdict(r) for r in self.layers],
            "assumptions": list(self.assumptions),
        }

    def to_markdown(self) -> str:
        """A table with one row per counted node and a total row, the totals in words, the assumptions."""
        steps = f", T = {self.T}, input encoding `{self.encoding}`" if self.T is not None else ""
        move = self.data_movement
        head = ["layer", "kind", "ANN MACs", "adds (not charged)", "SNN MACs", "SNN ACs", "SNN neuron updates",
                "ANN compute", "SNN compute"]
        if move:
            head += ["ANN data moved", "SNN data moved", "ANN data movement", "SNN data movement"]
        lines = [f"Energy per inference (hwconfig `{self.hwconfig}`{steps})", "",
                 "| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
        for r in self.layers:
            cells = [r.name, r.kind, _count(r.ann_macs), _count(r.ann_adds), _count(r.snn_macs), _count(r.snn_acs),
                     _count(r.snn_neuron_updates), _joules(r.ann_joules), _joules(r.snn_joules)]
            if move:
                cells += [_bits(r.ann_movement_bits), _bits(r.snn_movement_bits),
                          _joules(r.ann_movement_joules), _joules(r.snn_movement_joules)]
            lines.append("| " + " | ".join(cells) + " |")
        total = ["**total**", "", _count(sum(r.ann_macs for r in self.layers)),
                 _count(sum(r.ann_adds for r in self.layers)), _count(self._snn_sum("snn_macs")),
                 _count(self._snn_sum("snn_acs")), _count(self._snn_sum("snn_neuron_updates")),
                 _joules(self.ann_joules_per_inference), _joules(self.snn_joules_per_inference)]
        if move:
            total += [_bits(sum(r.ann_movement_bits for r in self.layers)), _bits(self._snn_sum("snn_movement_bits")),
                      _joules(self.ann_movement_joules_per_inference), _joules(self.snn_movement_joules_per_inference)]
        lines.append("| " + " | ".join(total) + " |")
        if self.ratio is not None:
            lines += ["", f"Compute only: E_ANN / E_SNN = {self.ratio:.3g} (SNN2ANN Eq. 23); energy drop "
                          f"{100 * self.energy_drop:+.1f} % (DNISNM Eq. 26)."]
        if move:
            lines += ["", f"Data movement priced at memory level `{self.memory_level}`; the same volumes at every "
                          "level of the hwconfig's [memory] table (ANN / SNN per inference):", ""]
            lines += [f"- {lvl}: {_joules(v['ann'])} / {_joules(v['snn'])}" for lvl, v in self.movement_by_level.items()]
            if self.ratio_with_movement is not None:
                lines += ["", f"Compute + data movement: E_ANN / E_SNN = {self.ratio_with_movement:.3g}."]
        lines += ["", "Assumptions:", ""] + [f"- {a}" for a in self.assumptions]
        return "\n".join(lines) + "\n"

    def _snn_sum(self, column: str) -> float | None:
        return None if self.T is None else sum(getattr(r, column) for r in self.layers)


def _pair(value) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(int)
    return int(arr[0]), int(arr[-1])


def _conv_kwargs(node: nir.Conv2d) -> dict:
    padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
    return dict(stride=_pair(node.stride), padding=padding, dilation=_pair(node.dilation), groups=int(node.groups))


def weighted_macs(node: nir.NIRNode, in_shape: tuple[int, ...]) -> int:
    """ANN MACs of one weighted node per inference (DNISNM Eq. 24, SNN2ANN Eq. 22, with groups).

    Conv2d: C_out * H_out * W_out * (C_in/groups) * kH * kW; Linear/Affine: out * in. Bias additions are
    not MACs. The conv output shape is computed by torch from `in_shape`, not read from the NIR node.
    """
    weight = np.asarray(node.weight)
    if isinstance(node, nir.Conv2d):
        x = torch.empty(1, *in_shape, device="meta")
        out = F.conv2d(x, torch.empty(weight.shape, device="meta"), **_conv_kwargs(node))
        return math.prod(out.shape) * math.prod(weight.shape[1:])
    return int(weight.size)


def fanout(node: nir.NIRNode, in_shape: tuple[int, ...]) -> np.ndarray:
    """Number of synapses (weights) each input element of a weighted node drives, in `in_shape`.

    Conv2d: the input gradient of the summed output of a unit-weight convolution of a unit input, which
    counts the (output position, weight) pairs each element enters: exact at padded borders, with stride,
    dilation and groups (float32 is exact: the counts are integers far below 2**24). Linear/Affine:
    out_features for every element.
    """
    if isinstance(node, nir.Conv2d):
        x = torch.ones(1, *in_shape, requires_grad=True)
        F.conv2d(x, torch.ones(np.shape(node.weight)), **_conv_kwargs(node)).sum().backward()
        return x.grad[0].double().numpy()
    return np.full(in_shape, np.shape(node.weight)[0], dtype=np.float64)


def synaptic_ops(node: nir.NIRNode, in_shape: tuple[int, ...], events: np.ndarray) -> float:
    """SNN accumulates of one weighted node per inference: sum over input elements of events x fanout.

    `events` holds, per input element, the non-zero inputs per sample summed over the T steps
    (`RunResult.input_events`), so the spike rate enters once (#S_ops of SNN2ANN Eq. 21, made exact).
    """
    events = np.asarray(events, dtype=np.float64)
    if events.shape != tuple(in_shape):
        raise ValueError(f"events have shape {events.shape}, the node's input has {tuple(in_shape)}")
    return float((events * fanout(node, in_shape)).sum())


def _pool_adds(node: nir.NIRNode, in_shape: tuple[int, ...]) -> int:
    """Additions of a pooling node: one per in-bounds element of every window (padding excluded)."""
    kw = dict(kernel_size=_pair(node.kernel_size), stride=_pair(node.stride), padding=_pair(node.padding))
    ones = torch.ones(1, *in_shape, dtype=torch.float64)
    return int(F.avg_pool2d(ones, divisor_override=1, **kw).sum())


def _analog_nodes(view: GraphView, spike_input: bool = False) -> set[str]:
    """Nodes whose output is analog: the Input (unless it delivers spikes) and every node reached from it
    without a spiking neuron."""
    analog: set[str] = set()
    if spike_input:
        return analog
    for n in view.order:
        reached = any(p in analog for p in view.preds[n])
        if n == view.input or (reached and not isinstance(view.node(n), SPIKING_TYPES)):
            analog.add(n)
    return analog


def layer_ops(graph: nir.NIRGraph, spike_input: bool = False) -> list[LayerOps]:
    """ANN counts of every node that has any, in execution order (`analog_input` as the input is analog, or
    spikes with `spike_input`).

    MACs of weighted nodes; additions of pooling windows and of residual fan-in (k inputs add k-1 tensors);
    the number of neuron states of neuron nodes.
    """
    view = analyse(graph)
    analog = _analog_nodes(view, spike_input)
    rows = []
    for name in view.order:
        node, preds = view.node(name), view.preds[name]
        if not preds:
            continue
        in_shape = view.shape(preds[0])
        macs = weighted_macs(node, in_shape) if isinstance(node, WEIGHTED) else 0
        adds = (len(preds) - 1) * math.prod(in_shape)
        adds += _pool_adds(node, in_shape) if isinstance(node, POOLS) else 0
        neurons = math.prod(view.shape(name)) if isinstance(node, NEURON_TYPES) else 0
        if macs or adds or neurons:
            rows.append(LayerOps(name, type(node).__name__, in_shape, macs, adds,
                                 any(p in analog for p in preds), neurons))
    return rows


def _energy_of(hw: HwConfig | str | Path) -> HwConfig:
    hw = hw if isinstance(hw, HwConfig) else load_hwconfig(hw)
    if hw.energy is None:
        raise HwConfigError(
            f"{hw.path}: target {hw.name!r} has no [energy] table (no published per-operation energies); "
            f"choose a target that has one, e.g. cmos45nm"
        )
    return hw


def _access(hw: HwConfig, level: str) -> tuple[int, float]:
    """(bits per access, joules per access) of memory `level` in the hwconfig's [memory] table."""
    if level not in MEMORY_LEVELS:
        raise ValueError(f"unknown memory level {level!r}; choose one of {', '.join(MEMORY_LEVELS)}")
    key = MEMORY_LEVELS[level]
    if key not in hw.memory or "access_bits" not in hw.memory:
        have = [lvl for lvl, k in MEMORY_LEVELS.items() if k in hw.memory]
        raise HwConfigError(
            f"{hw.path}: data movement at level {level!r} needs keys 'memory.access_bits' and 'memory.{key}'"
            + (f"; levels this target has: {', '.join(have)}" if have and "access_bits" in hw.memory else "")
        )
    return int(hw.memory["access_bits"]), float(hw.memory[key]) * PJ


def ann_movement_bits(ops: LayerOps) -> float:
    """Joint A-SNN Sec. 5.4, ANN: each activation (32 bit) is written to the cache and read back once."""
    return float(2 * ACTIVATION_BITS * ops.neurons)


def snn_movement_bits(ops: LayerOps, T: int, spikes: float) -> float:
    """Joint A-SNN Sec. 5.4, SNN: each membrane potential (32 bit) written and read back at each of T steps,
    and each emitted spike (1 bit) written and read back once (`spikes`: spikes of the node per inference)."""
    return float(2 * ACTIVATION_BITS * ops.neurons * T + 2 * SPIKE_BITS * spikes)


def _movement_by_level(hw: HwConfig, ann_bits: float, snn_bits: float | None) -> dict:
    out = {}
    for level, key in MEMORY_LEVELS.items():
        if key in hw.memory and "access_bits" in hw.memory:
            bits, joules = _access(hw, level)
            out[level] = {"ann": ann_bits / bits * joules, "snn": None if snn_bits is None else snn_bits / bits * joules}
    return out


def ann_energy(graph: nir.NIRGraph, hw: HwConfig | str | Path, data_movement: bool = False,
               memory_level: str = "cache_8kb") -> EnergyReport:
    """ANN side only, no run needed: MACs per weighted layer x MAC energy; the SNN columns are None.

    With `data_movement`, also the Joint A-SNN Sec. 5.4 activation traffic priced per access at `memory_level`.
    """
    hw = _energy_of(hw)
    access = _access(hw, memory_level) if data_movement else None
    rows = []
    for o in layer_ops(graph):
        move = {}
        if access:
            bits = ann_movement_bits(o)
            move = dict(ann_movement_bits=bits, ann_movement_joules=bits / access[0] * access[1])
        rows.append(EnergyRow(o.name, o.kind, o.ann_macs, o.ann_adds, None, None, o.ann_macs * hw.energy.mac_pj * PJ,
                              None, neurons=o.neurons, **move))
    by_level = _movement_by_level(hw, sum(r.ann_movement_bits for r in rows), None) if access else None
    return EnergyReport(hw.name, None, tuple(rows), tuple(_assumptions(hw, None, access, memory_level)),
                        memory_level if access else None, by_level)


def energy_report(graph: nir.NIRGraph, run: RunResult, hw: HwConfig | str | Path,
                  T: int | None = None, data_movement: bool = False,
                  memory_level: str = "cache_8kb", encoding: str = ANALOG_ENCODING) -> EnergyReport:
    """ANN versus SNN energy per inference, per layer (DNISNM Eq. 26, SNN2ANN Eq. 23).

    ANN: MAC energy x sum_l OP_ANN^l. SNN: a layer with analog input pays its ANN MACs at every step
    (T x OP_ANN^1, Eq. 26's MAC-priced first-layer term); every other weighted layer pays one AC per
    recorded input event per synapse the event drives (Eq. 26's AC-priced sum over l >= 2, counted exactly
    from `run.input_events` instead of Eq. 25's layer-average rate). SNN2ANN Eq. 23 prices its classifier at
    the ANN count with MAC energy; here a classifier fed by spikes is counted like any other such layer.
    Every neuron node pays one neuron update per neuron per step (neurons x T) at the hwconfig's
    `energy.neuron_update_pj` (not charged when the target has none).
    With `data_movement`, the Joint A-SNN Sec. 5.4 activation / membrane-potential / spike traffic is added
    in separate columns, priced per access at `memory_level` of the hwconfig's [memory] table.
    `T` defaults to `run.T` and must equal it. `encoding` is the input encoding `run` was fed with: under any
    but `direct` the input is spikes, and the layers it feeds pay ACs per recorded input event like the others.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    hw = _energy_of(hw)
    T = _steps(run, T)
    access = _access(hw, memory_level) if data_movement else None
    mac, ac = hw.energy.mac_pj * PJ, hw.energy.ac_pj * PJ
    update = (hw.energy.neuron_update_pj or 0.0) * PJ
    rows = []
    for o in layer_ops(graph, spike_input=encoding != ANALOG_ENCODING):
        node = graph.nodes[o.name]
        snn_macs, snn_acs = _snn_ops(node, o, run, T)
        updates = float(o.neurons * T)
        spikes = _spikes(run, o.name) if isinstance(node, SPIKING_TYPES) else 0.0
        move = {}
        if access:
            a_bits, s_bits = ann_movement_bits(o), snn_movement_bits(o, T, spikes)
            move = dict(ann_movement_bits=a_bits, snn_movement_bits=s_bits,
                        ann_movement_joules=a_bits / access[0] * access[1],
                        snn_movement_joules=s_bits / access[0] * access[1])
        parts = (snn_macs * mac, snn_acs * ac, updates * update)
        rows.append(EnergyRow(o.name, o.kind, o.ann_macs, o.ann_adds, snn_macs, snn_acs, o.ann_macs * mac, sum(parts),
                              neurons=o.neurons, snn_neuron_updates=updates, snn_spikes=spikes,
                              snn_mac_joules=parts[0], snn_ac_joules=parts[1], snn_neuron_joules=parts[2], **move))
    by_level = None
    if access:
        by_level = _movement_by_level(hw, sum(r.ann_movement_bits for r in rows),
                                      sum(r.snn_movement_bits for r in rows))
    return EnergyReport(hw.name, T, tuple(rows), tuple(_assumptions(hw, T, access, memory_level, encoding)),
                        memory_level if access else None, by_level, encoding)


def _steps(run: RunResult, T: int | None) -> int:
    if T is not None and int(T) != int(run.T):
        raise ValueError(f"T={T} given, but the run used T={run.T}; the event counts are sums over the run's steps")
    return int(run.T)


def _spikes(run: RunResult, name: str) -> float:
    """Spikes emitted by spiking node `name` per inference (mean over the run's samples)."""
    if name not in run.spike_counts:
        raise ValueError(f"the {run.backend!r} run has no spike_counts for spiking node {name!r}")
    return float(np.mean(np.asarray(run.spike_counts[name], dtype=np.float64)))


def _snn_ops(node: nir.NIRNode, ops: LayerOps, run: RunResult, T: int) -> tuple[float, float]:
    """(MACs, ACs) of one node in the SNN per inference; non-weighted nodes have none."""
    if not isinstance(node, WEIGHTED):
        return 0.0, 0.0
    if ops.analog_input:
        return float(ops.ann_macs * T), 0.0
    if run.input_events is None:
        raise ValueError(
            f"the {run.backend!r} run recorded no input_events; the SNN energy needs them "
            "(run the graph on the reference backend)"
        )
    if ops.name not in run.input_events:
        raise ValueError(f"the {run.backend!r} run has no input_events for weighted node {ops.name!r}")
    try:
        return 0.0, synaptic_ops(node, ops.in_shape, run.input_events[ops.name])
    except ValueError as err:
        raise ValueError(f"node {ops.name!r}: {err}") from None


def _assumptions(hw: HwConfig, T: int | None, access: tuple[int, float] | None = None,
                 memory_level: str | None = None, encoding: str = ANALOG_ENCODING) -> list[str]:
    """The conventions behind the numbers, as plain sentences for reports (docs/energy.md has the sources)."""
    e = hw.energy
    update = (f"neuron update {e.neuron_update_pj:g} pJ" if e.neuron_update_pj is not None
              else "no neuron-update figure")
    out = [
        f"Per-operation energies from hwconfig {hw.name!r} ({hw.path.name}, sources in its comments): "
        f"MAC {e.mac_pj:g} pJ, AC {e.ac_pj:g} pJ, {update}.",
        "A MAC is one multiply-accumulate. ANN MACs per layer: convolution C_out x H_out x W_out x "
        "(C_in/groups) x kH x kW, linear out x in (DNISNM Eq. 24, SNN2ANN Eq. 22); batch normalisation is "
        "folded into the preceding layer's weights and bias, and bias additions are not counted.",
        "Additions of pooling windows and residual fan-in are listed in the 'adds' column but not charged, "
        "as in the papers, which count only MACs and ACs; the ANN's ReLU (one comparison per activation) "
        "is not charged either.",
    ]
    if T is not None:
        out += [
            "An AC is one accumulate of a weight into a neuron, triggered by one non-zero input on one synapse. "
            "SNN ACs per layer = sum over input elements of (recorded non-zero inputs per sample over all "
            "T steps) x (number of synapses the element drives, exact at borders and with stride); "
            "the spike rate enters once.",
            f"Layers whose input is analog (the first layer under direct input encoding) pay their ANN MACs "
            f"at every step: T x MACs, T = {T} (the MAC-priced first-layer term of DNISNM Eq. 26)."
            if encoding == ANALOG_ENCODING else
            f"Input encoding `{encoding}`: the input is spikes (events), so the layers it feeds pay one AC per "
            "recorded input event per synapse, like every other layer fed by spikes (no MACs); a graded event "
            "(an event count above 1 in one step) is one graded spike.",
            "A non-zero input counts as one AC per synapse whatever its value (signed spikes, threshold-scaled "
            "spikes, pooled spike sums): its amplitude is taken as folded into the weights.",
        ]
    if T is not None and e.neuron_update_pj is not None:
        out.append(
            f"Neuron updates: one per neuron per time step in every neuron layer (spiking IF/LIF and the "
            f"integrating output), neurons x T = neurons x {T}, whether or not the neuron receives input, at "
            f"{e.neuron_update_pj:g} pJ each; the synaptic accumulations into the neuron are the ACs above, "
            "not part of the update (see the hwconfig for what the figure covers).")
    elif T is not None:
        out.append(f"Neuron updates are counted (neurons x T per neuron layer) but not charged: target "
                   f"{hw.name!r} has no energy.neuron_update_pj.")
    else:
        out.append("Neuron updates exist only in the SNN (neurons x T per neuron layer, charged at "
                   "energy.neuron_update_pj when the hwconfig has it); no run, so none are listed here.")
    if access is None:
        out.append("Data movement (reading weights, states and spikes from SRAM or DRAM) is not included; on "
                   "real hardware it can dominate (Davidson & Furber 2021); `--data-movement` adds the "
                   "Joint A-SNN Sec. 5.4 estimate.")
    else:
        out += [
            f"Data movement (separate from compute, Joint A-SNN Sec. 5.4): priced at {access[1] / PJ:g} pJ per "
            f"{access[0]}-bit access ({memory_level}, hwconfig [memory]); volumes in bits divided by "
            f"{access[0]}, fractional accesses kept.",
            f"ANN data moved: every neuron layer's activation ({ACTIVATION_BITS} bit each) written to and read "
            "back from memory once: 2 x 32 x neurons bits.",
        ]
        if T is not None:
            out.append(f"SNN data moved: every neuron layer's membrane potential ({ACTIVATION_BITS} bit) written "
                       f"and read back at each of T steps, 2 x 32 x neurons x T, plus each emitted spike "
                       f"({SPIKE_BITS} bit) written and read back once, 2 x spikes (recorded spike count).")
        out.append("Not in the data-movement term, as in Joint A-SNN Sec. 5.4: weights, the input image, "
                   "and any traffic of pooling or flatten nodes (taken as fused into the next layer's read).")
    return out


def _count(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _joules(x: float | None) -> str:
    if x is None:
        return "—"
    if x == 0:
        return "0"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x / PJ:.3g} pJ"


def _bits(x: float | None) -> str:
    if x is None:
        return "—"
    for unit, scale in (("GB", 8e9), ("MB", 8e6), ("kB", 8e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x / 8:.3g} B"
