"""The minimal graphs of docs/parity.md with the numbers quoted there, worked out by hand in each test."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import backends
from backends.netx import export_netx
from pipeline.io.nirimport import adopt
from tests.graphs import if_node, single_if

X = np.array([[0.625, 0.5, 0.25]])


@pytest.mark.parametrize("name", ["reference", "norse"])
def test_reset_and_firing_condition_example(name):
    """theta = 1, T = 10. Subtract, fire on >=: floor(10 x) = 6, 5, 2. Reset to 0, fire on >: a spike every
    ceil-above(1 / x) steps: 0.625 every 2nd step (5), 0.5 every 3rd (1.0 is not > 1; 3), 0.25 every 5th (2)."""
    sub = backends.get(name).run(single_if(3, 1.0, reset="subtract"), X, 10, approximate=True)
    zero = backends.get(name).run(single_if(3, 1.0, reset="zero"), X, 10)
    np.testing.assert_array_equal(sub.outputs[0], [6, 5, 2] if name == "reference" else [5, 3, 2])
    np.testing.assert_array_equal(zero.outputs[0], [5, 3, 2])
    assert sub.approximate == (name == "norse")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lava", "netx"])
def test_reset_and_firing_condition_example_on_lava(name):
    sub = backends.get(name).run(single_if(3, 1.0, reset="subtract"), X, 10, approximate=True)
    np.testing.assert_array_equal(sub.outputs[0], [6, 5, 2] if name == "lava" else [5, 3, 2])


def test_norse_to_nir_time_constant_example():
    """LIFBox, tau_mem_inv = 200, dt = 1e-3, input 2: v += 0.2 (2 - v) -> 0.4, 0.72, 0.976, 1.18: a spike every
    4th step, 10 in 40. Read back by Norse with tau = 5e-6: v += 200 (2 - v), a spike every step (40)."""
    import norse.torch as nt
    from norse.torch.module.lif_box import LIFBoxCell, LIFBoxParameters
    lin = torch.nn.Linear(1, 1, bias=False)
    lin.weight.data[:] = 1.0
    model = nt.SequentialState(lin, LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor(200.0))))
    graph = nt.to_nir(model, torch.zeros(1, 1))
    assert float(graph.nodes["1"].tau) == pytest.approx(5e-6)

    def count(module):
        state, n = None, 0.0
        with torch.no_grad():
            for _ in range(40):
                z, state = module(torch.tensor([[2.0]]), state)
                n += float(z.sum())
        return n
    assert count(model) == 10 and count(nt.from_nir(graph, ignore_warnings=True)) == 40
    adopted, _ = adopt(graph, "norse")
    assert backends.get("reference").run(adopted, np.array([[2.0]]), 40).outputs[0, 0] == 10


def _chain(bias: float) -> nir.NIRGraph:
    one = lambda v: np.array([v], np.float32)  # noqa: E731
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1])}),
               "fc1": nir.Affine(weight=np.array([[2.0]], np.float32), bias=one(bias)), "if1": if_node(1, 3.0, reset="zero"),
               "fc2": nir.Affine(weight=np.array([[2.0]], np.float32), bias=one(0.0)), "if2": if_node(1, 3.0, reset="zero"),
               "output": nir.Output(output_type={"output": np.array([1])})},
        edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"), ("if2", "output")], type_check=False)


@pytest.mark.slow
@pytest.mark.parametrize("bias, synchronous, plain", [(0.0, 3, 2), (2.0, 6, 5)])
def test_synaptic_delay_example(tmp_path, bias, synchronous, plain):
    """T = 12, theta 3, reset to 0. b = 0: layer 1 gets 2 per step, fires every 2nd step (6 spikes); layer 2
    gets 2 per input spike, fires on every 2nd of them (3). Run plainly, each layer sees its input a step
    late: layer 1 fires at steps 3, 5, .., 11 (5), layer 2 on the 2nd and 4th of those (2). b = 2: layer 1 fires
    every step (12), layer 2 every 2nd step (6); plainly it sees 10 spikes (steps 2..11) and fires 5 times."""
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    graph = _chain(bias)
    path = tmp_path / "chain.h5"
    assert export_netx(graph, path) == []
    assert backends.get("reference").run(graph, np.array([[1.0]]), 12).outputs[0, 0] == synchronous
    assert backends.get("netx").run(graph, np.array([[1.0]]), 12).outputs[0, 0] == synchronous
    net = Network(net_config=str(path), input_message_bits=16)
    source, sink = Source(data=np.ones((1, 12), np.int32)), Sink(shape=(1,), buffer=12)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=12), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        assert sink.data.get().sum() == plain
    finally:
        net.stop()
