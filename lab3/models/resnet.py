"""ResNet-18/34/50/101/152 (He et al., 2015), written for this lab and trained from scratch.

The layout follows torchvision's "v1.5" variant (a Bottleneck strides on its 3x3 convolution,
not on the first 1x1) and keeps torchvision's attribute names, so a torchvision state_dict loads
with ``strict=True``. That is how the tests prove the architecture is the published one without
this package ever importing torchvision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from lab3.errors import UserError

__all__ = [
    "ARCHITECTURES",
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "build_model",
    "conv1x1",
    "conv3x3",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1; no bias because a BatchNorm always follows."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution (channel projection); no bias because a BatchNorm always follows."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus identity: the block of ResNet-18/34."""

    expansion: ClassVar[int] = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place: saves one activation-sized buffer per block
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm that ``zero_init_residual`` zeroes, so the block starts as identity."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride: "v1.5"), 1x1 expand x4: the block of ResNet-50+."""

    expansion: ClassVar[int] = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place: saves one activation-sized buffer per block
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm that ``zero_init_residual`` zeroes, so the block starts as identity."""
        return self.bn3


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """Stem (7x7/2 conv + 3x3/2 max-pool), four stages, global average pool, linear head.

    ``layers`` is the number of blocks per stage, so depth is data rather than a class per model.
    Adaptive pooling makes every input size >= 32 px valid (the profiles' sizes are in
    `lab3.config.PROFILES`).
    ``arch``, ``num_classes`` and ``in_channels`` are kept so a checkpoint can rebuild the model
    through :meth:`config` and :func:`build_model`.
    """

    STAGE_WIDTHS: ClassVar[tuple[int, ...]] = (64, 128, 256, 512)

    def __init__(
        self,
        block: Block,
        layers: list[int] | tuple[int, ...],
        num_classes: int = 2,
        in_channels: int = 3,
        zero_init_residual: bool = False,
        arch: str = "resnet",
    ):
        super().__init__()
        if len(layers) != len(self.STAGE_WIDTHS):
            raise ValueError(f"layers needs {len(self.STAGE_WIDTHS)} entries, got {layers!r}")
        self.arch = arch
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.inplanes = 64

        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # The first stage keeps the stem's resolution; every later one halves it.
        self.layer1 = self._make_layer(block, self.STAGE_WIDTHS[0], layers[0], stride=1)
        self.layer2 = self._make_layer(block, self.STAGE_WIDTHS[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, self.STAGE_WIDTHS[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, self.STAGE_WIDTHS[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.STAGE_WIDTHS[-1] * block.expansion, num_classes)

        self._init_weights(zero_init_residual)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """One stage: the first block changes stride/width (with a projected shortcut if needed)."""
        downsample = None
        out_planes = planes * block.expansion
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, out_planes, stride), nn.BatchNorm2d(out_planes)
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_planes
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """He (fan-out) init for convolutions and unit BatchNorms, as torchvision does.

        Training from scratch depends on this; the linear head keeps PyTorch's default.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Every residual branch then starts at zero, so each block begins as the identity
            # (Goyal et al., 2017); this helps large-batch training.
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    def stages(self) -> dict[str, list[nn.Module]]:
        """The model cut into the rows a summary shows: stem, layer1..layer4, head."""
        return {
            "stem": [self.conv1, self.bn1, self.relu, self.maxpool],
            "layer1": [self.layer1],
            "layer2": [self.layer2],
            "layer3": [self.layer3],
            "layer4": [self.layer4],
            "head": [self.avgpool, self.fc],
        }

    def config(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild this model: ``build_model(**model.config())``."""
        return {"name": self.arch, "num_classes": self.num_classes, "in_channels": self.in_channels}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, flattened features before the head: what the linear head classifies."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


# Block type and blocks per stage, from Table 1 of the paper.
ARCHITECTURES: dict[str, tuple[Block, tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


def _resnet(arch: str, num_classes: int, in_channels: int, zero_init_residual: bool) -> ResNet:
    block, layers = ARCHITECTURES[arch]
    return ResNet(block, layers, num_classes, in_channels, zero_init_residual, arch=arch)


def resnet18(
    num_classes: int = 2, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-18: BasicBlocks [2, 2, 2, 2], 11.7 M parameters at 1000 classes."""
    return _resnet("resnet18", num_classes, in_channels, zero_init_residual)


def resnet34(
    num_classes: int = 2, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-34: BasicBlocks [3, 4, 6, 3], 21.8 M parameters at 1000 classes."""
    return _resnet("resnet34", num_classes, in_channels, zero_init_residual)


def resnet50(
    num_classes: int = 2, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-50: Bottlenecks [3, 4, 6, 3], 25.6 M parameters at 1000 classes."""
    return _resnet("resnet50", num_classes, in_channels, zero_init_residual)


def resnet101(
    num_classes: int = 2, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-101: Bottlenecks [3, 4, 23, 3], 44.5 M parameters at 1000 classes."""
    return _resnet("resnet101", num_classes, in_channels, zero_init_residual)


def resnet152(
    num_classes: int = 2, in_channels: int = 3, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-152: Bottlenecks [3, 8, 36, 3], 60.2 M parameters at 1000 classes."""
    return _resnet("resnet152", num_classes, in_channels, zero_init_residual)


MODELS: dict[str, Callable[..., ResNet]] = {
    factory.__name__: factory for factory in (resnet18, resnet34, resnet50, resnet101, resnet152)
}
MODEL_NAMES = tuple(MODELS)  # the depths lab3 writes itself, in the lab's order


def build_model(name: str, **kwargs: Any) -> ResNet:
    """Build a model by name (as written in configs, CLI flags and checkpoints).

    An unknown name is a user mistake, so it raises :class:`UserError` listing the valid ones.
    """
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in MODELS:
        known = ", ".join(MODELS)
        raise UserError(f"unknown model {name!r}; known models: {known}")
    return MODELS[key](**kwargs)
