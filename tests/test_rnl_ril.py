"""rnl-ril (Ding et al. 2021): Rate Norm Layer (Eq. 6), Rate Inference Loss (Eq. 9/11/13), K curve and
Theorem 2, conversion (Algorithm 1) and accuracy on digits, each against an independent computation."""
from __future__ import annotations

import copy
import math

import nir
import numpy as np
import pytest
import torch
from torch import nn

import backends
from pipeline.conversion.registry import get_method
from pipeline.errors import ConversionError
from pipeline.conversion.methods import rnl_ril  # importing registers rnl-ril
from pipeline.conversion.methods.rnl_ril import RateNorm, k_curve, omega_of, plot_k_curve, rate_inference_loss, ril_objective
from pipeline.training.ann import evaluate

REF = backends.get("reference")
T_LIST = (1, 2, 4, 8, 16, 32)
EPOCHS = 9  # 6 stage-1 epochs, 3 stage-2 epochs


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def eq6(x: list[float], p_raw: float, running_max: float) -> list[float]:
    """Eq. 6 written out: theta = p * running_max, z = clip(x, 0, theta), r = z / theta, p = sigmoid(p')."""
    theta = sigmoid(p_raw) * running_max
    return [min(max(v, 0.0), theta) / theta for v in x]


def test_rate_norm_forward_is_eq6_eval():
    m = RateNorm(p=0.3, running_max=2.0).eval()
    x = [-1.0, 0.0, 0.25, 0.7, 1.1, 1.149, 3.0]
    got = m(torch.tensor(x)).tolist()
    assert got == pytest.approx(eq6(x, 0.3, 2.0), abs=1e-6)
    assert float(m.scale()) == pytest.approx(sigmoid(0.3) * 2.0, rel=1e-6)
    assert float(m.running_max) == 2.0  # eval mode does not update the statistic


def test_rate_norm_training_updates_running_max_with_momentum_first():
    """Algorithm 1 lines 6-8: r_max = (1 - 0.1) r_max + 0.1 max(x), then theta = p r_max, then the clip."""
    m = RateNorm(p=1.5, running_max=1.0).train()
    x = [-2.0, 0.5, 4.0, 0.1]
    got = m(torch.tensor(x)).tolist()
    r_max = 0.9 * 1.0 + 0.1 * 4.0
    assert float(m.running_max) == pytest.approx(r_max, rel=1e-6)
    assert got == pytest.approx(eq6(x, 1.5, r_max), abs=1e-6)


def test_rate_norm_gradient_reaches_p():
    m = RateNorm(p=0.0, running_max=1.0).eval()
    m(torch.tensor([2.0, 0.2])).sum().backward()  # 1 (saturated) + 0.2 / (0.5) -> d/dp' of 0.2/sigmoid(p')
    s = sigmoid(0.0)
    assert float(m.p.grad) == pytest.approx(-0.2 * s * (1 - s) / s ** 2, rel=1e-5)


def test_ril_matches_hand_computation():
    r1 = torch.tensor([[0.5, 0.0, 1.0], [0.25, 0.25, 0.0]])  # Omega: 1.5/1.25 = 1.2 ; 0.5/0.125 = 4
    r2 = torch.tensor([[0.2, 0.2], [1.0, 0.0]])  # Omega: 0.4/0.08 = 5 ; 1/1 = 1
    om1, om2 = (1.2 + 4.0) / 2, (5.0 + 1.0) / 2
    ril = (om1 + om2) / 2  # sum_l Omega_l / L, L = 2
    assert float(rate_inference_loss([r1, r2])) == pytest.approx(ril, rel=1e-5)

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    y = torch.tensor([0, 2])
    ce = np.mean([-(2.0 - math.log(math.exp(2) + 1 + math.exp(-1))),
                  -(1.0 - math.log(2 * math.exp(0.5) + math.exp(1)))])
    assert float(ril_objective(logits, [r1, r2], target=y, lam=0.5)) == pytest.approx(ce + 0.5 * ril, rel=1e-5)

    ref = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    cos = [2.0 / math.sqrt(5.0), 1.5 / (math.sqrt(1.5) * math.sqrt(2.0))]
    want = 1.0 - np.mean(cos) + 0.5 * ril  # Eq. 13
    assert float(ril_objective(logits, [r1, r2], reference=ref, lam=0.5)) == pytest.approx(want, rel=1e-5)


class _Residual(nn.Module):
    """x -> fc1 -> RN a ; a -> fc2 -> (+ a) -> RN b -> fc3: one identity shortcut between Rate Norm Layers."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.a, self.b = RateNorm(p=0.5, running_max=1.7), RateNorm(p=-0.3, running_max=2.4)

    def forward(self, x):
        h = self.a(self.fc1(x))
        return self.fc3(self.b(self.fc2(h) + h))


def test_converted_rates_follow_lemma1_including_a_residual_shortcut():
    """Algorithm 1: V_th = theta, weights unchanged; by Lemma 1 each IF rate after T steps is within a few 1/T
    of the Rate Norm output, and the integrated output approaches the ANN's logits."""
    torch.manual_seed(0)
    model = _Residual().eval()
    x = torch.rand(64, 4) * 2 - 0.5
    graph = get_method("rnl-ril").convert(model, (4,), x, method="rnl-ril")
    assert all(np.allclose(n.v_threshold, 1.0) for n in graph.nodes.values() if isinstance(n, nir.IF))
    T = 400
    run = REF.run(graph, x.numpy(), T, record=True)
    rates = rnl_ril.ann_rates(model, (4,), x)
    for name, spikes in run.spikes.items():
        assert np.abs(spikes.mean(axis=1) - rates[name]).max() < 4.0 / T, name
    with torch.no_grad():
        logits = model(x).numpy()
    assert np.abs(run.outputs / T - logits).max() < 0.1


def test_convert_refuses_plain_relu(digits, digits_model):
    with pytest.raises(ConversionError, match="not a RateNorm"):
        get_method("rnl-ril").convert(digits_model, digits.input_shape, digits.train_x[:8])


@pytest.fixture(scope="module")
def rnl(digits, digits_model):
    torch.set_num_threads(2)
    model = get_method("rnl-ril").train(copy.deepcopy(digits_model), digits, EPOCHS, seed=0)
    graph = get_method("rnl-ril").convert(model, digits.input_shape, digits.train_x, method="rnl-ril")
    runs = {T: REF.run(graph, digits.test_x.numpy(), T) for T in T_LIST}
    return model, graph, runs


def test_trained_model_has_rate_norm_layers_and_lower_omega(digits, rnl):
    """Stage 2 lowers the shared p below 1 and with it Omega of every layer, against the same network at
    p = 1 (the stage-1 thresholds, i.e. Max Norm at the running max, Sec. 2.2)."""
    model, _, _ = rnl
    layers = rnl_ril.rate_norms(model)
    assert len(layers) == 2 and not any(isinstance(m, nn.ReLU) for m in model.modules())
    p = [float(m.p_value().detach()) for m in layers]
    assert p[0] == p[1] and 0.2 < p[0] < 0.99
    at_one = copy.deepcopy(model)
    for m in rnl_ril.rate_norms(at_one):
        m.p.data.fill_(30.0)
    x = digits.test_x
    trained, base = rnl_ril.ann_rates(model, digits.input_shape, x), rnl_ril.ann_rates(at_one, digits.input_shape, x)
    for name in trained:
        assert omega_of(trained[name]) < 0.98 * omega_of(base[name]), name


def test_digits_accuracy_close_to_own_ann(digits, rnl):
    model, _, runs = rnl
    ann = evaluate(model, digits.test_x, digits.test_y)
    acc = {T: runs[T].accuracy(digits.test_y.numpy()) for T in T_LIST}
    print(f"rnl-ril digits: ANN {ann:.4f}; SNN " + ", ".join(f"T={T}: {a:.4f}" for T, a in acc.items()))
    assert ann >= 0.95
    assert acc[32] >= ann - 0.015  # within 1.5 points of its own ANN at T = 32
    assert acc[8] >= ann - 0.03
    assert acc[1] < acc[32]  # no free lunch at one step


def test_k_curve_below_theorem2_bound(digits, rnl, tmp_path):
    """Eq. 7 from a reference run vs the ANN's rates; Theorem 2: K_l(t) < 2 Omega_l / t for every t, with
    Omega_l = ||r_hat_l||_1 / ||r_hat_l||_2^2 (norms over the same population as K: all neurons of the
    samples). Checked on single images (the paper's Fig. 4 setting) and on the whole test set."""
    model, graph, _ = rnl
    T = 32
    t = np.arange(1, T + 1)
    for x in (digits.test_x[:1], digits.test_x[7:8], digits.test_x):
        curves = k_curve(graph, model, x, T)
        rates = rnl_ril.ann_rates(model, digits.input_shape, x)
        assert set(curves) == {n for n, v in graph.nodes.items() if isinstance(v, nir.IF)}
        for name, k in curves.items():
            assert k.shape == (T,)
            bound = 2 * omega_of(rates[name]) / t
            assert np.all(k < bound), (name, float((k / bound).max()))
        if len(x) > 1:
            continue
        # independent K from the spike trains, first layer
        first = next(iter(curves))
        run = REF.run(graph, x.numpy(), T, record=True)
        r_t = run.spikes[first].cumsum(axis=1) / t.reshape(1, -1, *([1] * (run.spikes[first].ndim - 2)))
        r_hat = rates[first][:, None]
        want = ((r_t - r_hat) ** 2).reshape(len(x), T, -1).sum(axis=(0, 2)) / (rates[first] ** 2).sum()
        np.testing.assert_allclose(curves[first], want, rtol=1e-9)
    out = plot_k_curve(tmp_path / "k.png", curves, bounds={n: omega_of(r) for n, r in rates.items()})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["k.png"]
