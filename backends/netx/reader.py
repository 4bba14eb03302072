"""Import a lava-dl netx HDF5 network (ours or one lava-dl wrote, e.g. slayer blocks' export_hdf5) as a NIR graph.

The graph computes what netx computes (backends/netx/layout.py): integer weights, CUBA neurons in mantissa
units (IF, or LIF/CubaLIF with Lava's 12-bit decays); what it cannot express raises `Unsupported` naming it.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np

from backends.graph import analyse
from backends.netx.layout import IF_DECAYS, file_info, never_fires, read_int, read_str
from backends.nirext import graph_metadata, neuron_metadata
from backends.result import Unsupported

DT = 1e-3   # the graph's dt (spikeport's default); Lava's neurons step once per time step


def _neuron(where: str, group: h5py.Group, shape: tuple[int, ...], last: bool, output_scale: float,
            has_bias: bool) -> nir.NIRNode:
    """The NIR neuron for a netx `neuron` group (netx builds Lava's LIF with du = iDecay - 1, dv = vDecay):
    IF for iDecay = 4096, vDecay = 0; LIF (iDecay = 4096) or CubaLIF with Lava's 12-bit decays in metadata
    (`lava_cuba`, run bit-exactly by the reference backend) otherwise; I for a never-firing last layer."""
    if "neuron" not in group:
        if not last:
            raise Unsupported(f"{where}: a hidden layer without neurons")
        # netx's default neuron (hdf5.py): iDecay 0, vDecay 4096, vThMant 1 << 17, so u sums the input, v = u
        # and v (clipped to 24 bits) never exceeds the threshold: an integrator readout
        return nir.I(r=np.full(shape, 1.0 / output_scale, np.float32))
    n = group["neuron"]
    kind = read_str(n, "type")
    if kind == "SDNN":
        raise Unsupported(f"{where}: SDNN (sigma-delta) neurons — a delta encoder sending graded changes of a "
                          "ReLU activation when they exceed vThMant, and sigma integrators summing them: graded "
                          "spikes, a ReLU and a delta threshold, which no NIR node expresses and spikeport does "
                          "not run")
    if kind not in ("CUBA", "LOIHI"):
        raise Unsupported(f"{where}: neuron type {kind!r} — only CUBA/LOIHI neurons are imported (RF has no NIR node)")
    if "gradedSpike" in n and bool(np.asarray(n["gradedSpike"][()])):
        raise Unsupported(f"{where}: graded spikes (gradedSpike) have no NIR node")
    i_decay, v_decay = (int(np.asarray(n[k][()])) for k in IF_DECAYS)
    v_th = int(np.asarray(n["vThMant"][()]))
    if never_fires(v_th) and (i_decay, v_decay) == tuple(IF_DECAYS.values()):
        if not last:
            raise Unsupported(f"{where}: a hidden layer whose neurons never fire (vThMant={v_th})")
        return nir.I(r=np.full(shape, 1.0 / output_scale, np.float32))
    ones = np.ones(shape, np.float32)
    if (i_decay, v_decay) == tuple(IF_DECAYS.values()):
        return nir.IF(r=ones, v_threshold=ones * v_th, v_reset=np.zeros(shape, np.float32),
                      metadata=neuron_metadata("zero"))
    if v_decay == 0 or i_decay == 0:
        raise Unsupported(f"{where}: CUBA neuron with iDecay={i_decay}, vDecay={v_decay} — a state that never decays "
                          "beside one that does has no NIR time constant (tau = inf)")
    if has_bias and i_decay != 4096:
        raise Unsupported(f"{where}: bias with iDecay={i_decay} — Lava adds the bias to v, NIR's synapse to the "
                          "current, which differ once the current decays")
    # the float parameters state the same leak without the rounding: v += dt/tau (-v + r i) with
    # dt/tau = vDecay/4096 and r = 4096/vDecay gives v = (1 - vDecay/4096) v + i (i likewise)
    meta = neuron_metadata("zero", lava_cuba=(i_decay, v_decay))
    common = dict(v_leak=np.zeros(shape, np.float32), v_threshold=ones * v_th, v_reset=np.zeros(shape, np.float32))
    if i_decay == 4096:
        return nir.LIF(tau=ones * (DT * 4096 / v_decay), r=ones * (4096 / v_decay), metadata=meta, **common)
    return nir.CubaLIF(tau_syn=ones * (DT * 4096 / i_decay), w_in=ones * (4096 / i_decay),
                       tau_mem=ones * (DT * 4096 / v_decay), r=ones * (4096 / v_decay), metadata=meta, **common)


def _input_neuron(where: str, group: h5py.Group, shape: tuple[int, ...], output_scale: float) -> nir.NIRNode:
    """An input layer with neurons: netx drives it through the neurons' bias only (its Input block's `inp`
    is not connected to the neuron), so the graph's input is that bias mantissa at each step. It enters v
    as the synaptic input does when the current does not outlast a step (iDecay = 4096)."""
    neuron = _neuron(where, group, shape, False, output_scale, False)
    if int(np.asarray(group["neuron/iDecay"][()])) != 4096:
        raise Unsupported(f"{where}: input neurons with iDecay != 4096 — netx feeds them through the bias, which "
                          "enters v, while NIR's input enters the decaying current")
    return neuron


def _synapse(where: str, kind: str, group: h5py.Group, in_shape: tuple[int, ...]) -> nir.NIRNode:
    for key in ("weight/imag", "weight_rec"):
        if key in group:
            raise Unsupported(f"{where}: {key!r} (complex or recurrent weights) has no NIR node here")
    weight = read_int(group, "weight").astype(np.float32)
    if kind == "dense":
        n_out = int(np.prod(read_int(group, "shape")))
        weight = weight.reshape(n_out, -1)
        bias = read_int(group, "bias").astype(np.float32) if "bias" in group else np.zeros(n_out, np.float32)
        return nir.Affine(weight=weight, bias=bias)
    weight = weight.reshape(weight.shape[:4])
    bias = read_int(group, "bias").astype(np.float32) if "bias" in group else np.zeros(weight.shape[0], np.float32)
    pair = lambda key: tuple(int(v) for v in np.broadcast_to(np.atleast_1d(read_int(group, key)), (2,)))  # noqa: E731
    return nir.Conv2d(input_shape=in_shape[1:], weight=weight, stride=pair("stride"), padding=pair("padding"),
                      dilation=pair("dilation"), groups=int(np.asarray(group["groups"][()])), bias=bias)


def _delay(where: str, group: h5py.Group, n_in: int, n_out: int) -> tuple[str, nir.Delay] | None:
    """A dense layer's `delay` (whole steps, as netx reads it: clamped to 62) as a nir.Delay in seconds at
    the graph's dt: per output neuron (netx's axonal delay, after the weights) or per input (before them)."""
    if "delay" not in group:
        return None
    steps = np.clip(np.asarray(group["delay"][()]).astype(int), 0, 62)
    if steps.ndim == 0:
        steps = np.full(n_out, int(steps))
    if steps.shape == (n_out,):
        return "after", nir.Delay(delay=(steps * DT).astype(np.float64))
    if steps.shape == (n_in,):
        return "before", nir.Delay(delay=(steps * DT).astype(np.float64))
    raise Unsupported(f"{where}: delay of shape {steps.shape} fits neither the {n_in} inputs nor the {n_out} outputs")


def import_netx(path, input_shape: tuple[int, ...] | None = None, num_layers: int | None = None) -> nir.NIRGraph:
    """The NIR graph of the netx HDF5 file `path`.

    `input_shape` (torch order) is needed only when the file has no `input` layer before a conv layer
    (as netx's own `input_shape` argument); `num_layers` keeps the first layers only (netx's argument, e.g.
    to leave out an `average` layer netx cannot run). Inputs are the integers netx receives; a file written by
    `export_netx` with an input scale gets a Scale node so that the graph takes the original inputs.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        info = file_info(f)
        top = f["layer"]
        groups = [top[str(i)] for i in range(len(top) if num_layers is None else min(num_layers, len(top)))]
        nodes: dict[str, nir.NIRNode] = {}
        chain: list[str] = []
        shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        first_in = shape
        weighted = [i for i, g in enumerate(groups) if read_str(g, "type") in ("conv", "dense")]
        for i, g in enumerate(groups):
            kind, where = read_str(g, "type"), f"{path.name}: netx layer {i}"
            if kind == "input":
                shape = first_in = tuple(int(d) for d in read_int(g, "shape"))
                if "neuron" in g:
                    nodes[f"neuron{i}"] = _input_neuron(where, g, shape, float(info.get("output_scale", 1.0)))
                    chain.append(f"neuron{i}")
            elif kind == "flatten":
                if shape is not None and len(shape) > 1:
                    nodes[f"flatten{i}"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
                    chain.append(f"flatten{i}")
                    shape = (int(np.prod(shape)),)
            elif kind in ("conv", "dense"):
                if shape is None:
                    if kind == "conv":
                        raise Unsupported(f"{where}: conv layer without an input layer; pass input_shape=(C, H, W)")
                    shape = first_in = (int(read_int(g, "weight").reshape(int(np.prod(read_int(g, "shape"))), -1).shape[1]),)
                if kind == "dense" and len(shape) > 1:
                    if any(d != 1 for d in shape[1:]):
                        raise Unsupported(f"{where}: dense layer after a {shape} layer without a flatten layer "
                                          "(netx itself would fail to connect them)")
                    nodes[f"flatten{i}"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
                    chain.append(f"flatten{i}")   # netx connects a (n, 1, 1) layer to a dense one directly
                    shape = (shape[0],)
                nodes[f"{kind}{i}"] = _synapse(where, kind, g, shape)
                out = tuple(int(d) for d in read_int(g, "shape"))
                if kind == "dense":
                    out = (int(np.prod(out)),)
                delay = _delay(where, g, int(np.prod(shape)), int(np.prod(out))) if kind == "dense" else None
                if delay:
                    nodes[f"delay{i}"] = delay[1]
                    chain += [f"delay{i}", f"{kind}{i}"] if delay[0] == "before" else [f"{kind}{i}", f"delay{i}"]
                else:
                    chain.append(f"{kind}{i}")
                nodes[f"neuron{i}"] = _neuron(where, g, out, i == weighted[-1], float(info.get("output_scale", 1.0)),
                                              "bias" in g and np.any(read_int(g, "bias")))
                chain.append(f"neuron{i}")
                shape = out
            else:
                raise Unsupported(f"{where}: layer type {kind!r} — netx (lava-dl 0.6.0) cannot run it either "
                                  "(NotImplementedError), so it is not imported")
    scale = float(info.get("input_scale", 1.0))
    head = ["input"] + (["input_scale"] if scale != 1.0 else [])
    nodes["input"] = nir.Input(input_type={"input": np.array(first_in)})
    if scale != 1.0:
        nodes["input_scale"] = nir.Scale(scale=np.array([scale], np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    order = head + chain + ["output"]
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False,
                         metadata=graph_metadata("", source=f"netx HDF5 {path.name}"))
    analyse(graph)
    return graph

