"""ResNet image encoders in torchvision's parameter layout (He et al., CVPR 2016, "v1.5":
the stride of a bottleneck sits on its 3x3 convolution).

Parameter names and shapes are torchvision's (``conv1``, ``bn1``, ``layer{1-4}.{i}.conv{1-3}``,
``...downsample.{0,1}``), so torchvision and MoCo v2 files load without a key map beyond the
prefixes (:mod:`lidarcl.models.image.checkpoints`). The classifier (``fc``) is left out: an
encoder returns the last feature map.

``dilate=(False, True, True)`` replaces the strides of layers 2-4 by dilation, as
torchvision's ``replace_stride_with_dilation`` does: the first block of a dilated layer keeps
the previous dilation, the next blocks use the multiplied one. SLidR (Sautier et al., CVPR
2022) dilates all three, so ResNet-50 keeps 1/4 of the input resolution.

torchvision itself is not imported: on a CPU-only install its wheels for torch 2.13 are CUDA
builds that do not import (see ``docs/camera_lidar.md``). Where it does import, the tests
check this module against ``torchvision.models.resnet50`` weight for weight.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["ResNet", "RESNET_DEPTHS"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# depth -> (block, blocks per layer)
RESNET_DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
                 50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
    """ResNet-{18,34,50,101} trunk; ``forward`` returns layer 4's map ``(B, C, H/s, W/s)``
    with ``s = 32`` divided by 2 for every dilated layer, ``C = 512 * expansion``."""

    def __init__(self, depth: int = 50, dilate: Sequence[bool] = (False, False, False)):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(RESNET_DEPTHS)}")
        if len(dilate) != 3:
            raise ValueError(f"dilate needs one flag for each of layers 2-4, got {dilate!r}")
        block, layers = RESNET_DEPTHS[depth]
        self.depth = depth
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, dilate[2])
        self.out_channels = 512 * block.expansion
        self.stride = 32 // 2 ** sum(bool(d) for d in dilate)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1,
                    dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
