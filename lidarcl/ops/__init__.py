"""Point-pixel correspondence ops: projection, visibility, pixel gather, region pooling,
fused project + pool, and serialization codes; rotated-box ops: BEV / 3D IoU, rotated BEV
NMS, points in boxes.

Each public function validates its arguments (errors name the argument and the problem),
then runs the compiled kernel of ``lidarcl._C`` for the tensors' device: the C++ CPU
kernels (``csrc/cpu``, multithreaded with ``at::parallel_for``, obeying
``torch.set_num_threads``) or the CUDA kernels (``csrc/cuda``, when built with CUDA).
Without a kernel for that device (extension not built, or a CUDA tensor and a CPU-only
build, or half precision) it runs the pure-PyTorch reference of the same name with
``_reference`` appended, after a one-time ``RuntimeWarning``. Kernels and references are
tested against each other (``tests/test_ops_kernels.py``).

Determinism: every forward op gives the same bits on the CPU and on CUDA, run after run
(``region_pool`` / ``project_pool`` add each region's rows in ascending row order on both
devices). On CUDA, :func:`atomic_pooling` opts in to float-atomic mean / sum pooling
(schedule-dependent last bits; honoured only while
``torch.are_deterministic_algorithms_enabled()`` is false). The CUDA backward of
``gather_pixel_features`` adds with float atomics and raises under
``torch.use_deterministic_algorithms(True)``.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch

from lidarcl.ops._extension import compiled, warn_reference_fallback
from lidarcl.ops.boxes import (IOU_MODES, box_iou_reference, nms_bev_reference,
                               points_in_boxes_reference, same_device, validate_boxes,
                               validate_points)
from lidarcl.ops.gather import (empty_rows, feature_coordinates,
                                gather_pixel_features_reference, validate_gather_args)
from lidarcl.ops.pooling import (REDUCTIONS, ProjectPoolResult, RegionPoolResult,
                                 project_pool_reference, region_pool_reference,
                                 superpixel_pairs,
                                 validate_project_pool_args, validate_region_pool_args)
from lidarcl.ops.projection import (BatchedProjectionResult, ProjectionResult,
                                    _compute_dtype, prepare_visibility,
                                    validate_batched_projection_args, validate_projection_args,
                                    project_points_batched_reference, project_points_reference,
                                    visibility_reference)
from lidarcl.ops.serialize import (SERIALIZATION_ORDERS, serialize_reference,
                                   validate_serialize_args)
from lidarcl.ops.voxelize import VOXEL_MODES, VoxelizedBatch, voxelize  # noqa: E402

_KERNEL_DTYPES = (torch.float32, torch.float64)


def _kernels_for(op: str, device: torch.device, dtype: torch.dtype | None = None):
    """``lidarcl._C`` if it has kernels for ``device`` (and ``dtype``), else ``None``
    (after a one-time warning naming ``op``)."""
    ext = compiled()
    usable = ext is not None and (device.type == "cpu"
                                  or (device.type == "cuda" and ext.with_cuda()))
    if usable and dtype is not None and dtype not in _KERNEL_DTYPES:
        usable = False
    if not usable:
        warn_reference_fallback(op)
        return None
    return ext


def _wants_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


_ATOMIC_POOLING = contextvars.ContextVar("lidarcl_atomic_pooling", default=False)


@contextlib.contextmanager
def atomic_pooling(enabled: bool = True):
    """Within the block, CUDA ``region_pool`` / ``project_pool`` (mean, sum) may add with
    float atomics instead of the default deterministic segmented reduction: possibly faster
    with few, large regions, but the last bits of the sums then depend on the thread
    schedule (``max`` uses integer atomics and stays exact). Honoured only while
    ``torch.are_deterministic_algorithms_enabled()`` is false; no effect on the CPU or on
    ``voxelize(canonical=True)``, whose contract is bit-identical results."""
    token = _ATOMIC_POOLING.set(bool(enabled))
    try:
        yield
    finally:
        _ATOMIC_POOLING.reset(token)


def _atomic_requested(device: torch.device) -> bool:
    return device.type == "cuda" and _ATOMIC_POOLING.get()


# ------------------------------------------------------------------ projection
def project_points(points, lidar2img, image_hw, min_depth: float = 1.0,
                   margin: float = 1.0) -> ProjectionResult:
    """(point, camera, u, v, depth) pairs of one sample, with nuscenes-devkit's rule
    ``depth > min_depth``, ``margin < u < W - margin``, ``margin < v < H - margin``
    (see :func:`lidarcl.ops.projection.project_points_reference`). When ``points`` or
    ``lidar2img`` require a gradient the (differentiable) reference runs."""
    image_hw = validate_projection_args(points, lidar2img, image_hw, min_depth, margin)
    if _wants_grad(points, lidar2img):  # uv / depth differentiable: the reference path
        return project_points_reference(points, lidar2img, image_hw, min_depth, margin)
    ext = _kernels_for("project_points", points.device)
    if ext is None:
        return project_points_reference(points, lidar2img, image_hw, min_depth, margin)
    dtype = _compute_dtype(points)
    offsets = torch.tensor([points.shape[0]], dtype=torch.int64, device=points.device)
    out = ext.project_points(points.to(dtype).contiguous(), offsets,
                             lidar2img.to(dtype)[None].contiguous(),
                             image_hw.to(dtype)[None].contiguous(), float(min_depth),
                             float(margin))
    return ProjectionResult(*out[:4])


def project_points_batched(points, offsets, lidar2img, image_hw, min_depth: float = 1.0,
                           margin: float = 1.0) -> BatchedProjectionResult:
    """Batched :func:`project_points` over points concatenated with ``offsets``
    (see :func:`lidarcl.ops.projection.project_points_batched_reference`)."""
    offsets, image_hw = validate_batched_projection_args(points, offsets, lidar2img, image_hw,
                                                         min_depth, margin)
    ext = None if _wants_grad(points, lidar2img) else _kernels_for("project_points_batched",
                                                                   points.device)
    if ext is None:
        return project_points_batched_reference(points, offsets, lidar2img, image_hw,
                                                min_depth, margin)
    dtype = _compute_dtype(points)
    out = ext.project_points(points.to(dtype).contiguous(), offsets.contiguous(),
                             lidar2img.to(dtype).contiguous(), image_hw.to(dtype).contiguous(),
                             float(min_depth), float(margin))
    return BatchedProjectionResult(*out)


def visibility(result, image_hw, window: int = 1, depth_tolerance: float = 0.3,
               relative_tolerance: float = 0.0) -> torch.Tensor:
    """Depth-buffer mask over projection pairs: points hidden behind nearer points drop
    (see :func:`lidarcl.ops.projection.visibility_reference`)."""
    uv, depth, image, hw = prepare_visibility(result, image_hw, window, depth_tolerance,
                                              relative_tolerance)
    ext = _kernels_for("visibility", depth.device, depth.dtype)
    if ext is None or uv.dtype != depth.dtype:  # a hand-made result mixing dtypes
        return visibility_reference(result, image_hw, window, depth_tolerance,
                                    relative_tolerance)
    return ext.visibility(uv.to(depth.dtype).contiguous(), depth.contiguous(),
                          image.contiguous(), hw.contiguous(), int(window),
                          float(depth_tolerance), float(relative_tolerance))


# ------------------------------------------------------------------ pixel gather
class _GatherPixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, image_index, coords):
        ctx.save_for_backward(image_index, coords)
        ctx.map_shape = (features.shape[0], features.shape[2], features.shape[3])
        ctx.channels_last = not features.is_contiguous()
        return compiled().gather_forward(features, image_index, coords)

    @staticmethod
    def backward(ctx, grad_out):
        image_index, coords = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[0]:
            grad = compiled().gather_backward(grad_out.contiguous(), image_index, coords,
                                              *ctx.map_shape, ctx.channels_last)
        return grad, None, None


def gather_pixel_features(features, image_index, uv, stride=1) -> torch.Tensor:
    """Bilinear samples ``(M, C)`` of feature maps ``(B*K, C, H', W')`` at the pairs' pixels
    ``uv`` (input-image pixels, maps of the given stride), differentiable with respect to
    the features (see :mod:`lidarcl.ops.gather` for the pixel-centre convention). On the CPU,
    channels-last maps (``features.to(memory_format=torch.channels_last)``) are read in place
    and are 2-3x faster than contiguous ones. When ``uv`` itself requires a gradient the
    reference runs (the kernels return none for ``uv``)."""
    validate_gather_args(features, image_index, uv)
    coords = feature_coordinates(uv, stride)
    if uv.requires_grad:
        return gather_pixel_features_reference(features, image_index, uv, stride)
    ext = _kernels_for("gather_pixel_features", features.device, features.dtype)
    if ext is None:
        return gather_pixel_features_reference(features, image_index, uv, stride)
    if image_index.numel() == 0:
        return empty_rows(features)
    if not (features.device.type == "cpu"
            and features.is_contiguous(memory_format=torch.channels_last)):
        features = features.contiguous()  # channels-last maps are read in place on the CPU
    return _GatherPixels.apply(features, image_index.contiguous(),
                               coords.to(features.dtype).contiguous())


# ------------------------------------------------------------------ region pooling
class _RegionPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, region_ids, num_regions, reduce_code, atomic=False):
        pooled, counts, argmax = compiled().region_pool_forward(features, region_ids,
                                                                num_regions, reduce_code,
                                                                atomic)
        ctx.save_for_backward(region_ids, counts, argmax)
        ctx.reduce_code = reduce_code
        ctx.num_points = features.shape[0]
        ctx.mark_non_differentiable(counts)
        return pooled, counts

    @staticmethod
    def backward(ctx, grad_pooled, _grad_counts):
        region_ids, counts, argmax = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[0]:
            grad = compiled().region_pool_backward(grad_pooled.contiguous(), region_ids, counts,
                                                   argmax, ctx.num_points, ctx.reduce_code)
        return grad, None, None, None, None


def region_pool(features, region_ids, num_regions: int, reduce: str = "mean"
                ) -> RegionPoolResult:
    """Pool feature rows ``(N, C)`` into ``num_regions`` regions by ``region_ids (N,)``
    (``-1`` = none) with ``reduce`` in ``("mean", "max", "sum")``; differentiable. Empty
    regions give zeros and ``counts == 0`` (see :mod:`lidarcl.ops.pooling`)."""
    reduce_code = validate_region_pool_args(features, region_ids, num_regions, reduce)
    ext = _kernels_for("region_pool", features.device, features.dtype)
    if ext is None:
        return region_pool_reference(features, region_ids, num_regions, reduce)
    pooled, counts = _RegionPool.apply(features.contiguous(),
                                       region_ids.to(torch.int64).contiguous(),
                                       int(num_regions), reduce_code,
                                       _atomic_requested(features.device))
    return RegionPoolResult(pooled, counts)


class _ProjectPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, points, offsets, lidar2img, image_hw, superpixels,
                num_superpixels, min_depth, margin, atomic=False):
        pooled, counts, pair_point, pair_region = compiled().project_pool(
            points, offsets, lidar2img, image_hw, superpixels, num_superpixels,
            features.to(points.dtype), min_depth, margin, atomic)
        ctx.save_for_backward(counts, pair_point, pair_region)
        ctx.feature_shape = features.shape
        ctx.mark_non_differentiable(counts, pair_point, pair_region)
        return pooled.to(features.dtype), counts, pair_point, pair_region

    @staticmethod
    def backward(ctx, grad_pooled, *_unused):
        counts, pair_point, pair_region = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[0]:
            # adjoint of the mean: each pair sends grad[region] / count[region] to its point,
            # summed per point in pair order by the (deterministic) sum-pooling kernel rather
            # than index_add_, whose CUDA version adds with float atomics
            share = grad_pooled / counts.clamp(min=1).to(grad_pooled.dtype)[:, None]
            grad = compiled().region_pool_forward(share[pair_region].contiguous(), pair_point,
                                                  ctx.feature_shape[0], 2)[0]
        return (grad,) + (None,) * 9


def project_pool(points, offsets, lidar2img, image_hw, superpixels, num_superpixels: int,
                 features, min_depth: float = 1.0, margin: float = 1.0) -> ProjectPoolResult:
    """Fused projection + superpixel read + mean pooling of point features per superpixel
    (SLidR's point-side pooling); differentiable with respect to ``features``
    (see :func:`lidarcl.ops.pooling.project_pool_reference`)."""
    ext = _kernels_for("project_pool", points.device, features.dtype)
    # the kernels (CPU and CUDA) read the maps in their own integer type and raise on an
    # invalid id they read: no pass over the whole maps, no widened copy
    offsets, image_hw, superpixels = validate_project_pool_args(
        points, offsets, lidar2img, image_hw, superpixels, num_superpixels, features,
        min_depth, margin, check_ids=ext is None)
    if ext is None:
        return project_pool_reference(points, offsets, lidar2img, image_hw, superpixels,
                                      num_superpixels, features, min_depth, margin)
    dtype = _compute_dtype(points)
    num_superpixels = int(num_superpixels)
    if features.dtype != dtype:
        # the fused kernel sums in the points' dtype; the reference pools in the features'
        # dtype: compose the projection and pooling kernels instead (same result)
        proj = project_points_batched(points, offsets, lidar2img, image_hw, min_depth, margin)
        pair_point, pair_region = superpixel_pairs(proj, superpixels, num_superpixels,
                                                   lidar2img.shape[1])
        pooled = region_pool(features[pair_point], pair_region,
                             lidar2img.shape[0] * lidar2img.shape[1] * num_superpixels)
        return ProjectPoolResult(pooled.features, pooled.counts, pair_point, pair_region)
    if superpixels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        superpixels = superpixels.to(torch.int64)
    out = _ProjectPool.apply(features.contiguous(), points.to(dtype).contiguous(),
                             offsets.contiguous(), lidar2img.to(dtype).contiguous(),
                             image_hw.to(dtype).contiguous(), superpixels.contiguous(),
                             num_superpixels, float(min_depth), float(margin),
                             _atomic_requested(points.device))
    return ProjectPoolResult(*out)


# ------------------------------------------------------------------ serialization
def serialize(coords, batch_index, order: str = "z", depth: int = 16) -> torch.Tensor:
    """Space-filling-curve keys ``(batch << 3*depth) | code`` of integer voxel coordinates,
    ``order`` in ``("z", "z-trans", "hilbert", "hilbert-trans")``
    (see :mod:`lidarcl.ops.serialize`)."""
    coords, batch_index, order_code = validate_serialize_args(coords, batch_index, order, depth)
    ext = _kernels_for("serialize", coords.device)
    if ext is None:
        return serialize_reference(coords, batch_index, order, depth)
    return ext.serialize(coords, batch_index, order_code, depth)


# ------------------------------------------------------------------ rotated boxes
def _common_float(*tensors) -> torch.dtype:
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return dtype


def box_iou(boxes_a, boxes_b, mode: str = "bev") -> torch.Tensor:
    """IoU matrix ``(N, M)`` of rotated boxes ``(N, >=7)`` and ``(M, >=7)``: ``mode="bev"``
    (rotated rectangles) or ``"3d"`` (with the vertical overlap); computed in float64, returned
    in the boxes' common dtype (see :mod:`lidarcl.ops.boxes`). Not differentiable."""
    validate_boxes(boxes_a, "boxes_a")
    validate_boxes(boxes_b, "boxes_b")
    same_device(("boxes_a", boxes_a), ("boxes_b", boxes_b))
    if mode not in IOU_MODES:
        raise ValueError(f"mode must be one of {IOU_MODES}, got {mode!r}")
    dtype = _common_float(boxes_a, boxes_b)
    ext = _kernels_for("box_iou", boxes_a.device)
    if ext is None:
        return box_iou_reference(boxes_a.to(dtype), boxes_b.to(dtype), mode)
    return ext.box_iou(boxes_a.detach().to(dtype).contiguous(),
                       boxes_b.detach().to(dtype).contiguous(), IOU_MODES.index(mode))


def box_iou_bev(boxes_a, boxes_b) -> torch.Tensor:
    """Rotated BEV IoU ``(N, M)`` (:func:`box_iou` with ``mode="bev"``)."""
    return box_iou(boxes_a, boxes_b, "bev")


def box_iou_3d(boxes_a, boxes_b) -> torch.Tensor:
    """3D IoU ``(N, M)`` of rotated boxes (:func:`box_iou` with ``mode="3d"``)."""
    return box_iou(boxes_a, boxes_b, "3d")


def nms_bev(boxes, scores, iou_threshold: float, pre_max_size: int | None = None,
            post_max_size: int | None = None) -> torch.Tensor:
    """Rotated BEV non-maximum suppression: indices (into ``boxes``) of the kept boxes by
    decreasing score. Boxes are visited by decreasing score (stable: ties keep their order),
    ``pre_max_size`` of them at most; a box is dropped when its BEV IoU with an already kept
    box is greater than ``iou_threshold``; at most ``post_max_size`` are returned."""
    validate_boxes(boxes)
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1 \
            or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must be a tensor of shape ({boxes.shape[0]},) like boxes, "
                         f"got {getattr(scores, 'shape', type(scores).__name__)}")
    same_device(("boxes", boxes), ("scores", scores))
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    if pre_max_size is not None:
        order = order[:int(pre_max_size)]
    ext = _kernels_for("nms_bev", boxes.device)
    if ext is None:
        keep = nms_bev_reference(boxes[order], scores[order], float(iou_threshold))
    else:
        keep = ext.nms_bev(boxes.detach()[order].to(_common_float(boxes)).contiguous(),
                           float(iou_threshold))
    keep = order[keep]
    return keep if post_max_size is None else keep[:int(post_max_size)]


def _points_in_boxes(points, boxes, all_boxes: bool) -> torch.Tensor:
    validate_points(points)
    validate_boxes(boxes)
    same_device(("points", points), ("boxes", boxes))
    dtype = _common_float(points, boxes)
    ext = _kernels_for("points_in_boxes", points.device)
    if ext is None:
        inside = points_in_boxes_reference(points, boxes)
        if all_boxes:
            return inside
        first = inside.to(torch.int8).argmax(1) if inside.shape[1] else \
            torch.zeros(len(points), dtype=torch.int64, device=points.device)
        return torch.where(inside.any(1), first, torch.full_like(first, -1))
    return ext.points_in_boxes(points.detach().to(dtype).contiguous(),
                               boxes.detach().to(dtype).contiguous(), all_boxes)


def points_in_boxes_all(points, boxes) -> torch.Tensor:
    """``(N, M)`` bool: point ``n`` lies in box ``m`` (faces included; the rule of
    :func:`lidarcl.structures.boxes.points_in_boxes`)."""
    return _points_in_boxes(points, boxes, True)


def points_in_boxes_first(points, boxes) -> torch.Tensor:
    """``(N,)`` int64: the first box containing each point, ``-1`` for none."""
    return _points_in_boxes(points, boxes, False)


__all__ = [
    "ProjectionResult", "BatchedProjectionResult", "RegionPoolResult", "ProjectPoolResult",
    "REDUCTIONS", "SERIALIZATION_ORDERS",
    "project_points", "project_points_batched", "visibility", "gather_pixel_features",
    "region_pool", "project_pool", "serialize", "atomic_pooling",
    "project_points_reference", "project_points_batched_reference", "visibility_reference",
    "gather_pixel_features_reference", "region_pool_reference", "project_pool_reference",
    "serialize_reference", "VoxelizedBatch", "VOXEL_MODES", "voxelize",
    "IOU_MODES", "box_iou", "box_iou_bev", "box_iou_3d", "nms_bev", "points_in_boxes_all",
    "points_in_boxes_first", "box_iou_reference", "nms_bev_reference",
    "points_in_boxes_reference",
]
