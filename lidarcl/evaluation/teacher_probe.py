"""Linear probe of a frozen image teacher at the point-pixel pairs: how much of the 3D
classes the teacher's pixel features carry, before any distillation.

A camera-LiDAR pretrainer (SLidR, SuperFlow, ScaLR) can only pass on what its teacher's
features separate. This probe measures it on the same labels and metric as the 3D linear
probe (:mod:`lidarcl.evaluation.linear_probe`):

1. every labelled point of a scan is projected into the scan's cameras
   (``lidarcl.ops.project_points_batched``, depth > ``min_depth``); a point seen by several
   cameras keeps its pair with the lowest camera index, a point seen by none is left out;
2. its feature is the teacher's encoder map (no head: the frozen part) read bilinearly at
   the pixel (``lidarcl.ops.gather_pixel_features``), scaled to unit length;
3. a linear classifier is trained on up to ``points_per_scan`` such points per training
   scan (the cached protocol: AdamW lr 1e-2, 30 epochs, :func:`train_linear_head`) and
   scored by mIoU over every camera-visible labelled point of the validation scans.

The score covers the points some camera sees, not the whole scan: compare teachers with
each other on it, not with the 3D probe's whole-scan mIoU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lidarcl.errors import DataError
from lidarcl.evaluation.linear_probe import (IGNORE, _labels, build_probe_loader,
                                              train_linear_head)
from lidarcl.evaluation.segmentation import confusion_matrix, iou_per_class, mean_iou
from lidarcl.models.pretrainers.camera import stack_cameras
from lidarcl.ops import gather_pixel_features, project_points_batched

__all__ = ["teacher_probe_pipeline", "build_teacher_probe_loader", "teacher_point_features",
           "run_teacher_probe"]


def teacher_probe_pipeline(point_cloud_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)) -> list:
    """Points, their lidarseg labels and every camera at its own size (``lidar2img``
    exact)."""
    return [dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
            dict(type="LoadLidarsegLabels"),
            dict(type="PointsRangeFilter", point_cloud_range=list(point_cloud_range)),
            dict(type="LoadImages"),
            dict(type="PackSample", keys=["points", "pts_semantic_mask", "images",
                                          "lidar2img", "img_shape"])]


def build_teacher_probe_loader(dataset_cfg: dict, ann_file: str, data_root: str | None = None):
    """``(loader, lut, class names)`` over ``ann_file`` with :func:`teacher_probe_pipeline`
    (batches of one scan)."""
    return build_probe_loader(dataset_cfg, ann_file, data_root, pipeline=teacher_probe_pipeline())


def _first_pair_per_point(point_index: torch.Tensor) -> torch.Tensor:
    """Rows of the first pair of every point (pairs come ordered by sample, camera, point:
    the first is the lowest camera index)."""
    order = torch.argsort(point_index, stable=True)
    sorted_points = point_index[order]
    first = torch.ones_like(sorted_points, dtype=torch.bool)
    first[1:] = sorted_points[1:] != sorted_points[:-1]
    return order[first]


@torch.no_grad()
def teacher_point_features(teacher, loader, lut, min_depth: float = 1.0,
                           points_per_scan: int | None = None, seed: int = 0):
    """``(features (P, D) unit float32, labels (P,) int64)`` of the labelled points that a
    camera sees (module doc, steps 1-2); ``teacher`` has ``encode(images) -> (N, D, h, w)``
    and ``stride`` (an ``ImageTeacher``)."""
    generator = torch.Generator().manual_seed(seed)
    feats, labels = [], []
    for batch in loader:
        images, _, lidar2img, image_hw = stack_cameras(batch, with_superpixels=False)
        label = _labels(batch, lut)
        proj = project_points_batched(batch["points"][:, :3].float(), batch["offsets"],
                                      lidar2img.float(), image_hw, min_depth=min_depth)
        rows = _first_pair_per_point(proj.point_index)
        rows = rows[label[proj.point_index[rows]] != IGNORE]
        if points_per_scan is not None and len(rows) > points_per_scan:
            rows = rows[torch.randperm(len(rows), generator=generator)[:points_per_scan]]
        if not len(rows):
            continue
        maps = teacher.encode(images.flatten(0, 1)).float()
        image = proj.batch_index[rows] * lidar2img.shape[1] + proj.camera_index[rows]
        picked = gather_pixel_features(maps, image, proj.uv[rows].to(maps.dtype),
                                       stride=teacher.stride)
        feats.append(F.normalize(picked, dim=1))
        labels.append(label[proj.point_index[rows]])
    if not feats:
        raise DataError(getattr(loader.dataset, "ann_file", None),
                        "no labelled point is seen by a camera in this split")
    return torch.cat(feats), torch.cat(labels)


def run_teacher_probe(teacher, train_loader, val_loader, lut, num_classes: int,
                      points_per_scan: int | None = 20000, seed: int = 0,
                      min_depth: float = 1.0, **head_kwargs) -> dict:
    """Module doc, steps 1-3: ``{"miou", "iou" (per class, NaN where absent), "train_points",
    "val_points"}``."""
    train_x, train_y = teacher_point_features(teacher, train_loader, lut, min_depth,
                                              points_per_scan, seed)
    head = train_linear_head(train_x, train_y, num_classes, seed=seed, **head_kwargs)
    val_x, val_y = teacher_point_features(teacher, val_loader, lut, min_depth)
    with torch.no_grad():
        pred = head(val_x).argmax(1)
    cm = confusion_matrix(pred.numpy(), val_y.numpy(), num_classes, ignore_index=IGNORE)
    return {"miou": mean_iou(cm), "iou": [float(x) for x in iou_per_class(cm)],
            "train_points": int(len(train_y)), "val_points": int(len(val_y)),
            "confusion": np.asarray(cm).tolist()}
