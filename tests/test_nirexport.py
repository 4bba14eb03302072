"""`spikeport export --for norse|sinabs`: the tools' own importers load the written file; on the whole digits
test split their predictions are compared with spikeport's reference backend on the original graph."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import backends
from pipeline.cli import main
from pipeline.errors import SpikeportError
from pipeline.io.atomic import write_nir
from pipeline.io.nirexport import export_for

T = 32


def _export(tmp_path, graph, tool, *extra) -> nir.NIRGraph:
    path = write_nir(tmp_path / "model.nir", graph)
    assert main(["export", str(path), "--for", tool, "-o", str(tmp_path / f"{tool}.nir"), "--quiet", *extra]) == 0
    return nir.read(tmp_path / f"{tool}.nir")


@pytest.mark.slow   # Norse's module sample by sample: 360 x 32 calls, several minutes on 2 shared cores
def test_norse_runs_the_exported_digits_file_as_the_reference_does(tmp_path, digits, digits_graphs):
    import norse.torch as nt
    graph = digits_graphs["maxnorm-zero"]      # IF with reset to 0 on v > θ: Norse's neuron
    module = nt.from_nir(_export(tmp_path, graph, "norse"), dt=1e-3)
    x = digits.test_x.float()
    total = torch.zeros(len(x), 10)
    with torch.no_grad():
        for i in range(len(x)):   # unbatched: Norse's Flatten counts a batch dimension (see export's note)
            state = None
            for _ in range(T):
                y, state = module(x[i], state)
                total[i] += y
    ref = backends.get("reference").run(graph, x.numpy(), T)
    np.testing.assert_array_equal(total.argmax(1).numpy(), ref.predictions)
    np.testing.assert_allclose(total.numpy(), ref.outputs, rtol=1e-4, atol=1e-3 * np.abs(ref.outputs).max())


def test_norse_export_refuses_reset_by_subtraction(digits_graphs):
    with pytest.raises(SpikeportError, match=r"node 'relu1' \(IF\): reset 'subtract' — Norse resets to 0"):
        export_for(digits_graphs["maxnorm"], "norse")


@pytest.mark.slow
def test_sinabs_runs_the_exported_digits_file_approximately(tmp_path, digits, digits_graphs):
    """sinabs' from_nir clamps v at -θ and sends several spikes per step: refused, and written with
    --approximate; its agreement with the reference is measured (100% of the 360 samples here), not exact."""
    import sinabs
    graph = digits_graphs["maxnorm"]           # IF with reset by subtraction: sinabs' neuron but for the clamp
    with pytest.raises(SpikeportError, match=r"node 'relu1' \(IF\): sinabs' from_nir clamps v at -v_threshold"):
        export_for(graph, "sinabs")
    x = digits.test_x.float()
    model = sinabs.from_nir(_export(tmp_path, graph, "sinabs", "--approximate"), batch_size=len(x), num_timesteps=T)
    with torch.no_grad():
        y, _ = model(x.unsqueeze(1).expand(len(x), T, *x.shape[1:]).reshape(len(x) * T, *x.shape[1:]))
    total = y.reshape(len(x), T, -1).sum(1).numpy()
    ref = backends.get("reference").run(graph, x.numpy(), T)
    agreement = float((total.argmax(1) == ref.predictions).mean())
    assert agreement >= 0.99


def test_snntorch_runs_an_exported_network_as_the_reference(tmp_path):
    """snnTorch's import reads IF as Leaky(beta=0.9); the export writes it as a LIF snnTorch reads as
    Leaky(beta = 1.0, reset to zero): its outputs summed over T equal the reference backend's."""
    from snntorch.import_nir import import_from_nir
    from tests.graphs import mlp
    rng = np.random.default_rng(0)
    graph = mlp(rng.normal(size=(6, 4)) * 0.8, np.zeros(6), rng.normal(size=(3, 6)), np.zeros(3), reset="zero")
    module = import_from_nir(_export(tmp_path, graph, "snntorch"))
    x = torch.rand(5, 4)
    with torch.no_grad():
        total = sum(module(x)[0] for _ in range(T))
    ref = backends.get("reference").run(graph, x.numpy(), T)
    assert np.abs(ref.outputs).max() > 5
    np.testing.assert_allclose(total.numpy(), ref.outputs, rtol=1e-5, atol=1e-5)
    with pytest.raises(SpikeportError, match=r"node 'if1' \(IF\): reset 'subtract' — snnTorch's import resets to zero"):
        export_for(mlp(np.ones((2, 4)), np.zeros(2), np.ones((3, 2)), np.zeros(3)), "snntorch")


def test_rockpool_runs_the_exported_digits_file_as_the_reference_does(tmp_path, digits, digits_graphs):
    """rockpool's from_nir knows dense layers and CubaLIF only: the digits CNN is written with its convs and
    Flatten as Affine maps of flattened images and each IF (reset by subtraction) as a CubaLIF rockpool runs
    without leak, its current holding only the present step. rockpool sends floor(v / θ) spikes per step where
    the IF sends one, so it is written only with --approximate; rockpool's own run agrees with the reference
    backend's predictions on the whole digits test split (360 of 360; the summed outputs of some samples differ
    by a few spikes' worth)."""
    from rockpool.nn.modules.torch.nir import from_nir
    graph = digits_graphs["maxnorm"]
    with pytest.raises(SpikeportError, match=r"node 'relu1' \(IF\): rockpool sends floor\(v / v_threshold\) spikes"):
        export_for(graph, "rockpool")
    exported = _export(tmp_path, graph, "rockpool", "--approximate")
    assert sorted(type(n).__name__ for n in exported.nodes.values()) == ["Affine"] * 3 + ["CubaLIF"] * 2 + [
        "Input", "Output"]
    module = from_nir(exported)
    x = digits.test_x.float()
    with torch.no_grad():
        y, _ = module(x.reshape(len(x), 1, -1).expand(len(x), T, -1))
    total = y.sum(1).numpy()
    ref = backends.get("reference").run(graph, x.numpy(), T)
    assert int((total.argmax(1) == ref.predictions).sum()) == len(x) == 360


def test_rockpool_export_refuses_what_rockpool_cannot_express(digits_graphs):
    with pytest.raises(SpikeportError, match=r"node 'relu1' \(IF\): reset 'zero' — rockpool's LIFTorch resets by "
                                             r"subtraction"):
        export_for(digits_graphs["maxnorm-zero"], "rockpool")
    from tests.graphs import mlp
    graph = mlp(np.ones((2, 4)), np.zeros(2), np.ones((3, 2)), np.zeros(3))
    graph.nodes["if1"] = nir.LIF(tau=np.ones(2, np.float32), r=np.ones(2, np.float32), v_leak=np.zeros(2, np.float32),
                                 v_threshold=np.ones(2, np.float32), v_reset=np.zeros(2, np.float32))
    with pytest.raises(SpikeportError, match=r"rockpool: .*'if1'.*LIF.*spikeport writes IF neurons only"):
        export_for(graph, "rockpool")


def test_dense_form_of_the_digits_cnn_computes_what_the_cnn_does(digits, digits_graphs):
    """nirdense.dense_graph: the digits CNN's convs and Flatten as Affine maps of flattened images (chains merged:
    64 -> 1024 -> 512 -> 10), neurons flattened; on the reference backend the same spike counts per sample and
    layer on 60 test images, and outputs within float32 rounding of the merged maps."""
    from pipeline.io.nirdense import dense_graph
    graph = digits_graphs["maxnorm"]
    dense = dense_graph(graph)
    weights = [np.shape(n.weight) for n in dense.nodes.values() if isinstance(n, nir.Affine)]
    assert sorted(weights) == sorted([(1024, 64), (512, 1024), (10, 512)])
    x = digits.test_x[:60].float().numpy()
    ref = backends.get("reference").run(graph, x, T)
    flat = backends.get("reference").run(dense, x.reshape(len(x), -1), T)
    for layer, counts in ref.spike_counts.items():
        np.testing.assert_array_equal(flat.spike_counts[layer], counts)
    np.testing.assert_allclose(flat.outputs, ref.outputs, rtol=1e-5, atol=1e-5 * np.abs(ref.outputs).max())
