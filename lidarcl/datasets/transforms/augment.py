"""Geometric augmentations of the LiDAR frame, kept consistent across points, boxes,
per-point labels and cameras.

Conventions
    An augmentation maps LiDAR points by a 4x4 matrix ``A`` (a rotation about +z, a
    reflection of x or y, a uniform scale, a translation, or a product of these):
    ``p' = A p``. Then

    * boxes: centre ``A c``; ``l, w, h`` times the scale; yaw = heading of the mapped
      +x axis of the box, wrapped into ``[-pi, pi)`` (rotation adds the angle; flipping
      y gives ``-yaw``, flipping x gives ``pi - yaw``);
    * velocity ``(vx, vy)`` (``gt_velocity`` and columns 7:9 of ``gt_boxes`` when it has
      them): mapped by the linear part, i.e. **rotated, flipped and scaled**. Scaling
      velocity is deliberate: the scene's displacements are all scaled, and merged sweep
      points (whose time column is unchanged) show an object moving ``s * v * dt``, so the
      velocity that matches the points is ``s * v`` (mmdetection3d scales it too).
      Translation does not change velocity;
    * cameras: every ``lidar2img`` and ``lidar2cam`` (the ``(K, 4, 4)`` arrays from
      ``LoadImages`` and the matrices in ``sample["cams"]``) becomes ``M @ inv(A)``, so a
      point's pixel and depth are unchanged by augmentation; images, superpixel maps
      (``LoadSuperpixels``) and ``cam2img`` are not touched, so they stay aligned.
      ``lidar2cam`` is then no longer rigid (it contains the inverse scale and flip);
    * ``lidar_aug_matrix`` (4x4, identity at load) becomes ``A @ lidar_aug_matrix``:
      augmented = ``lidar_aug_matrix @`` original. ``lidar2ego`` / ``ego2global`` are left
      as loaded; they refer to the original LiDAR frame (augmented to ego is
      ``lidar2ego @ inv(lidar_aug_matrix)``).

    ``PointJitter`` (noise) and ``PointDropout`` (removal) are not affine: they leave boxes,
    cameras and ``lidar_aug_matrix`` alone (jittered points move by at most ``clip``).

Randomness: ``seed=None`` draws from numpy's global RNG (seeded by mmengine), an int
gives the transform its own generator (``transforms/base.py``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lidarcl.datasets.transforms.base import RandomSource, Transform, limit_yaw, select_points
from lidarcl.registry import TRANSFORMS
from lidarcl.structures.boxes import rotation_z
from lidarcl.structures.transforms import transform_points


def apply_lidar_transform(sample: dict, mat) -> dict:
    """Map the sample's LiDAR frame by ``mat`` (4x4 similarity about +z, see module doc):
    points, boxes, velocities, camera matrices and ``lidar_aug_matrix``."""
    mat = np.asarray(mat, dtype=np.float64)
    lin = mat[:3, :3]
    scale = float(np.linalg.norm(lin[:, 0]))
    if mat.shape != (4, 4) or not np.allclose(lin.T @ lin, scale ** 2 * np.eye(3), atol=1e-9) \
            or not np.allclose(lin[2], [0, 0, scale]) or not np.allclose(mat[3], [0, 0, 0, 1]):
        raise ValueError("apply_lidar_transform needs a 4x4 similarity that keeps +z up "
                         f"(rotation about z, flip of x or y, uniform scale), got\n{mat}")
    if sample.get("points") is not None:
        sample["points"] = transform_points(sample["points"], mat)
    boxes = sample.get("gt_boxes")
    if boxes is not None and len(boxes):
        b = np.asarray(boxes, dtype=np.float64).copy()
        b[:, :3] = b[:, :3] @ lin.T + mat[:3, 3]
        b[:, 3:6] *= scale
        heading = np.stack([np.cos(b[:, 6]), np.sin(b[:, 6])], 1) @ lin[:2, :2].T
        b[:, 6] = limit_yaw(np.arctan2(heading[:, 1], heading[:, 0]))
        if b.shape[1] >= 9:
            b[:, 7:9] = b[:, 7:9] @ lin[:2, :2].T
        sample["gt_boxes"] = b.astype(np.asarray(boxes).dtype, copy=False)
    vel = sample.get("gt_velocity")
    if vel is not None and len(vel):
        v = np.asarray(vel, dtype=np.float64) @ lin[:2, :2].T
        sample["gt_velocity"] = v.astype(np.asarray(vel).dtype, copy=False)
    inv = np.linalg.inv(mat)
    for key in ("lidar2img", "lidar2cam"):
        if sample.get(key) is not None:
            sample[key] = np.asarray(sample[key], dtype=np.float64) @ inv
    for cam in (sample.get("cams") or {}).values():
        for key in ("lidar2img", "lidar2cam"):
            if cam.get(key) is not None:
                cam[key] = np.asarray(cam[key], dtype=np.float64) @ inv
    prev = sample.get("lidar_aug_matrix")
    prev = np.eye(4) if prev is None else np.asarray(prev, dtype=np.float64)
    sample["lidar_aug_matrix"] = mat @ prev
    return sample


def _symmetric_range(value) -> tuple[float, float]:
    if np.isscalar(value):
        return -float(value), float(value)
    low, high = value
    return float(low), float(high)


@TRANSFORMS.register_module()
class GlobalRotScaleTrans(Transform):
    """Random rotation about +z, uniform scale and translation of the whole scene.

    ``A = T(t) @ S(s) @ R_z(angle)`` with ``angle ~ U(rot_range)`` (radians; a scalar r
    means ``[-r, r]``), ``s ~ U(scale_range)``, ``t ~ N(0, translation_std)`` per axis.
    Records ``pcd_rotation_angle``, ``pcd_scale_factor``, ``pcd_trans``.
    """

    def __init__(self, rot_range: Sequence[float] | float = (-0.78539816, 0.78539816),
                 scale_range: Sequence[float] = (0.95, 1.05),
                 translation_std: Sequence[float] | float = (0.0, 0.0, 0.0),
                 seed: int | None = None):
        self.rot_range = _symmetric_range(rot_range)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        std = np.broadcast_to(np.asarray(translation_std, dtype=np.float64), (3,))
        self.translation_std = tuple(float(s) for s in std)
        self.seed = seed
        self._rng = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        angle = float(self._rng.uniform(*self.rot_range))
        scale = float(self._rng.uniform(*self.scale_range))
        trans = np.asarray(self._rng.normal(0.0, 1.0, 3)) * np.asarray(self.translation_std)
        mat = np.eye(4)
        mat[:3, :3] = scale * rotation_z(angle)
        mat[:3, 3] = trans
        sample["pcd_rotation_angle"] = angle
        sample["pcd_scale_factor"] = scale
        sample["pcd_trans"] = trans
        return apply_lidar_transform(sample, mat)


@TRANSFORMS.register_module()
class RandomFlip3D(Transform):
    """Random BEV flips: horizontal negates y (yaw -> -yaw, vy -> -vy) with probability
    ``flip_ratio_bev_horizontal``; vertical negates x (yaw -> pi - yaw, vx -> -vx) with
    probability ``flip_ratio_bev_vertical``. Images are not flipped; camera matrices follow
    (module doc). Records ``pcd_horizontal_flip`` / ``pcd_vertical_flip``."""

    def __init__(self, flip_ratio_bev_horizontal: float = 0.5,
                 flip_ratio_bev_vertical: float = 0.0, seed: int | None = None):
        self.flip_ratio_bev_horizontal = float(flip_ratio_bev_horizontal)
        self.flip_ratio_bev_vertical = float(flip_ratio_bev_vertical)
        self.seed = seed
        self._rng = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        # always draw both numbers so the random stream does not depend on the outcome
        horizontal = self._rng.rand() < self.flip_ratio_bev_horizontal
        vertical = self._rng.rand() < self.flip_ratio_bev_vertical
        mat = np.eye(4)
        if horizontal:
            mat[1, 1] = -1.0
        if vertical:
            mat[0, 0] = -1.0
        sample["pcd_horizontal_flip"] = bool(horizontal)
        sample["pcd_vertical_flip"] = bool(vertical)
        if horizontal or vertical:
            apply_lidar_transform(sample, mat)
        return sample


@TRANSFORMS.register_module()
class PointJitter(Transform):
    """Add ``N(0, std)`` noise, clipped to ``[-clip, clip]``, to x, y, z of every point."""

    def __init__(self, std: float = 0.01, clip: float = 0.05, seed: int | None = None):
        self.std = float(std)
        self.clip = float(clip)
        self.seed = seed
        self._rng = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        points = sample["points"]
        noise = np.clip(self._rng.normal(0.0, self.std, (len(points), 3)), -self.clip,
                        self.clip)
        points = points.copy()
        points[:, :3] += noise.astype(points.dtype)
        sample["points"] = points
        return sample


@TRANSFORMS.register_module()
class PointDropout(Transform):
    """Drop ``round(ratio * N)`` random points (and their rows of every per-point array);
    the kept points stay in their original order."""

    def __init__(self, ratio: float = 0.1, seed: int | None = None):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"PointDropout ratio must be in [0, 1), got {ratio}")
        self.ratio = float(ratio)
        self.seed = seed
        self._rng = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        n = len(sample["points"])
        n_keep = n - int(round(self.ratio * n))
        keep = np.sort(self._rng.choice(n, n_keep, replace=False)) if n else np.arange(0)
        return select_points(sample, keep)
