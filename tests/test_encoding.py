"""Input encodings (pipeline/data/encoding.py) against hand-worked values, their graph metadata, the API's
`encoding=` and the energy model's pricing of a spike-fed first layer."""
from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

import backends
import pipeline
from backends.nirext import ExtensionError, graph_info, graph_metadata, with_encoding
from pipeline.data import encoding as enc
from pipeline.errors import SpikeportError
from pipeline.hardware.energy import energy_report
from tests.graphs import mlp

REF = backends.get("reference")


def test_rate_spike_frequencies_converge_to_intensities():
    x = np.array([[0.0, 0.1, 0.5, 0.9, 1.0, -0.5]])
    T = 20_000
    s = enc.rate(x, T, seed=1)
    assert s.dtype == np.int8 and s.shape == (1, T, 6)
    freq = s[0].mean(0)
    sigma = np.sqrt(np.abs(x[0]) * (1 - np.abs(x[0])) / T)
    assert np.all(np.abs(freq - x[0]) <= 4 * sigma + 1e-12)
    assert freq[0] == 0 and freq[4] == 1 and set(np.unique(s[0, :, 5])) == {-1, 0}
    np.testing.assert_array_equal(enc.rate(x, 50, seed=1), enc.rate(x, 50, seed=1))
    assert not np.array_equal(enc.rate(x, 50, seed=1), enc.rate(x, 50, seed=2))


def test_latency_spikes_once_earlier_for_larger_values():
    x = np.array([[1.0, 0.5, 0.25, 0.0, -0.75]])
    s = enc.latency(x, 9)
    # step round((1 - |x|) * 8): 0, 4, 6, never, 2 (negative spike)
    first = {i: int(np.flatnonzero(s[0, :, i])[0]) for i in (0, 1, 2, 4)}
    assert first == {0: 0, 1: 4, 2: 6, 4: 2}
    assert s[0, :, 3].sum() == 0 and s[0, 2, 4] == -1
    assert np.abs(s).sum(1).tolist() == [[1, 1, 1, 0, 1]]
    order = sorted((0, 1, 2), key=lambda i: first[i])
    assert order == sorted((0, 1, 2), key=lambda i: -x[0, i])


def test_out_of_range_intensities_are_refused():
    with pytest.raises(SpikeportError, match=r"rate encoding needs intensities in \[-1, 1\].*up to 2"):
        enc.rate(np.array([[2.0]]), 4)


def test_event_count_of_a_one_pixel_shift_by_hand():
    """Image [0.9, 0] moved one pixel right becomes [0, 0.9]: pixel 0 falls from log(1.0) to log(0.1), pixel 1
    rises by the same ln 10 = 2.3026; with C = 0.15 that is trunc(2.3026 / 0.15) = 15 events each."""
    img = np.array([[[0.9, 0.0]]])
    moved = enc.shifted(img, 0.0, 1.0)
    np.testing.assert_allclose(moved, [[[0.0, 0.9]]])
    ev = enc.dvs_events(np.stack([img, moved], 1), threshold=0.15, eps=0.1)
    assert ev.shape == (1, 2, 2, 1, 2)
    assert ev[0, 0].sum() == 0                               # step 0 only sets the reference
    assert int(math.log(10) / 0.15) == 15
    assert ev[0, 1, 0].tolist() == [[0, 15]] and ev[0, 1, 1].tolist() == [[15, 0]]
    # half a pixel: pixel 1 sees 0.45, log(0.55) - log(0.1) = 1.7047 -> 11 ON events; the reference keeps the rest
    half = enc.dvs_events(np.stack([img, enc.shifted(img, 0.0, 0.5)], 1))
    assert int((math.log(0.55) - math.log(0.1)) / 0.15) == 11 and half[0, 1, 0, 0, 1] == 11


def test_saccade_path_is_the_triangle_repeated():
    path = enc.saccade_path(8, amplitude=1.0, steps=2)
    np.testing.assert_allclose(path, [[0, 0], [0.5, 0.25], [1, 0.5], [0.5, 0.75], [0, 1], [0, 0.5], [0, 0],
                                      [0.5, 0.25]])


def test_event_encoding_of_digits_shape_and_calibration_input(digits):
    x = digits.test_x[:10].numpy()
    ev = enc.event(x, 12)
    assert ev.shape == (10, 12, 2, 8, 8) and ev.dtype == np.int8 and ev.sum() > 0
    assert enc.input_shape("event", (1, 8, 8)) == (2, 8, 8)
    cal = enc.calibration_input(x, "event")
    steps = enc.CALIBRATION_CYCLES * 3 * enc.STEPS_PER_SACCADE
    np.testing.assert_allclose(cal, enc.event(x, steps).mean(1))
    np.testing.assert_array_equal(enc.calibration_input(x, "rate"), x)


def test_encoding_metadata_is_versioned_and_checked(tmp_path):
    g = mlp(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    g.metadata = with_encoding(graph_metadata("test"), "rate")
    back = pipeline.load(pipeline.save(g, tmp_path / "rate.nir"))
    assert graph_info(back)["encoding"] == "rate"
    g.metadata = {"spikeport": {"version": 2, "encoding": "rate"}}
    with pytest.raises(ExtensionError, match="encoding 'rate' is not one of direct .extension version 2"):
        graph_info(g)
    g.metadata = {"spikeport": {"version": 3, "encoding": "poisson"}}
    with pytest.raises(ExtensionError, match="'poisson' is not one of direct, rate, latency, event"):
        graph_info(g)


def test_simulate_encodes_images_as_asked_or_as_the_graph_says(digits, digits_graphs):
    graph, x = digits_graphs["robustnorm"], digits.test_x[:40]
    run = pipeline.simulate(graph, x, 16, encoding="rate", seed=3)
    by_hand = REF.run(graph, enc.rate(x.numpy(), 16, seed=3), 16)
    np.testing.assert_array_equal(run.outputs, by_hand.outputs)
    tagged = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=with_encoding(graph.metadata, "latency"),
                          type_check=False)
    np.testing.assert_array_equal(pipeline.simulate(tagged, x, 16).outputs,
                                  REF.run(graph, enc.latency(x.numpy(), 16), 16).outputs)
    spikes = enc.rate(x.numpy(), 16, seed=9)   # already time-varying: passed on unchanged
    np.testing.assert_array_equal(pipeline.simulate(graph, spikes, 16, encoding="rate").outputs,
                                  REF.run(graph, spikes, 16).outputs)
    with pytest.raises(SpikeportError, match="unknown encoding 'poisson'"):
        pipeline.simulate(graph, x, 16, encoding="poisson")


def test_convert_for_event_input_calibrates_on_event_rates():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3))
    images = torch.rand(32, 1, 6, 6)
    g = pipeline.convert(model, images, method="maxnorm", encoding="event")
    assert graph_info(g)["encoding"] == "event"
    (inp,) = [n for n in g.nodes.values() if isinstance(n, nir.Input)]
    assert tuple(inp.input_type["input"]) == (2, 6, 6)
    rates = torch.from_numpy(enc.calibration_input(images.numpy(), "event"))
    same = pipeline.convert(model, rates, method="maxnorm")
    neurons = [n for n in g.nodes if isinstance(g.nodes[n], nir.IF)]
    assert neurons
    for n in neurons:   # the thresholds of a conversion calibrated on the event rates themselves
        np.testing.assert_array_equal(g.nodes[n].v_threshold, same.nodes[n].v_threshold)
    run = pipeline.simulate(g, images[:4], 8)
    assert run.outputs.shape == (4, 3)


def test_spike_fed_first_layer_pays_acs_per_input_event_not_macs():
    rng = np.random.default_rng(0)
    g = mlp(rng.normal(0, 0.5, (6, 4)), np.zeros(6), rng.normal(0, 0.5, (3, 6)), np.zeros(3))
    x = rng.uniform(0, 1, (20, 4)).astype(np.float32)
    T = 16
    spikes = enc.rate(x, T, seed=0)
    run = REF.run(g, spikes, T)
    rate = energy_report(g, run, "cmos45nm", encoding="rate")
    first = rate.layers[0]
    assert first.name == "fc1" and first.snn_macs == 0
    assert first.snn_acs == pytest.approx((spikes != 0).sum() / len(x) * 6)   # every input drives 6 synapses
    direct = energy_report(g, REF.run(g, x, T), "cmos45nm")
    assert direct.layers[0].snn_macs == T * 4 * 6 and direct.layers[0].snn_acs == 0
    assert rate.encoding == "rate" and rate.to_dict()["encoding"] == "rate"
    assert any("Input encoding `rate`" in a for a in rate.assumptions)
    assert "input encoding `rate`" in rate.to_markdown()


def test_sweep_runs_the_encoding_it_is_given(tmp_path, digits, digits_model):
    from pipeline.io.nirio import read_graph
    from pipeline.reports.sweep import SweepConfig, run_sweep
    cfg = SweepConfig(out=tmp_path, methods=("maxnorm",), T_values=(8,), progress=False, limit=40, encoding="rate",
                      seed=4)
    res = run_sweep(digits_model, digits, cfg, log=lambda msg: None)
    graph = read_graph(tmp_path / "maxnorm.nir")
    assert graph_info(graph)["encoding"] == "rate" and res["energy"]["per_method"]["maxnorm"]["encoding"] == "rate"
    x, y = digits.test_x[:40].numpy(), digits.test_y[:40].numpy()
    by_hand = REF.run(graph, enc.rate(x, 8, seed=4), 8)
    (row,) = res["runs"]
    assert row["encoding"] == "rate" and row["accuracy"] == by_hand.accuracy(y)
    assert row["spikes_per_sample"] == by_hand.spikes_per_sample
