"""Hand-built NIR graphs shared by the backend tests (each test computes its expected answer itself)."""
from __future__ import annotations

import nir
import numpy as np

from backends.nirext import neuron_metadata


def if_node(shape, threshold=1.0, v_init=None, reset="subtract") -> nir.IF:
    shape = tuple(np.atleast_1d(shape))
    theta = np.broadcast_to(np.asarray(threshold, dtype=np.float32), shape).copy()
    v0 = None if v_init is None else np.broadcast_to(np.asarray(v_init, dtype=np.float32), shape).copy()
    return nir.IF(r=np.ones(shape, np.float32), v_threshold=theta, v_reset=np.zeros(shape, np.float32),
                  metadata=neuron_metadata(reset, v0))


def mlp(w1, b1, w2, b2, threshold=1.0, v_init=None, reset="subtract") -> nir.NIRGraph:
    """Input -> Affine -> IF -> Affine -> I -> Output."""
    w1, w2 = np.asarray(w1, np.float32), np.asarray(w2, np.float32)
    n_in, n_hid, n_out = w1.shape[1], w1.shape[0], w2.shape[0]
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n_in])}),
            "fc1": nir.Affine(weight=w1, bias=np.asarray(b1, np.float32)),
            "if1": if_node(n_hid, threshold, v_init, reset),
            "fc2": nir.Affine(weight=w2, bias=np.asarray(b2, np.float32)),
            "out": nir.I(r=np.ones(n_out, np.float32)),
            "output": nir.Output(output_type={"output": np.array([n_out])}),
        },
        edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "out"), ("out", "output")],
        type_check=False,
    )


def single_if(n: int, threshold, v_init=None, reset="subtract") -> nir.NIRGraph:
    """Input -> Linear(identity) -> IF -> Output: the IF layer sees the input as its current."""
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n])}),
            "fc": nir.Linear(weight=np.eye(n, dtype=np.float32)),
            "if": if_node(n, threshold, v_init, reset),
            "output": nir.Output(output_type={"output": np.array([n])}),
        },
        edges=[("input", "fc"), ("fc", "if"), ("if", "output")],
        type_check=False,
    )
