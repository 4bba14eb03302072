"""The model zoo: digits-cnn, LeNet-5 and a small VGG for 28x28 images, CIFAR VGG-16, ResNet-18 and ResNet-20,
built for any (C, H, W) input in the form the converter expects (own ReLU per activation, BN after every conv).
"""
from __future__ import annotations

import inspect
from collections import OrderedDict

import torch
from torch import nn

MODEL_NAMES = ("digits-cnn", "lenet5", "vgg-small", "vgg16", "resnet18", "resnet20")

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")
VGG_SMALL_LAYERS = (32, "M", 64, 64, "M", 128, 128)


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int,
                **options) -> nn.Module:
    """Build model `name` (one of MODEL_NAMES) for images of `input_shape` (C, H, W).

    Options: vgg16 takes pool="avg" (default) or "max"; the other models take none.

    Every model keeps the conventions the converter depends on: each activation is its own nn.ReLU
    instance called exactly once per forward; nothing is in place; no dropout; every conv is followed
    by BatchNorm2d and has no bias; a residual add is written `out = out + shortcut`; global average
    pooling is nn.AvgPool2d over the final feature map (NIR has AvgPool2d, not adaptive pooling), so
    its kernel is fixed by the input shape the model is built for; torch.fx can trace every model.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    builder = _BUILDERS[name]
    accepted = [p for p in inspect.signature(builder).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - {p.name for p in accepted})
    if unknown:
        valid = ", ".join(p.name for p in accepted) or "none"
        raise ValueError(f"model {name!r} got unknown option(s) {', '.join(unknown)}; "
                         f"valid options: {valid}")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return builder(shape, num_classes, **options)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int) -> list[nn.Module]:
    """A bias-free conv ("same" padding for odd kernels at stride 1) and its BatchNorm2d."""
    return [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                      bias=False),
            nn.BatchNorm2d(out_channels)]


# --- digits-cnn ------------------------------------------------------------------------------------

def digits_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """conv3x3(16) BN ReLU -> conv3x3/2(32) BN ReLU -> flatten -> linear; on 1x8x8 the linear is 512->10."""
    channels, height, width = input_shape
    flat = 32 * _conv_out(height, 3, 2, 1) * _conv_out(width, 3, 2, 1)
    conv1, bn1 = _conv_bn(channels, 16, 3, 1)
    conv2, bn2 = _conv_bn(16, 32, 3, 2)
    return nn.Sequential(OrderedDict(
        conv1=conv1, bn1=bn1, relu1=nn.ReLU(),
        conv2=conv2, bn2=bn2, relu2=nn.ReLU(),
        flatten=nn.Flatten(), fc=nn.Linear(flat, num_classes)))


# --- LeNet-5 and a small VGG for 28x28 images ------------------------------------------------------

def lenet5(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998, Sec. II-B) with batch norm and ReLU: conv5x5(6, padding 2) BN ReLU avgpool2 ->
    conv5x5(16) BN ReLU avgpool2 -> linear 120 ReLU -> linear 84 ReLU -> linear; 400 -> 120 on 28x28.

    As in the paper, the first conv sees the 28x28 image padded to 32x32 and the pools average 2x2 windows
    (without the paper's trainable coefficient and bias per map); tanh and the RBF output are ReLU and a Linear.
    """
    channels, height, width = input_shape
    if min(height, width) < 12:
        raise ValueError(f"lenet5 pools, applies an unpadded conv5x5 and pools again: needs H and W >= 12, "
                         f"got {height}x{width}")
    height, width = (height // 2 - 4) // 2, (width // 2 - 4) // 2
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(channels, 6, 5, padding=2, bias=False), bn1=nn.BatchNorm2d(6), relu1=nn.ReLU(),
        pool1=nn.AvgPool2d(2),
        conv2=nn.Conv2d(6, 16, 5, bias=False), bn2=nn.BatchNorm2d(16), relu2=nn.ReLU(), pool2=nn.AvgPool2d(2),
        flatten=nn.Flatten(),
        fc1=nn.Linear(16 * height * width, 120), relu3=nn.ReLU(),
        fc2=nn.Linear(120, 84), relu4=nn.ReLU(),
        fc3=nn.Linear(84, num_classes)))


def vgg_small(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A small VGG for 28x28: conv3x3(32) -> avgpool2 -> 2 x conv3x3(64) -> avgpool2 -> 2 x conv3x3(128), each
    conv BN ReLU, then average pooling over the final (7x7) map and one Linear(128, classes)."""
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    for spec in VGG_SMALL_LAYERS:
        if spec == "M":
            layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
            height, width = height // 2, width // 2
        else:
            layers += _conv_bn(channels, spec, 3, 1) + [nn.ReLU()]
            channels = spec
    if min(height, width) < 1:
        raise ValueError(f"vgg-small halves the image twice: needs H and W >= 4, got {input_shape[1]}x{input_shape[2]}")
    return nn.Sequential(*layers, nn.AvgPool2d(kernel_size=(height, width)), nn.Flatten(),
                         nn.Linear(channels, num_classes))


# --- VGG-16 ----------------------------------------------------------------------------------------

class VGG16(nn.Module):
    """CIFAR VGG-16 with BN: 13 conv3x3-BN-ReLU, five 2x2 pools, then one Linear classifier.

    The classifier is the single Linear(512 * h * w, classes) of the common CIFAR variant (h = H//32,
    w = W//32: 512 -> classes on 32x32), not ImageNet's 4096-4096 head; no dropout.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, pool: str = "avg"):
        super().__init__()
        pools = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
        if pool not in pools:
            raise ValueError(f"vgg16 pool must be 'avg' or 'max', got {pool!r}")
        channels, height, width = input_shape
        if min(height, width) < 32:
            raise ValueError(f"vgg16 halves the image five times: needs H and W >= 32, "
                             f"got {height}x{width}")
        layers: list[nn.Module] = []
        for spec in VGG16_LAYERS:
            if spec == "M":
                layers.append(pools[pool](kernel_size=2, stride=2))
                height, width = height // 2, width // 2
            else:
                layers += _conv_bn(channels, spec, 3, 1) + [nn.ReLU()]
                channels = spec
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels * height * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def vgg16(input_shape: tuple[int, int, int], num_classes: int, *, pool: str = "avg") -> nn.Module:
    """VGG-16; pool="avg" (default, conversion-friendly) or "max" for the five pooling layers."""
    return VGG16(input_shape, num_classes, pool=pool)


# --- ResNets ---------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """conv3x3-BN-relu1-conv3x3-BN, plus shortcut, then relu2.

    The shortcut is a 1x1 conv + BN projection (nn.Sequential) when stride or channels change, else
    nn.Identity.
    """

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_channels, channels, 3, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(channels, channels, 3, 1)
        projection = stride != 1 or in_channels != channels
        self.shortcut = nn.Sequential(*_conv_bn(in_channels, channels, 1, stride)) if projection \
            else nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return self.relu2(out)


class ResNet(nn.Module):
    """CIFAR-style ResNet: conv3x3 stem (stride 1, no max pool), stages of BasicBlocks (the first
    stage at stride 1, each later one starting at stride 2), AvgPool2d over the final map, Linear."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, stem: int,
                 stages: tuple[tuple[int, int], ...]):
        super().__init__()
        in_channels, height, width = input_shape
        self.conv1, self.bn1 = _conv_bn(in_channels, stem, 3, 1)
        self.relu1 = nn.ReLU()
        channels = stem
        self.stage_names = []
        for index, (out_channels, blocks) in enumerate(stages):
            stride = 1 if index == 0 else 2
            height, width = _conv_out(height, 3, stride, 1), _conv_out(width, 3, stride, 1)
            stage = [BasicBlock(channels, out_channels, stride)]
            stage += [BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
            self.stage_names.append(f"layer{index + 1}")
            self.add_module(self.stage_names[-1], nn.Sequential(*stage))
            channels = out_channels
        self.pool = nn.AvgPool2d(kernel_size=(height, width))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        for name in self.stage_names:
            out = getattr(self, name)(out)
        return self.fc(self.flatten(self.pool(out)))


def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-18: stem 64, BasicBlocks [2, 2, 2, 2] at 64/128/256/512 channels (~11.17M
    parameters for 3x32x32, 10 classes)."""
    return ResNet(input_shape, num_classes, 64, ((64, 2), (128, 2), (256, 2), (512, 2)))


def resnet20(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """He et al. 2016 CIFAR ResNet-20: stem 16, 3 stages x 3 BasicBlocks at 16/32/64 channels.

    Shortcuts follow option B (1x1 conv + BN projection where the shape changes, identity elsewhere)
    so that no shortcut is a parameter-free zero-padding trick: 272,474 parameters for 10 classes,
    against the 0.27M (269,722) of the paper's option A.
    """
    return ResNet(input_shape, num_classes, 16, ((16, 3), (32, 3), (64, 3)))


_BUILDERS = {"digits-cnn": digits_cnn, "lenet5": lenet5, "vgg-small": vgg_small, "vgg16": vgg16, "resnet18": resnet18, "resnet20": resnet20}
