"""DNISNM (Wang, Liu, Zhang, Luo & Qu, Neural Networks 2024, "A universal ANN-to-SNN framework for
achieving high accuracy and low latency deep Spiking Neural Networks"): any ReLU ANN, no retraining.

DNI (Sec. 4.1, Fig. 5): the firing threshold of every neuron is the maximum of its own ANN activation
over one pass of the training data (`activation_scales(..., statistic="max", granularity="neuron")`),
and its initial membrane potential is v(0) = theta / 2.

SNM (Sec. 4.2, Eq. 19-23): every ReLU becomes a signed neuron with memory, written as an IF node with
`reset: "signed-memory"` (docs/nir-extensions.md): +1 spike on v >= theta, -1 spike on v <= -theta
only while the neuron has sent more positive than negative spikes, reset by subtraction.

Algorithm 1 in both of its forms:
- form="thresholds" (default; line 14-16): weights and biases as in the ANN, thresholds +-theta_i per
  neuron, every spike scaled by theta_i (a `Scale` node after each IF, as `pipeline.conversion.normalize` builds
  it), v(0) = theta_i / 2.
- form="weights" (line 11-13, Eq. 18): W_ij <- W_ij lambda_i / lambda_j, b_j <- b_j / lambda_j,
  thresholds +-1, v(0) = 1/2. A convolution shares its weights across positions, so Eq. 18 can only
  fold one lambda per output channel into it: neuron-wise scales on a conv layer are refused with a
  ConversionError (pass granularity="channel" or "layer" to get the weight form at that coarser
  granularity, or use the threshold form, which the paper says is equivalent; the paper does not say
  what it does for convolutions in the weight form). Fully connected layers take neuron-wise scales in
  either form.

A neuron that never activates on the training data keeps threshold 1 (`pipeline.conversion.calibrate._positive`).
Options: form, granularity ("neuron" is DNI; "channel"/"layer" for ablations and the conv weight form),
signed (False replaces SNM by the plain reset-by-subtraction IF neuron: the "DNI only" ablation).
"""
from __future__ import annotations

import nir
import numpy as np
import torch
from torch import nn

from backends.nirext import SIGNED, neuron_metadata
from pipeline.conversion.calibrate import GRANULARITIES, activation_scales
from pipeline.conversion.registry import Method, register
from pipeline.errors import ConversionError
from pipeline.conversion.normalize import FORMS, normalize
from pipeline.conversion.trace import trace


def convert(model: nn.Module, input_shape, calib_x: torch.Tensor, *, form: str = "thresholds",
            granularity: str = "neuron", signed: bool = True, method: str = "dnisnm", source: str = "",
            progress: bool = False) -> nir.NIRGraph:
    """Algorithm 1: DNI thresholds (max per neuron over `calib_x`, the training set), v(0) = theta/2, SNM
    neurons; `form` "thresholds" (default) or "weights" (Eq. 18); `granularity` "neuron" (DNI, default), or
    "channel"/"layer" as ablations; `signed=False` drops the signed neuron with memory (plain IF)."""
    if form not in FORMS:
        raise ConversionError(f"dnisnm: form must be one of {FORMS}, got {form!r}")
    if granularity not in GRANULARITIES:
        raise ConversionError(f"dnisnm: granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if calib_x is None or len(calib_x) == 0:
        raise ConversionError("dnisnm needs the training data (calib_x) for its neuron-wise maxima (DNI)")
    traced = trace(model, tuple(input_shape), method=method or "dnisnm", source=source)
    scales = dni_thresholds(traced, calib_x, granularity=granularity, progress=progress)
    if form == "weights":
        _check_weight_form(traced.graph, scales, granularity)
    graph = normalize(traced.graph, scales, form=form)
    return with_snm(graph, signed=signed)


def dni_thresholds(traced, calib_x: torch.Tensor, granularity: str = "neuron", progress: bool = False) -> dict:
    """Per IF node: the maximum of its ANN activation over `calib_x` (DNI, Fig. 5), per neuron by default."""
    return activation_scales(traced.module, traced.activations, calib_x, statistic="max", granularity=granularity,
                             progress=progress)


def _check_weight_form(graph: nir.NIRGraph, scales: dict, granularity: str) -> None:
    """Refuse, naming the layer, neuron-wise scales that Eq. 18 cannot fold into shared conv weights."""
    if granularity != "neuron":
        return
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.IF) or np.ndim(node.v_threshold) != 3:
            continue
        lam = np.asarray(scales[name])
        if lam.ndim == 3 and not np.allclose(lam, lam[:, :1, :1]):
            raise ConversionError(
                f"dnisnm: form='weights' cannot express neuron-wise thresholds for the convolutional layer "
                f"{name!r} (Eq. 18 would need a different weight per position of a shared kernel); use "
                "form='thresholds' (the default, equivalent per the paper) or granularity='channel'")


def with_snm(graph: nir.NIRGraph, signed: bool = True) -> nir.NIRGraph:
    """Every IF node made a signed neuron with memory (or, `signed=False`, a reset-by-subtraction IF)
    with v(0) = v_threshold / 2; a new graph, the nodes of `graph` are not changed."""
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.IF):
            continue
        theta = np.asarray(node.v_threshold, np.float32)
        nodes[name] = nir.IF(r=node.r, v_threshold=theta, v_reset=node.v_reset,
                             metadata=neuron_metadata(SIGNED if signed else "subtract", theta / 2))
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=False)


register(Method("dnisnm", "DNISNM (Wang et al. 2024): neuron-wise max thresholds (DNI), v(0) = theta/2, signed "
                "neurons with memory (SNM); any ReLU ANN, no retraining", convert))
