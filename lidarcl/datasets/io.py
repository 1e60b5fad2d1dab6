"""Reading point clouds and images, with errors that name the file and the problem.

Point files: ``.bin`` (raw float32, ``num_features`` columns, nuScenes ``.pcd.bin`` and KITTI
velodyne), ``.npy`` (2-D float array), ``.pcd`` / ``.ply`` (through open3d; x, y, z and, when
the file has colours, their mean as intensity). Non-finite points (NaN or inf in x, y, z) are
dropped, and the number dropped is returned so that callers can report it.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from lidarcl.errors import DataError, DataFileNotFound

logger = logging.getLogger(__name__)

POINT_SUFFIXES = (".bin", ".npy", ".pcd", ".ply")


def _read_bin(path: str, num_features: int) -> np.ndarray:
    size = os.path.getsize(path)
    row_bytes = 4 * num_features
    if size % row_bytes:
        raise DataError(path, f"truncated or mis-described point file: {size} bytes is not a "
                              f"multiple of {num_features} float32 columns ({row_bytes} bytes)")
    return np.fromfile(path, dtype=np.float32).reshape(-1, num_features)


def _read_npy(path: str, num_features: int | None) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(path, f"not a plain .npy array ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise DataError(path, f"expected a (N, >=3) array, got shape {arr.shape}")
    if num_features is not None and arr.shape[1] != num_features:
        raise DataError(path, f"expected {num_features} columns, got {arr.shape[1]}")
    return arr.astype(np.float32, copy=False)


def _read_open3d(path: str) -> np.ndarray:
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - open3d is a declared dependency
        raise ImportError(f"reading {path} needs open3d (pip install open3d)") from exc
    cloud = o3d.io.read_point_cloud(path)
    xyz = np.asarray(cloud.points, dtype=np.float32)
    if len(xyz) == 0:
        raise DataError(path, "open3d read no points (empty or unreadable file)")
    if cloud.has_colors():
        intensity = np.asarray(cloud.colors, dtype=np.float32).mean(1, keepdims=True)
    else:
        intensity = np.zeros((len(xyz), 1), dtype=np.float32)
    return np.concatenate([xyz, intensity], 1)


def load_points(path: str | os.PathLike, num_features: int | None = None,
                drop_nonfinite: bool = True, return_mask: bool = False):
    """Load a point file; returns ``(points (N, C) float32, number of dropped points)``,
    plus, with ``return_mask``, the mask of kept rows over the file's rows (so that
    per-point labels stored beside the file can be dropped alike).

    ``num_features`` is required for ``.bin`` (the file has no header) and checked for
    ``.npy``. With ``drop_nonfinite`` points whose x, y or z is NaN or infinite are removed
    (and counted); without it they raise :class:`DataError`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "point file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".bin":
        if num_features is None:
            raise DataError(path, ".bin point files need num_features (columns per point)")
        points = _read_bin(path, num_features)
    elif suffix == ".npy":
        points = _read_npy(path, num_features)
    elif suffix in (".pcd", ".ply"):
        points = _read_open3d(path)
    else:
        raise DataError(path, f"unknown point file type {suffix!r}; expected one of "
                              f"{POINT_SUFFIXES}")
    finite = np.isfinite(points[:, :3]).all(1)
    dropped = int(len(points) - finite.sum())
    if dropped:
        if not drop_nonfinite:
            raise DataError(path, f"{dropped} points have NaN or infinite coordinates")
        logger.warning("%s: dropped %d points with NaN or infinite coordinates", path, dropped)
        points = points[finite]
    return (points, dropped, finite) if return_mask else (points, dropped)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load an image as uint8 RGB (H, W, 3)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "image")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"unreadable image ({exc})") from exc
