"""Voxelisation (lidarcl/ops/voxelize.py) against spconv's own PointToVoxel, a hand-made
case and a per-voxel loop, on the real nuScenes frame and random batches."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import REAL_DATA
from lidarcl.ops.voxelize import to_voxel_space, voxelize


@pytest.fixture(scope="module")
def real_points():
    path = REAL_DATA.nuscenes_lidar_file()  # a keyframe of any nuScenes copy (conftest)
    return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(-1, 5).copy())


def test_hand_made_case():
    points = torch.tensor([[0.05, 0.05, 0.05, 1.0], [0.09, 0.01, 0.02, 3.0],  # voxel (0,0,0)
                           [0.15, 0.05, 0.05, 5.0],                          # voxel x=1
                           [0.05, 0.05, 0.25, 7.0],                          # voxel z=2
                           [0.05, 0.05, 0.05, 9.0],                          # sample 1
                           [5.0, 5.0, 5.0, 0.0]])                            # out of range
    vox = voxelize(points, torch.tensor([4, 6]), 0.1, [0, 0, 0, 0.3, 0.3, 0.3])
    assert vox.spatial_shape == (3, 3, 3) and vox.batch_size == 2
    assert vox.coords.is_contiguous()  # spconv reads the raw buffer (tests/test_spconv_cpu.py)
    assert vox.coords.tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 2, 0, 0], [1, 0, 0, 0]]
    assert vox.counts.tolist() == [2, 1, 1, 1]
    assert vox.point_to_voxel.tolist() == [0, 0, 1, 2, 3, -1]
    torch.testing.assert_close(vox.features[:, 3], torch.tensor([2.0, 5.0, 7.0, 9.0]))
    back = vox.point_features(vox.features[:, 3:4], fill=-1.0)
    assert back[:, 0].tolist() == [2.0, 2.0, 5.0, 7.0, 9.0, -1.0]


@pytest.mark.parametrize("size", [0.1, 0.25])
def test_matches_spconv_point_to_voxel_on_the_real_frame(real_points, size):
    """Same voxels and, for voxels under spconv's per-voxel cap, the same mean features."""
    from spconv.pytorch.utils import PointToVoxel

    rng = [-50.0, -50.0, -5.0, 50.0, 50.0, 3.0]
    vox = voxelize(real_points, torch.tensor([len(real_points)]), size, rng)
    gen = PointToVoxel(vsize_xyz=[size] * 3, coors_range_xyz=rng, num_point_features=5,
                       max_num_voxels=200000, max_num_points_per_voxel=64)
    voxels, indices, num, _ = gen.generate_voxel_with_id(real_points, empty_mean=True)
    assert len(indices) == len(vox.coords) > 5000
    # spconv lists voxels in order of first appearance: compare by coordinates
    ours = {tuple(c[1:].tolist()): i for i, c in enumerate(vox.coords)}
    compared = 0
    for j in range(0, len(indices), 7):
        i = ours[tuple(indices[j].tolist())]
        if int(num[j]) == 64:  # spconv's cap: it dropped points, we keep them all
            assert int(vox.counts[i]) >= 64
            continue
        assert int(vox.counts[i]) == int(num[j])
        torch.testing.assert_close(vox.features[i], voxels[j, : num[j]].mean(0))
        compared += 1
    assert compared > 500


def test_order_invariance_batch_independence_and_loop_reference():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 4, generator=gen) * 10
    b = torch.randn(2000, 4, generator=gen) * 10
    pts = torch.cat([a, b])
    offsets = torch.tensor([3000, 5000])
    rng = [-20, -20, -20, 20, 20, 20]
    vox = voxelize(pts, offsets, 0.7, rng)
    perm = torch.cat([torch.randperm(3000, generator=gen),
                      3000 + torch.randperm(2000, generator=gen)])
    shuffled = voxelize(pts[perm], offsets, 0.7, rng)
    assert torch.equal(vox.coords, shuffled.coords)
    assert torch.equal(vox.features, shuffled.features)  # bit-identical (canonical order)
    # coarse voxels (many points each): input-order pooling is not bit-stable, canonical is
    coarse = [voxelize(p, offsets, 5.0, rng, canonical=c) for p in (pts, pts[perm])
              for c in (False, True)]
    assert not torch.equal(coarse[0].features, coarse[2].features)
    assert torch.equal(coarse[1].features, coarse[3].features)
    # gradients reach every in-range point through the canonical pooling
    feats = pts.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(voxelize(pts, offsets, 0.7, rng, features=feats)
                                  .features.sum(), feats)
    inside = vox.point_to_voxel >= 0
    assert (grad[inside] > 0).all() and (grad[~inside] == 0).all()
    assert torch.equal(vox.point_to_voxel[perm], shuffled.point_to_voxel)
    # sample 0's voxels do not change when sample 1 does
    other = voxelize(torch.cat([a, b * 0.5]), offsets, 0.7, rng)
    first = vox.coords[:, 0] == 0
    assert torch.equal(other.coords[other.coords[:, 0] == 0], vox.coords[first])
    torch.testing.assert_close(other.features[other.coords[:, 0] == 0], vox.features[first])
    # loop reference: every voxel's mean over the points that map to it, cells by floor
    for v in range(0, len(vox.coords), 97):
        members = (vox.point_to_voxel == v).nonzero().flatten()
        torch.testing.assert_close(vox.features[v], pts[members].mean(0))
        cell = torch.floor((pts[members, :3].double() + 20) / 0.7).long()
        assert (cell == cell[0]).all()
        bz, z, y, x = vox.coords[v].tolist()
        assert cell[0].tolist() == [x, y, z] and bz == int(members[0] >= 3000)


def test_cylindrical_grid():
    pts = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.5], [-3.0, -0.0001, 0.0],
                        [math.cos(3.0) * 4, math.sin(3.0) * 4, 0.0]])
    space = to_voxel_space(pts[:, :3].double(), "cylindrical")
    torch.testing.assert_close(space[:, 0], torch.tensor([1.0, 2.0, 3.0, 4.0],
                                                         dtype=torch.float64), atol=1e-4,
                               rtol=0)
    assert (space[:, 1] >= -math.pi).all() and (space[:, 1] < math.pi).all()
    deg = math.pi / 180
    vox = voxelize(pts, torch.tensor([4]), (0.5, deg, 0.5), mode="cylindrical")
    assert vox.spatial_shape[1] == 360  # phi over [-pi, pi) in 1-degree cells
    rho_cell = vox.coords[vox.point_to_voxel, 3]
    phi_cell = vox.coords[vox.point_to_voxel, 2]
    assert rho_cell.tolist() == [2, 4, 6, 8]
    expected_phi = torch.floor((space[:, 1] + math.pi) / deg).long()
    assert phi_cell.long().tolist() == expected_phi.tolist()


def test_validation():
    pts = torch.rand(10, 3)
    with pytest.raises(ValueError, match="voxel_size"):
        voxelize(pts, torch.tensor([10]), -0.1)
    with pytest.raises(ValueError, match="mode"):
        voxelize(pts, torch.tensor([10]), 0.1, mode="spherical")
    with pytest.raises(ValueError, match="point_range"):
        voxelize(pts, torch.tensor([10]), 0.1, [0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="hi > lo"):
        voxelize(pts, torch.tensor([10]), 0.1, [0, 0, 0, 1, 1, 0])
    with pytest.raises(ValueError, match="features"):
        voxelize(pts, torch.tensor([10]), 0.1, features=torch.rand(9, 2))
    with pytest.raises(ValueError, match="offsets"):
        voxelize(pts, torch.tensor([9]), 0.1)
    empty = voxelize(torch.zeros(0, 3), torch.tensor([0]), 0.1)
    assert empty.coords.shape == (0, 4) and empty.point_to_voxel.numel() == 0
