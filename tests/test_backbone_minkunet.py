"""Sparse residual U-Net (lidarcl/models/backbones/minkunet.py) on spconv's CPU path: the
real nuScenes frame and a generated-like batch, gradients, point-order invariance, sample
independence, state_dict round trip. Inputs stay at a few thousand voxels (spconv's CPU
convolutions are slow)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lidarcl.models.backbones import MinkUNet18, MinkUNet34
from conftest import REAL_DATA
from lidarcl.registry import MODELS


@pytest.fixture(scope="module")
def real_points():
    path = REAL_DATA.nuscenes_lidar_file()  # a keyframe of any nuScenes copy (conftest)
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, 5)
    near = np.linalg.norm(pts[:, :2], axis=1) < 20  # a few thousand voxels at 0.4 m
    return torch.from_numpy(pts[near].copy())


def small_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(1500, 4, generator=gen) * torch.tensor([8.0, 8.0, 2.0, 1.0])
    b = torch.rand(1000, 4, generator=gen) * torch.tensor([6.0, 6.0, 2.0, 1.0])
    return torch.cat([a, b]), torch.tensor([1500, 2500])


def test_real_frame_forward_backward_every_parameter(real_points):
    torch.manual_seed(0)
    model = MODELS.build(dict(type="MinkUNet34", in_channels=4, out_channels=16,
                              voxel_size=0.4))
    out = model(real_points, torch.tensor([len(real_points)]))
    assert out.point_features.shape == (len(real_points), 16)
    assert 1000 < len(out.voxels.coords) < 6000
    assert torch.isfinite(out.point_features).all()
    out.point_features.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None
               or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert all(float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_point_order_invariance_is_exact():
    torch.manual_seed(1)
    model = MinkUNet18(in_channels=4, out_channels=8, voxel_size=0.3).eval()
    points, offsets = small_batch()
    gen = torch.Generator().manual_seed(2)
    perm = torch.cat([torch.randperm(1500, generator=gen),
                      1500 + torch.randperm(1000, generator=gen)])
    with torch.no_grad():
        a = model(points, offsets).point_features
        b = model(points[perm], offsets).point_features
    assert torch.equal(a[perm], b)


def test_samples_are_independent_and_eval_is_deterministic():
    torch.manual_seed(3)
    model = MinkUNet18(in_channels=4, out_channels=8, voxel_size=0.3).eval()
    points, offsets = small_batch()
    changed = points.clone()
    changed[1500:, :2] = changed[1500:, :2] * 0.5 + 1.0  # move sample 1's points
    with torch.no_grad():
        first = model(points, offsets)
        second = model(changed, offsets)
        again = model(points, offsets).point_features
    a, b = first.point_features, second.point_features
    # sample 0 keeps its voxels; its features agree to float rounding (the convolutions'
    # matrix products change shape with the other sample, and BLAS sums in blocks)
    keep0 = first.voxels.coords[:, 0] == 0
    assert torch.equal(first.voxels.coords[keep0], second.voxels.coords[
        second.voxels.coords[:, 0] == 0])
    torch.testing.assert_close(a[:1500], b[:1500], rtol=1e-5, atol=1e-6)
    assert (a[1500:] - b[1500:]).abs().max() > 1e-3
    assert torch.equal(a, again)


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(4)
    model = MinkUNet18(in_channels=4, out_channels=8, voxel_size=0.3)
    points, offsets = small_batch(5)
    model.train()
    model(points, offsets)  # moves the BN running statistics
    model.eval()
    torch.save(model.state_dict(), tmp_path / "m.pth")
    other = MinkUNet18(in_channels=4, out_channels=8, voxel_size=0.3)
    other.load_state_dict(torch.load(tmp_path / "m.pth"))
    other.eval()
    with torch.no_grad():
        assert torch.equal(model(points, offsets).point_features,
                           other(points, offsets).point_features)


def test_presets_differ_only_in_depth():
    deep, shallow = MinkUNet34(), MinkUNet18()
    assert [len(s) for s in deep.down_blocks] == [2, 3, 4, 6]
    assert [len(s) for s in shallow.down_blocks] == [2, 2, 2, 2]
    assert [len(s) for s in deep.up_blocks] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="8 entries"):
        MODELS.build(dict(type="MinkUNet", layers=(2, 2)))


def test_parameter_counts_match_the_minkunet_layer_plan():
    """MinkowskiEngine's MinkUNet18 / MinkUNet34 (examples/minkunet.py: MinkUNetBase with
    BasicBlock, INIT_DIM 32, PLANES (32, 64, 128, 256, 256, 128, 96, 96)) counted by hand:
    conv weights k^3 * in * out without bias, BN 2 per channel, 1x1 shortcut + BN where a
    block changes width, Linear head. 4 input columns, 64 output channels."""
    def block(cin, c):
        return 27 * cin * c + 27 * c * c + 4 * c + (cin * c + 2 * c if cin != c else 0)

    def count(layers, cin=4, cout=64):
        planes = (32, 64, 128, 256, 256, 128, 96, 96)
        total = 125 * cin * 32 + 2 * 32                        # stem k=5
        widths, c = [32], 32
        for i in range(4):                                      # down: k=2 s=2, blocks
            total += 8 * c * c + 2 * c
            total += block(c, planes[i]) + (layers[i] - 1) * block(planes[i], planes[i])
            c = planes[i]
            widths.append(c)
        for j in range(4):                                      # up: inverse k=2, concat
            p = planes[4 + j]
            total += 8 * c * p + 2 * p
            total += block(p + widths[3 - j], p) + (layers[4 + j] - 1) * block(p, p)
            c = p
        return total + c * cout + cout                           # head

    assert count((2, 2, 2, 2, 2, 2, 2, 2)) == 21_712_512
    assert count((2, 3, 4, 6, 2, 2, 2, 2)) == 37_864_320
    for cls, layers in ((MinkUNet18, (2,) * 8), (MinkUNet34, (2, 3, 4, 6, 2, 2, 2, 2))):
        model = cls(in_channels=4, out_channels=64)
        assert sum(p.numel() for p in model.parameters()) == count(layers)
