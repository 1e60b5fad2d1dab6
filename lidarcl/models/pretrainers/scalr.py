"""ScaLR-style distillation (Puy et al., "Three Pillars improving Vision Foundation Model
Distillation for Lidar", CVPR 2024): the 3D backbone, through a linear head to the
teacher's width, regresses the frozen image teacher's feature at the pixel each point lands
on, with no negatives and no superpixels:

    L = 1/|P| sum_{(p, x) in P} || f_p / |f_p| - g_x / |g_x| ||_2

over the point-pixel pairs ``P`` of the batch (depth > 1 m, inside the image;
:class:`~lidarcl.models.losses.PointPixelDistillLoss`). The teacher's feature is the last
block of a frozen DINOv2 ViT before its final norm (ViT-L/14 in the paper, images 224 x 448)
with no trained head (``ImageTeacher(head=None)``).

Departures: the teacher map is read bilinearly at each point's pixel
(``lidarcl.ops.gather_pixel_features``, pixel-centre convention) instead of upsampling it
x14 with ``align_corners=True`` and indexing the pixel; the two differ by the bilinear
weights' alignment within a 14-pixel cell. A point seen by two cameras gives two pairs.
ScaLR trains on one random camera per scan and the points it sees (``SelectCameras(num=1)``
and ``PointsInCameraFOV`` in the configs). The paper's schedule: AdamW lr 2e-3, weight
decay 0.03, 3,500 warm-up iterations, cosine decay to 1e-5, batch 8, 25 epochs (on the
merged nuScenes, SemanticKITTI and Pandar sets); its WaffleIron backbone is not in lidarcl.
"""
from __future__ import annotations

import torch

from lidarcl.models.pretrainers.camera import CameraPretrainer, stack_cameras
from lidarcl.ops import gather_pixel_features, project_points_batched
from lidarcl.registry import MODELS

__all__ = ["ScaLR"]


@MODELS.register_module()
class ScaLR(CameraPretrainer):
    """ScaLR-style distillation (module doc). The 3D head maps to the teacher's width;
    the teacher has no head of its own (``image_teacher.head=None``): with no negatives, a
    trained head on the target side could collapse onto the 3D features."""

    def __init__(self, backbone: dict, image_teacher: dict, loss: dict | None = None,
                 min_depth: float = 1.0, **kwargs):
        if image_teacher.get("head", 64) is not None:
            raise ValueError("ScaLR distils the frozen teacher's own features: set "
                             "image_teacher.head=None")
        kwargs.setdefault("head_channels", "teacher")
        super().__init__(backbone, image_teacher, **kwargs)
        self.loss_distill = MODELS.build(loss or dict(type="PointPixelDistillLoss"))
        self.min_depth = float(min_depth)

    def pairs(self, batch: dict, rows: torch.Tensor, lidar2img, image_hw):
        """Point-pixel pairs of the points ``batch["points"][rows]``: ``(pair rows into
        rows, flat image index b * K + k, uv)``."""
        sizes = torch.bincount(batch["batch_idx"][rows], minlength=len(batch["offsets"]))
        proj = project_points_batched(batch["points"][rows][:, :3], torch.cumsum(sizes, 0),
                                      lidar2img, image_hw, min_depth=self.min_depth)
        image = proj.batch_index * lidar2img.shape[1] + proj.camera_index
        return proj.point_index, image, proj.uv

    def loss(self, batch: dict) -> dict:
        images, _, lidar2img, image_hw = stack_cameras(batch, with_superpixels=False)
        features, rows = self.point_features(batch, normalize=False)
        pair_point, pair_image, uv = self.pairs(batch, rows, lidar2img, image_hw)
        with torch.no_grad():
            teacher = self.teacher.encode(images.flatten(0, 1))  # (B*K, D, H/s, W/s)
            target = gather_pixel_features(teacher, pair_image, uv.to(teacher.dtype),
                                           stride=self.teacher.stride)
        return {"loss_distill": self.loss_distill(features[pair_point], target)}
