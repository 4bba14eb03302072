"""Energy per inference, ANN against SNN: exact operation counts times a hwconfig's per-operation energies.

ANN counts come from the NIR graph (DNISNM Eq. 24, SNN2ANN Eq. 22); SNN counts from a run's `input_events`.
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
from backends.nirext import SPIKING_TYPES
from backends.result import RunResult
from pipeline.hwconfig import HwConfig, HwConfigError, load_hwconfig

PJ = 1e-12
POOLS = (nir.AvgPool2d, nir.SumPool2d)


@dataclass(frozen=True)
class LayerOps:
    """Structural counts of one node for one ANN inference.

    `analog_input`: the node's input is reached from the Input node without passing a spiking neuron
    (direct encoding), so in the SNN it multiplies analog values every step.
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    ann_macs: int
    ann_adds: int
    analog_input: bool


@dataclass(frozen=True)
class EnergyRow:
    """One counted node: operations and joules per inference; the SNN columns are None without a run."""

    name: str
    kind: str
    ann_macs: int
    ann_adds: int
    snn_macs: float | None
    snn_acs: float | None
    ann_joules: float
    snn_joules: float | None


@dataclass(frozen=True)
class EnergyReport:
    """Per-layer counts and energies, totals, and the assumptions they rest on."""

    hwconfig: str
    T: int | None
    layers: tuple[EnergyRow, ...]
    assumptions: tuple[str, ...]

    @property
    def ann_joules_per_inference(self) -> float:
        return float(sum(r.ann_joules for r in self.layers))

    @property
    def snn_joules_per_inference(self) -> float | None:
        if self.T is None:
            return None
        return float(sum(r.snn_joules for r in self.layers))

    @property
    def ratio(self) -> float | None:
        """E_ANN / E_SNN, the energy benefit of SNN2ANN Eq. 23 (None without a run or with zero SNN energy)."""
        snn = self.snn_joules_per_inference
        return self.ann_joules_per_inference / snn if snn else None

    @property
    def energy_drop(self) -> float | None:
        """(E_SNN - E_ANN) / E_ANN, DNISNM Eq. 26 (negative when the SNN saves energy)."""
        snn, ann = self.snn_joules_per_inference, self.ann_joules_per_inference
        return (snn - ann) / ann if snn is not None and ann else None

    def to_dict(self) -> dict:
        """JSON-serialisable form: totals, ratio, per-layer rows, assumptions."""
        return {
            "hwconfig": self.hwconfig,
            "T": self.T,
            "ann_joules_per_inference": self.ann_joules_per_inference,
            "snn_joules_per_inference": self.snn_joules_per_inference,
            "ratio": self.ratio,
            "energy_drop": self.energy_drop,
            "layers": [asdict(r) for r in self.layers],
            "assumptions": list(self.assumptions),
        }

    def to_markdown(self) -> str:
        """A table with one row per counted node and a total row, the totals in words, the assumptions."""
        steps = f", T = {self.T}" if self.T is not None else ""
        lines = [
            f"Energy per inference (hwconfig `{self.hwconfig}`{steps})",
            "",
            "| layer | kind | ANN MACs | adds (not charged) | SNN MACs | SNN ACs | ANN energy | SNN energy |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.name} | {r.kind} | {_count(r.ann_macs)} | {_count(r.ann_adds)} | {_count(r.snn_macs)} "
            f"| {_count(r.snn_acs)} | {_joules(r.ann_joules)} | {_joules(r.snn_joules)} |"
            for r in self.layers
        ]
        lines.append(
            f"| **total** | | {_count(sum(r.ann_macs for r in self.layers))} "
            f"| {_count(sum(r.ann_adds for r in self.layers))} | {_count(self._snn_sum('snn_macs'))} "
            f"| {_count(self._snn_sum('snn_acs'))} | {_joules(self.ann_joules_per_inference)} "
            f"| {_joules(self.snn_joules_per_inference)} |"
        )
        if self.ratio is not None:
            lines += ["", f"E_ANN / E_SNN = {self.ratio:.3g} (SNN2ANN Eq. 23); energy drop "
                          f"{100 * self.energy_drop:+.1f} % (DNISNM Eq. 26)."]
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


def _analog_nodes(view: GraphView) -> set[str]:
    """Nodes whose output is analog: the Input and every node reached from it without a spiking neuron."""
    analog: set[str] = set()
    for n in view.order:
        reached = any(p in analog for p in view.preds[n])
        if n == view.input or (reached and not isinstance(view.node(n), SPIKING_TYPES)):
            analog.add(n)
    return analog


def layer_ops(graph: nir.NIRGraph) -> list[LayerOps]:
    """ANN counts of every node that has any, in execution order.

    MACs of weighted nodes; additions of pooling windows and of residual fan-in (k inputs add k-1 tensors).
    """
    view = analyse(graph)
    analog = _analog_nodes(view)
    rows = []
    for name in view.order:
        node, preds = view.node(name), view.preds[name]
        if not preds:
            continue
        in_shape = view.shape(preds[0])
        macs = weighted_macs(node, in_shape) if isinstance(node, WEIGHTED) else 0
        adds = (len(preds) - 1) * math.prod(in_shape)
        adds += _pool_adds(node, in_shape) if isinstance(node, POOLS) else 0
        if macs or adds:
            rows.append(LayerOps(name, type(node).__name__, in_shape, macs, adds, any(p in analog for p in preds)))
    return rows


def _energy_of(hw: HwConfig | str | Path) -> HwConfig:
    hw = hw if isinstance(hw, HwConfig) else load_hwconfig(hw)
    if hw.energy is None:
        raise HwConfigError(
            f"{hw.path}: target {hw.name!r} has no [energy] table (no published per-operation energies); "
            f"choose a target that has one, e.g. cmos45nm"
        )
    return hw


def ann_energy(graph: nir.NIRGraph, hw: HwConfig | str | Path) -> EnergyReport:
    """ANN side only, no run needed: MACs per weighted layer x MAC energy; the SNN columns are None."""
    hw = _energy_of(hw)
    rows = tuple(
        EnergyRow(o.name, o.kind, o.ann_macs, o.ann_adds, None, None, o.ann_macs * hw.energy.mac_pj * PJ, None)
        for o in layer_ops(graph)
    )
    return EnergyReport(hw.name, None, rows, tuple(_assumptions(hw, None)))


def energy_report(graph: nir.NIRGraph, run: RunResult, hw: HwConfig | str | Path,
                  T: int | None = None) -> EnergyReport:
    """ANN versus SNN energy per inference, per layer (DNISNM Eq. 26, SNN2ANN Eq. 23).

    ANN: MAC energy x sum_l OP_ANN^l. SNN: a layer with analog input pays its ANN MACs at every step
    (T x OP_ANN^1, Eq. 26's MAC-priced first-layer term); every other weighted layer pays one AC per
    recorded input event per synapse the event drives (Eq. 26's AC-priced sum over l >= 2, counted exactly
    from `run.input_events` instead of Eq. 25's layer-average rate). SNN2ANN Eq. 23 prices its classifier at
    the ANN count with MAC energy; here a classifier fed by spikes is counted like any other such layer.
    `T` defaults to `run.T` and must equal it.
    """
    hw = _energy_of(hw)
    T = _steps(run, T)
    mac, ac = hw.energy.mac_pj * PJ, hw.energy.ac_pj * PJ
    rows = []
    for o in layer_ops(graph):
        snn_macs, snn_acs = _snn_ops(graph.nodes[o.name], o, run, T)
        rows.append(EnergyRow(o.name, o.kind, o.ann_macs, o.ann_adds, snn_macs, snn_acs,
                              o.ann_macs * mac, snn_macs * mac + snn_acs * ac))
    return EnergyReport(hw.name, T, tuple(rows), tuple(_assumptions(hw, T)))


def _steps(run: RunResult, T: int | None) -> int:
    if T is not None and int(T) != int(run.T):
        raise ValueError(f"T={T} given, but the run used T={run.T}; the event counts are sums over the run's steps")
    return int(run.T)


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


def _assumptions(hw: HwConfig, T: int | None) -> list[str]:
    """The conventions behind the numbers, as plain sentences for reports."""
    e = hw.energy
    out = [
        f"Per-operation energies from hwconfig {hw.name!r} ({hw.path.name}, sources in its comments): "
        f"MAC {e.mac_pj:g} pJ, AC {e.ac_pj:g} pJ.",
        "A MAC is one multiply-accumulate. ANN MACs per layer: convolution C_out x H_out x W_out x "
        "(C_in/groups) x kH x kW, linear out x in (DNISNM Eq. 24, SNN2ANN Eq. 22); bias additions are not counted.",
        "Additions of pooling windows and residual fan-in are listed in the 'adds' column but not charged, "
        "as in the papers, which count only MACs and ACs.",
        "Neuron updates (leak, threshold comparison, reset, bias addition: once per neuron per step) are not "
        "counted in this version.",
        "Data movement (reading weights, states and spikes from SRAM or DRAM) is not counted; on real "
        "hardware it can dominate (Davidson & Furber 2021).",
    ]
    if T is None:
        return out
    return out + [
        "An AC is one accumulate of a weight into a neuron, triggered by one non-zero input on one synapse. "
        "SNN ACs per layer = sum over input elements of (recorded non-zero inputs per sample over all "
        "T steps) x (number of synapses the element drives, exact at borders and with stride); "
        "the spike rate enters once.",
        f"Layers whose input is analog (the first layer under direct input encoding) pay their ANN MACs "
        f"at every step: T x MACs, T = {T} (the MAC-priced first-layer term of DNISNM Eq. 26).",
        "A non-zero input counts as one AC per synapse whatever its value (signed spikes, threshold-scaled "
        "spikes, pooled spike sums): its amplitude is taken as folded into the weights.",
    ]


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
