"""Import a lava-dl netx HDF5 network (ours or one lava-dl wrote, e.g. slayer blocks' export_hdf5) as a NIR graph.

The graph computes what netx computes (backends/netx/layout.py): integer weights, IF neurons with core
reset in mantissa units; layers netx or NIR cannot express exactly raise `Unsupported` naming the layer.
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


def _neuron(where: str, group: h5py.Group, shape: tuple[int, ...], last: bool, output_scale: float) -> nir.NIRNode:
    """The NIR neuron for a netx `neuron` group: IF (core reset to 0) or, for a never-firing last layer, I."""
    if "neuron" not in group:
        raise Unsupported(f"{where}: no neuron group (netx would use a non-leaky integrator with a fixed threshold)")
    n = group["neuron"]
    kind = read_str(n, "type")
    if kind not in ("CUBA", "LOIHI"):
        raise Unsupported(f"{where}: neuron type {kind!r} — only CUBA neurons are imported (SDNN and RF have no NIR "
                          "node)")
    decays = {k: int(np.asarray(n[k][()])) for k in IF_DECAYS}
    if decays != IF_DECAYS:
        raise Unsupported(f"{where}: CUBA neuron with iDecay={decays['iDecay']}, vDecay={decays['vDecay']} — netx's "
                          "fixed-point decays round toward zero in 12 bits, which NIR's LIF/CubaLIF do not express; "
                          "only iDecay=4096, vDecay=0 (integrate-and-fire) is imported exactly")
    v_th = int(np.asarray(n["vThMant"][()]))
    if never_fires(v_th):
        if not last:
            raise Unsupported(f"{where}: a hidden layer whose neurons never fire (vThMant={v_th})")
        return nir.I(r=np.full(shape, 1.0 / output_scale, np.float32))
    ones = np.ones(shape, np.float32)
    return nir.IF(r=ones, v_threshold=ones * v_th, v_reset=np.zeros(shape, np.float32),
                  metadata=neuron_metadata("zero"))


def _synapse(where: str, kind: str, group: h5py.Group, in_shape: tuple[int, ...]) -> nir.NIRNode:
    for key in ("delay", "weight/imag", "weight_rec"):
        if key in group:
            raise Unsupported(f"{where}: {key!r} (synaptic delays, complex or recurrent weights) has no NIR node here")
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


def import_netx(path, input_shape: tuple[int, ...] | None = None) -> nir.NIRGraph:
    """The NIR graph of the netx HDF5 file `path`.

    `input_shape` (torch order) is needed only when the file has no `input` layer before a conv layer
    (as netx's own `input_shape` argument). Inputs are the integers netx receives; a file written by
    `export_netx` with an input scale gets a Scale node so that the graph takes the original inputs.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        info = file_info(f)
        top = f["layer"]
        groups = [top[str(i)] for i in range(len(top))]
        nodes: dict[str, nir.NIRNode] = {}
        chain: list[str] = []
        shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        first_in = shape
        weighted = [i for i, g in enumerate(groups) if read_str(g, "type") in ("conv", "dense")]
        for i, g in enumerate(groups):
            kind, where = read_str(g, "type"), f"{path.name}: netx layer {i}"
            if kind == "input":
                if "neuron" in g:
                    raise Unsupported(f"{where}: input layer with neurons (slayer's Input block) — lava-dl 0.6.0's "
                                      "netx cannot compile it (no subcompiler for PyInputModel), so it is not "
                                      "imported")
                shape = first_in = tuple(int(d) for d in read_int(g, "shape"))
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
                    raise Unsupported(f"{where}: dense layer after a {shape} layer without a flatten layer "
                                      "(netx itself would fail to connect them)")
                nodes[f"{kind}{i}"] = _synapse(where, kind, g, shape)
                out = tuple(int(d) for d in read_int(g, "shape"))
                nodes[f"neuron{i}"] = _neuron(where, g, out, i == weighted[-1], float(info.get("output_scale", 1.0)))
                chain += [f"{kind}{i}", f"neuron{i}"]
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

