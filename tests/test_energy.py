"""Tests of the energy model: operation counts against brute-force loops, textbook formulas and torch's
FLOP counter, energies against the constants read straight from the hwconfig TOML."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from backends.reference import ReferenceBackend
from pipeline.hardware.energy import ann_energy, energy_report, synaptic_ops, weighted_macs
from pipeline.hardware.hwconfig import HwConfigError

CMOS45NM = Path(__file__).resolve().parents[1] / "hwconfigs" / "cmos45nm.toml"


def _if(shape, threshold=0.5):
    shape = tuple(shape)
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, threshold), v_reset=np.zeros(shape))


def _integrator(n):
    return nir.I(r=np.ones(n))


def _conv(rng, in_hw, c_in, c_out, kernel, stride=1, padding=0, dilation=1, groups=1):
    weight = rng.normal(size=(c_out, c_in // groups, *kernel))
    return nir.Conv2d(input_shape=in_hw, weight=weight, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, bias=np.zeros(c_out))


def _chain(input_shape, layers, out_shape, extra_edges=()):
    """Input -> layers in order -> Output, plus `extra_edges` (residual fan-in)."""
    names = ["input"] + [n for n, _ in layers] + ["output"]
    nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)}), **dict(layers),
             "output": nir.Output(output_type={"output": np.array(out_shape)})}
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])) + list(extra_edges))


def _row(report, name):
    return next(r for r in report.layers if r.name == name)


def _out_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def brute_force_conv_acs(spikes, c_out, kernel, stride, padding, dilation, groups, out_hw):
    """Accumulates per sample: for every input spike, every output channel of its group and every kernel
    tap, count the tap when it lands on a valid output position."""
    n_samples, c_in = spikes.shape[0], spikes.shape[2]
    cin_g, cout_g = c_in // groups, c_out // groups
    count = 0
    for _, _, c, h, w in zip(*np.nonzero(spikes)):
        group = c // cin_g
        for _co in range(group * cout_g, (group + 1) * cout_g):
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    oh, rest_h = divmod(h + padding[0] - i * dilation[0], stride[0])
                    ow, rest_w = divmod(w + padding[1] - j * dilation[1], stride[1])
                    if rest_h == 0 and rest_w == 0 and 0 <= oh < out_hw[0] and 0 <= ow < out_hw[1]:
                        count += 1
    return count / n_samples


@pytest.mark.parametrize("c_out, dilation, groups", [(3, (1, 1), 1), (4, (1, 1), 2), (3, (2, 1), 1)])
def test_conv_synaptic_ops_equal_brute_force(c_out, dilation, groups):
    rng = np.random.default_rng(0)
    c_in, (h, w), kernel, stride, padding = 2, (5, 6), (3, 2), (2, 2), (1, 1)
    node = _conv(rng, (h, w), c_in, c_out, kernel, stride, padding, dilation, groups)
    spikes = rng.random((3, 4, c_in, h, w)) < 0.4                 # (samples, T, C, H, W)
    events = (spikes != 0).sum(axis=1).mean(axis=0)               # RunResult.input_events
    out_hw = tuple(_out_size(s, k, st, p, d) for s, k, st, p, d in zip((h, w), kernel, stride, padding, dilation))
    expected = brute_force_conv_acs(spikes, c_out, kernel, stride, padding, dilation, groups, out_hw)
    got = synaptic_ops(node, (c_in, h, w), events)
    assert got == pytest.approx(expected, rel=1e-12)
    uniform = events.sum() * (c_out // groups) * kernel[0] * kernel[1]
    assert got < uniform                                          # borders and stride do matter here


def _spiking_conv_net(rng):
    """Input -> IF -> conv (stride 2, padding 1) -> IF -> flatten -> linear -> I: every weighted layer sees spikes."""
    conv = _conv(rng, (7, 9), 2, 3, (3, 3), stride=2, padding=1)
    layers = [("if0", _if((2, 7, 9), 0.7)), ("conv", conv), ("if1", _if((3, 4, 5), 0.3)),
              ("flat", nir.Flatten(input_type={"input": np.array([3, 4, 5])}, start_dim=0)),
              ("lin", nir.Linear(weight=rng.normal(size=(4, 60)))), ("acc", _integrator(4))]
    return _chain((2, 7, 9), layers, (4,))


def test_recorded_run_counts_each_spike_on_each_synapse():
    rng = np.random.default_rng(1)
    graph = _spiking_conv_net(rng)
    run = ReferenceBackend().run(graph, rng.random((4, 2, 7, 9)) * 2, T=6, record=True)
    report = energy_report(graph, run, "cmos45nm")
    conv, lin = _row(report, "conv"), _row(report, "lin")
    expected_conv = brute_force_conv_acs(run.spikes["if0"], 3, (3, 3), (2, 2), (1, 1), (1, 1), 1, (4, 5))
    assert conv.snn_acs == pytest.approx(expected_conv, rel=1e-12) and conv.snn_macs == 0
    assert lin.snn_acs == pytest.approx(np.count_nonzero(run.spikes["if1"]) / 4 * 4, rel=1e-12)
    assert conv.ann_macs == 3 * 4 * 5 * 2 * 3 * 3 and lin.ann_macs == 4 * 60


def test_analog_first_layer_is_charged_as_macs_every_step():
    rng = np.random.default_rng(2)
    layers = [("conv", _conv(rng, (6, 6), 1, 2, (3, 3), padding=1)), ("if1", _if((2, 6, 6))),
              ("flat", nir.Flatten(input_type={"input": np.array([2, 6, 6])}, start_dim=0)),
              ("lin", nir.Linear(weight=rng.normal(size=(5, 72)))), ("acc", _integrator(5))]
    graph = _chain((1, 6, 6), layers, (5,))
    run = ReferenceBackend().run(graph, rng.random((3, 1, 6, 6)), T=3, record=True)
    report = energy_report(graph, run, "cmos45nm", T=3)
    conv, lin = _row(report, "conv"), _row(report, "lin")
    assert conv.ann_macs == 2 * 6 * 6 * 1 * 3 * 3
    assert conv.snn_macs == conv.ann_macs * 3 and conv.snn_acs == 0
    assert lin.snn_macs == 0 and lin.snn_acs == pytest.approx(np.count_nonzero(run.spikes["if1"]) / 3 * 5)


def test_analog_input_through_flatten_is_still_analog():
    rng = np.random.default_rng(3)
    layers = [("flat", nir.Flatten(input_type={"input": np.array([2, 3])}, start_dim=0)),
              ("lin1", nir.Linear(weight=rng.normal(size=(4, 6)))), ("if1", _if((4,))),
              ("lin2", nir.Linear(weight=rng.normal(size=(2, 4)))), ("acc", _integrator(2))]
    graph = _chain((2, 3), layers, (2,))
    run = ReferenceBackend().run(graph, rng.random((2, 2, 3)), T=5)
    report = energy_report(graph, run, "cmos45nm")
    assert _row(report, "lin1").snn_macs == 24 * 5 and _row(report, "lin1").snn_acs == 0
    assert _row(report, "lin2").snn_macs == 0


def test_ann_macs_and_adds_match_textbook_formulas():
    rng = np.random.default_rng(4)
    layers = [("conv", _conv(rng, (8, 10), 2, 4, (3, 3), padding=1)), ("if1", _if((4, 8, 10))),
              ("pool", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))),
              ("flat", nir.Flatten(input_type={"input": np.array([4, 4, 5])}, start_dim=0)),
              ("lin", nir.Linear(weight=rng.normal(size=(3, 80))))]
    report = ann_energy(_chain((2, 8, 10), layers, (3,)), "cmos45nm")
    assert _row(report, "conv").ann_macs == 4 * 8 * 10 * 2 * 3 * 3
    assert _row(report, "pool").ann_adds == 4 * 4 * 5 * (2 * 2) and _row(report, "pool").ann_macs == 0
    assert _row(report, "lin").ann_macs == 3 * 80
    assert report.snn_joules_per_inference is None and report.ratio is None


def test_padded_pool_adds_count_in_bounds_window_elements():
    layers = [("if0", _if((2, 5, 6))),
              ("pool", nir.SumPool2d(kernel_size=np.array([3, 3]), stride=np.array([2, 2]), padding=np.array([1, 1]))),
              ("flat", nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0)),
              ("lin", nir.Linear(weight=np.ones((2, 18))))]
    report = ann_energy(_chain((2, 5, 6), layers, (2,)), "cmos45nm")
    in_bounds = sum(1 for oh in range(3) for ow in range(3) for i in range(3) for j in range(3)
                    if 0 <= 2 * oh - 1 + i < 5 and 0 <= 2 * ow - 1 + j < 6)
    assert _row(report, "pool").ann_adds == 2 * in_bounds


def test_grouped_strided_conv_macs_match_textbook_formula():
    node = _conv(np.random.default_rng(5), (9, 9), 4, 6, (3, 3), stride=2, groups=2)
    assert weighted_macs(node, (4, 9, 9)) == 6 * 4 * 4 * (4 // 2) * 3 * 3


def test_vgg_like_macs_match_torch_flop_counter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 16, 16))
    conv1, conv2, lin = model[0], model[3], model[6]

    def to_nir(conv, hw):
        return nir.Conv2d(input_shape=hw, weight=conv.weight.detach().numpy(), stride=conv.stride,
                          padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                          bias=conv.bias.detach().numpy())
    layers = [("c1", to_nir(conv1, (16, 16))), ("if1", _if((8, 16, 16))),
              ("pool", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))),
              ("c2", to_nir(conv2, (8, 8))), ("if2", _if((16, 4, 4))),
              ("flat", nir.Flatten(input_type={"input": np.array([16, 4, 4])}, start_dim=0)),
              ("fc", nir.Affine(weight=lin.weight.detach().numpy(), bias=lin.bias.detach().numpy()))]
    report = ann_energy(_chain((3, 16, 16), layers, (10,)), "cmos45nm")
    assert sum(r.ann_macs for r in report.layers) == counter.get_total_flops() // 2


def test_residual_fan_in_adds_are_listed_not_charged():
    rng = np.random.default_rng(6)
    layers = [("c1", _conv(rng, (6, 6), 1, 2, (3, 3), padding=1)), ("if1", _if((2, 6, 6))),
              ("c2", _conv(rng, (6, 6), 2, 2, (3, 3), padding=1)), ("if2", _if((2, 6, 6))),
              ("flat", nir.Flatten(input_type={"input": np.array([2, 6, 6])}, start_dim=0)),
              ("lin", nir.Linear(weight=rng.normal(size=(3, 72)))), ("acc", _integrator(3))]
    graph = _chain((1, 6, 6), layers, (3,), extra_edges=[("if1", "if2")])
    run = ReferenceBackend().run(graph, rng.random((2, 1, 6, 6)), T=4)
    row = _row(energy_report(graph, run, "cmos45nm"), "if2")
    assert row.ann_adds == 2 * 6 * 6 and row.ann_macs == 0
    assert row.ann_joules == 0 and row.snn_macs == row.snn_acs == 0
    assert row.snn_joules == row.snn_neuron_joules   # the IF node pays its neuron updates, not the residual adds


def test_energies_are_counts_times_toml_constants():
    rng = np.random.default_rng(7)
    graph = _spiking_conv_net(rng)
    run = ReferenceBackend().run(graph, rng.random((3, 2, 7, 9)) * 2, T=4)
    report = energy_report(graph, run, "cmos45nm")
    energy = tomllib.loads(CMOS45NM.read_text())["energy"]
    mac, ac, nu = energy["mac_pj"] * 1e-12, energy["ac_pj"] * 1e-12, energy["neuron_update_pj"] * 1e-12
    ann = sum(r.ann_macs for r in report.layers) * mac
    snn = (sum(r.snn_macs for r in report.layers) * mac + sum(r.snn_acs for r in report.layers) * ac
           + sum(r.snn_neuron_updates for r in report.layers) * nu)
    assert report.ann_joules_per_inference == pytest.approx(ann, rel=1e-12)
    assert report.snn_joules_per_inference == pytest.approx(snn, rel=1e-12)
    assert report.ratio == pytest.approx(ann / snn) and report.energy_drop == pytest.approx((snn - ann) / ann)
    for r in report.layers:
        assert r.ann_joules == pytest.approx(r.ann_macs * mac)
        assert r.snn_joules == pytest.approx(r.snn_macs * mac + r.snn_acs * ac + r.snn_neuron_updates * nu)


def test_report_serialises_and_prints_assumptions():
    rng = np.random.default_rng(8)
    graph = _spiking_conv_net(rng)
    report = energy_report(graph, ReferenceBackend().run(graph, rng.random((2, 2, 7, 9)), T=3), "cmos45nm")
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["T"] == 3 and data["hwconfig"] == "cmos45nm" and len(data["layers"]) == len(report.layers)
    text = report.to_markdown()
    assert "| layer | kind |" in text and "SNN2ANN Eq. 23" in text
    assert all(a in text for a in report.assumptions)
    assert any("first layer" in a for a in report.assumptions)
    assert any("Neuron updates" in a for a in report.assumptions)


def test_refuses_what_it_cannot_count():
    rng = np.random.default_rng(9)
    graph = _spiking_conv_net(rng)
    run = ReferenceBackend().run(graph, rng.random((2, 2, 7, 9)), T=3)
    with pytest.raises(HwConfigError, match="energy"):
        energy_report(graph, run, "loihi2")
    with pytest.raises(ValueError, match="T=5"):
        energy_report(graph, run, "cmos45nm", T=5)
    run.input_events["conv"] = np.ones((2, 7, 8))
    with pytest.raises(ValueError, match="'conv'"):
        energy_report(graph, run, "cmos45nm")
    run.input_events = None
    with pytest.raises(ValueError, match="input_events"):
        energy_report(graph, run, "cmos45nm")


# --- ANN counts of the CIFAR networks against torch's FLOP counter -------------------------------------------

@pytest.mark.parametrize("name", ["vgg16", "resnet18", "resnet20"])
def test_cifar_ann_macs_equal_torch_flop_counter(name):
    """Convention: a MAC is one multiply-accumulate of a conv or linear layer; BN is folded into the conv
    (FlopCounterMode does not count BN either), bias additions, ReLU, pooling and residual adds are not MACs.
    FlopCounterMode counts 2 FLOPs per MAC for aten.convolution and aten.addmm/mm, so MACs = FLOPs / 2."""
    from pipeline.conversion.registry import convert
    from pipeline.data.zoo import build_model
    torch.manual_seed(0)
    model = build_model(name, (3, 32, 32), 10).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    flops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert set(flops) <= {"aten.convolution", "aten.addmm", "aten.mm"}
    graph = convert(model, (3, 32, 32), torch.rand(8, 3, 32, 32), method="maxnorm")
    report = ann_energy(graph, "cmos45nm")
    conv = sum(r.ann_macs for r in report.layers if r.kind == "Conv2d")
    dense = sum(r.ann_macs for r in report.layers if r.kind in ("Affine", "Linear"))
    assert counter.get_total_flops() % 2 == 0
    assert conv * 2 == flops["aten.convolution"]
    assert dense * 2 == flops.get("aten.addmm", 0) + flops.get("aten.mm", 0)
    assert sum(r.ann_macs for r in report.layers) == counter.get_total_flops() // 2
    # neuron states: one per ReLU output of the torch model plus the integrating classifier outputs
    relu_outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: relu_outputs.append(out[0].numel()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert sum(r.neurons for r in report.layers) == sum(relu_outputs) + 10


# --- neuron updates ------------------------------------------------------------------------------------------

def test_neuron_updates_are_neurons_times_steps_priced_from_toml():
    rng = np.random.default_rng(10)
    graph = _spiking_conv_net(rng)
    T = 5
    run = ReferenceBackend().run(graph, rng.random((3, 2, 7, 9)) * 2, T=T)
    report = energy_report(graph, run, "cmos45nm")
    energy = tomllib.loads(CMOS45NM.read_text())["energy"]
    hand = {"if0": 2 * 7 * 9 * T, "if1": 3 * 4 * 5 * T, "acc": 4 * T}
    got = {r.name: r.snn_neuron_updates for r in report.layers if r.snn_neuron_updates}
    assert got == hand
    assert all(r.snn_neuron_updates == 0 for r in report.layers if r.name not in hand)
    for r in report.layers:
        assert r.snn_neuron_joules == pytest.approx(hand.get(r.name, 0) * energy["neuron_update_pj"] * 1e-12, rel=1e-12)
        assert r.snn_joules == pytest.approx(r.snn_macs * energy["mac_pj"] * 1e-12 + r.snn_acs * energy["ac_pj"] * 1e-12
                                             + r.snn_neuron_joules, rel=1e-12)
        assert r.ann_joules == pytest.approx(r.ann_macs * energy["mac_pj"] * 1e-12)   # the ANN pays no neuron update
    text = report.to_markdown()
    assert "SNN neuron updates" in text and any("Neuron updates: one per neuron per time step" in a
                                                 for a in report.assumptions)


def test_neuron_updates_without_a_figure_are_counted_not_charged(tmp_path):
    text = CMOS45NM.read_text().replace("\nneuron_update_pj", "\n# neuron_update_pj")
    hw = tmp_path / "cmos45nm.toml"
    hw.write_text(text)
    rng = np.random.default_rng(11)
    graph = _spiking_conv_net(rng)
    report = energy_report(graph, ReferenceBackend().run(graph, rng.random((2, 2, 7, 9)), T=3), hw)
    assert _row(report, "if1").snn_neuron_updates == 3 * 4 * 5 * 3 and _row(report, "if1").snn_neuron_joules == 0
    assert any("counted (neurons x T per neuron layer) but not charged" in a for a in report.assumptions)


# --- signed and threshold-scaled spikes ----------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2.5, -2.5, np.array([1.0, -0.5, 3.0, -1.0])])
def test_signed_and_threshold_scaled_spikes_count_as_one_ac_each(scale):
    """Spikes of amplitude theta (threshold-scaled) or -theta (signed) reach the linear layer through a Scale
    node; each non-zero input is one AC per synapse, never a MAC."""
    rng = np.random.default_rng(12)
    layers = [("if0", _if((4,), 0.6)), ("scale", nir.Scale(scale=np.broadcast_to(scale, (4,)).copy())),
              ("lin", nir.Linear(weight=rng.normal(size=(3, 4)))), ("acc", _integrator(3))]
    graph = _chain((4,), layers, (3,))
    run = ReferenceBackend().run(graph, rng.random((5, 4)) * 2, T=6, record=True)
    lin = _row(energy_report(graph, run, "cmos45nm"), "lin")
    assert lin.snn_macs == 0
    assert lin.snn_acs == pytest.approx(np.count_nonzero(run.spikes["if0"]) / 5 * 3, rel=1e-12)
    signed = np.sign(np.broadcast_to(scale, (4,))) * rng.integers(0, 4, size=4)   # multi-valued, signed events
    assert synaptic_ops(graph.nodes["lin"], (4,), (signed != 0).astype(float)) == np.count_nonzero(signed) * 3


# --- data movement (Joint A-SNN Sec. 5.4) --------------------------------------------------------------------

@pytest.mark.parametrize("level, key", [("cache_8kb", "cache_8kb_read_pj"), ("cache_1mb", "cache_1mb_read_pj"),
                                        ("dram_max", "dram_access_max_pj")])
def test_data_movement_equals_hand_computation_from_toml(level, key):
    rng = np.random.default_rng(13)
    graph = _spiking_conv_net(rng)
    T, n = 4, 3
    run = ReferenceBackend().run(graph, rng.random((n, 2, 7, 9)) * 2, T=T, record=True)
    memory = tomllib.loads(CMOS45NM.read_text())["memory"]
    per_bit = memory[key] * 1e-12 / memory["access_bits"]
    neurons = {"if0": 2 * 7 * 9, "if1": 3 * 4 * 5, "acc": 4}
    spikes = {"if0": np.count_nonzero(run.spikes["if0"]) / n, "if1": np.count_nonzero(run.spikes["if1"]) / n, "acc": 0}
    ann_bits = {k: 2 * 32 * v for k, v in neurons.items()}                      # written once, read once
    snn_bits = {k: 2 * 32 * v * T + 2 * 1 * spikes[k] for k, v in neurons.items()}  # potentials every step + spikes
    report = energy_report(graph, run, "cmos45nm", data_movement=True, memory_level=level)
    plain = energy_report(graph, run, "cmos45nm")
    for r in report.layers:
        assert r.ann_movement_bits == ann_bits.get(r.name, 0)
        assert r.snn_movement_bits == pytest.approx(snn_bits.get(r.name, 0), rel=1e-12)
        assert r.ann_movement_joules == pytest.approx(ann_bits.get(r.name, 0) * per_bit, rel=1e-12)
        assert r.snn_movement_joules == pytest.approx(snn_bits.get(r.name, 0) * per_bit, rel=1e-12)
    assert report.ann_movement_joules_per_inference == pytest.approx(sum(ann_bits.values()) * per_bit, rel=1e-12)
    assert report.snn_movement_joules_per_inference == pytest.approx(sum(snn_bits.values()) * per_bit, rel=1e-12)
    # compute energy is untouched by the data-movement term; the combined ratio adds both
    assert report.ann_joules_per_inference == plain.ann_joules_per_inference
    assert report.snn_joules_per_inference == plain.snn_joules_per_inference and report.ratio == plain.ratio
    assert report.ratio_with_movement == pytest.approx(
        (plain.ann_joules_per_inference + sum(ann_bits.values()) * per_bit)
        / (plain.snn_joules_per_inference + sum(snn_bits.values()) * per_bit))
    assert plain.ann_movement_joules_per_inference is None and _row(plain, "if1").snn_movement_joules is None
    assert report.movement_by_level[level]["snn"] == pytest.approx(sum(snn_bits.values()) * per_bit, rel=1e-12)
    text = report.to_markdown()
    assert "SNN data movement" in text and "Joint A-SNN Sec. 5.4" in text and "SNN data movement" not in plain.to_markdown()
    json.dumps(report.to_dict(), allow_nan=False)


def test_ann_only_data_movement_and_unknown_level():
    rng = np.random.default_rng(14)
    graph = _spiking_conv_net(rng)
    report = ann_energy(graph, "cmos45nm", data_movement=True, memory_level="cache_32kb")
    memory = tomllib.loads(CMOS45NM.read_text())["memory"]
    bits = 2 * 32 * (2 * 7 * 9 + 3 * 4 * 5 + 4)
    assert report.ann_movement_joules_per_inference == pytest.approx(bits / 64 * memory["cache_32kb_read_pj"] * 1e-12)
    assert report.snn_movement_joules_per_inference is None and report.ratio_with_movement is None
    with pytest.raises(ValueError, match="memory level"):
        ann_energy(graph, "cmos45nm", data_movement=True, memory_level="l2")


# --- plot and command line -----------------------------------------------------------------------------------

def test_stacked_energy_plot_accepts_report_rows_and_old_rows(tmp_path):
    from pipeline.io.render import energy_plot
    rng = np.random.default_rng(15)
    graph = _spiking_conv_net(rng)
    run = ReferenceBackend().run(graph, rng.random((2, 2, 7, 9)), T=3)
    layers = energy_report(graph, run, "cmos45nm", data_movement=True).to_dict()["layers"]
    assert energy_plot(tmp_path / "a.png", layers, "t").stat().st_size > 0
    old = [{"name": "l", "ann_joules": 1e-9, "snn_joules": 2e-10}]
    assert energy_plot(tmp_path / "b.png", old, "t").stat().st_size > 0


def test_cli_energy_with_data_movement_and_plot(tmp_path, capsys):
    from pipeline.io.atomic import write_nir
    from pipeline.cli import main
    from pipeline.conversion.registry import convert
    from pipeline.data.datasets import load_dataset
    from pipeline.data.zoo import build_model
    ds = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("digits-cnn", ds.input_shape, ds.num_classes).eval()
    write_nir(tmp_path / "m.nir", convert(model, ds.input_shape, ds.train_x[:32], method="maxnorm"))
    png = tmp_path / "e.png"
    assert main(["energy", str(tmp_path / "m.nir"), "--T", "4", "--limit", "10", "--data-movement",
                 "--memory-level", "cache_1mb", "--plot", str(png), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "SNN data movement" in out and "cache_1mb" in out and "Assumptions:" in out and png.stat().st_size > 0
