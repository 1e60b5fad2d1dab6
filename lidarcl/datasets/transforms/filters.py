"""Filters over points and boxes. Every point filter drops the same rows from all per-point
arrays, every box filter from all per-box arrays (``transforms/base.py``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lidarcl.datasets.transforms.base import (RandomSource, Transform, select_boxes,
                                              select_points)
from lidarcl.registry import TRANSFORMS
from lidarcl.structures.boxes import points_in_boxes
from lidarcl.structures.camera import pad_to_4x4, project_points, visible_in_image


def _range(point_cloud_range) -> np.ndarray:
    pcr = np.asarray(point_cloud_range, dtype=np.float64)
    if pcr.shape != (6,) or not (pcr[:3] < pcr[3:]).all():
        raise ValueError(f"point_cloud_range must be [x0, y0, z0, x1, y1, z1] with "
                         f"x0 < x1 etc., got {point_cloud_range}")
    return pcr


@TRANSFORMS.register_module()
class PointsRangeFilter(Transform):
    """Keep points with ``x0 <= x < x1``, ``y0 <= y < y1``, ``z0 <= z < z1`` (half-open, so
    every kept point falls in a voxel of a grid that starts at ``x0``)."""

    def __init__(self, point_cloud_range: Sequence[float]):
        self.point_cloud_range = [float(v) for v in _range(point_cloud_range)]

    def transform(self, sample: dict) -> dict:
        pcr = np.asarray(self.point_cloud_range)
        xyz = sample["points"][:, :3]
        keep = ((xyz >= pcr[:3]) & (xyz < pcr[3:])).all(1)
        return select_points(sample, keep)


@TRANSFORMS.register_module()
class ObjectRangeFilter(Transform):
    """Keep boxes whose BEV centre lies in ``x0 <= x < x1``, ``y0 <= y < y1``."""

    def __init__(self, point_cloud_range: Sequence[float]):
        self.point_cloud_range = [float(v) for v in _range(point_cloud_range)]

    def transform(self, sample: dict) -> dict:
        boxes = sample.get("gt_boxes")
        if boxes is None:
            return sample
        pcr = np.asarray(self.point_cloud_range)
        xy = np.asarray(boxes)[:, :2]
        keep = ((xy >= pcr[[0, 1]]) & (xy < pcr[[3, 4]])).all(1)
        return select_boxes(sample, keep)


@TRANSFORMS.register_module()
class ObjectNameFilter(Transform):
    """Keep boxes whose ``gt_names`` entry is in ``classes``."""

    def __init__(self, classes: Sequence[str]):
        self.classes = tuple(classes)

    def transform(self, sample: dict) -> dict:
        if sample.get("gt_boxes") is None:
            return sample
        keep = np.array([n in self.classes for n in sample["gt_names"]], dtype=bool)
        return select_boxes(sample, keep.reshape(-1))


@TRANSFORMS.register_module()
class ObjectMinPointsFilter(Transform):
    """Keep boxes with at least ``min_points`` LiDAR points.

    The count is ``num_lidar_pts`` from the annotation where known (>= 0); where it is
    unknown (-1), or with ``count_from_points=True``, the points of ``sample["points"]``
    inside the box are counted (``structures.boxes.points_in_boxes``).
    """

    def __init__(self, min_points: int = 1, count_from_points: bool = False):
        self.min_points = int(min_points)
        self.count_from_points = count_from_points

    def transform(self, sample: dict) -> dict:
        boxes = sample.get("gt_boxes")
        if boxes is None or len(boxes) == 0:
            return sample
        counts = sample.get("num_lidar_pts")
        counts = (np.full(len(boxes), -1, np.int64) if counts is None or self.count_from_points
                  else np.asarray(counts, dtype=np.int64).copy())
        unknown = counts < 0
        if unknown.any():
            inside = points_in_boxes(sample["points"], np.asarray(boxes)[unknown])
            counts[unknown] = inside.sum(0)
        return select_boxes(sample, counts >= self.min_points)


@TRANSFORMS.register_module()
class PointsInCameraFOV(Transform):
    """Keep points that at least one camera sees (devkit rule: depth > ``min_depth``,
    strictly inside the image by ``margin`` pixels; ``structures.camera``).

    Uses ``lidar2img`` / ``img_shape`` from ``LoadImages`` when present, otherwise the
    sample's ``cams`` calibration (``cam2img @ lidar2cam``, ``height`` x ``width``). A
    sample without cameras keeps no point; set ``keep_if_no_camera=True`` to keep all.
    """

    def __init__(self, min_depth: float = 1.0, margin: float = 1.0,
                 keep_if_no_camera: bool = False):
        self.min_depth = float(min_depth)
        self.margin = float(margin)
        self.keep_if_no_camera = keep_if_no_camera

    def transform(self, sample: dict) -> dict:
        if sample.get("lidar2img") is not None and sample.get("img_shape") is not None:
            mats = list(np.asarray(sample["lidar2img"]))
            shapes = [tuple(s) for s in np.asarray(sample["img_shape"])]
        else:
            cams = sample.get("cams", {}) or {}
            mats = [pad_to_4x4(c["cam2img"]) @ np.asarray(c["lidar2cam"]) for c in
                    cams.values()]
            shapes = [(int(c["height"]), int(c["width"])) for c in cams.values()]
        points = sample["points"]
        if not mats:
            keep = np.full(len(points), self.keep_if_no_camera)
            return select_points(sample, keep)
        keep = np.zeros(len(points), dtype=bool)
        for mat, hw in zip(mats, shapes):
            uv, depth = project_points(points, mat)
            keep |= visible_in_image(uv, depth, hw, self.min_depth, self.margin)
        return select_points(sample, keep)


@TRANSFORMS.register_module()
class PointSample(Transform):
    """Sample exactly ``num_points`` points (without replacement when there are enough,
    otherwise all points plus a draw with replacement)."""

    def __init__(self, num_points: int, seed: int | None = None):
        self.num_points = int(num_points)
        self.seed = seed
        self._rng = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        n = len(sample["points"])
        if n == 0:
            return sample
        if n >= self.num_points:
            idx = self._rng.choice(n, self.num_points, replace=False)
        else:
            extra = self._rng.choice(n, self.num_points - n, replace=True)
            idx = np.concatenate([np.arange(n), extra])
        return select_points(sample, np.asarray(idx))


@TRANSFORMS.register_module()
class PointShuffle(Transform):
    """Random permutation of the points (and every per-point array)."""

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._rng = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        return select_points(sample, self._rng.permutation(len(sample["points"])))
