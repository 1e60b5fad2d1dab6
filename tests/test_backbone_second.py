"""SECOND / CenterPoint sparse encoders (lidarcl/models/backbones/second.py): the nuScenes
setting on the real frame, BEV shape, gradients, parameter counts against the layer plan
of OpenPCDet's spconv_backbone.py worked out by hand, sample independence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lidarcl.models.backbones import VoxelBackBone8x, VoxelResBackBone8x
from conftest import REAL_DATA
from lidarcl.registry import MODELS


def conv(k3, cin, cout, bias=False):  # weights (+ bias) of a conv with k3 kernel taps
    return k3 * cin * cout + (cout if bias else 0)


def bn(c):
    return 2 * c


def test_parameter_counts_match_the_reference_layer_plan():
    # VoxelBackBone8x, 4 input features (OpenPCDet's plan: 16 | 16 | 32 x3 | 64 x3 |
    # 64 x3 | conv_out 128 with a (3, 1, 1) kernel); every conv without bias, then BN
    plain = (conv(27, 4, 16) + bn(16)                                        # conv_input
             + conv(27, 16, 16) + bn(16)                                     # conv1
             + conv(27, 16, 32) + bn(32) + 2 * (conv(27, 32, 32) + bn(32))  # conv2
             + conv(27, 32, 64) + bn(64) + 2 * (conv(27, 64, 64) + bn(64))  # conv3
             + conv(27, 64, 64) + bn(64) + 2 * (conv(27, 64, 64) + bn(64))  # conv4
             + conv(3, 64, 128) + bn(128))                                   # conv_out
    assert plain == 711_872
    # VoxelResBackBone8x: SparseBasicBlocks (two SubM 3x3x3 convs with bias, two BN), x2
    # per stage, conv4 at 128
    def basic(c):
        return 2 * (conv(27, c, c, bias=True) + bn(c))
    res = (conv(27, 4, 16) + bn(16) + 2 * basic(16)
           + conv(27, 16, 32) + bn(32) + 2 * basic(32)
           + conv(27, 32, 64) + bn(64) + 2 * basic(64)
           + conv(27, 64, 128) + bn(128) + 2 * basic(128)
           + conv(3, 128, 128) + bn(128))
    assert res == 2_694_880
    for cls, expected in ((VoxelBackBone8x, plain), (VoxelResBackBone8x, res)):
        assert sum(p.numel() for p in cls(in_channels=4).parameters()) == expected


@pytest.mark.parametrize("name", ["VoxelBackBone8x", "VoxelResBackBone8x"])
def test_real_frame_nuscenes_setting(name):
    path = REAL_DATA.nuscenes_lidar_file()  # a keyframe of any nuScenes copy (conftest)
    pts = torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(-1, 5).copy())
    torch.manual_seed(0)
    model = MODELS.build(dict(type=name, in_channels=4))  # range +-54 m, 0.075 / 0.2 m
    assert model.grid_shape() == (41, 1440, 1440)
    out = model(pts, torch.tensor([len(pts)]))
    assert out.bev.shape == (1, 256, 180, 180)  # 128 channels x 2 heights, 1440 / 8
    assert out.point_features.shape == (len(pts), 16)
    assert set(out.multi_scale) == {"x_conv1", "x_conv2", "x_conv3", "x_conv4", "out"}
    assert out.multi_scale["x_conv4"].spatial_shape == [5, 180, 180]
    occupied = (out.bev.abs().sum(1) > 0).sum()
    assert 500 < int(occupied) < 180 * 180
    out.bev.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())


@pytest.mark.parametrize("cls", [VoxelBackBone8x, VoxelResBackBone8x])
def test_samples_are_independent_in_eval_mode(cls):
    # VoxelResBackBone8x's SubM convs carry a bias, which spconv's CPU path refuses to fuse
    # in eval mode: this also covers lidarcl's biased_subm_conv3d there
    torch.manual_seed(1)
    model = cls(in_channels=4, voxel_size=(0.2, 0.2, 0.2),
                point_range=(-16, -16, -4, 16, 16, 4)).eval()
    gen = torch.Generator().manual_seed(2)
    scale = torch.tensor([32.0, 32.0, 8.0, 1.0])
    shift = torch.tensor([16.0, 16.0, 4.0, 0.0])
    a = torch.rand(3000, 4, generator=gen) * scale - shift
    b = torch.rand(2000, 4, generator=gen) * scale - shift
    offsets = torch.tensor([3000, 5000])
    with torch.no_grad():
        first = model(torch.cat([a, b]), offsets)
        second = model(torch.cat([a, b.flip(0) * 0.7]), offsets)
        again = model(torch.cat([a, b]), offsets)
    # sample 0 agrees to float rounding (matrix products change shape with sample 1);
    # sample 1 changes (tolerances relative to the maps' scale: untrained weights)
    scale = float(first.bev.abs().max())
    assert scale > 0
    torch.testing.assert_close(first.bev[0], second.bev[0], rtol=1e-4, atol=1e-5 * scale)
    assert float((first.bev[1] - second.bev[1]).abs().max()) > 1e-2 * scale
    assert torch.equal(first.bev, again.bev)
