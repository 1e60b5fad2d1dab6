"""Pooling of point or pixel features into regions: pure-PyTorch references.

Regions are superpixels (SLidR, Sautier et al. CVPR 2022, Sec. 3.1: point and pixel features
are average-pooled per superpixel before the contrastive loss), clusters or segments (PRC
and FAC pool per segment). Region ids are int64 in ``[-1, R)``; ``-1`` marks a feature
that belongs to no region and is ignored. Empty regions are reported by ``counts == 0``
and pool to zeros (never a division by zero).

``reduce="max"`` routes the gradient of each output channel to one input: the smallest
point index reaching the maximum (torch's own ``scatter_reduce`` would split it among
ties), so the reference and the kernels agree exactly. NaN counts as the largest value
(it propagates, as ``torch.amax`` does), the first NaN row being the argmax.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch

from lidarcl.ops.projection import (_check_float, _check_tensor,
                                    validate_batched_projection_args,
                                    project_points_batched_reference)

__all__ = ["RegionPoolResult", "ProjectPoolResult", "REDUCTIONS", "region_pool_reference",
           "project_pool_reference", "validate_region_pool_args",
           "validate_project_pool_args"]

REDUCTIONS = ("mean", "max", "sum")


class RegionPoolResult(NamedTuple):
    features: torch.Tensor  # (R, C) pooled, zeros for empty regions
    counts: torch.Tensor    # (R,) int64 members per region


class ProjectPoolResult(NamedTuple):
    features: torch.Tensor     # (B*K*S, C) mean of the point features per superpixel
    counts: torch.Tensor       # (B*K*S,) int64 pairs per superpixel
    pair_point: torch.Tensor   # (P,) int64 point of each contributing pair
    pair_region: torch.Tensor  # (P,) int64 region ((b*K + k)*S + s) of each pair


def validate_region_pool_args(features, region_ids, num_regions, reduce) -> int:
    """Check the arguments of :func:`region_pool_reference`; returns the reduce code."""
    _check_tensor("features", features)
    _check_tensor("region_ids", region_ids)
    _check_float("features", features)
    if features.dim() != 2:
        raise ValueError(f"features must have shape (N, C), got {tuple(features.shape)}")
    if region_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"region_ids must be an int64 (or int32) tensor, got {region_ids.dtype}")
    if region_ids.dim() != 1 or region_ids.shape[0] != features.shape[0]:
        raise ValueError(f"region_ids must have shape (N={features.shape[0]},) like the rows of "
                         f"features, got {tuple(region_ids.shape)}")
    if region_ids.device != features.device:
        raise ValueError(f"region_ids is on {region_ids.device} but features are on "
                         f"{features.device}")
    if isinstance(num_regions, bool) or not isinstance(num_regions, numbers.Integral) \
            or num_regions < 0:
        raise ValueError(f"num_regions must be an int >= 0, got {num_regions!r}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if region_ids.numel():
        low, high = int(region_ids.min()), int(region_ids.max())
        if low < -1 or high >= num_regions:
            raise ValueError(f"region_ids must lie in [-1, num_regions={num_regions}) (-1 = no "
                             f"region), got values in [{low}, {high}]")
    return REDUCTIONS.index(reduce)


def region_pool_reference(features: torch.Tensor, region_ids: torch.Tensor, num_regions: int,
                          reduce: str = "mean") -> RegionPoolResult:
    """Mean, max or sum of feature rows per region, differentiable.

    Args:
        features: ``(N, C)`` floating features (points, or pixels flattened).
        region_ids: ``(N,)`` int64 region of each row, ``-1`` = none.
        num_regions: ``R``, the number of output rows.
        reduce: ``"mean"``, ``"max"`` or ``"sum"``.

    Returns:
        :class:`RegionPoolResult` ``(features (R, C), counts (R,))``.
    """
    validate_region_pool_args(features, region_ids, num_regions, reduce)
    region_ids = region_ids.to(torch.int64)
    channels = features.shape[1]
    member = region_ids >= 0
    rows = torch.nonzero(member, as_tuple=True)[0]
    ids = region_ids[rows]
    counts = torch.bincount(ids, minlength=num_regions)
    if reduce in ("mean", "sum"):
        pooled = features.new_zeros((num_regions, channels)).index_add(0, ids, features[rows])
        if reduce == "mean":
            pooled = pooled / counts.clamp(min=1).to(features.dtype)[:, None]
        return RegionPoolResult(pooled, counts)
    # max: value, then the smallest row reaching it, then an index read (gradient to it)
    if rows.numel() == 0:
        zeros = features[:0].sum(0, keepdim=True).expand(num_regions, -1)  # in the graph
        return RegionPoolResult(zeros, counts)
    values = features[rows].detach()
    index = ids[:, None].expand(-1, channels)
    peak = values.new_full((num_regions, channels), float("-inf")).scatter_reduce(
        0, index, values, reduce="amax", include_self=True)
    # NaN is the largest value (it propagates, as in torch.amax): its first row wins
    at_peak = (values == peak[ids]) | (values.isnan() & peak[ids].isnan())
    candidate = torch.where(at_peak, rows[:, None].expand(-1, channels),
                            torch.full_like(index, features.shape[0]))
    argmax = torch.full((num_regions, channels), features.shape[0], dtype=torch.int64,
                        device=features.device).scatter_reduce(
        0, index, candidate, reduce="amin", include_self=True)
    empty = counts == 0
    argmax[empty] = 0  # any valid row; masked out below
    pooled = torch.gather(features, 0, argmax)
    pooled = torch.where(empty[:, None], torch.zeros_like(pooled), pooled)
    return RegionPoolResult(pooled, counts)


def validate_project_pool_args(points, offsets, lidar2img, image_hw, superpixels,
                               num_superpixels, features, min_depth, margin,
                               check_ids: bool = True):
    """Check the arguments of :func:`project_pool_reference`; returns normalised
    ``(offsets int64, image_hw, superpixels)`` (int64 when ``check_ids``).
    ``check_ids=False`` skips the pass over the whole maps and keeps their integer dtype
    (the CPU kernel checks the ids it reads instead)."""
    offsets, image_hw = validate_batched_projection_args(points, offsets, lidar2img, image_hw,
                                                         min_depth, margin)
    batch, num_cams = lidar2img.shape[:2]
    _check_tensor("superpixels", superpixels)
    if superpixels.is_floating_point() or superpixels.is_complex() \
            or superpixels.dtype == torch.bool:
        raise TypeError(f"superpixels must be an integer tensor of ids, got {superpixels.dtype}")
    if superpixels.dim() != 4 or tuple(superpixels.shape[:2]) != (batch, num_cams):
        raise ValueError(f"superpixels must have shape (B={batch}, K={num_cams}, H, W), got "
                         f"{tuple(superpixels.shape)}")
    if superpixels.device != points.device:
        raise ValueError(f"superpixels is on {superpixels.device} but points are on "
                         f"{points.device}")
    if isinstance(num_superpixels, bool) or not isinstance(num_superpixels, numbers.Integral) \
            or num_superpixels < 1:
        raise ValueError(f"num_superpixels must be an int >= 1, got {num_superpixels!r}")
    if batch * num_cams * int(num_superpixels) >= 2 ** 62:
        raise ValueError(f"B * K * num_superpixels = {batch} * {num_cams} * {num_superpixels} "
                         "regions overflow int64 indices")
    if check_ids:
        superpixels = superpixels.to(torch.int64)
    if check_ids and superpixels.numel():
        low, high = int(superpixels.min()), int(superpixels.max())
        if low < -1 or high >= num_superpixels:
            raise ValueError(f"superpixels ids must lie in [-1, num_superpixels="
                             f"{num_superpixels}), got values in [{low}, {high}]")
    if batch and num_cams:
        need_h = max(1, math.ceil(float(image_hw[..., 0].max())))
        need_w = max(1, math.ceil(float(image_hw[..., 1].max())))
        if superpixels.shape[2] < need_h or superpixels.shape[3] < need_w:
            raise ValueError(f"superpixels maps {tuple(superpixels.shape[2:])} are smaller than "
                             f"the images ({need_h}, {need_w}): they must be at image "
                             "resolution")
    _check_tensor("features", features)
    _check_float("features", features)
    if features.dim() != 2 or features.shape[0] != points.shape[0]:
        raise ValueError(f"features must have shape (N={points.shape[0]}, C) like points, got "
                         f"{tuple(features.shape)}")
    if features.device != points.device:
        raise ValueError(f"features are on {features.device} but points are on {points.device}")
    return offsets, image_hw, superpixels


def superpixel_pairs(proj, superpixels: torch.Tensor, num_superpixels: int, num_cams: int):
    """``(pair_point, pair_region)`` of a batched projection's pairs whose pixel
    ``(floor(v), floor(u))`` (clamped into the map) holds a superpixel id ``s >= 0``;
    region ``(b * K + k) * S + s``. Ids outside ``[-1, S)`` under a pair raise."""
    height, width = superpixels.shape[2:]
    x = torch.floor(proj.uv[:, 0]).to(torch.int64).clamp(0, width - 1)
    y = torch.floor(proj.uv[:, 1]).to(torch.int64).clamp(0, height - 1)
    sp = superpixels[proj.batch_index, proj.camera_index, y, x].to(torch.int64)
    if sp.numel() and (int(sp.min()) < -1 or int(sp.max()) >= num_superpixels):
        raise ValueError(f"superpixels ids must lie in [-1, num_superpixels="
                         f"{num_superpixels}) where points land")
    keep = sp >= 0
    region = (proj.batch_index[keep] * num_cams + proj.camera_index[keep]) \
        * num_superpixels + sp[keep]
    return proj.point_index[keep], region


def project_pool_reference(points: torch.Tensor, offsets: torch.Tensor,
                           lidar2img: torch.Tensor, image_hw, superpixels: torch.Tensor,
                           num_superpixels: int, features: torch.Tensor,
                           min_depth: float = 1.0, margin: float = 1.0) -> ProjectPoolResult:
    """Project points, read the superpixel under each pair, mean-pool point features.

    The unfused composition of :func:`~lidarcl.ops.projection.project_points_batched_reference`
    and :func:`region_pool_reference`. A pair ``(point, camera k of sample b)`` at pixel
    ``(u, v)`` reads ``s = superpixels[b, k, floor(v), floor(u)]`` (clamped into the map);
    ``s = -1`` drops it, otherwise it joins region ``(b * K + k) * S + s``. A point seen by
    two cameras contributes to a region of each.

    Args:
        points, offsets, lidar2img, image_hw, min_depth, margin: as in
            :func:`~lidarcl.ops.projection.project_points_batched_reference`.
        superpixels: ``(B, K, H, W)`` integer ids in ``[-1, S)`` at image resolution.
        num_superpixels: ``S``, ids per image.
        features: ``(N, C)`` point features, differentiable.

    Returns:
        :class:`ProjectPoolResult`.
    """
    offsets, image_hw, superpixels = validate_project_pool_args(
        points, offsets, lidar2img, image_hw, superpixels, num_superpixels, features,
        min_depth, margin)
    batch, num_cams = lidar2img.shape[:2]
    proj = project_points_batched_reference(points, offsets, lidar2img, image_hw, min_depth,
                                            margin)
    pair_point, pair_region = superpixel_pairs(proj, superpixels, num_superpixels, num_cams)
    pooled = region_pool_reference(features[pair_point], pair_region,
                                   batch * num_cams * num_superpixels, "mean")
    return ProjectPoolResult(pooled.features, pooled.counts, pair_point, pair_region)
