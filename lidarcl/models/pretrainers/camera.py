"""What the camera-LiDAR pretrainers share (SLidR, SuperFlow, ScaLR): the frozen image
teacher with its trained head, the 3D features of the points inside the voxel grid through
a head to the teacher's width, and the batch's cameras stacked for ``lidarcl.ops``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lidarcl.models.pretrainers.base import Pretrainer, projection_head
from lidarcl.registry import MODELS

__all__ = ["CameraPretrainer", "stack_cameras", "pixel_regions"]


def stack_cameras(batch: dict, with_superpixels: bool = True):
    """``(images (B, K, 3, H, W) float in [0, 1] (uint8 or 0..255 floats are scaled), superpixels (B, K, H, W) int64 or None,
    lidar2img (B, K, 4, 4), image_hw (B, K, 2))`` of a collated batch; every sample must
    have the same number of cameras of one size (the image transforms make it so)."""
    keys = ("images", "lidar2img", "img_shape") + (("superpixels",) if with_superpixels else ())
    for key in keys:
        if batch.get(key) is None or any(v is None for v in batch[key]):
            raise KeyError(f"the batch has no {key!r}: the pipeline needs LoadImages"
                           f"{', LoadSuperpixels' if key == 'superpixels' else ''} and "
                           "PackSample keeping it")
    try:
        images = torch.stack([torch.as_tensor(v) for v in batch["images"]])
        superpixels = torch.stack([torch.as_tensor(v) for v in batch["superpixels"]]) \
            .to(torch.int64) if with_superpixels else None
    except (RuntimeError, TypeError) as exc:
        raise ValueError("the samples' images differ in number or size; resize or crop them "
                         "to one size (ResizeImages / RandomResizedCropImages) and keep the "
                         "same number of cameras (SelectCameras)") from exc
    # LoadImages' values are 0..255 (uint8, or float32 with to_float=True): to [0, 1]. Not
    # guessed from the values: a dark float image would pass for one already scaled
    images = images.float() / 255.0
    lidar2img = torch.stack([torch.as_tensor(v) for v in batch["lidar2img"]])
    image_hw = torch.stack([torch.as_tensor(v) for v in batch["img_shape"]])
    return images, superpixels, lidar2img, image_hw


def pixel_regions(superpixels: torch.Tensor, num_superpixels: int,
                  shared_across_cameras: bool = False) -> torch.Tensor:
    """Region id of every pixel of ``(B, K, H, W)`` maps, flattened like ``(B, K, H, W)``:
    ``(b * K + k) * S + s`` (every image its own superpixels, SLidR), or ``b * S + s`` with
    ``shared_across_cameras`` (SuperFlow's view-consistent ids); ``-1`` stays -1."""
    batch, cams = superpixels.shape[:2]
    if shared_across_cameras:
        base = torch.arange(batch, device=superpixels.device).view(batch, 1, 1, 1) \
            * num_superpixels
    else:
        base = torch.arange(batch * cams, device=superpixels.device).view(batch, cams, 1, 1) \
            * num_superpixels
    return torch.where(superpixels >= 0, superpixels + base, superpixels).reshape(-1)



class CameraPretrainer(Pretrainer):
    """Base of the camera-LiDAR methods: ``teacher`` (an ``ImageTeacher`` config) and
    ``head``: a Linear from the backbone's width to ``head_channels`` (``"teacher"``: the
    teacher's width), or none; the teacher's output width must equal the 3D side's."""

    def __init__(self, backbone: dict, image_teacher: dict,
                 head_channels: int | str | None = None, **kwargs):
        super().__init__(backbone, **kwargs)
        self.teacher = MODELS.build(image_teacher)
        if head_channels == "teacher":
            head_channels = self.teacher.out_channels
        self.head = projection_head(self.feature_channels, head_channels)
        width = head_channels or self.feature_channels
        if self.teacher.out_channels != width:
            raise ValueError(f"the image teacher gives {self.teacher.out_channels} channels "
                             f"but the 3D side {width}: set image_teacher.head={width} or "
                             f"head_channels={self.teacher.out_channels}")

    def point_features(self, batch: dict, normalize: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """3D features (unit length unless ``normalize=False``) of the points inside the
        voxel grid after the head, and their rows of ``batch["points"]``."""
        output = self.backbone(batch["points"], batch["offsets"])
        rows = torch.nonzero(output.voxels.point_to_voxel >= 0, as_tuple=True)[0]
        features = self.head(output.point_features[rows])
        return (F.normalize(features, dim=1) if normalize else features), rows
