"""snn2ann, joint-asnn and stbp end to end on digits: the exported NIR runs on the reference backend exactly like
the training code's SNN, ablation switches change results, training resumes bit for bit, max pooling is refused
at export, the CLI trains and exports. Accuracy claims (slow) compare with the same architecture's ANN."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import backends
import pipeline
from pipeline.spiking import train as spiking_train
from pipeline.io.atomic import write_nir
from pipeline.cli import main
from pipeline.errors import SpikeportError, UnsupportedLayer
from pipeline.spiking.hybrid import chain_blocks
from pipeline.spiking.methods import joint_asnn, snn2ann, stbp
from pipeline.spiking.registry import check_options, get_trainer
from pipeline.data.zoo import build_model
from pipeline.io.nirio import read_graph
from pipeline.training.ann import seed_everything

SLICE = slice(0, 256)


def _ann(digits, seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return build_model("digits-cnn", digits.input_shape, digits.num_classes)


@pytest.fixture(scope="module")
def trained(digits):
    torch.set_num_threads(2)
    return {
        "snn2ann": snn2ann.train(_ann(digits), digits, 1, T=3, train_slice=SLICE),
        "snn2ann-resu": snn2ann.train(_ann(digits), digits, 1, T=3, unit="resu", train_slice=SLICE),
        "joint-asnn": joint_asnn.train(_ann(digits), digits, 1, T=2, train_slice=SLICE),
        "stbp-if": stbp.train(_ann(digits), digits, 1, T=3, train_slice=SLICE),
        "stbp-lif": stbp.train(_ann(digits), digits, 1, T=3, neuron="lif", train_slice=SLICE),
    }


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["snn2ann", "snn2ann-resu", "joint-asnn", "stbp-if", "stbp-lif"])
def test_exported_nir_computes_the_training_snn(trained, digits, name, tmp_path):
    net = trained[name]
    path = write_nir(tmp_path / "m.nir", net.export(digits.input_shape))
    graph = read_graph(path)
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert ("LIF" in kinds) == (name in ("joint-asnn", "stbp-lif")) and "I" in kinds
    run = backends.get("reference").run(graph, digits.test_x.numpy(), net.T)
    with torch.no_grad():
        logits = net.eval().predict(digits.test_x)["snn"].numpy()
    # snn2ann sums the classifier current over T (Eq. 20 spreads the bias); the others average it (Eq. 3)
    scale = 1.0 if net.method == "snn2ann" else net.T
    np.testing.assert_allclose(run.outputs, logits * scale, rtol=1e-4, atol=1e-3)
    assert np.mean(run.predictions == logits.argmax(1)) >= 0.995
    assert abs(run.accuracy(digits.test_y.numpy()) - net.history[-1]["snn_accuracy"]) <= 0.005


def test_stsu_ann_branch_equals_snn_branch(trained, digits):
    """With STSU the ANN branch's activations are the spike counts, so both branches give the same logits."""
    with torch.no_grad():
        out = trained["snn2ann"].eval().predict(digits.test_x)
    torch.testing.assert_close(out["ann"], out["snn"], rtol=1e-5, atol=1e-4)


def test_snn2ann_ablations_change_results(digits):
    base = snn2ann.train(_ann(digits), digits, 1, T=3, train_slice=slice(0, 128))
    ann = _ann(digits)
    seed_everything(0)  # as train() does before building the net: the same initial thresholds
    init = snn2ann.SNN2ANN(chain_blocks(ann, digits.input_shape), 3)
    assert any(not torch.equal(base.threshold(i), init.threshold(i)) for i in (0, 1))  # ATA raised some layer
    no_ata = snn2ann.train(_ann(digits), digits, 1, T=3, ata=False, train_slice=slice(0, 128))
    assert all(torch.equal(no_ata.threshold(i), init.threshold(i)) for i in (0, 1))
    for options in ({"unit": "resu"}, {"unit": "none"}, {"ata": False}):
        other = snn2ann.train(_ann(digits), digits, 1, T=3, train_slice=slice(0, 128), **options)
        assert not _same_state(base, other), options


def test_joint_asnn_ablations_change_results(digits):
    base = joint_asnn.train(_ann(digits), digits, 1, T=2, train_slice=slice(0, 128))
    for options in ({"wft": False}, {"distill": False}):
        other = joint_asnn.train(_ann(digits), digits, 1, T=2, train_slice=slice(0, 128), **options)
        w_base, w_other = base._weight_of("snn")(0)[0], other._weight_of("snn")(0)[0]
        assert not torch.allclose(w_base, w_other), options
    assert isinstance(joint_asnn.train(_ann(digits), digits, 0, T=2, wft=False).weights[0], joint_asnn.SeparateWeight)


def _unnormalised_mlp_joint(seed: int = 0, **options) -> joint_asnn.JointASNN:
    """Joint A-SNN on three Linear layers without batch norm, weights scaled up so that the ANN's activations
    exceed the SNN's one spike per step: the setting in which LeNet-5 diverged (joint_asnn module docstring)."""
    seed_everything(seed)
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        for layer in mlp[::2]:
            layer.weight.mul_(4.0)
    return joint_asnn.JointASNN(chain_blocks(mlp, (16,)), 4, 4, **options)


def test_joint_asnn_distillation_reaches_no_shared_tensor():
    """The gradient of Eq. 10 on the shared U, V and bias equals that of the CE terms alone (Eq. 7), computed by a
    second net without distillation; Sigma_SNN gets more than its CE gradient."""
    x, y = torch.randn(32, 16, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 4
    grads = []
    for distill in (True, False):
        net = _unnormalised_mlp_joint(distill=distill)
        net(x, y).backward()
        grads.append({name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None})
    full, ce = grads
    shared = [n for n in full if n.endswith((".u", ".v")) or n.endswith("layer.bias")]
    assert len(shared) == 9  # U, V and the bias of each of the three layers
    for name in shared:
        torch.testing.assert_close(full[name], ce[name], rtol=0, atol=1e-6, msg=name)
    assert not torch.allclose(full["weights.2.s_snn"], ce["weights.2.s_snn"])


def test_joint_asnn_trains_stably_without_batch_norm():
    """Adam at lr 3e-3 on a fixed batch, the LeNet-5 setting in small: the loss falls and the ANN's logits stay
    near where they started. Before the fix, in these 20 steps the loss went 7.4 -> 8.0 (rising from step 7) and
    the ANN's largest logit 6 -> 16, as the SNN scaled the shared U, V; with it 7.4 -> 1.6 and 6 -> 5."""
    net = _unnormalised_mlp_joint()
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=5e-4)
    losses, peaks = [], []
    for _ in range(20):
        loss = net(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        peaks.append(net.outputs(x, "ann")[-1].abs().max().item())
    assert losses[-1] < losses[0] and max(losses) <= losses[0] * 1.05, losses
    assert max(peaks) < 1.5 * peaks[0], peaks


def test_training_resumes_bit_for_bit(digits, tmp_path, monkeypatch):
    full = snn2ann.train(_ann(digits), digits, 2, T=2, train_slice=slice(0, 192))
    state = tmp_path / "state.pt"
    real, calls = spiking_train.evaluate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(spiking_train, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        snn2ann.train(_ann(digits), digits, 2, T=2, train_slice=slice(0, 192), state_path=state)
    monkeypatch.setattr(spiking_train, "evaluate", real)
    resumed = snn2ann.train(_ann(digits), digits, 2, T=2, train_slice=slice(0, 192), state_path=state)
    assert _same_state(full, resumed)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in full.history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history] == strip
    with pytest.raises(SpikeportError, match="other settings"):
        snn2ann.train(_ann(digits), digits, 2, T=3, train_slice=slice(0, 192), state_path=state)


def test_max_pooling_trains_but_export_is_refused(digits):
    seed_everything(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64, 10))
    net = snn2ann.train(model, digits, 1, T=2, train_slice=slice(0, 64))
    assert net.blocks[0].pool is not None
    with pytest.raises(UnsupportedLayer, match="max pooling"):
        net.export(digits.input_shape)


def test_refusals(digits):
    with pytest.raises(SpikeportError, match="plain chain"):
        chain_blocks(build_model("resnet20", digits.input_shape, 10), digits.input_shape)
    with pytest.raises(SpikeportError, match="snn2ann is not a conversion method: it trains a spiking network"):
        pipeline.convert(_ann(digits), digits.train_x, method="snn2ann")
    assert isinstance(get_trainer("stbp").train(_ann(digits), digits, 0, T=2), stbp.STBP)
    with pytest.raises(SpikeportError, match="stbp does not take option.s. unit; its options: neuron, decay"):
        check_options(get_trainer("stbp"), {"unit": "resu"})


def test_cli_train_snn(tmp_path, capsys):
    out, plot = tmp_path / "m.nir", tmp_path / "acc.png"
    assert main(["train-snn", "--method", "stbp", "--neuron", "lif", "--T", "1", "--epochs", "1", "--quiet",
                 "--out", str(out), "--plot", str(plot)]) == 0
    assert "stbp T=1: test accuracy snn" in capsys.readouterr().out
    assert plot.stat().st_size > 0
    assert any(type(n).__name__ == "LIF" for n in read_graph(out).nodes.values())
    assert main(["train-snn", "--model", "resnet20", "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    assert "plain chain" in capsys.readouterr().err


# --- accuracy claims (slow): within 2 points of the same architecture's ANN, NIR within 0.5 points ------------

def _claim(net, digits, digits_model):
    from pipeline.training.ann import evaluate
    ann_acc = evaluate(digits_model, digits.test_x, digits.test_y)
    snn_acc = net.history[-1]["snn_accuracy"]
    run = backends.get("reference").run(net.export(digits.input_shape), digits.test_x.numpy(), net.T)
    nir_acc = run.accuracy(digits.test_y.numpy())
    print(f"{net.settings()}: ANN {100 * ann_acc:.2f} SNN {100 * snn_acc:.2f} NIR {100 * nir_acc:.2f}")
    assert snn_acc >= ann_acc - 0.02
    assert abs(nir_acc - snn_acc) <= 0.005


@pytest.mark.slow
@pytest.mark.parametrize("unit,T", [("stsu", 4), ("resu", 4), ("stsu", 5)])
def test_snn2ann_accuracy_claim(digits, digits_model, unit, T):
    _claim(snn2ann.train(_ann(digits), digits, 20, T=T, unit=unit), digits, digits_model)


@pytest.mark.slow
@pytest.mark.parametrize("T", [2, 4])
def test_joint_asnn_accuracy_claim(digits, digits_model, T):
    _claim(joint_asnn.train(_ann(digits), digits, 25, T=T), digits, digits_model)


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.parametrize("name", ["snn2ann", "joint-asnn"])
def test_exported_nir_runs_on_lava_like_reference(trained, digits, name):
    net = trained[name]
    graph = net.export(digits.input_shape)
    x = digits.test_x[:32].numpy()
    ref = backends.get("reference").run(graph, x, net.T, dtype=torch.float64)
    lava = backends.get("lava").run(graph, x, net.T)
    assert lava.agreement(ref) >= 0.97
