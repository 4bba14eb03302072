"""The building blocks of the spiking trainers against closed forms: STSU/ReSU (SNN2ANN Eq. 8-15), ATA (Eq. 16-17),
the rectangular surrogate (Eq. 3), IF/LIF steps against backends.neurons, and WFT (Joint A-SNN Eq. 11-13)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from backends import neurons
from pipeline.spiking.methods.joint_asnn import SeparateWeight, WFTWeight
from pipeline.spiking.methods.snn2ann import ata_update, resu, stsu
from pipeline.spiking.surrogate import Neuron

seeds = st.integers(0, 2**31 - 1)


def _pre_and_counts(seed: int, T: int = 5, shape=(4, 3, 5)):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=torch.float32).requires_grad_(True)
    counts = torch.randint(0, T + 1, shape, generator=g).to(torch.float32)
    upstream = torch.randn(shape, generator=g)
    return z, counts, upstream


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_stsu_forward_is_spike_count_and_gradient_is_relus(seed):
    z, counts, g = _pre_and_counts(seed)
    q = stsu(torch.relu(z), counts)
    assert torch.equal(q, counts)  # bit for bit, Eq. 13
    (g * q).sum().backward()
    expected = g.numpy() * (z.detach().numpy() > 0)  # d/dz of sum(g relu(z)): the ReLU branch's gradient
    np.testing.assert_array_equal(z.grad.numpy(), expected)


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_resu_masks_counts_by_relu_positions_with_straight_through_gradient(seed):
    z, counts, g = _pre_and_counts(seed)
    q = resu(torch.relu(z), counts)
    zn = z.detach().numpy()
    np.testing.assert_array_equal(q.detach().numpy(), np.where(zn > 0, counts.numpy(), 0.0))  # Eq. 8
    (g * q).sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), g.numpy() * (zn > 0))  # Eq. 10-12


@settings(max_examples=50, deadline=None)
@given(seeds, st.floats(0.0, 1.0), st.floats(0.01, 1.0), st.floats(0.0, 1.0))
def test_ata_raises_threshold_only_when_mean_noise_exceeds_epsilon(seed, epsilon, tau, alpha):
    rng = np.random.default_rng(seed)
    x_r = np.maximum(rng.normal(size=(6, 4)), 0).astype(np.float32)
    counts = rng.integers(0, 3, size=(6, 4)).astype(np.float32) * (rng.random((6, 4)) < 0.3)
    v = torch.rand(4, generator=torch.Generator().manual_seed(seed)) + 0.1
    before = v.clone().numpy()
    inactive = x_r <= 0
    mean_noise = counts[inactive].mean() if inactive.any() else 0.0
    raised = ata_update(v, torch.from_numpy(x_r), torch.from_numpy(counts), tau=tau, alpha=alpha, epsilon=epsilon)
    xi = tau if (inactive.any() and mean_noise > epsilon) else 0.0  # Eq. 17
    assert raised == (xi > 0)
    np.testing.assert_allclose(v.numpy(), before * (1 + xi * (1 - alpha)), rtol=1e-6)  # Eq. 16


def test_ata_hand_worked():
    x_r = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    v = torch.ones(4)
    # inactive positions 0, 2, 3 with counts 1, 0, 0: mean noise 1/3
    assert ata_update(v, x_r, torch.tensor([[1.0, 5.0, 0.0, 0.0]]), tau=0.1, alpha=0.1, epsilon=0.3)
    np.testing.assert_allclose(v.numpy(), 1.09)
    assert not ata_update(v, x_r, torch.tensor([[1.0, 5.0, 0.0, 0.0]]), tau=0.1, alpha=0.1, epsilon=0.34)
    np.testing.assert_allclose(v.numpy(), 1.09)


@pytest.mark.parametrize("kind", ["if", "lif"])
def test_neuron_forward_matches_backend_step_functions(kind):
    g = torch.Generator().manual_seed(1)
    currents = torch.rand(6, 3, 7, generator=g) * 1.5 - 0.2
    neuron = Neuron(kind, v_threshold=0.5, decay=0.5)
    ours = neuron.run(currents)
    zero, th = torch.zeros(7), torch.full((7,), 0.5)
    v, expected = torch.zeros(3, 7), []
    for c in currents:
        if kind == "if":
            v, z = neurons.if_step(v, c, neurons.IFParams(torch.ones(7), th, zero, False))
        else:  # the exported NIR LIF: dt/tau = 1 - decay, r = 1/(1 - decay)
            p = neurons.LIFParams(torch.full((7,), 1e-3 / 0.5), torch.full((7,), 2.0), zero, th, zero, False)
            v, z = neurons.lif_step(v, c, p, 1e-3)
        expected.append(z)
    assert torch.equal(ours, torch.stack(expected))


def test_rectangular_surrogate_gradient():
    u = torch.tensor([0.0, 0.3, 0.49, 0.51, 0.7, 0.99, 1.01]).requires_grad_(True)
    Neuron("if", v_threshold=0.5, width=1.0).run(u.unsqueeze(0)).sum().backward()
    expected = (np.abs(u.detach().numpy() - 0.5) < 0.5).astype(np.float32)  # (1/a) sign(|u - V_th| < a/2), a = 1
    np.testing.assert_array_equal(u.grad.numpy(), expected)


def _train_two_branches(module: nn.Module, steps: int = 5) -> None:
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(3)
    targets = {b: torch.randn(module("ann").shape, generator=g) for b in ("ann", "snn")}
    for _ in range(steps):
        loss = sum(((module(b) - targets[b]) ** 2).sum() for b in ("ann", "snn"))
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("shape", [(6, 4), (5, 3, 3, 2)])
def test_wft_effective_weights_share_u_and_v_after_training(shape):
    torch.manual_seed(0)
    weight = torch.randn(shape)
    wft = WFTWeight(weight)
    np.testing.assert_allclose(wft("ann").detach().numpy(), weight.numpy(), atol=1e-5)  # SVD init, Eq. 11-12
    u0, v0 = wft.u.detach().clone(), wft.v.detach().clone()
    _train_two_branches(wft)
    assert sorted(n for n, _ in wft.named_parameters()) == ["s_ann", "s_snn", "u", "v"]
    u, v = wft.u.detach().numpy().astype(np.float64), wft.v.detach().numpy().astype(np.float64)
    assert not np.allclose(u, u0.numpy()) and not np.allclose(v, v0.numpy())
    k = int(np.prod(shape[2:])) if len(shape) == 4 else 1
    for branch, s in (("ann", wft.s_ann), ("snn", wft.s_snn)):
        s = s.detach().numpy().astype(np.float64)
        w = wft(branch).detach().numpy()
        mats = w.reshape(shape[0], shape[1], k)
        for pos in range(k):  # Eq. 13 at every kernel position with the same U, V for both branches
            np.testing.assert_allclose(mats[:, :, pos], u[pos] @ np.diag(s[pos]) @ v[pos], rtol=1e-5, atol=1e-6)
    assert not np.allclose(wft.s_ann.detach().numpy(), wft.s_snn.detach().numpy())


def test_separate_weights_ablation_diverge():
    sep = SeparateWeight(torch.randn(6, 4))
    _train_two_branches(sep)
    assert not torch.allclose(sep("ann"), sep("snn"))
