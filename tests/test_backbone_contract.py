"""The contract every registered backbone keeps (lidarcl/models/backbones): the same
``(points, offsets)`` batch in, a :class:`BackboneOutput` out with one feature row per input
point, and on a generated batch of two samples every parameter receives a finite, non-zero
gradient. Small settings: spconv's CPU convolutions are slow."""
from __future__ import annotations

import pytest
import torch

from lidarcl.models.backbones import BackboneOutput
from lidarcl.registry import MODELS

CONFIGS = {
    "MinkUNet18": dict(type="MinkUNet18", in_channels=4, out_channels=8, voxel_size=0.3),
    "MinkUNet34": dict(type="MinkUNet34", in_channels=4, out_channels=8, voxel_size=0.3),
    "VoxelBackBone8x": dict(type="VoxelBackBone8x", in_channels=4,
                            voxel_size=(0.2, 0.2, 0.2), point_range=(-8, -8, -4, 8, 8, 4)),
    "VoxelResBackBone8x": dict(type="VoxelResBackBone8x", in_channels=4,
                               voxel_size=(0.2, 0.2, 0.2), point_range=(-8, -8, -4, 8, 8, 4)),
    "PointTransformerV3": dict(type="PointTransformerV3", in_channels=4, out_channels=8,
                               voxel_size=0.3, enc_patch_size=(128,) * 5,
                               dec_patch_size=(128,) * 4),
}


def generated_batch(seed=0):
    """Two scans of different sizes: a ground plane plus box-shaped clusters."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for n in (2500, 1700):
        ground = torch.rand(n // 2, 3, generator=gen) * torch.tensor([14.0, 14.0, 0.1]) \
            - torch.tensor([7.0, 7.0, 1.6])
        centres = torch.rand(6, 3, generator=gen) * torch.tensor([10.0, 10.0, 0.5]) \
            - torch.tensor([5.0, 5.0, 1.0])
        pick = torch.randint(0, 6, (n - n // 2,), generator=gen)
        objects = centres[pick] + torch.rand(n - n // 2, 3, generator=gen) * 1.5
        xyz = torch.cat([ground, objects])
        samples.append(torch.cat([xyz, torch.rand(n, 1, generator=gen)], 1))
    points = torch.cat(samples)
    return points, torch.tensor([2500, 4200])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_generated_two_sample_batch_gradients_and_output_contract(name):
    torch.manual_seed(0)
    model = MODELS.build(CONFIGS[name])
    points, offsets = generated_batch()
    out = model(points, offsets)
    assert isinstance(out, BackboneOutput)
    assert out.point_features.shape[0] == len(points)
    assert out.voxel_features.shape[0] == len(out.voxels.coords)
    assert out.voxels.batch_size == 2
    assert set(out.voxels.coords[:, 0].tolist()) == {0, 1}
    target = out.bev if out.bev is not None else out.point_features
    assert torch.isfinite(target).all()
    target.square().mean().backward()
    bad = [n for n, p in model.named_parameters()
           if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not bad, bad


def test_second_encoders_reject_a_grid_too_thin_for_8x():
    with pytest.raises(ValueError, match="too thin"):
        MODELS.build(dict(type="VoxelBackBone8x", voxel_size=(0.2, 0.2, 0.2),
                          point_range=(-8, -8, -2, 8, 8, 2)))
    assert MODELS.build(dict(type="VoxelBackBone8x")).bev_height() == 2  # nuScenes: 41 cells
