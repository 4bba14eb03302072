"""Lowers a checked NIR graph to connected lava-nc processes: one function per NIR node type.

Semantics follow docs/nir-extensions.md ("On Lava"); the input source and Lava's Dense and Conv add one step
of delay each, which the lowering tracks per edge (`Signal.delay`), evens out at fan-in with `Delay` processes
and hands to each neuron layer as the offset of its sample windows. Neuron nodes become Lava's own LIFReset
where `backends.lava.stock` finds their semantics its, else spikeport's NeuronLayer. A quantized graph
(`Builder.fixed`) is lowered to integer parameters for Lava's fixed_pt models, as `backends.fixedpoint` reads them;
a graph imported from lava-dl netx (`Builder.netx`) to the fixed_pt models with the file's own integers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nir
import numpy as np
import torch
import torch.nn.functional as F

from backends import fixedpoint
from backends.graph import GraphView
from backends.lava.convmatrix import conv_matrix
from backends.lava.layout import Signal
from backends.lava import stock
from backends.lava.procs import Delay, DelayLine, EventCounter, NeuronLayer, Pool2d, Scale, Shift, SpikeRecorder
from backends.lava.procs.neuron import PARAMS, SPIKING
from backends.lava.stream import SOURCE_DELAY, InputFormat, InputStream
from backends.nirext import fixed_point, neuron_semantics
from backends.result import Unsupported
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.io.dataloader import SpikeDataloader
from lava.proc.lif.process import LIFReset
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import SignMode

GRADED = 24  # num_message_bits > 0: Dense/Conv take their input as graded values, not as booleans
INT8 = 127  # Lava's Conv model stores kernel size, stride, padding, dilation and groups as int8
CONV_PROCESSES = ("sparse", "conv")  # how a Conv2d is lowered: Lava's Sparse (default) or its Conv process
NEURON_PROCESSES = ("stock", "custom")  # Lava's LIF where a node's semantics are its own (`stock`), or never
NETX_INPUT = InputFormat(1.0, fixedpoint.STATE_BITS, True)   # a netx graph takes its integer inputs as they are


@dataclass
class Layer:
    """A neuron layer in the lowered network: its process, layout, kind and result file; `why_custom` says
    why it is not on Lava's own LIF ('' when it is)."""

    name: str
    kind: str
    proc: NeuronLayer | LIFReset
    signal: Signal
    dump: Path
    why_custom: str = ""

    @property
    def spiking(self) -> bool:
        return self.kind in SPIKING

    @property
    def delay(self) -> int:
        return self.signal.delay


@dataclass
class Counter:
    """Counts the input events of weighted node `name`; `signal` is that node's input."""

    name: str
    proc: EventCounter
    signal: Signal
    dump: Path


@dataclass
class Network:
    """One compiled-to-be Lava network that runs `n_samples` samples of `T` steps back to back."""

    source: SpikeDataloader
    layers: dict[str, Layer]
    counters: dict[str, Counter]
    output: Layer
    n_samples: int
    T: int

    @property
    def depth(self) -> int:
        """Delay of the deepest layer or counter: steps needed after the last input step."""
        return max(item.signal.delay for item in (*self.layers.values(), *self.counters.values()))

    @property
    def steps(self) -> int:
        return self.n_samples * self.T + self.depth


Lowering = Callable[["Builder", str, nir.NIRNode, "Signal | None"], Signal]
LOWERINGS: dict[type, Lowering] = {}


def lowers(*types: type):
    """Register a function as the lowering of the given NIR node types."""
    def register(fn: Lowering) -> Lowering:
        for t in types:
            LOWERINGS[t] = fn
        return fn
    return register


def _pair(value) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(int)
    return int(arr[0]), int(arr[-1])


def _connect(signal: Signal, in_port) -> None:
    for port in signal.ports:
        src = port if tuple(port.shape) == tuple(in_port.shape) else port.reshape(tuple(in_port.shape))
        src.connect(in_port)


class Builder:
    """Walks the graph in execution order and lowers each node with its registered function."""

    def __init__(self, view: GraphView, inputs: np.ndarray, T: int, record: bool, workdir: Path,
                 conv: str = "sparse", varying: bool = False, neurons: str = "stock"):
        if conv not in CONV_PROCESSES:
            raise ValueError(f"conv must be one of {', '.join(CONV_PROCESSES)}, got {conv!r}")
        if neurons not in NEURON_PROCESSES:
            raise ValueError(f"neurons must be one of {', '.join(NEURON_PROCESSES)}, got {neurons!r}")
        self.neurons = neurons
        self.view, self.inputs, self.T, self.record, self.workdir = view, inputs, int(T), record, Path(workdir)
        self.varying = varying   # inputs are (N, T, *shape): step t of a sample gets its own tensor
        self.conv = conv
        self.signals: dict[str, Signal] = {}
        self.layers: dict[str, Layer] = {}
        self.counters: dict[str, Counter] = {}
        self.source: SpikeDataloader | None = None
        self.output: Layer | None = None
        self.fixed = fixed_point("graph", view.graph.metadata, "graph")  # None for a float graph
        self.netx = stock.is_netx_graph(view)   # integers and Lava's CUBA neurons, as lava-dl netx wrote them
        if self.netx and neurons == "custom":
            raise Unsupported("a graph imported from lava-dl netx runs on Lava's own fixed-point LIF (its 12-bit "
                              "CUBA decays); neurons='custom' does not apply to it")

    @property
    def integer(self) -> bool:
        """Whether the network runs on Lava's fixed_pt process models (a quantized or a netx graph)."""
        return self.fixed is not None or self.netx

    def weights(self, name: str, node) -> fixedpoint.Weights | None:
        """The integer weights of weighted node `name` (None in floating point)."""
        if self.fixed is not None:
            return fixedpoint.weights(name, node)
        return fixedpoint.exact_weights(name, node) if self.netx else None

    def build(self) -> Network:
        for name in self.view.order:
            node = self.view.node(name)
            lower = LOWERINGS.get(type(node))
            if lower is None:
                raise Unsupported(f"node {name!r}: the Lava backend has no lowering for NIR type {type(node).__name__}")
            x = None if name == self.view.input else self.merge(name)
            self.signals[name] = lower(self, name, node, x)
        return Network(self.source, self.layers, self.counters, self.output, len(self.inputs), self.T)

    def merge(self, name: str) -> Signal:
        """The sum of a node's inputs (fan-in): ports joined, offsets added, delays evened out."""
        sigs = [self.signals[p] for p in self.view.preds[name]]
        if len(sigs) == 1:
            return sigs[0]
        first = sigs[0]
        for s in sigs[1:]:
            if s.lava_shape != first.lava_shape or not np.array_equal(s.perm, first.perm):
                raise Unsupported(
                    f"node {name!r}: its inputs arrive in different Lava layouts ({first.lava_shape} and "
                    f"{s.lava_shape}); fan-in is supported between tensors of the same layout")
        depth = max(s.delay for s in sigs)
        sigs = [self.delayed(s, depth - s.delay, f"{name}/delay{i}") for i, s in enumerate(sigs)]
        offsets = [s.offset for s in sigs if s.offset is not None]
        return Signal(tuple(p for s in sigs for p in s.ports), first.torch_shape, first.lava_shape, first.perm,
                      depth, sum(offsets) if offsets else None)

    def delayed(self, signal: Signal, steps: int, name: str) -> Signal:
        if steps == 0:
            return signal
        line = Delay(shape=signal.lava_shape, steps=steps, name=name, error_dir=self.workdir)
        _connect(signal, line.a_in)
        return Signal((line.a_out,), signal.torch_shape, signal.lava_shape, signal.perm,
                      signal.delay + steps, signal.offset)

    def count_events(self, name: str, x: Signal) -> None:
        """Attach an `EventCounter` to the input `x` of weighted node `name` (RunResult.input_events)."""
        dump = self.workdir / f"events{len(self.counters)}.npz"
        proc = EventCounter(shape=x.lava_shape, bias=x.bias(), T=self.T, n_samples=len(self.inputs),
                            offset=x.delay, dump=str(dump), name=f"{name}/events", error_dir=self.workdir)
        _connect(x, proc.a_in)
        self.counters[name] = Counter(name, proc, x, dump)

    def neuron_layer(self, name: str, kind: str, params: dict, x: Signal, v_init=None, subtract=False,
                     signed=False, bias=None, why_custom: str = "") -> Layer:
        """A `NeuronLayer` on input `x`; parameters (and `bias`, default: x's offset) given in torch layout."""
        dump = self.workdir / f"layer{len(self.layers)}.npz"
        proc = NeuronLayer(
            shape=x.lava_shape, kind=kind, params={k: x.to_lava(v) for k, v in params.items()},
            subtract=subtract, dt=self.view.dt, bias=x.bias() if bias is None else x.to_lava(bias),
            v_init=x.to_lava(0.0 if v_init is None else v_init),
            T=self.T, n_samples=len(self.inputs), offset=x.delay, record=self.record, dump=str(dump), name=name,
            error_dir=self.workdir, signed=signed)
        _connect(x, proc.a_in)
        layer = Layer(name, kind, proc, x, dump, why_custom)
        self.layers[name] = layer
        return layer

    def stock_layer(self, name: str, kind: str, p: stock.StockLIF, x: Signal) -> Layer:
        """Lava's `LIFReset` on input `x`, zeroed at the start of each sample window (reset_offset: the first
        step of a window is Lava's time_step 1 + x.delay (mod T)), with a `SpikeRecorder` keeping its books."""
        cast = (lambda a: np.rint(a).astype(np.int32)) if self.integer else (lambda a: a)  # noqa: E731
        proc = LIFReset(shape=x.lava_shape, du=p.du, dv=p.dv, vth=p.vth, bias_mant=cast(x.to_lava(p.bias_mant)),
                        bias_exp=cast(x.to_lava(p.bias_exp)), reset_interval=self.T,
                        reset_offset=(1 + x.delay) % self.T, name=name)
        _connect(x, proc.a_in)
        dump = self.workdir / f"layer{len(self.layers)}.npz"
        recorder = SpikeRecorder(shape=x.lava_shape, T=self.T, n_samples=len(self.inputs), offset=x.delay,
                                 record=self.record, dump=str(dump), name=f"{name}/spikes", error_dir=self.workdir)
        proc.s_out.connect(recorder.a_in)
        layer = Layer(name, kind, proc, x, dump)
        self.layers[name] = layer
        return layer

    def stock_params(self, name: str, x: Signal) -> stock.StockLIF | str:
        """Lava's LIF parameters for neuron node `name`, or why it runs on spikeport's `NeuronLayer`."""
        if self.neurons == "custom":
            return "neurons='custom' was asked for"
        if self.netx:
            return stock.netx_params(self.view, name, x.offset)
        if self.fixed is not None:
            return stock.fixed_params(self.view, name)
        return stock.float_params(self.view, name, x.offset)


@lowers(nir.Input)
def lower_input(b: Builder, name: str, node: nir.Input, x: None) -> Signal:
    """Lava's `SpikeDataloader` streaming the input (`stream.InputStream`) as graded spikes into the first
    synapse layer: the same tensor at every step of a sample (direct encoding) or step t's own (time-varying).
    Steps reach its port `SOURCE_DELAY` steps late."""
    shape = b.view.shape(name)
    stream = InputStream(b.inputs, b.T, b.varying, Signal.canonical((), shape, delay=0),
                         NETX_INPUT if b.netx else InputFormat.of(b.fixed))
    b.source = SpikeDataloader(dataset=stream, interval=stream.block)
    return Signal.canonical((b.source.s_out,), shape, delay=SOURCE_DELAY)


@lowers(nir.Affine, nir.Linear)
def lower_affine(b: Builder, name: str, node, x: Signal) -> Signal:
    """Dense with the weight columns permuted to Lava's input order; the bias rides on as an offset.
    Fixed point: Dense's stored 8-bit weights, weight_exp, num_weight_bits and sign_mode (`dense_storage`)."""
    weight = np.asarray(node.weight, np.float64)
    w = b.weights(name, node)
    if w is not None:
        stored, k, mode = fixedpoint.dense_storage(w.m, w.bits)
        dense = Dense(weights=stored[:, x.perm].astype(np.int32), weight_exp=w.exp - k, num_weight_bits=w.bits,
                      sign_mode=SignMode[mode.upper()], num_message_bits=GRADED, name=name)
    else:
        dense = Dense(weights=weight[:, x.perm], num_message_bits=GRADED, name=name)
    _connect(x, dense.s_in)
    b.count_events(name, x)
    offset = None if x.offset is None else weight @ np.asarray(x.offset, np.float64).reshape(-1)
    if isinstance(node, nir.Affine):
        offset = np.asarray(node.bias, np.float64) + (0.0 if offset is None else offset)
    return Signal.canonical((dense.a_out,), (weight.shape[0],), delay=x.delay + 1, offset=offset)


def _conv_padding(name: str, node: nir.Conv2d, kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    if isinstance(node.padding, str):
        if node.padding == "valid":
            return 0, 0
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if any(t % 2 for t in total):
            raise Unsupported(f"node {name!r}: padding 'same' with kernel {kernel} needs asymmetric padding, "
                              "which Lava's Conv cannot express")
        return total[0] // 2, total[1] // 2
    return _pair(node.padding)


def _sparse_conv(name: str, in_lava: tuple, out_lava: tuple, weight: np.ndarray,
                 w: fixedpoint.Weights | None, geometry: tuple) -> Sparse:
    """Lava's Sparse holding the convolution (torch `weight`; `geometry`: stride, padding, dilation in torch's
    (H, W) order, groups) as an (out, in) matrix: float weights, or the integer mantissas `w` stored as Dense
    stores them."""
    if w is None:
        return Sparse(weights=conv_matrix(in_lava, out_lava, weight, *geometry), num_message_bits=GRADED, name=name)
    stored, k, mode = fixedpoint.dense_storage(w.m, w.bits)
    return Sparse(weights=conv_matrix(in_lava, out_lava, stored.astype(np.int32), *geometry), num_message_bits=GRADED,
                  name=name, weight_exp=w.exp - k, num_weight_bits=w.bits, sign_mode=SignMode[mode.upper()])


@lowers(nir.Conv2d)
def lower_conv2d(b: Builder, name: str, node: nir.Conv2d, x: Signal) -> Signal:
    """Lava's Sparse process holding the convolution as a (out, in) matrix (`b.conv == "sparse"`, one sparse
    product per step; `convmatrix.conv_matrix`) or its Conv process (`"conv"`: one scipy convolve2d per channel
    pair per step, far slower), which takes the torch weight (C_out, C_in/g, kH, kW) as (C_out, kW, kH, C_in/g),
    spatially flipped because Lava convolves where torch correlates, with stride, padding and dilation in (W, H)
    order. Either adds one step of delay."""
    if not x.is_canonical or len(x.torch_shape) != 3:
        raise Unsupported(f"node {name!r}: Conv2d needs a (C, H, W) input, got a tensor of shape {x.torch_shape}")
    weight = np.asarray(node.weight, np.float64)
    kernel = (weight.shape[2], weight.shape[3])
    stride, dilation, groups = _pair(node.stride), _pair(node.dilation), int(node.groups)
    padding = _conv_padding(name, node, kernel, dilation)
    w = b.weights(name, node)
    out_shape = b.view.shape(name)
    out_lava = Signal.canonical((), out_shape, delay=0).lava_shape
    # integer weights (a quantized or a netx graph) go to Sparse's bit-accurate model stored as Dense stores them,
    # with weight_exp = E - k (backends.fixedpoint.conv_accumulate mirrors it); lava-dl's own netx runs them on Conv
    if b.conv == "sparse":
        proc = _sparse_conv(name, x.lava_shape, out_lava, weight, w, (stride, padding, dilation, groups))
        _connect(x, proc.s_in)
        port = proc.a_out
    else:
        lava_weight = np.ascontiguousarray((weight if w is None else w.m).transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])
        if max(*kernel, *stride, *padding, *dilation, groups) > INT8:
            raise Unsupported(f"node {name!r}: Lava's Conv stores kernel {kernel}, stride {stride}, padding "
                              f"{padding}, dilation {dilation} and groups {groups} as int8; values above {INT8} "
                              "are not supported (the default conv='sparse' has no such limit)")
        proc = Conv(weight=lava_weight if w is None else lava_weight.astype(np.int32), input_shape=x.lava_shape,
                    padding=padding[::-1], stride=stride[::-1], dilation=dilation[::-1], groups=groups,
                    num_message_bits=GRADED, name=name)
        if tuple(proc.output_shape) != out_lava:
            raise Unsupported(f"node {name!r}: Lava's Conv gives shape {tuple(proc.output_shape)}, NIR says "
                              f"{out_shape}")
        _connect(x, proc.s_in)
        port = proc.a_out
        if w is not None:   # Lava's fixed-point Conv ignores weight_exp: a Shift applies the shared exponent
            shift = Shift(shape=out_lava, exp=w.exp, name=f"{name}/exp", error_dir=b.workdir)
            port.connect(shift.a_in)
            port = shift.a_out
    b.count_events(name, x)
    bias = np.asarray(node.bias, np.float64).reshape(-1, 1, 1) * np.ones(out_shape)
    if x.offset is not None:
        const = torch.as_tensor(np.asarray(x.offset, np.float64).reshape(1, *x.torch_shape))
        bias = bias + F.conv2d(const, torch.as_tensor(weight), stride=stride, padding=padding, dilation=dilation,
                               groups=groups)[0].numpy()
    return Signal.canonical((port,), out_shape, delay=x.delay + 1, offset=bias if np.any(bias) else None)


@lowers(nir.AvgPool2d, nir.SumPool2d)
def lower_pool(b: Builder, name: str, node, x: Signal) -> Signal:
    """`Pool2d` process; torch `avg_pool2d` with zero padding counted, or its sum. Fixed point: Lava's own
    bit-accurate Sparse holding the grouped convolution with a kernel of ones (`fixedpoint.pool_kwargs`), i.e.
    the integer sum (an average's 1 / area lives in the next layer's weights); one step of delay. (Lava's Conv
    stores groups as int8, too few for 128+ channels, and its scipy loop is far slower.)"""
    if not x.is_canonical or len(x.torch_shape) != 3:
        raise Unsupported(f"node {name!r}: pooling needs a (C, H, W) input, got a tensor of shape {x.torch_shape}")
    if b.fixed is not None:
        return _sum_pool_sparse(b, name, node, x)
    kernel, stride, padding = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
    divisor = 1.0 if isinstance(node, nir.SumPool2d) else float(kernel[0] * kernel[1])
    proc = Pool2d(input_shape=x.lava_shape, kernel=kernel[::-1], stride=stride[::-1], padding=padding[::-1],
                  divisor=divisor, name=name, error_dir=b.workdir)
    _connect(x, proc.a_in)
    out_shape = b.view.shape(name)
    offset = None
    if x.offset is not None:
        const = torch.as_tensor(np.asarray(x.offset, np.float64).reshape(1, *x.torch_shape))
        offset = F.avg_pool2d(const, kernel, stride, padding, count_include_pad=True)[0].numpy()
        offset = offset * (kernel[0] * kernel[1] / divisor)
    out = Signal.canonical((proc.a_out,), out_shape, delay=x.delay, offset=offset)
    if tuple(proc.output_shape) != out.lava_shape:
        raise Unsupported(f"node {name!r}: pooling gives shape {tuple(proc.output_shape)}, NIR says {out_shape}")
    return out


def _sum_pool_sparse(b: Builder, name: str, node, x: Signal) -> Signal:
    kw = fixedpoint.pool_kwargs(node, x.torch_shape[0])
    kernel, channels = kw["kernel"], kw["groups"]
    out_shape = b.view.shape(name)
    out_lava = Signal.canonical((), out_shape, delay=0).lava_shape
    ones = conv_matrix(x.lava_shape, out_lava, np.ones((channels, 1, *kernel), np.int32), kw["stride"],
                       kw["padding"], kw["dilation"], channels)
    proc = Sparse(weights=ones, weight_exp=0, num_weight_bits=8, sign_mode=SignMode.EXCITATORY,
                  num_message_bits=GRADED, name=name)
    _connect(x, proc.s_in)
    return Signal.canonical((proc.a_out,), out_shape, delay=x.delay + 1)


@lowers(nir.Flatten)
def lower_flatten(b: Builder, name: str, node: nir.Flatten, x: Signal) -> Signal:
    """No process: the next InPort takes the ports reshaped; `perm` keeps torch's C-order in view."""
    out_shape = b.view.shape(name)
    n = int(np.prod(x.torch_shape))
    if out_shape != (n,):
        raise Unsupported(f"node {name!r}: only a Flatten of all non-batch dimensions is supported "
                          f"({x.torch_shape} -> {out_shape})")
    offset = None if x.offset is None else np.asarray(x.offset).reshape(-1)
    return Signal(x.ports, (n,), (n,), x.perm, x.delay, offset)


@lowers(nir.Delay)
def lower_delay(b: Builder, name: str, node: nir.Delay, x: Signal) -> Signal:
    """`DelayLine` holding each element back by its whole steps within the sample window (no process for
    all-zero delays); the edge's own alignment delay is unchanged."""
    steps = b.view.delay_steps(name)
    if x.offset is not None and np.any(x.offset):
        raise Unsupported(f"node {name!r}: a Delay of an input that carries a constant bias (it would reach the "
                          "neurons only after the delay); put the Delay before the biased synapse")
    if not steps.any():
        return x
    proc = DelayLine(steps=x.to_lava(steps).astype(np.int64), T=b.T, offset=x.delay, name=name,
                     error_dir=b.workdir)
    _connect(x, proc.a_in)
    return Signal((proc.a_out,), x.torch_shape, x.lava_shape, x.perm, x.delay)


@lowers(nir.Scale)
def lower_scale(b: Builder, name: str, node: nir.Scale, x: Signal) -> Signal:
    """`Scale` process, elementwise within the step (fixed point: the integer graded-spike payloads)."""
    scale = node.scale
    if b.netx:
        raise Unsupported(f"node {name!r}: a Scale in a graph imported from lava-dl netx (its inputs would no "
                          "longer be the integers netx receives); scale the inputs instead")
    if b.fixed is not None:
        scale = fixedpoint.to_integer(f"node {name!r} scale", scale, fixedpoint.unit(name, node, "scale"),
                                      fixedpoint.V_LIMIT)
    proc = Scale(scale=x.to_lava(scale), name=name, error_dir=b.workdir)
    _connect(x, proc.a_in)
    offset = None if x.offset is None else np.asarray(node.scale, np.float64) * x.offset
    return Signal((proc.a_out,), x.torch_shape, x.lava_shape, x.perm, x.delay, offset)


@lowers(nir.IF, nir.LIF, nir.CubaLIF, nir.I, nir.LI)
def lower_neuron(b: Builder, name: str, node, x: Signal) -> Signal:
    """Lava's own `LIFReset` where the node's semantics are its (`stock.float_params`, `stock.fixed_params`,
    `stock.netx_params`), else a `NeuronLayer` of the node's kind, with its reset and v_init from the spikeport
    metadata (in a netx graph only the integrator readout: its spiking neurons are all Lava's LIF).

    Signed spikes (reset 'signed-memory') are graded values -1/+1: Dense and Conv take them as such
    (num_message_bits > 0, floating point), and Scale, Pool2d and Delay pass them on unchanged."""
    kind = type(node).__name__
    params = b.stock_params(name, x)
    if isinstance(params, stock.StockLIF):
        return Signal((b.stock_layer(name, kind, params, x).proc.s_out,), x.torch_shape, x.lava_shape, x.perm,
                      x.delay)
    if b.netx:
        if kind != "I":
            raise Unsupported(f"node {name!r}: {params}")
        # netx's never-firing readout: v sums (x << 6) and the bias in v units; RunResult.outputs scale by r
        layer = b.neuron_layer(name, kind, {"r": 1}, x, bias=(1 << fixedpoint.ACT_SHIFT) * np.asarray(
            0.0 if x.offset is None else x.offset))
        return Signal((layer.proc.s_out,), x.torch_shape, x.lava_shape, x.perm, x.delay)
    sem = neuron_semantics(name, node)
    if b.fixed is not None:   # integers in v units, the threshold mantissa, decays (backends.fixedpoint.layer_params)
        p = fixedpoint.layer_params(b.view, name)
        kind = p.kind
        custom = {"r": 1, "du": p.du, "dv": p.dv, "bias_u": p.bias_u}
        if kind == "IF":
            custom.update(v_threshold=p.vth, v_reset=p.v_reset)
        v_init, bias = p.v_init, p.bias
    else:
        custom, v_init, bias = {k: getattr(node, k) for k in PARAMS[kind]}, sem.v_init, None
    layer = b.neuron_layer(name, kind, custom, x, v_init=v_init, subtract=sem.reset == "subtract",
                           signed=sem.signed, bias=bias, why_custom=params)
    return Signal((layer.proc.s_out,), x.torch_shape, x.lava_shape, x.perm, x.delay)


@lowers(nir.Output)
def lower_output(b: Builder, name: str, node: nir.Output, x: Signal) -> Signal:
    """The network output: an integrator's final v, else the sum over T of what reaches Output."""
    preds = b.view.preds[name]
    if len(preds) == 1 and isinstance(b.view.node(preds[0]), fixedpoint.INTEGRATORS):
        b.output = b.layers[preds[0]]
    else:
        b.output = b.neuron_layer(name, "I", {"r": 1.0}, x)
    return x
