"""Augmented views of one scan for contrastive pretraining, with exact point
correspondences.

``MultiViewAugment`` leaves the sample's ``points`` (and every per-point array) as they are
and adds ``sample["views"]``: a list of ``num_views`` dicts::

    points   (M_v, C) float32: a subset of the scan's points, x, y, z mapped by the view's
             similarity and jittered; other columns (intensity, time) unchanged
    index    (M_v,) int64: the row of ``sample["points"]`` each view point came from
    matrix   (4, 4) float64: the view's similarity (rotation about z, flips, scale,
             translation); view xyz = matrix @ original xyz + jitter

Each view draws independently (PointContrast, Xie et al. ECCV 2020 Sec. 4, and SLidR's 3D
augmentations): a rotation about +z in ``rot_range``, a flip of x and of y each with
probability ``flip_ratio``, a uniform scale in ``scale_range``, Gaussian jitter (``std``,
clipped to ``clip``), a translation uniform in ``[-translate, translate]`` per axis (with
``translate`` about one voxel, the views are voxelised on different grids), and
``cuboid_dropout`` cuboids (edges uniform in ``cuboid_size``, centred on random points)
whose points the view drops. Two views share a point ``p`` exactly when ``p`` is in both
``index`` arrays (:func:`match_views`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lidarcl.datasets.transforms.base import RandomSource, Transform
from lidarcl.registry import TRANSFORMS

__all__ = ["MultiViewAugment", "match_views"]


def match_views(index_a: np.ndarray, index_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(rows_a, rows_b)`` with ``index_a[rows_a] == index_b[rows_b]``: the points
    both views kept (in the order of view ``a``). Indices within a view are distinct."""
    index_a = np.asarray(index_a)
    index_b = np.asarray(index_b)
    size = int(max(index_a.max(initial=-1), index_b.max(initial=-1))) + 1
    where_b = np.full(size, -1, dtype=np.int64)
    where_b[index_b] = np.arange(len(index_b))
    rows_b = where_b[index_a] if len(index_a) else np.zeros(0, dtype=np.int64)
    rows_a = np.flatnonzero(rows_b >= 0)
    return rows_a, rows_b[rows_a]


@TRANSFORMS.register_module()
class MultiViewAugment(Transform):
    """Add ``num_views`` independently augmented views of the scan (module doc)."""

    def __init__(self, num_views: int = 2, rot_range: Sequence[float] = (-np.pi, np.pi),
                 flip_ratio: float = 0.5, scale_range: Sequence[float] = (0.95, 1.05),
                 jitter_std: float = 0.01, jitter_clip: float = 0.05,
                 translate: float | Sequence[float] = 0.1, cuboid_dropout: int = 0,
                 cuboid_size: Sequence[float] = (1.0, 3.0), seed: int | None = None):
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        if not 0.0 <= flip_ratio <= 1.0:
            raise ValueError(f"flip_ratio must be in [0, 1], got {flip_ratio}")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got "
                             f"{scale_range}")
        self.num_views = int(num_views)
        self.rot_range = tuple(float(r) for r in rot_range)
        self.flip_ratio = float(flip_ratio)
        self.scale_range = tuple(float(s) for s in scale_range)
        self.jitter_std = float(jitter_std)
        self.jitter_clip = float(jitter_clip)
        self.translate = np.broadcast_to(np.asarray(translate, dtype=np.float64), (3,)).copy()
        self.cuboid_dropout = int(cuboid_dropout)
        self.cuboid_size = tuple(float(s) for s in cuboid_size)
        self.seed = seed
        self._rng = RandomSource(seed)

    def _matrix(self) -> np.ndarray:
        angle = self._rng.uniform(*self.rot_range)
        c, s = np.cos(angle), np.sin(angle)
        mat = np.eye(4)
        mat[:2, :2] = [[c, -s], [s, c]]
        flip = np.diag([-1.0 if self._rng.rand() < self.flip_ratio else 1.0,
                        -1.0 if self._rng.rand() < self.flip_ratio else 1.0, 1.0, 1.0])
        scale = np.diag([self._rng.uniform(*self.scale_range)] * 3 + [1.0])
        mat = scale @ flip @ mat
        mat[:3, 3] = self._rng.uniform(-self.translate, self.translate)
        return mat

    def _kept(self, xyz: np.ndarray) -> np.ndarray:
        keep = np.ones(len(xyz), dtype=bool)
        for _ in range(self.cuboid_dropout if len(xyz) else 0):
            centre = xyz[int(self._rng.choice(len(xyz), 1, replace=False)[0])]
            half = self._rng.uniform(*self.cuboid_size, size=3) / 2.0
            keep &= ~(np.abs(xyz - centre) <= half).all(1)
        return np.flatnonzero(keep)

    def transform(self, sample: dict) -> dict:
        points = np.asarray(sample["points"])
        xyz = points[:, :3].astype(np.float64)
        views = []
        for _ in range(self.num_views):
            index = self._kept(xyz)
            mat = self._matrix()
            moved = xyz[index] @ mat[:3, :3].T + mat[:3, 3]
            if self.jitter_std > 0:
                moved += np.clip(self._rng.normal(0.0, self.jitter_std, moved.shape),
                                 -self.jitter_clip, self.jitter_clip)
            view_points = points[index].copy()
            view_points[:, :3] = moved.astype(points.dtype)
            views.append({"points": view_points.astype(np.float32), "index": index,
                          "matrix": mat})
        sample["views"] = views
        return sample
