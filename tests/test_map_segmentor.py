"""BEV map segmentation model (BEVFusion's map head on the LiDAR BEV features): the
resampling grid's orientation against a map of known coordinates, the focal loss against a
hand computation, the map labels of an augmented sample against the un-augmented ones, and a
training step, prediction and the metric end to end on the generated data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lidarcl.models.detectors.map_head import bev_sampling_grid, sigmoid_focal_loss


def test_sampling_grid_reads_the_right_cells():
    """An input map (rows along y, columns along x, 0.8 m cells over +-51.2 m) holding each
    cell centre's x in channel 0 and y in channel 1: the resampled output at (i, j) holds
    (x_i, y_j) = (-49.75 + 0.5 i, -49.75 + 0.5 j) (bilinear is exact on a linear map)."""
    point_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
    centres = -51.2 + 0.8 * (torch.arange(128, dtype=torch.float64) + 0.5)
    feat = torch.stack([centres[None, :].expand(128, 128), centres[:, None].expand(128, 128)])
    grid = bev_sampling_grid(point_range, (-50, 50, 0.5), (-50, 50, 0.5))
    assert grid.shape == (200, 200, 2)
    out = F.grid_sample(feat[None].float(), grid[None], mode="bilinear", align_corners=False)[0]
    expect = -49.75 + 0.5 * torch.arange(200, dtype=torch.float32)
    torch.testing.assert_close(out[0], expect[:, None].expand(200, 200), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1], expect[None, :].expand(200, 200), atol=1e-4, rtol=0)


def test_sigmoid_focal_loss_hand_case():
    logits = torch.tensor([0.0, 2.0])
    target = torch.tensor([1.0, 0.0])
    p = 1 / (1 + math.exp(-2.0))
    first = math.log(2) * 0.5 ** 2                  # p = 0.5, p_t = 0.5
    second = -math.log(1 - p) * p ** 2              # t = 0: ce = -log(1 - p), 1 - p_t = p
    assert float(sigmoid_focal_loss(logits, target)) == pytest.approx((first + second) / 2)
    alpha = 0.25
    weighted = (alpha * first + (1 - alpha) * second) / 2
    assert float(sigmoid_focal_loss(logits, target, alpha=alpha)) == pytest.approx(weighted)


def _dataset(root, pipeline):
    from lidarcl.registry import DATASETS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    return DATASETS.build(dict(type="NuScenesDataset", data_root=root,
                               ann_file=f"{root}/nuscenes_infos_train.json",
                               pipeline=pipeline, filter_empty_gt=False))


XB = (-25.0, 25.0, 0.5)


def test_map_labels_follow_the_augmentation(tiny_dataset):
    """A sample rotated by 90 degrees about z gets the un-rotated sample's labels turned by
    90 degrees (the grid is half a cell off-centre, so up to one cell row differs)."""
    plain = _dataset(tiny_dataset, [dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
                                    dict(type="LoadBEVMapMask", xbound=XB, ybound=XB)])
    rotated = _dataset(tiny_dataset, [
        dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
        dict(type="GlobalRotScaleTrans", rot_range=[math.pi / 2, math.pi / 2],
             scale_range=[1.0, 1.0], translation_std=[0, 0, 0]),
        dict(type="LoadBEVMapMask", xbound=XB, ybound=XB)])
    a, b = plain[0]["gt_masks_bev"], rotated[0]["gt_masks_bev"]
    assert a.shape == (6, 100, 100) and a.dtype == bool
    assert a[0].mean() > 0.05  # some drivable area around the ego
    # rotating the frame by +90 degrees: a point at (x, y) moves to (-y, x), so the
    # augmented mask at (i', j') = (-y, x) holds the original at (x, y)
    expect = np.rot90(a, k=1, axes=(1, 2))
    agree = (b[:, 1:, :] == expect[:, :-1, :]).mean()
    assert agree > 0.98


def test_map_segmentor_train_step_predict_and_metric(tiny_dataset):
    from lidarcl.datasets.collate import collate_samples
    from lidarcl.evaluation.bev_map_metric import BEVMapMetric
    from lidarcl.registry import MODELS

    pipeline = [dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
                dict(type="PointsRangeFilter", point_cloud_range=[-25.6, -25.6, -5, 25.6,
                                                                  25.6, 3]),
                dict(type="LoadBEVMapMask", xbound=XB, ybound=XB),
                dict(type="PackSample", keys=["points", "gt_masks_bev"])]
    data = _dataset(tiny_dataset, pipeline)
    batch = collate_samples([data[0], data[1]])
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type="BEVMapSegmentor",
        backbone=dict(type="VoxelBackBone8x", in_channels=4, voxel_size=[0.4, 0.4, 0.2],
                      point_range=[-25.6, -25.6, -5.0, 25.6, 25.6, 3.0]),
        bev_backbone=dict(type="SECONDBEVBackbone", layer_nums=[1, 1], layer_strides=[1, 2],
                          num_filters=[16, 32], upsample_strides=[1, 2],
                          num_upsample_filters=[16, 16]),
        head=dict(type="BEVMapHead", classes=["drivable_area", "ped_crossing", "walkway",
                                              "stop_line", "carpark_area", "divider"],
                  xbound=XB, ybound=XB)))
    model.train()
    losses = model(mode="loss", **batch)
    assert len(losses) == 6 and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert float(model.backbone.conv_input[0].weight.grad.abs().sum()) > 0
    model.eval()
    preds = model(mode="predict", **batch)
    assert preds[0].probs.shape == (6, 100, 100) and preds[0].target.dtype == torch.bool
    metric = BEVMapMetric()
    metric.process(batch, preds)
    result = metric.compute_metrics(metric.results)
    assert 0 <= result["mIoU@max"] <= 100 and "divider@0.35" in result
    # the metric of a perfect prediction: 100 for every class that is present
    perfect = [type(p)(p.target.float(), p.target, p.meta) for p in preds]
    metric = BEVMapMetric()
    metric.process(batch, perfect)
    result = metric.compute_metrics(metric.results)
    assert result["drivable_area@max"] == pytest.approx(100, abs=1e-4)
