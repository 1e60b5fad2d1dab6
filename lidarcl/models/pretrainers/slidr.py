"""SLidR (Sautier et al., "Image-to-Lidar Self-Supervised Distillation for Autonomous Driving
Data", CVPR 2022): superpixel-driven distillation of a frozen image encoder into the 3D
backbone.

Per batch (Sec. 3):

1. the 3D backbone's per-point features, L2-normalised (``f_p``, 64-d);
2. the frozen image encoder with its trained 1x1 head, upsampled to pixel resolution and
   L2-normalised (``g_x``; :class:`~lidarcl.models.image.ImageTeacher`, a MoCo v2 ResNet-50
   with dilated strides in the paper);
3. both averaged per superpixel ``s`` of each camera image (SLIC, 150 segments): the points
   that project into the image (depth > 1 m, inside the image) by the superpixel of their
   pixel (``lidarcl.ops.project_pool``), the pixels by their own (``region_pool``);
   superpixels of different images and samples are different regions;
4. superpixels that no point reaches are dropped, and the loss is InfoNCE with tau = 0.07
   from the 3D means (anchors) to the 2D means (positive: the same superpixel; negatives:
   every other superpixel of the batch), the means not normalised again (Eq. 2;
   :class:`~lidarcl.models.losses.RegionContrastLoss`).

Departures, each small and deliberate: a point's pixel is ``floor(u), floor(v)`` (SLidR
rounds); points outside the voxel grid are left out of the pooling (SLidR pools voxels, which
all lie inside it); an empty superpixel is one with no point (SLidR tests the first feature
channel for zero, which agrees except when a mean is exactly zero there). The paper's
cylindrical voxels are a backbone option, not part of the method, and its 3D input is the
intensity alone (1 channel); lidarcl's configs feed x, y, z and intensity (4 channels), as
every other method's configs do.

The released optimiser (valeoai/SLidR ``config/slidr_minkunet.yaml``): SGD lr 0.5, momentum
0.9, dampening 0.1, weight decay 1e-4, cosine schedule, 50 epochs, batch 4 on one GPU; the
nuScenes config carries it.
"""
from __future__ import annotations

import torch

from lidarcl.models.pretrainers.camera import CameraPretrainer, pixel_regions, stack_cameras
from lidarcl.ops import project_points_batched, project_pool, region_pool, visibility
from lidarcl.ops.pooling import RegionPoolResult, superpixel_pairs
from lidarcl.ops.projection import BatchedProjectionResult
from lidarcl.registry import MODELS

__all__ = ["SLidR"]


@MODELS.register_module()
class SLidR(CameraPretrainer):
    """SLidR (module doc).

    Args:
        backbone: the 3D backbone config.
        image_teacher: :class:`~lidarcl.models.image.ImageTeacher` config (frozen encoder,
            trained head to the 3D width).
        head_channels: a Linear head on the 3D features (``None``: the backbone's own width,
            which must equal the teacher's).
        loss: the pairwise loss of :class:`RegionContrastLoss` (default InfoNCE, tau 0.07,
            means not normalised again).
        num_superpixels: ids per image ``S`` (ids ``0 .. S-1``); ``None`` takes the batch's
            largest id + 1.
        min_depth: a point pairs with a pixel only farther than this in front of the camera.
        occlusion: occlusion-aware pairing, ``dict(window=1, depth_tolerance=0.3)``: a point
            hidden behind nearer points of its camera (``lidarcl.ops.visibility``, a depth
            buffer of the projected points) pairs with no pixel there; ``None`` (SLidR) pairs
            every projected point.
    """

    def __init__(self, backbone: dict, image_teacher: dict, head_channels: int | None = None,
                 loss: dict | None = None, num_superpixels: int | None = None,
                 min_depth: float = 1.0, occlusion: dict | None = None, **kwargs):
        super().__init__(backbone, image_teacher, head_channels, **kwargs)
        self.loss_superpixel = MODELS.build(dict(type="RegionContrastLoss", loss=loss))
        self.num_superpixels = num_superpixels
        self.min_depth = float(min_depth)
        self.occlusion = None if occlusion is None else dict(occlusion)

    def superpixel_count(self, superpixels: torch.Tensor) -> int:
        if self.num_superpixels is not None:
            return int(self.num_superpixels)
        return int(superpixels.max()) + 1 if superpixels.numel() else 1

    def pool_points(self, features, rows, batch, lidar2img, image_hw, superpixels, count,
                    shared_across_cameras: bool = False) -> RegionPoolResult:
        """Mean 3D feature per superpixel over the points that project into it."""
        points = batch["points"][rows]
        sizes = torch.bincount(batch["batch_idx"][rows], minlength=len(batch["offsets"]))
        offsets = torch.cumsum(sizes, 0)
        cams = lidar2img.shape[1]
        if self.occlusion is not None:
            proj = project_points_batched(points[:, :3], offsets, lidar2img, image_hw,
                                          min_depth=self.min_depth)
            visible = visibility(proj, image_hw, **self.occlusion)
            proj = BatchedProjectionResult(*(field[visible] for field in proj))
            pair_point, region = superpixel_pairs(proj, superpixels, count, cams)
        else:
            pooled = project_pool(points[:, :3], offsets, lidar2img, image_hw, superpixels,
                                  count, features, min_depth=self.min_depth)
            if not shared_across_cameras:
                return RegionPoolResult(pooled.features, pooled.counts)
            pair_point, region = pooled.pair_point, pooled.pair_region
        if shared_across_cameras:
            # regions (b * K + k) * S + s -> b * S + s: one id across the sample's cameras
            region = (region // (cams * count)) * count + region % count
            return region_pool(features[pair_point], region, lidar2img.shape[0] * count)
        return region_pool(features[pair_point], region, lidar2img.shape[0] * cams * count)

    def superpixel_loss(self, features, rows, batch, pixels, superpixels, lidar2img,
                        image_hw) -> torch.Tensor:
        """Eq. 2 from unit-length point features (of ``batch["points"][rows]``) and pixel
        features ``(B * K, C, H, W)``."""
        count = self.superpixel_count(superpixels)
        point_pooled = self.pool_points(features, rows, batch, lidar2img, image_hw,
                                        superpixels, count)
        pixel_pooled = region_pool(pixels.permute(0, 2, 3, 1).reshape(-1, pixels.shape[1]),
                                   pixel_regions(superpixels, count),
                                   superpixels.shape[0] * superpixels.shape[1] * count)
        return self.loss_superpixel(point_pooled, pixel_pooled)

    def loss(self, batch: dict) -> dict:
        images, superpixels, lidar2img, image_hw = stack_cameras(batch)
        features, rows = self.point_features(batch)
        pixels = self.teacher(images.flatten(0, 1))  # (B*K, C, H, W), unit length
        return {"loss_superpixel": self.superpixel_loss(features, rows, batch, pixels,
                                                        superpixels, lidar2img, image_hw)}
