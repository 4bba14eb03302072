"""Optimal conversion with threshold ReLU and shift (Deng & Gu, ICLR 2021, "Optimal conversion of
conventional artificial neural networks to spiking neural networks").

Training: every ReLU of the ANN becomes the threshold ReLU of Eq. 2, h(x) = clip(x, 0, y_th), with one
y_th per layer (`ClipReLU`), initialised from the pretrained ANN's activation statistics and then either
fixed or learned while the copy is fine-tuned.

Conversion (Algorithm 1): V_th = y_th for each IF layer (reset by subtraction, Eq. 4), realised here in
the weight form of threshold balancing (`pipeline.conversion.normalize`, thresholds 1, one spike stands for y_th);
then the shift of Eq. 15, delta = V_th / (2T), is added to the input current of every IF layer (Alg. 1
line 11: bias + V_th/2T). In normalised units that is + 1/(2T) per step on the bias of exactly one
weighted layer feeding each IF node. The SNN then computes the rounded step function
(V_th/T) clip(floor((z + V_th/2T) / (V_th/T)), 0, T) of Eq. 7 with the shift of Eq. 14/15, instead of the
floor-quantised clip of Eq. 7. The output (integrator) layer is not shifted (Appendix A.2: "except for
the output layer").

Registers two methods: `optimal-shift` (T-dependent graph) and `optimal-noshift` (same training, no
shift: the paper's "threshold only" variant, Our Work-T).
"""
from __future__ import annotations

import copy

import nir
import numpy as np
import torch
from torch import nn

from backends.graph import WEIGHTED_TYPES, analyse
from pipeline.conversion.activations import SpikingActivation, replace_relus
from pipeline.conversion.registry import Method, register
from pipeline.errors import ConversionError
from pipeline.conversion.normalize import PASSTHROUGH, normalize
from pipeline.training.ann import TrainConfig, seed_everything, train_ann
from pipeline.conversion.trace import trace

# Fine-tuning defaults (the ANN is already trained; the clipped copy only has to adapt to y_th).
FINETUNE_LR = 1e-3
INIT_PERCENTILE = 99.0
# Activation values kept per layer for the initial percentile (a seeded subsample beyond this).
MAX_INIT_VALUES = 2_000_000


MIN_Y_TH = 1e-3


class ClipReLU(SpikingActivation):
    """Threshold ReLU of Eq. 2: h(x) = 0 for x <= 0, x for 0 < x < y_th, y_th for x >= y_th.

    One y_th per layer. `learn=True` makes y_th a trainable parameter (gradient 1 where x >= y_th, as
    d h / d y_th of Eq. 2); `learn=False` keeps it a fixed buffer. `scale()` is y_th: after conversion
    V_th = y_th (Sec. 5, Algorithm 1 line 9), so one spike carries y_th in ANN units.
    """

    def __init__(self, y_th: float = 1.0, learn: bool = True):
        super().__init__()
        if not np.isfinite(y_th) or y_th <= 0:
            raise ValueError(f"y_th must be finite and positive, got {y_th!r}")
        value = torch.tensor(float(y_th), dtype=torch.float32)
        if learn:
            self.y_th = nn.Parameter(value)
        else:
            self.register_buffer("y_th", value)
        self.learn = learn

    def clip_value(self) -> torch.Tensor:
        """y_th kept above MIN_Y_TH: a learned y_th can be driven to 0 or below in a dead layer, which no
        IF threshold can represent."""
        return self.y_th.clamp(min=MIN_Y_TH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # min(relu(x), y_th) = clip(x, 0, y_th) (Eq. 2); torch.minimum passes the gradient to y_th.
        return torch.minimum(torch.relu(x), self.clip_value())

    def scale(self) -> torch.Tensor:
        return self.clip_value().detach().clone()

    def extra_repr(self) -> str:
        return f"y_th={self.y_th.item():.4g}, learn={self.learn}"


def relu_percentiles(model: nn.Module, x: torch.Tensor, percentile: float = INIT_PERCENTILE,
                     batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Per nn.ReLU module (by qualified name): `percentile` of its positive outputs on `x` (1.0 if none)."""
    relus = {name: m for name, m in model.named_modules() if isinstance(m, nn.ReLU)}
    values: dict[str, list[torch.Tensor]] = {name: [] for name in relus}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: values[name].append(out[out > 0].detach().cpu()))
             for name, m in relus.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for lo in range(0, len(x), batch_size):
                model(x[lo:lo + batch_size])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rng = np.random.default_rng(seed)
    out = {}
    for name, chunks in values.items():
        v = torch.cat(chunks).numpy() if chunks else np.zeros(0, np.float32)
        if v.size > MAX_INIT_VALUES:
            v = rng.choice(v, MAX_INIT_VALUES, replace=False)
        p = float(np.percentile(v, percentile)) if v.size else 0.0
        out[name] = p if p > 0 else 1.0
    return out


def clip_relus(model: nn.Module, thresholds: dict[str, float] | float, learn: bool = True) -> nn.Module:
    """Replace every nn.ReLU of `model` in place by ClipReLU (Eq. 2); returns `model`.

    `thresholds`: one y_th for all layers, or y_th per ReLU qualified name (as `named_modules` gives it).
    """
    if isinstance(thresholds, dict):
        names = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
        missing = sorted(n for n in names if n not in thresholds)
        if missing:
            raise ValueError(f"no y_th for ReLU(s) {missing}")
    return replace_relus(model, lambda name: ClipReLU(
        thresholds[name] if isinstance(thresholds, dict) else float(thresholds), learn=learn))


def train(ann: nn.Module, dataset, epochs: int, *, seed: int = 0, device: str = "cpu", progress: bool = False,
          y_th: float | None = None, learn_threshold: bool = True, percentile: float = INIT_PERCENTILE,
          lr: float = FINETUNE_LR, batch_size: int = 64) -> nn.Module:
    """A copy of `ann` with every nn.ReLU replaced by ClipReLU (Eq. 2), fine-tuned for `epochs`.

    y_th per layer starts at `y_th` when given (fixed value for all layers, the paper's setting, Sec. 7.1),
    else at the `percentile`-th percentile of that layer's positive activations of the pretrained `ann`
    on the training set; `learn_threshold` makes it trainable during fine-tuning. Seeded by `seed`.
    """
    seed_everything(seed)
    model = copy.deepcopy(ann).cpu()
    if y_th is None:
        thresholds: dict[str, float] | float = relu_percentiles(model, dataset.train_x, percentile, seed=seed)
    else:
        thresholds = float(y_th)
    clip_relus(model, thresholds, learn=learn_threshold)
    if not any(isinstance(m, ClipReLU) for m in model.modules()):
        raise ConversionError("optimal-shift: the model has no nn.ReLU modules to replace by threshold ReLUs "
                              "(functional relu calls cannot be replaced; use nn.ReLU modules)")
    if epochs > 0:
        cfg = TrainConfig(epochs=int(epochs), batch_size=batch_size, lr=lr, seed=seed, device=device)
        train_ann(model, dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y, cfg, progress=progress)
    return model.cpu().eval()


def _shift_target(if_name: str, preds: dict, nodes: dict) -> str:
    """The weighted layer whose bias carries the shift of IF node `if_name`: exactly one per IF node.

    Among the incoming paths (several on a residual add), the first in edge order whose weighted layer
    reaches the IF node directly, else through Flatten or unpadded average pooling (both pass a constant
    bias unchanged). Identity shortcuts (Scale nodes from an earlier IF) never carry it.
    """
    candidates = []
    for p in preds[if_name]:
        cur, path = p, []
        while isinstance(nodes[cur], PASSTHROUGH) and len(preds[cur]) == 1:
            path.append(cur)
            cur = preds[cur][0]
        if isinstance(nodes[cur], WEIGHTED_TYPES):
            if not isinstance(nodes[cur], nir.Affine) and not isinstance(nodes[cur], nir.Conv2d):
                continue  # nir.Linear has no bias
            exact = all(isinstance(nodes[q], nir.Flatten) or
                        (isinstance(nodes[q], nir.AvgPool2d) and not np.any(np.asarray(nodes[q].padding)))
                        for q in path)
            if exact:
                candidates.append((len(path), cur))
    if not candidates:
        raise ConversionError(f"optimal-shift: IF node {if_name!r} has no incoming Conv2d/Affine layer with a "
                              "bias that reaches it unchanged (directly, or through Flatten or unpadded average "
                              "pooling); cannot add the V_th/2T shift of Eq. 15")
    return min(candidates, key=lambda c: c[0])[1]


def add_shift(graph: nir.NIRGraph, T: int) -> nir.NIRGraph:
    """A new graph with + 1/(2T) on the input current of every IF node (thresholds must be 1, Eq. 15).

    The constant goes on the bias of one weighted layer per IF node (see `_shift_target`); a weighted
    layer feeds exactly one neuron after normalisation, so no layer is shifted twice.
    """
    view = analyse(graph)
    nodes = dict(graph.nodes)
    preds = {n: list(view.preds[n]) for n in view.order}
    delta = 1.0 / (2.0 * int(T))
    shifted: dict[str, str] = {}
    for name in view.order:
        node = nodes[name]
        if not isinstance(node, nir.IF):
            continue
        if not np.allclose(np.asarray(node.v_threshold), 1.0) or not np.allclose(np.asarray(node.r), 1.0):
            raise ConversionError(f"optimal-shift: IF node {name!r} is not weight-normalised (threshold and r 1)")
        target = _shift_target(name, preds, nodes)
        if target in shifted:
            raise ConversionError(f"optimal-shift: layer {target!r} feeds both {shifted[target]!r} and {name!r}")
        shifted[target] = name
        w = nodes[target]
        bias = (np.asarray(w.bias, dtype=np.float64) + delta).astype(np.float32)
        if isinstance(w, nir.Conv2d):
            nodes[target] = nir.Conv2d(input_shape=w.input_shape, weight=w.weight, stride=w.stride,
                                       padding=w.padding, dilation=w.dilation, groups=w.groups, bias=bias,
                                       metadata=w.metadata)
        else:
            nodes[target] = nir.Affine(weight=w.weight, bias=bias, metadata=w.metadata)
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata), type_check=False)


def convert(model: nn.Module, input_shape, calib_x: torch.Tensor | None = None, *, T: int | None = None,
            shift: bool = True, method: str = "", source: str = "", progress: bool = False) -> nir.NIRGraph:
    """Algorithm 1: V_th = y_th per layer (weight form, thresholds 1), plus the Eq. 15 shift V_th/2T if `shift`.

    `calib_x` is not used (the thresholds are the trained y_th, not activation statistics). Every IF node
    must come from a ClipReLU (a model prepared by `train`).
    """
    if shift:
        if T is None:
            raise ConversionError("optimal-shift needs the simulation length T: the shift V_th/(2T) of Eq. 15 "
                                  "depends on it (pass T=..., or use optimal-noshift)")
        if int(T) != T or int(T) < 1:
            raise ConversionError(f"optimal-shift: T must be a positive integer, got {T!r}")
    traced = trace(model, tuple(input_shape), method=method, source=source)
    graph = normalize(traced.graph, traced.module_scales(ClipReLU, "optimal-shift"), form="weights")
    return add_shift(graph, int(T)) if shift else graph


def convert_noshift(model: nn.Module, input_shape, calib_x: torch.Tensor | None = None, *, method: str = "",
                    source: str = "", progress: bool = False) -> nir.NIRGraph:
    """optimal-noshift: Algorithm 1 without line 11's shift (threshold ReLU and V_th = y_th only)."""
    return convert(model, input_shape, calib_x, shift=False, method=method, source=source, progress=progress)


register(Method("optimal-shift", "threshold ReLU (learned y_th) fine-tuning, V_th = y_th, bias shift V_th/2T "
                "(Deng & Gu 2021, Alg. 1, Eq. 15), reset by subtraction", convert, train=train, t_dependent=True))
register(Method("optimal-noshift", "threshold ReLU (learned y_th) fine-tuning, V_th = y_th, no shift "
                "(Deng & Gu 2021, threshold only)", convert_noshift, train=train, t_dependent=False))
