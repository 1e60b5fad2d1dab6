"""Sparse 3D encoder for BEV detection: SECOND / CenterPoint's ``VoxelBackBone8x`` and its
residual variant ``VoxelResBackBone8x`` (Yan et al., Sensors 2018; Yin et al., CVPR 2021;
layer plan as in OpenPCDet's ``spconv_backbone.py``), on spconv.

Stages (``C`` = channels, s = stride of the stage's first conv, BN eps 1e-3 momentum 0.01)::

    conv_input  SubM 3, in -> 16
    conv1       16        (1 SubM block; residual: 2 basic blocks)           x1
    conv2       s2 -> 32  (sparse conv 3, pad 1; 2 SubM / basic blocks)      x2
    conv3       s2 -> 64                                                     x4
    conv4       s2 -> 64  (pad (0, 1, 1) in z, y, x)  [residual: 128]       x8
    conv_out    sparse conv (3, 1, 1), stride (2, 1, 1), no pad -> 128 (z only)

then height compression: the dense ``(B, 128, D, H, W)`` tensor becomes the BEV map
``(B, 128 * D, H, W)``. The grid is ``point_range`` / ``voxel_size`` with one more cell in z
(OpenPCDet's ``sparse_shape = grid_size[::-1] + [1, 0, 0]``), so the nuScenes setting
(range [-54, -54, -5, 54, 54, 3], 0.075 m x 0.075 m x 0.2 m) gives a 41 x 1440 x 1440 grid
and a 256 x 180 x 180 BEV map. Voxel features are the mean of their points (MeanVFE).
Per-point features are read from ``conv1`` (stride 1, 16 channels).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lidarcl.models.backbones.base import (BackboneOutput, biased_subm_conv3d,
                                           set_conv_algorithm)
from lidarcl.models.backbones.minkunet import _spconv
from lidarcl.ops.voxelize import voxelize
from lidarcl.registry import MODELS


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


def _block(sp, in_channels: int, out_channels: int, kernel, key: str, kind: str = "subm",
           stride=1, padding=0):
    if kind == "subm":
        conv = sp.SubMConv3d(in_channels, out_channels, kernel, bias=False, padding=padding,
                             indice_key=key)
    else:
        conv = sp.SparseConv3d(in_channels, out_channels, kernel, stride=stride,
                               padding=padding, bias=False, indice_key=key)
    return sp.SparseSequential(conv, _bn(out_channels), nn.ReLU())


class SparseBasicBlock(nn.Module):
    """Residual block of two SubM 3x3x3 convs with bias (OpenPCDet's SparseBasicBlock)."""

    def __init__(self, channels: int, key: str):
        super().__init__()
        self.conv1 = biased_subm_conv3d(channels, channels, 3, padding=1, indice_key=key)
        self.bn1 = _bn(channels)
        self.conv2 = biased_subm_conv3d(channels, channels, 3, padding=1, indice_key=key)
        self.bn2 = _bn(channels)

    def forward(self, x):
        out = self.conv1(x)
        out = out.replace_feature(torch.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.bn2(out.features) + x.features)
        return out.replace_feature(torch.relu(out.features))


@MODELS.register_module()
class VoxelBackBone8x(nn.Module):
    """SECOND's 8x sparse encoder with height compression (see the module doc).

    Args:
        in_channels: point columns averaged into voxel features (``points[:, :in]``).
        voxel_size: ``(x, y, z)`` metres; ``point_range``: ``[x0, y0, z0, x1, y1, z1]``.
    """

    residual = False

    def __init__(self, in_channels: int = 4, voxel_size: Sequence[float] = (0.075, 0.075, 0.2),
                 point_range: Sequence[float] = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)):
        super().__init__()
        sp = _spconv()
        self.in_channels = in_channels
        self.out_channels = 16  # width of the per-point features (read from conv1)
        self.voxel_size = tuple(voxel_size)
        self.point_range = tuple(point_range)
        self.conv_input = _block(sp, in_channels, 16, 3, "subm1", padding=1)
        # stages are lists run in order (SparseSequential would hand a plain module such as
        # SparseBasicBlock the features instead of the sparse tensor)
        if self.residual:
            self.conv1 = nn.ModuleList([SparseBasicBlock(16, "res1"),
                                        SparseBasicBlock(16, "res1")])
            widths = (32, 64, 128)
        else:
            self.conv1 = nn.ModuleList([_block(sp, 16, 16, 3, "subm1", padding=1)])
            widths = (32, 64, 64)
        stages = []
        channels = 16
        paddings = (1, 1, (0, 1, 1))
        for i, (width, pad) in enumerate(zip(widths, paddings)):
            down = _block(sp, channels, width, 3, f"spconv{i + 2}", "spconv", 2, pad)
            if self.residual:
                body = [SparseBasicBlock(width, f"res{i + 2}") for _ in range(2)]
            else:
                body = [_block(sp, width, width, 3, f"subm{i + 2}", padding=1)
                        for _ in range(2)]
            stages.append(nn.ModuleList([down, *body]))
            channels = width
        self.conv2, self.conv3, self.conv4 = stages
        self.conv_out = _block(sp, channels, 128, (3, 1, 1), "spconv_down2", "spconv",
                               (2, 1, 1), 0)
        self.num_bev_features = None  # 128 * D, known once the grid is
        if self.bev_height() < 1:
            raise ValueError(
                f"the grid is {self.grid_shape()[0]} cells high (point_range z "
                f"{self.point_range[2]}..{self.point_range[5]} m at {self.voxel_size[2]} m), "
                "too thin for the 8x encoder: its z size after conv4 and conv_out would be 0; "
                "it needs at least 25 (nuScenes: 8 m at 0.2 m, plus one = 41)")

    def grid_shape(self) -> tuple[int, int, int]:
        """``(Z + 1, Y, X)``: spconv's spatial shape of the input grid."""
        import math

        lo, hi = self.point_range[:3], self.point_range[3:]
        cells = [round((h - l) / s) if abs((h - l) / s - round((h - l) / s)) < 1e-6
                 else math.ceil((h - l) / s) for l, h, s in zip(lo, hi, self.voxel_size)]
        return cells[2] + 1, cells[1], cells[0]

    def bev_height(self) -> int:
        """``D``: z cells left after conv2-4 (k=3, s=2; pad 1, 1, 0) and conv_out (k=3, s=2,
        no pad); the BEV map has ``128 * D`` channels."""
        depth = self.grid_shape()[0]
        for pad in (1, 1, 0, 0):
            depth = (depth + 2 * pad - 3) // 2 + 1
        return depth

    def forward(self, points: torch.Tensor, offsets: torch.Tensor) -> BackboneOutput:
        sp = _spconv()
        set_conv_algorithm(self, points.device)
        voxels = voxelize(points, offsets, self.voxel_size, list(self.point_range),
                          features=points[:, :self.in_channels])
        x = sp.SparseConvTensor(voxels.features, voxels.coords, list(self.grid_shape()),
                                voxels.batch_size)
        def run(stage, t):
            for layer in stage:
                t = layer(t)
            return t

        x = self.conv_input(x)
        x_conv1 = run(self.conv1, x)
        x_conv2 = run(self.conv2, x_conv1)
        x_conv3 = run(self.conv3, x_conv2)
        x_conv4 = run(self.conv4, x_conv3)
        out = self.conv_out(x_conv4)
        dense = out.dense()  # (B, C, D, H, W)
        b, c, d, h, w = dense.shape
        bev = dense.view(b, c * d, h, w)
        self.num_bev_features = c * d
        multi = {"x_conv1": x_conv1, "x_conv2": x_conv2, "x_conv3": x_conv3,
                 "x_conv4": x_conv4, "out": out}
        return BackboneOutput(voxels.point_features(x_conv1.features), x_conv1.features,
                              voxels, bev=bev, multi_scale=multi)


@MODELS.register_module()
class VoxelResBackBone8x(VoxelBackBone8x):
    """Residual variant (OpenPCDet's VoxelResBackBone8x: SparseBasicBlocks, conv4 at 128)."""

    residual = True
