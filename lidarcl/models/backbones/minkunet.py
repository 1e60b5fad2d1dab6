"""Sparse residual U-Net on spconv, after MinkowskiEngine's ``MinkUNet`` (Choy et al.,
CVPR 2019, examples/minkunet.py), the backbone of SLidR and SuperFlow.

Layout (``P`` = planes, ``L`` = residual blocks per stage, ``I`` = stem width 32)::

    stem      SubM conv k=5 (in -> I), BN, ReLU                              stride 1
    down i    Sparse conv k=2 s=2, BN, ReLU, L[i] blocks -> P[i]   (i = 0..3)  stride 2^(i+1)
    up j      Inverse conv k=2 (back to the skip's voxels) -> P[4+j], BN, ReLU,
              concat skip (down 2-j output, or the stem for j = 3), L[4+j] blocks -> P[4+j]
    head      Linear P[7] -> out_channels
    blocks    BasicBlock: SubM k=3, BN, ReLU, SubM k=3, BN, + shortcut (1x1 SubM + BN when
              the width changes), ReLU

Presets: ``MinkUNet18`` ``L = (2, 2, 2, 2, 2, 2, 2, 2)``, ``MinkUNet34`` ``L = (2, 3, 4,
6, 2, 2, 2, 2)``, both ``P = (32, 64, 128, 256, 256, 128, 96, 96)``. Per-point features are
read back through the voxelisation's point -> voxel map.

Departure from MinkowskiEngine: spconv's strided conv of kernel 2 and its inverse play the
roles of ME's ``MinkowskiConvolution(k=2, s=2)`` / ``MinkowskiConvolutionTranspose``; the
inverse conv restores exactly the voxels of the matching strided conv's input, as ME's
transposed conv on the stored coordinate map does.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lidarcl.models.backbones.base import (BackboneOutput, check_point_columns,
                                           set_conv_algorithm)
from lidarcl.ops.voxelize import voxelize
from lidarcl.registry import MODELS

PLANES = (32, 64, 128, 256, 256, 128, 96, 96)
LAYERS = {"MinkUNet18": (2, 2, 2, 2, 2, 2, 2, 2), "MinkUNet34": (2, 3, 4, 6, 2, 2, 2, 2)}


def _spconv():
    try:
        import spconv.pytorch as spconv
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ImportError("the sparse U-Net needs spconv (pip install spconv-cu120, or the "
                          "build matching your CUDA)") from exc
    return spconv


class BasicBlock(nn.Module):
    """Residual block of two 3x3x3 submanifold convs (ResNet BasicBlock on sparse voxels)."""

    def __init__(self, in_channels: int, channels: int, indice_key: str):
        super().__init__()
        sp = _spconv()
        self.conv1 = sp.SubMConv3d(in_channels, channels, 3, padding=1, bias=False,
                                   indice_key=indice_key)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = sp.SubMConv3d(channels, channels, 3, padding=1, bias=False,
                                   indice_key=indice_key)
        self.bn2 = nn.BatchNorm1d(channels)
        self.shortcut = None
        if in_channels != channels:
            self.shortcut = sp.SparseSequential(
                sp.SubMConv3d(in_channels, channels, 1, bias=False, indice_key=indice_key + "s"),
                nn.BatchNorm1d(channels))

    def forward(self, x):
        out = self.conv1(x)
        out = out.replace_feature(torch.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.bn2(out.features))
        identity = x.features if self.shortcut is None else self.shortcut(x).features
        return out.replace_feature(torch.relu(out.features + identity))


def _stage(in_channels: int, channels: int, blocks: int, key: str) -> nn.ModuleList:
    return nn.ModuleList([BasicBlock(in_channels if i == 0 else channels, channels, key)
                          for i in range(blocks)])


@MODELS.register_module()
class MinkUNet(nn.Module):
    """Sparse residual U-Net (see the module doc).

    Args:
        in_channels: point feature columns used as input (``points[:, :in_channels]``,
            e.g. 4 = x, y, z, intensity).
        out_channels: width of the per-point output features.
        layers: residual blocks per stage (8 stages); ``planes``: their widths.
        voxel_size, point_range, mode: the input grid (:func:`lidarcl.ops.voxelize`).
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 64,
                 layers: Sequence[int] = LAYERS["MinkUNet34"],
                 planes: Sequence[int] = PLANES, stem_channels: int = 32,
                 voxel_size=0.1, point_range=None, mode: str = "cartesian"):
        super().__init__()
        sp = _spconv()
        if len(layers) != 8 or len(planes) != 8:
            raise ValueError(f"layers and planes need 8 entries, got {len(layers)} and "
                             f"{len(planes)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.voxel_size = voxel_size
        self.point_range = point_range
        self.mode = mode
        self.stem = sp.SparseSequential(
            sp.SubMConv3d(in_channels, stem_channels, 5, padding=2, bias=False,
                          indice_key="stem"),
            nn.BatchNorm1d(stem_channels), nn.ReLU())
        widths = [stem_channels]
        self.down = nn.ModuleList()
        self.down_blocks = nn.ModuleList()
        channels = stem_channels
        for i in range(4):
            self.down.append(sp.SparseSequential(
                sp.SparseConv3d(channels, channels, 2, stride=2, bias=False,
                                indice_key=f"down{i + 1}"),
                nn.BatchNorm1d(channels), nn.ReLU()))
            self.down_blocks.append(_stage(channels, planes[i], layers[i], f"subm{i + 1}"))
            channels = planes[i]
            widths.append(channels)
        self.up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for j in range(4):
            level = 3 - j  # the resolution this up step returns to (0 = stem)
            self.up.append(sp.SparseSequential(
                sp.SparseInverseConv3d(channels, planes[4 + j], 2, bias=False,
                                       indice_key=f"down{level + 1}"),
                nn.BatchNorm1d(planes[4 + j]), nn.ReLU()))
            self.up_blocks.append(_stage(planes[4 + j] + widths[level], planes[4 + j],
                                         layers[4 + j], f"subm{level}"))
            channels = planes[4 + j]
        self.head = nn.Linear(channels, out_channels)

    def forward(self, points: torch.Tensor, offsets: torch.Tensor) -> BackboneOutput:
        sp = _spconv()
        set_conv_algorithm(self, points.device)
        check_point_columns(points, self.in_channels)
        # align=16: with the default range the grid origin sits on a multiple of 16 cells,
        # so a sample's features never depend on the other samples of its batch
        voxels = voxelize(points, offsets, self.voxel_size, self.point_range, self.mode,
                          features=points[:, :self.in_channels], align=16)
        # the grid padded to a multiple of 16 = 2^4, so each of the four k=2 s=2 steps
        # halves it exactly (and a thin grid, e.g. 2 m of height, never shrinks to 0)
        shape = [-(-s // 16) * 16 for s in voxels.spatial_shape]
        x = sp.SparseConvTensor(voxels.features, voxels.coords, shape, voxels.batch_size)
        x = self.stem(x)
        skips = [x]
        for down, blocks in zip(self.down, self.down_blocks):
            x = down(x)
            for block in blocks:
                x = block(x)
            skips.append(x)
        for j, (up, blocks) in enumerate(zip(self.up, self.up_blocks)):
            skip = skips[3 - j]
            x = up(x)
            x = x.replace_feature(torch.cat([x.features, skip.features], dim=1))
            for block in blocks:
                x = block(x)
        voxel_features = self.head(x.features)
        return BackboneOutput(voxels.point_features(voxel_features), voxel_features, voxels)


@MODELS.register_module()
class MinkUNet18(MinkUNet):
    """:class:`MinkUNet` with MinkowskiEngine's MinkUNet18 depths."""

    def __init__(self, **kwargs):
        super().__init__(layers=LAYERS["MinkUNet18"], **kwargs)


@MODELS.register_module()
class MinkUNet34(MinkUNet):
    """:class:`MinkUNet` with MinkowskiEngine's MinkUNet34 depths."""

    def __init__(self, **kwargs):
        super().__init__(layers=LAYERS["MinkUNet34"], **kwargs)
