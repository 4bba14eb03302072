"""Tests for pipeline.data.zoo: output shapes, fx tracing, parameter counts derived by hand, and the
structural rules the converter relies on (one ReLU call each, BN after bias-free convs, pooling)."""
from __future__ import annotations

import operator

import pytest
import torch
import torch.fx
from torch import nn

from pipeline.data.zoo import MODEL_NAMES, build_model

CASES = [("digits-cnn", (1, 8, 8)), ("digits-cnn", (1, 28, 28)), ("vgg16", (3, 32, 32)),
         ("vgg16", (1, 32, 64)), ("resnet18", (3, 32, 32)), ("resnet18", (1, 28, 28)),
         ("resnet20", (3, 32, 32)), ("resnet20", (1, 28, 28)), ("lenet5", (1, 28, 28)), ("lenet5", (3, 32, 32)),
         ("vgg-small", (1, 28, 28)), ("vgg-small", (3, 32, 32))]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {case: build_model(case[0], case[1], 10).eval() for case in CASES}


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_bn(c_in: int, c_out: int, k: int) -> int:
    """A bias-free k x k conv plus BatchNorm2d (weight and bias per channel)."""
    return c_in * c_out * k * k + 2 * c_out


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def basic_blocks(c_in: int, c_out: int, blocks: int) -> tuple[int, int]:
    """(parameters of a stage of BasicBlocks, of which in its projection shortcut)."""
    projection = conv_bn(c_in, c_out, 1) if c_in != c_out else 0
    first = conv_bn(c_in, c_out, 3) + conv_bn(c_out, c_out, 3) + projection
    return first + (blocks - 1) * 2 * conv_bn(c_out, c_out, 3), projection


def test_model_names():
    assert MODEL_NAMES == ("digits-cnn", "lenet5", "vgg-small", "vgg16", "resnet18", "resnet20")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c}")
def test_output_shape_and_fx_trace(models, case):
    model = models[case]
    x = torch.rand(2, *case[1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
        traced = torch.fx.symbolic_trace(model)
        assert torch.allclose(traced(x), out, atol=1e-6)
    assert out.shape == (2, 10)


def test_digits_cnn_parameters(models):
    expected = conv_bn(1, 16, 3) + conv_bn(16, 32, 3) + linear(32 * 4 * 4, 10)
    assert expected == 9_978
    assert params(models[("digits-cnn", (1, 8, 8))]) == expected
    wide = expected - linear(512, 10) + linear(32 * 14 * 14, 10)
    assert params(models[("digits-cnn", (1, 28, 28))]) == wide


def test_lenet5_parameters(models):
    expected = conv_bn(1, 6, 5) + conv_bn(6, 16, 5) + linear(16 * 5 * 5, 120) + linear(120, 84) + linear(84, 10)
    # LeCun et al.'s 61,706 with a bias per conv channel, here replaced by BN's weight and bias per channel
    assert params(models[("lenet5", (1, 28, 28))]) == expected == 61_706 - (6 + 16) + 2 * (6 + 16)
    # 3x32x32: 3 input channels, 32 -> 16 -> 12 -> 6, so 16 x 6 x 6 features into fc1
    assert params(models[("lenet5", (3, 32, 32))]) == (
        expected + 2 * 6 * 25 - linear(400, 120) + linear(16 * 6 * 6, 120))


def test_vgg_small_parameters_and_pools(models):
    widths = [32, 64, 64, 128, 128]
    expected = sum(conv_bn(c_in, c_out, 3) for c_in, c_out in zip([1] + widths, widths)) + linear(128, 10)
    model = models[("vgg-small", (1, 28, 28))]
    assert params(model) == expected == 278_890
    pools = [m.kernel_size for m in model.modules() if isinstance(m, nn.AvgPool2d)]
    assert pools == [2, 2, (7, 7)]   # 28 -> 14 -> 7, then the mean over the 7 x 7 map
    assert [m.kernel_size for m in models[("vgg-small", (3, 32, 32))].modules()
            if isinstance(m, nn.AvgPool2d)][-1] == (8, 8)


@pytest.mark.parametrize("name", ["lenet5", "vgg-small"])
def test_28x28_models_pool_by_averaging_only(models, name):
    kinds = {type(m) for m in models[(name, (1, 28, 28))].modules()}
    assert nn.AvgPool2d in kinds and nn.MaxPool2d not in kinds and nn.BatchNorm2d in kinds


def test_vgg16_parameters(models):
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(conv_bn(c_in, c_out, 3) for c_in, c_out in zip([3] + widths, widths))
    expected = convs + linear(512, 10)
    assert params(models[("vgg16", (3, 32, 32))]) == expected == 14_724_042
    # the widely quoted 14,728,266 of the CIFAR VGG-16 whose convs keep a bias (one per channel)
    assert expected + sum(widths) == 14_728_266
    # 1x32x64: first conv sees 1 channel, the classifier 512 x 1 x 2 features
    assert params(models[("vgg16", (1, 32, 64))]) == (
        expected - 2 * 64 * 9 - linear(512, 10) + linear(1024, 10))


def test_resnet18_parameters(models):
    stages = [basic_blocks(c_in, c_out, 2)[0]
              for c_in, c_out in [(64, 64), (64, 128), (128, 256), (256, 512)]]
    expected = conv_bn(3, 64, 3) + sum(stages) + linear(512, 10)
    assert params(models[("resnet18", (3, 32, 32))]) == expected == 11_173_962  # the ~11.17M
    assert params(models[("resnet18", (1, 28, 28))]) == expected - 2 * 64 * 9


def test_resnet20_parameters_option_b(models):
    stages = [basic_blocks(c_in, c_out, 3) for c_in, c_out in [(16, 16), (16, 32), (32, 64)]]
    expected = conv_bn(3, 16, 3) + sum(total for total, _ in stages) + linear(64, 10)
    projections = sum(projection for _, projection in stages)
    assert params(models[("resnet20", (3, 32, 32))]) == expected == 272_474
    # without the two projection shortcuts: option A, He et al.'s 0.27M
    assert expected - projections == 269_722


def relu_calls(model: nn.Module, shape: tuple[int, ...]) -> list[int]:
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    counts = [0] * len(relus)
    handles = [relu.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
               for i, relu in enumerate(relus)]
    with torch.no_grad():
        model(torch.rand(2, *shape))
    for handle in handles:
        handle.remove()
    return counts


@pytest.mark.parametrize("case,relus", [(("digits-cnn", (1, 8, 8)), 2), (("vgg16", (3, 32, 32)), 13),
                                        (("resnet18", (3, 32, 32)), 17),
                                        (("resnet20", (3, 32, 32)), 19), (("lenet5", (1, 28, 28)), 4),
                                        (("vgg-small", (1, 28, 28)), 5)])
def test_each_relu_module_called_once(models, case, relus):
    counts = relu_calls(models[case], case[1])
    assert counts == [1] * relus


@pytest.mark.parametrize("case", CASES[::2], ids=lambda c: f"{c}")
def test_converter_rules(models, case):
    model = models[case]
    modules = dict(model.named_modules())
    assert not any(isinstance(m, (nn.Dropout, nn.AdaptiveAvgPool2d)) for m in modules.values())
    assert all(not m.inplace for m in modules.values() if isinstance(m, nn.ReLU))
    graph = torch.fx.symbolic_trace(model).graph
    convs = [n for n in graph.nodes if n.op == "call_module" and isinstance(modules[n.target], nn.Conv2d)]
    assert convs
    for node in convs:
        assert modules[node.target].bias is None, node.target
        users = list(node.users)
        assert len(users) == 1 and isinstance(modules[users[0].target], nn.BatchNorm2d), node.target
    adds = [n for n in graph.nodes if n.op == "call_function" and n.target is operator.add]
    blocks = {"digits-cnn": 0, "lenet5": 0, "vgg-small": 0, "vgg16": 0, "resnet18": 8, "resnet20": 9}[case[0]]
    assert len(adds) == blocks
    assert all(n.op in ("placeholder", "output", "call_module") for n in graph.nodes if n not in adds)


def test_resnet_shortcuts_and_global_pool(models):
    resnet20 = models[("resnet20", (3, 32, 32))]
    projections = [name for name, m in resnet20.named_modules()
                   if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert projections == ["layer2.0.shortcut.0", "layer3.0.shortcut.0"]
    identities = [name for name, m in resnet20.named_modules() if isinstance(m, nn.Identity)]
    assert len(identities) == 9 - 2 and "layer1.0.shortcut" in identities
    assert isinstance(resnet20.pool, nn.AvgPool2d) and resnet20.pool.kernel_size == (8, 8)
    assert models[("resnet18", (3, 32, 32))].pool.kernel_size == (4, 4)
    assert models[("resnet18", (1, 28, 28))].pool.kernel_size == (4, 4)  # 28 -> 14 -> 7 -> 4
    assert models[("resnet20", (1, 28, 28))].pool.kernel_size == (7, 7)


@pytest.mark.parametrize("pool,kind", [("avg", nn.AvgPool2d), ("max", nn.MaxPool2d)])
def test_vgg16_pool_option(pool, kind):
    model = build_model("vgg16", (3, 32, 32), 10, pool=pool)
    pools = [m for m in model.modules() if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d))]
    assert len(pools) == 5 and all(type(m) is kind for m in pools)
    assert all(m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2)) for m in pools)


def test_vgg16_default_pool_is_avg(models):
    assert not any(isinstance(m, nn.MaxPool2d) for m in models[("vgg16", (3, 32, 32))].modules())


@pytest.mark.parametrize("name,shape,options,message", [
    ("alexnet", (3, 32, 32), {}, "valid names: digits-cnn, lenet5, vgg-small, vgg16, resnet18, resnet20"),
    ("lenet5", (1, 8, 8), {}, "needs H and W >= 12"),
    ("vgg-small", (1, 3, 3), {}, "needs H and W >= 4"),
    ("vgg16", (3, 32, 32), {"pool": "sum"}, "'avg' or 'max'"),
    ("vgg16", (1, 28, 28), {}, "needs H and W >= 32"),
    ("resnet20", (3, 32, 32), {"pool": "max"}, "unknown option.*pool.*valid options: none"),
    ("digits-cnn", (8, 8), {}, r"\(C, H, W\)"),
])
def test_bad_requests_are_explained(name, shape, options, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, shape, 10, **options)


def test_num_classes_sets_the_output_width():
    model = build_model("resnet20", (3, 32, 32), 100)
    assert model.fc.out_features == 100 and model(torch.rand(1, 3, 32, 32)).shape == (1, 100)
