"""Rate Norm Layer and Rate Inference Loss (Ding, Yu, Tian & Huang, IJCAI 2021, "Optimal ANN-SNN conversion
for fast and accurate inference in deep spiking neural networks").

Training (Sec. 2.2, 2.4, Appendix B, Algorithm 1): every nn.ReLU of a copy of the ANN becomes a Rate Norm
Layer (`RateNorm`, Eq. 6) that outputs a *simulated firing rate* r_hat = clip(x, 0, theta) / theta in
[0, 1], theta = p * running_max(x). Stage 1 (Eq. 12) trains the weights with cross-entropy, p = 1 fixed.
Stage 2 (Eq. 13) freezes the weights and trains one p shared by all layers (Appendix B) with
1 - cos(r*_L, r'_L) + lambda * mean_l Omega_l, where Omega_l = ||r_hat_l||_1 / ||r_hat_l||_2^2 is the
Rate Inference Loss (Theorem 2, Eq. 8) and r*_L the output of the stage-1 network.

Conversion (Algorithm 1, lines 36-41): W_SNN = W_ANN, b_SNN = b_ANN, V_th = theta, reset by subtraction
(Eq. 3); a spike has amplitude 1 and stands for r_hat = 1. spikeport realises this in the weight form of
`pipeline.conversion.normalize` (thresholds 1): every weighted layer feeding a Rate Norm Layer is divided by that
layer's theta, and the layer it feeds from is *not* multiplied back (the ANN already consumes rates).

K curve (Eq. 7): K(r_hat, r(t)) = ||r(t) - r_hat||_2^2 / ||r_hat||_2^2 per layer, from a reference
simulation; Theorem 2 bounds it by 2 Omega_l / t for constant (direct) input coding.
"""
from __future__ import annotations

import copy

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import backends
from backends.graph import WEIGHTED_TYPES, analyse
from pipeline.conversion.activations import SpikingActivation, replace_relus
from pipeline.conversion.registry import Method, register
from pipeline.errors import ConversionError
from pipeline.conversion.normalize import PASSTHROUGH, normalize
from pipeline.training.ann import evaluate, seed_everything
from pipeline.conversion.trace import trace

# Algorithm 1 "Ensure": momentum m = 0.1, lambda = 0.5, p_k = 1.0, running_max_k = 1.0.
MOMENTUM = 0.1
LAMBDA = 0.5
# p = sigmoid(p') (Appendix B). Stage 1 keeps p = 1; sigmoid(P_STAGE1) = 1 - 4.5e-5 stands for it.
P_STAGE1 = 10.0
# Stage 2 starts the shared p' here (sigmoid(4) = 0.982), where its gradient is not vanishingly small.
P_STAGE2 = 4.0
STAGE1_LR = 1e-3
STAGE2_LR = 0.02
# Stage 2 keeps the lowest-RIL p whose training accuracy is within this of stage 1's (the reference
# implementation's selection: accuracy tolerance, then the smallest average Omega), checked every few steps.
ACC_TOLERANCE = 0.01
CHECK_EVERY = 4
BATCH_SIZE = 64
EPS = 1e-8


class RateNorm(SpikingActivation):
    """Rate Norm Layer, Eq. 6 (Sec. 2.2):

        theta_l = p_l * running_max(W_{l-1} r_{l-1} + b_{l-1}),
        z_l     = clip(W_{l-1} r_{l-1} + b_{l-1}, 0, theta_l),
        r_l     = z_l / theta_l,

    with p_l = sigmoid(p'_l) in [0, 1] (Appendix B; `p` is the raw parameter p'). In training mode the
    running max is updated before use, running_max = (1 - m) running_max + m max(x) (Algorithm 1, lines 6
    and 22, m = 0.1), with max over the whole batch tensor and no gradient through it (a statistic, like
    BN's running mean); in eval mode the stored running max is used. The output is the simulated firing
    rate r_l in [0, 1]. `scale()` is theta_l, the firing threshold V_th of the converted IF layer
    (Algorithm 1, line 40); one spike stands for r_l = 1, i.e. for an input current theta_l.
    """

    def __init__(self, p: float = P_STAGE1, momentum: float = MOMENTUM, running_max: float = 1.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p), dtype=torch.float32))
        self.register_buffer("running_max", torch.tensor(float(running_max), dtype=torch.float32))
        self.momentum = float(momentum)

    def p_value(self) -> torch.Tensor:
        """p_l = sigmoid(p'_l) (Appendix B)."""
        return torch.sigmoid(self.p)

    def theta(self) -> torch.Tensor:
        """theta_l = p_l * running_max_l (Eq. 6, first line; Algorithm 1, line 7); differentiable in p."""
        return self.p_value() * self.running_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.running_max.mul_(1.0 - self.momentum).add_(self.momentum * x.detach().max())
        theta = self.theta()
        z = torch.minimum(torch.relu(x), theta)  # clip(x, 0, theta) of Eq. 6; gradient reaches theta
        return z / theta

    def scale(self) -> torch.Tensor:
        return self.theta().detach().clone()

    def extra_repr(self) -> str:
        return (f"p={self.p_value().item():.4g}, running_max={self.running_max.item():.4g}, "
                f"theta={self.theta().item():.4g}, momentum={self.momentum}")


# --- losses -----------------------------------------------------------------------------------------

def omega(rates: torch.Tensor) -> torch.Tensor:
    """Omega_l = ||r_hat_l||_1 / ||r_hat_l||_2^2 (Theorem 2, Eq. 8) per sample of `rates` (N, ...) -> (N,).

    A sample whose layer is silent (||r||_2 = 0) gets the value 0 through a small epsilon guard.
    """
    flat = rates.reshape(rates.shape[0], -1)
    return flat.abs().sum(1) / (flat.pow(2).sum(1) + EPS)


def rate_inference_loss(layer_rates: list[torch.Tensor]) -> torch.Tensor:
    """sum_l Omega_l / L (the RIL term of Eq. 9, 11 and 13), Omega_l averaged over the batch."""
    if not layer_rates:
        raise ValueError("rate_inference_loss needs the rates of at least one Rate Norm Layer")
    return torch.stack([omega(r).mean() for r in layer_rates]).mean()


def ril_objective(output: torch.Tensor, layer_rates: list[torch.Tensor], *, target: torch.Tensor | None = None,
                  reference: torch.Tensor | None = None, lam: float = LAMBDA) -> torch.Tensor:
    """The training objectives of Sec. 2.3/2.4 with the Rate Inference Loss.

    With `target` (class labels): Eq. 9 / Eq. 11, L(f(x), y) + lambda sum_l Omega_l / L, with L the
    cross-entropy. With `reference` (the stage-1 output r*_L): Eq. 13,
    T(r*, r') = 1 - cos(r*_L, r'_L) + lambda sum_l Omega_l / L, cos averaged over the batch.
    """
    if (target is None) == (reference is None):
        raise ValueError("give exactly one of target (Eq. 9/11) or reference (Eq. 13)")
    ril = rate_inference_loss(layer_rates)
    if target is not None:
        return F.cross_entropy(output, target) + lam * ril
    cos = F.cosine_similarity(output.reshape(len(output), -1), reference.reshape(len(reference), -1), dim=1)
    return 1.0 - cos.mean() + lam * ril


# --- training (Algorithm 1) -------------------------------------------------------------------------

def rate_norms(model: nn.Module) -> list[RateNorm]:
    return [m for m in model.modules() if isinstance(m, RateNorm)]


class _Recorder:
    """Collects the outputs r_hat_l of every Rate Norm Layer during one forward pass."""

    def __init__(self, layers: list[RateNorm]):
        self.rates: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(lambda _m, _i, out: self.rates.append(out)) for m in layers]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _batches(n: int, batch_size: int, gen: torch.Generator):
    order = torch.randperm(n, generator=gen)
    for lo in range(0, n, batch_size):
        yield order[lo:lo + batch_size]


def _snapshot(layers: list[RateNorm]) -> list[tuple[float, float]]:
    return [(float(m.p.detach()), float(m.running_max)) for m in layers]


def _select(model, layers, x, y, floor, best, device):
    """The current (p, running max) of every layer if the training accuracy is at least `floor`, else `best`."""
    with torch.no_grad():
        acc = evaluate(model, x, y, device=device)
    _set_mode(model, True)
    return _snapshot(layers) if acc >= floor else best


def _set_mode(model: nn.Module, rate_norm_training: bool) -> None:
    """Everything in eval mode (BN statistics frozen), Rate Norm Layers in `rate_norm_training` mode."""
    model.eval()
    for m in rate_norms(model):
        m.train(rate_norm_training)


def train(ann: nn.Module, dataset, epochs: int, *, seed: int = 0, device: str = "cpu", progress: bool = False,
          stage2_epochs: int | None = None, lam: float = LAMBDA, stage2_loss: str = "cos",
          lr: float = STAGE1_LR, p_lr: float = STAGE2_LR, batch_size: int = BATCH_SIZE,
          acc_tolerance: float = ACC_TOLERANCE) -> nn.Module:
    """Two-stage training of Algorithm 1 on a deep copy of `ann` whose nn.ReLUs become `RateNorm`s.

    Stage 1 (Eq. 12, lines 1-15): `epochs - stage2_epochs` epochs of Adam (cosine decay, `lr`) on the weights
    with cross-entropy; p fixed at ~1, running max updated with momentum 0.1. Stage 2 (lines 16-35):
    `stage2_epochs` (default epochs // 3) epochs in which only one p shared by all layers (Appendix B) is
    trained (Adam, `p_lr`) with Eq. 13 (`stage2_loss="cos"`: 1 - cos(r*_L, r'_L) + lam RIL, r*_L the output
    of the frozen stage-1 network) or with Eq. 11 (`stage2_loss="ce"`: cross-entropy + lam RIL). Weights and
    batch norm statistics are frozen in stage 2; the running max keeps its momentum update (lines 22, 27).
    Every few steps the training-set accuracy is measured; the result keeps the last (lowest Omega) p and
    running maxima whose accuracy is within `acc_tolerance` of stage 1's (lambda alone, unchecked, trades
    too much accuracy on digits: p fell to 0.21 and accuracy by 9 points). At the end every layer gets its own copy of the shared p. Seeded by `seed`; returns the model in eval mode.
    """
    if stage2_loss not in ("cos", "ce"):
        raise ValueError(f"stage2_loss must be 'cos' (Eq. 13) or 'ce' (Eq. 11), got {stage2_loss!r}")
    epochs = int(epochs)
    stage2 = epochs // 3 if stage2_epochs is None else int(stage2_epochs)
    if not 0 <= stage2 <= epochs:
        raise ValueError(f"stage2_epochs must be in [0, epochs={epochs}], got {stage2}")
    stage1 = epochs - stage2
    seed_everything(seed)
    model = replace_relus(copy.deepcopy(ann).cpu(), lambda _name: RateNorm())
    layers = rate_norms(model)
    if not layers:
        raise ConversionError("rnl-ril: the model has no nn.ReLU modules to replace by Rate Norm Layers "
                              "(functional relu calls cannot be replaced; use nn.ReLU modules)")
    model.to(device)
    x_all, y_all = dataset.train_x, dataset.train_y
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=epochs, desc="rnl-ril training", unit="epoch", disable=not progress)

    # Stage 1: accuracy training of W, b (p fixed, Algorithm 1 line 13).
    if stage1 > 0:
        for m in layers:
            m.p.requires_grad_(False)
        weights = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(weights, lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=stage1)
        for _ in range(stage1):
            model.train()
            for idx in _batches(len(x_all), batch_size, gen):
                loss = F.cross_entropy(model(x_all[idx].to(device)), y_all[idx].to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(stage=1, loss=f"{loss.item():.3f}")

    # Stage 2: fast-inference training of the shared p (Algorithm 1 line 33, Appendix B).
    if stage2 > 0:
        teacher = copy.deepcopy(model).eval()
        for q in teacher.parameters():
            q.requires_grad_(False)
        for q in model.parameters():
            q.requires_grad_(False)
        shared = nn.Parameter(torch.tensor(P_STAGE2, dtype=torch.float32, device=device))
        for m in layers:
            m.p = shared
        opt = torch.optim.Adam([shared], lr=p_lr)
        floor = evaluate(teacher, x_all, y_all, device=device) - acc_tolerance
        best = _snapshot(layers)
        step = 0
        rec = _Recorder(layers)
        try:
            for _ in range(stage2):
                _set_mode(model, True)
                for idx in _batches(len(x_all), batch_size, gen):
                    step += 1
                    xb = x_all[idx].to(device)
                    rec.rates.clear()
                    out = model(xb)
                    if stage2_loss == "cos":
                        with torch.no_grad():
                            ref = teacher(xb)
                        loss = ril_objective(out, rec.rates, reference=ref, lam=lam)
                    else:
                        loss = ril_objective(out, rec.rates, target=y_all[idx].to(device), lam=lam)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if step % CHECK_EVERY == 0:
                        best = _select(model, layers, x_all, y_all, floor, best, device)
                best = _select(model, layers, x_all, y_all, floor, best, device)
                bar.update(1)
                bar.set_postfix(stage=2, loss=f"{loss.item():.3f}", p=f"{torch.sigmoid(shared).item():.3f}")
        finally:
            rec.remove()
        for m, (p, running_max) in zip(layers, best):
            m.p = nn.Parameter(torch.tensor(p, dtype=torch.float32, device=device))
            m.running_max.fill_(running_max)
        for q in model.parameters():
            q.requires_grad_(True)
    bar.close()
    return model.cpu().eval()


# --- conversion -------------------------------------------------------------------------------------

def _source_neuron(name: str, preds: dict, nodes: dict) -> str | None:
    """The IF node (or None for the Input) whose output reaches weighted layer `name` through passthroughs."""
    cur = name
    while True:
        if len(preds[cur]) != 1:
            raise ConversionError(f"rnl-ril: {cur!r} has {len(preds[cur])} inputs on the way back from {name!r}")
        cur = preds[cur][0]
        if isinstance(nodes[cur], nir.IF):
            return cur
        if isinstance(nodes[cur], nir.Input):
            return None
        if not isinstance(nodes[cur], PASSTHROUGH):
            raise ConversionError(f"rnl-ril: unexpected node {cur!r} ({type(nodes[cur]).__name__}) before {name!r}")


def _rates_to_activations(graph: nir.NIRGraph, theta: dict[str, float]) -> nir.NIRGraph:
    """The same network written for activations z_l = theta_l r_l instead of rates r_l: every weighted layer
    reading a Rate Norm output gets W / theta_src (bias unchanged). `normalize` then multiplies it back by
    theta_src and divides by theta_dst, giving Algorithm 1's W / V_th with threshold 1."""
    view = analyse(graph)
    nodes = dict(graph.nodes)
    preds = {n: list(view.preds[n]) for n in view.order}
    for name in view.order:
        node = nodes[name]
        if not isinstance(node, WEIGHTED_TYPES):
            continue
        src = _source_neuron(name, preds, nodes)
        if src is None:
            continue
        w = (np.asarray(node.weight, dtype=np.float64) / theta[src]).astype(np.float32)
        if isinstance(node, nir.Conv2d):
            nodes[name] = nir.Conv2d(input_shape=node.input_shape, weight=w, stride=node.stride,
                                     padding=node.padding, dilation=node.dilation, groups=node.groups,
                                     bias=node.bias, metadata=node.metadata)
        elif isinstance(node, nir.Affine):
            nodes[name] = nir.Affine(weight=w, bias=node.bias, metadata=node.metadata)
        else:
            nodes[name] = nir.Linear(weight=w, metadata=node.metadata)
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=False)


def _fix_identity_paths(graph: nir.NIRGraph, theta: dict[str, float]) -> nir.NIRGraph:
    """Identity shortcuts (residual adds): `normalize` scales spikes of IF a into IF b by theta_a / theta_b,
    right for activations; the ANN adds the *rate* r_a, so the factor must be 1 / theta_b. Every Scale node
    in the normalised graph comes from such a path (the traced graph has none)."""
    view = analyse(graph)
    nodes = dict(graph.nodes)
    for name in view.order:
        node = nodes[name]
        if not isinstance(node, nir.Scale):
            continue
        cur = view.preds[name][0]
        while isinstance(nodes[cur], PASSTHROUGH):
            cur = view.preds[cur][0]
        if isinstance(nodes[cur], nir.IF):
            nodes[name] = nir.Scale(scale=(np.asarray(node.scale, np.float64) / theta[cur]).astype(np.float32),
                                    metadata=node.metadata)
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=False)


def convert(model: nn.Module, input_shape, calib_x: torch.Tensor | None = None, *, method: str = "",
            source: str = "", progress: bool = False) -> nir.NIRGraph:
    """Algorithm 1, lines 36-41: V_th,l = theta_l of each Rate Norm Layer, weights and biases of the ANN.

    Written in the weight form of `pipeline.conversion.normalize` (thresholds 1): W'_l = W_l / theta_l, b'_l = b_l /
    theta_l, the classifier unchanged. `calib_x` is not used (theta is learned, Sec. 2.2).
    """
    traced = trace(model, tuple(input_shape), method=method, source=source)
    theta = traced.module_scales(RateNorm, "rnl-ril")
    graph = normalize(_rates_to_activations(traced.graph, theta), theta, form="weights")
    return _fix_identity_paths(graph, theta)


# --- K curve (Eq. 7) --------------------------------------------------------------------------------

def ann_rates(model: nn.Module, input_shape, x: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Simulated firing rates r_hat of every IF node of `trace(model)` on `x`: (N, *node shape) each.

    RateNorm outputs are rates already (Eq. 6); another SpikingActivation's output is divided by scale().
    """
    traced = trace(model, tuple(input_shape))
    mods = traced.neuron_modules
    bad = [n for n, m in mods.items() if not isinstance(m, SpikingActivation)]
    if bad:
        raise ConversionError(f"k_curve: IF node(s) {bad} come from plain ReLUs whose rate scale is unknown; "
                              "pass the rates as a dict instead of the model")
    out: dict[str, list[torch.Tensor]] = {n: [] for n in mods}
    handles = [m.register_forward_hook(lambda mod, _i, o, n=n: out[n].append(
        (o if isinstance(mod, RateNorm) else o / mod.scale()).detach().cpu())) for n, m in mods.items()]
    model.eval()
    try:
        with torch.no_grad():
            for lo in range(0, len(x), batch_size):
                model(torch.as_tensor(x[lo:lo + batch_size]))
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v).double().numpy() for n, v in out.items()}


def k_curve(graph: nir.NIRGraph, model_or_activations, x, T: int, *, batch_size: int = 256) -> dict[str, np.ndarray]:
    """K(t) = ||r(t) - r_hat||_2^2 / ||r_hat||_2^2 (Eq. 7) for t = 1..T, per IF node of `graph`.

    r(t) is the node's spike count after t steps divided by t, from a reference simulation of `graph` on `x`
    (record=True); r_hat are the ANN's simulated rates: `model_or_activations` is the RateNorm model
    (rates taken from its layers, by the tracer's node names) or a dict node -> (N, *shape) rates. Norms
    run over all neurons of all samples of `x` (a single image gives the paper's per-image curve).
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if isinstance(model_or_activations, nn.Module):
        rates = ann_rates(model_or_activations, tuple(x.shape[1:]), x, batch_size=batch_size)
    else:
        rates = {n: np.asarray(v, dtype=np.float64) for n, v in model_or_activations.items()}
    res = backends.get("reference").run(graph, x, int(T), record=True, batch_size=batch_size)
    curves = {}
    steps = np.arange(1, int(T) + 1, dtype=np.float64)
    for name, spikes in res.spikes.items():
        if name not in rates:
            raise ConversionError(f"k_curve: no ANN rates for IF node {name!r}")
        r_hat = rates[name].reshape(len(x), -1)
        s = np.asarray(spikes, dtype=np.float64).reshape(len(x), int(T), -1)
        r_t = np.cumsum(s, axis=1) / steps[None, :, None]
        num = ((r_t - r_hat[:, None, :]) ** 2).sum(axis=(0, 2))
        den = (r_hat ** 2).sum()
        curves[name] = num / den if den > 0 else np.full(int(T), np.nan)
    return curves


def omega_of(rates: np.ndarray) -> float:
    """Omega = ||r_hat||_1 / ||r_hat||_2^2 (Theorem 2) over all neurons of all samples, matching `k_curve`."""
    r = np.asarray(rates, dtype=np.float64)
    return float(np.abs(r).sum() / (r ** 2).sum())


def plot_k_curve(path, curves: dict[str, np.ndarray], title: str = "K curve (Eq. 7)",
                 bounds: dict[str, float] | None = None):
    """K(t) per layer against t (log y); `bounds` (node -> Omega) adds the 2 Omega / t curves of Theorem 2.
    Written atomically (PNG)."""
    from pipeline.io.render import finish, plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, k in curves.items():
        t = np.arange(1, len(k) + 1)
        line, = ax.plot(t, k, marker=".", label=name)
        if bounds and name in bounds:
            ax.plot(t, 2 * bounds[name] / t, linestyle="--", color=line.get_color(), label=f"2 Omega / t ({name})")
    ax.set_yscale("log")
    return finish(fig, ax, path, "time step t", "K(r_hat, r(t))", title, legend_size=8)


register(Method("rnl-ril", "Rate Norm Layers (trainable threshold theta = p * running max) trained in two "
                "stages, cross-entropy then Rate Inference Loss; V_th = theta, reset by subtraction "
                "(Ding et al. 2021, Eq. 6, 13, Alg. 1)", convert, train=train))
