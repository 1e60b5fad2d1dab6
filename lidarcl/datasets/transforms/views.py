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

``TemporalViews`` (after ``MultiViewAugment``) rebuilds chosen views from a neighbouring
LiDAR sweep instead of the keyframe, where the sample lists sweeps: the sweep is mapped into
the keyframe's LiDAR frame (ego-motion compensation, ``sweep2lidar``), each sweep point is
paired with its mutual nearest keyframe point within ``match_radius`` (the temporal
correspondence; unpaired sweep points are dropped), and the view's similarity is applied.
The points then differ between the views (another revolution of the sensor), not only
their augmentation: the spatiotemporal positives of SuperFlow (Xu et al., arXiv
2503.19912) and of PointContrast's registered frames, on static structure.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from lidarcl.datasets.transforms.base import RandomSource, Transform
from lidarcl.datasets.transforms.loading import load_sweep
from lidarcl.registry import TRANSFORMS

__all__ = ["MultiViewAugment", "TemporalViews", "match_views", "mutual_nearest"]


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


def mutual_nearest(query: np.ndarray, reference: np.ndarray, radius: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(rows_q, rows_r)`` of mutual nearest neighbours (Euclidean, 3-D) closer than
    ``radius``: ``reference[rows_r[k]]`` is the nearest reference point of
    ``query[rows_q[k]]`` and ``query[rows_q[k]]`` is its nearest query point. Each row
    appears at most once on either side; ``rows_q`` ascends."""
    from scipy.spatial import cKDTree

    empty = np.zeros(0, dtype=np.int64)
    if len(query) == 0 or len(reference) == 0:
        return empty, empty
    dist, to_ref = cKDTree(reference).query(query, distance_upper_bound=radius)
    found = np.flatnonzero(np.isfinite(dist))
    if len(found) == 0:
        return empty, empty
    _, to_query = cKDTree(query).query(reference[to_ref[found]])
    mutual = found[to_query == found]
    return mutual.astype(np.int64), to_ref[mutual].astype(np.int64)


@TRANSFORMS.register_module()
class TemporalViews(Transform):
    """Rebuild views ``view_ids`` from a neighbouring sweep, each with probability ``prob``
    (module doc). Samples without sweeps keep their views unchanged.

    Args:
        view_ids: which of ``MultiViewAugment``'s views may become temporal.
        prob: probability that a listed view becomes temporal in a given sample.
        max_sweeps: the sweep is drawn uniformly from the newest ``max_sweeps``.
        match_radius: metres; a sweep point and a keyframe point pair only when they are
            mutual nearest neighbours closer than this.
        remove_close: sweep points within this radius of the sensor are removed (as in
            ``LoadSweeps``).
        use_dims: sweep columns to keep; ``None`` takes the keyframe's (``LoadPoints``).
        seed: private random source (``None``: numpy's global one).

    Each replaced view keeps its similarity ``matrix`` and gains ``sweep`` (its position in
    the sample's sweep list) and ``time_lag``; ``sample["temporal_views"]`` lists the views
    replaced.
    """

    def __init__(self, view_ids: Sequence[int] = (1,), prob: float = 0.5,
                 max_sweeps: int = 3, match_radius: float = 0.2, remove_close: float = 1.0,
                 use_dims: Sequence[int] | None = None, seed: int | None = None):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if max_sweeps < 1 or match_radius <= 0:
            raise ValueError(f"max_sweeps must be >= 1 and match_radius > 0, got "
                             f"{max_sweeps}, {match_radius}")
        self.view_ids = tuple(int(v) for v in view_ids)
        self.prob = float(prob)
        self.max_sweeps = int(max_sweeps)
        self.match_radius = float(match_radius)
        self.remove_close = float(remove_close)
        self.use_dims = None if use_dims is None else tuple(int(d) for d in use_dims)
        self._rng = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        views = sample.get("views")
        if views is None:
            raise ValueError(f"sample {sample.get('token', '?')}: TemporalViews needs the "
                             f"views of MultiViewAugment before it in the pipeline")
        bad = [v for v in self.view_ids if not 0 <= v < len(views)]
        if bad:
            raise ValueError(f"TemporalViews: view ids {bad} out of range for "
                             f"{len(views)} views")
        sweeps = list(sample.get("sweeps") or [])[:self.max_sweeps]
        points = np.asarray(sample["points"])
        dims = self.use_dims if self.use_dims is not None else sample.get("points_use_dims")
        replaced = []
        for view_id in self.view_ids if sweeps else ():
            if self._rng.rand() >= self.prob:
                continue
            which = int(self._rng.choice(len(sweeps), 1, replace=False)[0])
            sweep_points, _ = load_sweep(sample, sweeps[which], dims, points.shape[1],
                                         self.remove_close)
            rows, index = mutual_nearest(sweep_points[:, :3].astype(np.float64),
                                         points[:, :3].astype(np.float64),
                                         self.match_radius)
            mat = views[view_id]["matrix"]
            view_points = sweep_points[rows].astype(np.float32)
            view_points[:, :3] = (view_points[:, :3].astype(np.float64) @ mat[:3, :3].T
                                  + mat[:3, 3]).astype(np.float32)
            views[view_id] = {"points": view_points, "index": index, "matrix": mat,
                              "sweep": which,
                              "time_lag": float(sweeps[which].get("time_lag", 0.0))}
            replaced.append(view_id)
        sample["temporal_views"] = replaced
        return sample
