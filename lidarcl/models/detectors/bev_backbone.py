"""SECOND's 2D BEV backbone and neck (OpenPCDet's ``BaseBEVBackbone``), as CenterPoint uses
it on the height-compressed map of ``VoxelBackBone8x`` / ``VoxelResBackBone8x``.

Level ``i``: a 3x3 convolution of stride ``layer_strides[i]`` (zero padding 1, no bias) then
``layer_nums[i]`` 3x3 convolutions, each followed by BatchNorm (eps 1e-3, momentum 0.01) and
ReLU; its output is brought to the first level's resolution by a transposed convolution of
kernel = stride = ``upsample_strides[i]`` (a strided convolution when the stride is below 1),
BN and ReLU; the upsampled maps are concatenated. CenterPoint's nuScenes setting
(``cbgs_voxel0075_res3d_centerpoint.yaml``): layer_nums (5, 5), layer_strides (1, 2),
num_filters (128, 256), upsample_strides (1, 2), num_upsample_filters (256, 256): a 256-channel
input at stride 8 becomes 512 channels at stride 8.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lidarcl.registry import MODELS


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


@MODELS.register_module()
class SECONDBEVBackbone(nn.Module):
    """Multi-level 2D backbone with upsample-and-concatenate neck (module doc)."""

    def __init__(self, in_channels: int, layer_nums: Sequence[int] = (5, 5),
                 layer_strides: Sequence[int] = (1, 2), num_filters: Sequence[int] = (128, 256),
                 upsample_strides: Sequence[float] = (1, 2),
                 num_upsample_filters: Sequence[int] = (256, 256)):
        super().__init__()
        lengths = {len(layer_nums), len(layer_strides), len(num_filters),
                   len(upsample_strides), len(num_upsample_filters)}
        if len(lengths) != 1:
            raise ValueError("layer_nums, layer_strides, num_filters, upsample_strides and "
                             "num_upsample_filters must have one entry per level")
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        channels = [in_channels, *num_filters[:-1]]
        for level, (c_in, n, stride, width, up, up_width) in enumerate(zip(
                channels, layer_nums, layer_strides, num_filters, upsample_strides,
                num_upsample_filters)):
            layers = [nn.ZeroPad2d(1), nn.Conv2d(c_in, width, 3, stride=stride, bias=False),
                      _bn2d(width), nn.ReLU()]
            for _ in range(n):
                layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), _bn2d(width),
                           nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            if up >= 1:
                up = int(round(up))
                deblock = nn.ConvTranspose2d(width, up_width, up, stride=up, bias=False)
            else:
                down = int(round(1 / up))
                deblock = nn.Conv2d(width, up_width, down, stride=down, bias=False)
            self.deblocks.append(nn.Sequential(deblock, _bn2d(up_width), nn.ReLU()))
        self.out_channels = int(sum(num_upsample_filters))

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        ups = []
        x = bev
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            ups.append(deblock(x))
        return torch.cat(ups, 1) if len(ups) > 1 else ups[0]
