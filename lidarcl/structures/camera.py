"""Pinhole camera projection of LiDAR points (pure numpy reference).

``lidar2img`` is a 4x4 matrix ``cam2img @ lidar2cam`` with ``cam2img`` the 3x3 intrinsics
(or KITTI's 3x4 P2) padded to 4x4. The visibility rule is nuscenes-devkit's
``map_pointcloud_to_image``: depth > ``min_depth`` and ``margin < u < W - margin``,
``margin < v < H - margin`` (strict inequalities).
"""
from __future__ import annotations

import numpy as np


def pad_to_4x4(mat) -> np.ndarray:
    """Embed a 3x3 or 3x4 camera matrix into a 4x4 one (last row ``[0, 0, 0, 1]``)."""
    mat = np.asarray(mat, dtype=np.float64)
    if mat.shape == (4, 4):
        return mat.copy()
    if mat.shape not in ((3, 3), (3, 4)):
        raise ValueError(f"camera matrix must be 3x3, 3x4 or 4x4, got {mat.shape}")
    out = np.eye(4)
    out[:3, :mat.shape[1]] = mat
    return out


def project_points(points, lidar2img) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``uv (N, 2)`` and depth ``(N,)`` of points under one camera.

    The depth is the camera-frame z; points behind the camera get meaningless ``uv``.
    """
    mat = np.asarray(lidar2img, dtype=np.float64)
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    cam = xyz @ mat[:3, :3].T + mat[:3, 3]
    depth = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = cam[:, :2] / depth[:, None]
    return uv, depth


def visible_in_image(uv, depth, image_hw, min_depth: float = 1.0,
                     margin: float = 1.0) -> np.ndarray:
    """Mask of projections that land inside the image, in front of ``min_depth``."""
    height, width = image_hw
    return ((depth > min_depth) & (uv[:, 0] > margin) & (uv[:, 0] < width - margin)
            & (uv[:, 1] > margin) & (uv[:, 1] < height - margin))


def points_to_image(points, lidar2img, image_hw, min_depth: float = 1.0, margin: float = 1.0):
    """Indices, pixels and depths of the points one camera sees (devkit's selection).

    Returns ``(index (M,), uv (M, 2), depth (M,))``.
    """
    uv, depth = project_points(points, lidar2img)
    keep = visible_in_image(uv, depth, image_hw, min_depth, margin)
    index = np.flatnonzero(keep)
    return index, uv[index], depth[index]
