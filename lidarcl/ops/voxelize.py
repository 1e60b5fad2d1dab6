"""Grid sampling of a batch of point clouds into sparse voxels, with the point -> voxel map.

Every in-range point belongs to exactly one voxel; voxel features are the mean (or max, or
sum) of *all* their points' features (:func:`lidarcl.ops.region_pool`, no cap on points per
voxel), and ``point_to_voxel`` brings per-voxel features back to every input point
(``voxel_features[point_to_voxel]``), as the sparse U-Nets of SLidR / SuperFlow / Pointcept
do after their last layer.

Coordinate systems (``mode``):

* ``"cartesian"``: ``(x, y, z)`` in metres.
* ``"cylindrical"``: ``(rho, phi, z)`` with ``rho = sqrt(x^2 + y^2)`` (m), ``phi =
  atan2(y, x)`` in ``[-pi, pi)`` (rad), ``z`` (m): SLidR and SuperFlow voxelise their
  sparse U-Net's input in cylindrical coordinates, whose cells grow with range as the
  LiDAR's point density falls; the cell size per axis is the caller's (e.g. 0.1 m,
  1 degree = pi / 180 rad, 0.1 m).

Voxel ``(i, j, k)`` of a sample covers ``[lo + i * s, lo + (i + 1) * s)`` along each axis
of the chosen system (``lo`` = ``point_range[:3]``; the upper bound ``point_range[3:]`` is
exclusive). Output coordinates are spconv's ``[batch, z, y, x]`` order (for cylindrical:
``[batch, z, phi, rho]``), int32, sorted by that key, so the result does not depend on the
input order of the points.

spconv's own ``PointToVoxel`` (a hash table per call, points beyond
``max_num_points_per_voxel`` dropped, voxels in order of first appearance) is used as the
independent reference in the tests: same voxels, same means when no voxel overflows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from lidarcl.ops.projection import _check_offsets, _check_points

__all__ = ["VoxelizedBatch", "VOXEL_MODES", "voxelize", "to_voxel_space"]

VOXEL_MODES = ("cartesian", "cylindrical")


@dataclass
class VoxelizedBatch:
    """Sparse voxels of a batch (``V`` voxels, ``N`` input points)."""

    coords: torch.Tensor          # (V, 4) int32 [batch, z, y, x] (spconv's indices order)
    features: torch.Tensor        # (V, C) pooled point features
    counts: torch.Tensor          # (V,) int64 points per voxel
    point_to_voxel: torch.Tensor  # (N,) int64 voxel row of each point, -1 when out of range
    spatial_shape: tuple[int, int, int]  # (Z, Y, X) grid size, spconv's spatial_shape
    batch_size: int

    def point_features(self, voxel_features: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Per-point rows of ``voxel_features (V, C)`` (``fill`` for out-of-range points)."""
        inside = self.point_to_voxel >= 0
        out = voxel_features.new_full((len(self.point_to_voxel), voxel_features.shape[1]),
                                      fill)
        out[inside] = voxel_features[self.point_to_voxel[inside]]
        return out


def _triple(name: str, value) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,) * 3
    if not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"{name} must be a number or 3 numbers, got {value!r}")
    out = tuple(float(v) for v in value)
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return out


def to_voxel_space(xyz: torch.Tensor, mode: str) -> torch.Tensor:
    """Coordinates of ``xyz (N, 3)`` in the grid's system (see the module doc)."""
    if mode == "cartesian":
        return xyz
    if mode == "cylindrical":
        rho = torch.sqrt(xyz[:, 0] ** 2 + xyz[:, 1] ** 2)
        phi = torch.atan2(xyz[:, 1], xyz[:, 0])
        phi = torch.where(phi >= math.pi, phi - 2 * math.pi, phi)  # [-pi, pi)
        return torch.stack([rho, phi, xyz[:, 2]], dim=1)
    raise ValueError(f"mode must be one of {VOXEL_MODES}, got {mode!r}")


def voxelize(points: torch.Tensor, offsets: torch.Tensor, voxel_size, point_range=None,
             mode: str = "cartesian", features: torch.Tensor | None = None,
             reduce: str = "mean", canonical: bool = True, align: int = 1
             ) -> VoxelizedBatch:
    """Voxelise concatenated point clouds.

    Args:
        points: ``(N, >=3)`` floating, x, y, z first (LiDAR frame).
        offsets: ``(B,)`` cumulative end indices (``lidarcl.datasets.collate``).
        voxel_size: cell size per axis of the grid's system, a number or 3 numbers
            (cylindrical: metres, radians, metres).
        point_range: ``[lo0, lo1, lo2, hi0, hi1, hi2]`` in that system; points outside are
            dropped (``point_to_voxel == -1``). Default: cartesian, the batch's own bounding
            box, its low corner moved down to a multiple of ``align`` cells; cylindrical,
            ``rho`` from 0, ``phi`` over ``[-pi, pi)``, ``z`` as cartesian.
        mode: ``"cartesian"`` or ``"cylindrical"``.
        features: ``(N, C)`` features to pool (default: ``points`` itself).
        reduce: ``"mean"``, ``"max"`` or ``"sum"`` (:func:`lidarcl.ops.region_pool`).
        canonical: pool each voxel's points in an order set by their feature values, so
            that the result is bit-identical under any permutation of the input points
            (``C + 2`` stable sorts of the ``N`` points); ``False`` pools in input order.
            Holds on CUDA too: the pooling kernels add each voxel's rows in ascending row
            order on both devices (same bits as the CPU), and canonical pooling ignores
            :func:`lidarcl.ops.atomic_pooling`.
    """
    from lidarcl.ops import atomic_pooling, region_pool

    _check_points(points)
    offsets = _check_offsets(offsets, points.shape[0], points.device)
    if mode not in VOXEL_MODES:
        raise ValueError(f"mode must be one of {VOXEL_MODES}, got {mode!r}")
    size = _triple("voxel_size", voxel_size)
    if features is None:
        features = points
    if not isinstance(features, torch.Tensor) or features.dim() != 2 \
            or features.shape[0] != points.shape[0]:
        raise ValueError(f"features must have shape (N={points.shape[0]}, C), got "
                         f"{getattr(features, 'shape', type(features).__name__)}")
    device = points.device
    # cells are computed in the points' precision (float32 for LiDAR files), as spconv's
    # PointToVoxel does, so both put a point that lies on a cell edge in the same cell
    space = to_voxel_space(points[:, :3].to(torch.float64 if points.dtype == torch.float64
                                            else torch.float32), mode)
    batch = offsets.numel()
    batch_index = torch.repeat_interleave(
        torch.arange(batch, device=device),
        torch.diff(offsets, prepend=offsets.new_zeros(1)))
    if point_range is None:
        if space.shape[0]:
            lo, hi = space.min(0).values, space.max(0).values
        else:
            lo = hi = space.new_zeros(3)
        # anchored to multiples of `align` cells: the cell edges (and, with align = 2^k, a
        # network's k stride-2 groupings) do not move when other samples change the bounds
        block = lo.new_tensor(size) * align
        lo = torch.floor(lo / block) * block
        if mode == "cylindrical":
            lo = torch.stack([lo.new_zeros(()), lo.new_tensor(-math.pi), lo[2]])
        # one extra cell so the maximum itself falls inside the half-open range
        hi = lo + (torch.floor((hi - lo) / lo.new_tensor(size)) + 1) * lo.new_tensor(size)
        point_range = lo.tolist() + hi.tolist()
        if mode == "cylindrical":
            point_range[4] = math.pi  # phi covers [-pi, pi) exactly
    if len(point_range) != 6:
        raise ValueError(f"point_range must hold 6 numbers [lo0, lo1, lo2, hi0, hi1, hi2], "
                         f"got {point_range!r}")
    lo = space.new_tensor(point_range[:3])
    hi = space.new_tensor(point_range[3:])
    if not bool((hi > lo).all()):
        raise ValueError(f"point_range must have hi > lo on every axis, got {point_range!r}")
    step = space.new_tensor(size)
    # cells per axis (0, 1, 2), checked in floating point before the int64 cast: a 1e30
    # coordinate would otherwise wrap to a negative count and silently give zero voxels
    cells = torch.ceil((hi - lo) / step)
    if not bool(torch.isfinite(cells).all()) or bool((cells > 2 ** 31).any()):
        raise ValueError(
            f"voxel grid of {cells.tolist()} cells (axes 0, 1, 2) from point_range "
            f"{[float(v) for v in point_range]} at voxel_size {list(size)}: too large. "
            "Points with implausible coordinates (far beyond a sensor's range) make the "
            "default range huge; filter them (lidarcl.datasets.io drops |coordinate| > "
            "MAX_ABS_COORDINATE on load) or pass point_range")
    grid = cells.to(torch.int64)
    cell = torch.floor((space - lo) / step).to(torch.int64)
    inside = ((space >= lo) & (space < hi)).all(1) & (cell < grid).all(1) & (cell >= 0).all(1)
    # one int64 key per voxel: batch, then axis 2 (z), 1 (y / phi), 0 (x / rho)
    g0, g1, g2 = (int(v) for v in grid.tolist())
    if batch * g0 * g1 * g2 >= 2 ** 62:
        raise ValueError(f"grid of {g2} x {g1} x {g0} cells for {batch} samples is too large "
                         "for int64 keys; enlarge voxel_size or narrow point_range")
    key = ((batch_index * g2 + cell[:, 2]) * g1 + cell[:, 1]) * g0 + cell[:, 0]
    rows = torch.nonzero(inside, as_tuple=True)[0]
    unique_keys, inverse = torch.unique(key[rows], sorted=True, return_inverse=True)
    point_to_voxel = torch.full((points.shape[0],), -1, dtype=torch.int64, device=device)
    point_to_voxel[rows] = inverse
    num_voxels = int(unique_keys.numel())
    if canonical and rows.numel():
        # pool the points of a voxel in an order set by their values, not by their input
        # order: the float sums (and so the features) are then bit-identical for any
        # permutation of the input points. Successive stable sorts = a lexicographic sort
        # by (voxel, feature columns).
        order = rows
        for column in range(features.shape[1] - 1, -1, -1):
            order = order[torch.sort(features[order, column].detach(), stable=True).indices]
        order = order[torch.sort(point_to_voxel[order], stable=True).indices]
        with atomic_pooling(False):  # the contract needs the deterministic kernels
            pooled = region_pool(features[order], point_to_voxel[order], num_voxels, reduce)
    else:
        pooled = region_pool(features, point_to_voxel, num_voxels, reduce)
    x = unique_keys % g0
    rest = unique_keys // g0
    y = rest % g1
    rest = rest // g1
    z = rest % g2
    b = rest // g2
    # contiguous: spconv reads indices as a raw (V, 4) buffer and does not check strides
    coords = torch.stack([b, z, y, x], dim=1).to(torch.int32).contiguous()
    return VoxelizedBatch(coords, pooled.features, pooled.counts, point_to_voxel,
                          (g2, g1, g0), batch)
