"""Point -> pixel correspondences: pure-PyTorch references of the projection kernels.

These functions are the ground truth that the compiled kernels of ``lidarcl._C`` are tested
against. They run on any device, vectorised over points (the only Python loop is over the
samples of a batch) and hold ``O(K * N)`` temporaries, so they are meant for tests and as a
fallback, not for speed.

Conventions
-----------
* ``lidar2img`` is ``cam2img @ lidar2cam`` (4x4); only its first three rows are used. A
  point ``p`` maps to ``c = lidar2img[:3, :3] @ p + lidar2img[:3, 3]``, ``depth = c_z`` and
  ``uv = (c_x / c_z, c_y / c_z)`` (pixel x = column, pixel y = row, the image's top-left
  corner at 0, pixel ``i`` covering ``[i, i + 1)``).
* Selection is nuscenes-devkit's ``map_pointcloud_to_image`` rule, strict inequalities:
  ``depth > min_depth`` and ``margin < u < W - margin`` and ``margin < v < H - margin``.
  Points with non-finite coordinates never pass it.
* Arithmetic: ``c_i = ((x*m_i0 + y*m_i1) + z*m_i2) + m_i3``, each operation rounded in
  the compute dtype (see ``csrc/ops.h``), ``depth = c_2``, ``u = c_0 / c_2``,
  ``v = c_1 / c_2``.
* Precision: float64 points are projected with the matrix in float64; float32 points with
  the matrix cast to float32 (the kernels' precision); other floating dtypes (half,
  bfloat16) are computed in float32. ``uv`` and ``depth`` come back in that compute dtype.
* Order: pairs sorted by camera, then point index (batched: by sample, camera, point).
  ``camera_index`` is the camera within its sample; the flat image index into a
  ``(B * K, ...)`` stack of images or feature maps is ``batch_index * K + camera_index``.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import torch

__all__ = [
    "ProjectionResult", "BatchedProjectionResult", "project_points_reference",
    "project_points_batched_reference", "visibility_reference", "prepare_visibility",
]


class ProjectionResult(NamedTuple):
    """Point-camera pairs of one sample (``M`` pairs)."""

    point_index: torch.Tensor   # (M,) int64, row of ``points``
    camera_index: torch.Tensor  # (M,) int64, camera of the sample
    uv: torch.Tensor            # (M, 2) float, pixel x (column), pixel y (row)
    depth: torch.Tensor         # (M,) float, camera-frame z


class BatchedProjectionResult(NamedTuple):
    """Point-camera pairs of a batch; ``point_index`` is global into the concatenated points."""

    point_index: torch.Tensor   # (M,) int64
    camera_index: torch.Tensor  # (M,) int64, camera within its sample
    uv: torch.Tensor            # (M, 2)
    depth: torch.Tensor         # (M,)
    batch_index: torch.Tensor   # (M,) int64


# ------------------------------------------------------------------ validation helpers
def _check_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _check_float(name: str, value: torch.Tensor) -> None:
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")


def _as_image_hw(image_hw, device, expected_shape: tuple, name: str = "image_hw"
                 ) -> torch.Tensor:
    if not isinstance(image_hw, torch.Tensor):
        try:
            image_hw = torch.as_tensor(image_hw, device=device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a tensor of (height, width) pairs: {exc}") from exc
    if image_hw.dtype == torch.bool or image_hw.is_complex():
        raise TypeError(f"{name} must hold real (integer or float) sizes, got {image_hw.dtype}")
    if image_hw.device != device:
        raise ValueError(f"{name} is on {image_hw.device} but points are on {device}")
    if image_hw.numel() and (not bool(torch.isfinite(image_hw).all())
                             or bool((image_hw < 0).any())):
        raise ValueError(f"{name} must hold finite sizes >= 0, got {image_hw.tolist()}")
    if tuple(image_hw.shape) != expected_shape:
        raise ValueError(f"{name} must have shape {expected_shape} (height, width per camera), "
                         f"got {tuple(image_hw.shape)}")
    return image_hw


def _compute_dtype(points: torch.Tensor) -> torch.dtype:
    return torch.float64 if points.dtype == torch.float64 else torch.float32


def _check_points(points, name: str = "points") -> torch.Tensor:
    _check_tensor(name, points)
    _check_float(name, points)
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"{name} must have shape (N, >=3), got {tuple(points.shape)}")
    return points


def _check_matrices(lidar2img, points: torch.Tensor, name: str = "lidar2img"):
    _check_tensor(name, lidar2img)
    _check_float(name, lidar2img)
    if lidar2img.device != points.device:
        raise ValueError(f"{name} is on {lidar2img.device} but points are on {points.device}")
    if lidar2img.dim() != 3 or tuple(lidar2img.shape[1:]) != (4, 4):
        raise ValueError(f"{name} must have shape (K, 4, 4), got {tuple(lidar2img.shape)}")
    return lidar2img


def _check_scalars(min_depth, margin) -> None:
    for name, value in (("min_depth", min_depth), ("margin", margin)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if value != value:
            raise ValueError(f"{name} must not be NaN")


# ------------------------------------------------------------------ projection
def _project(points: torch.Tensor, lidar2img: torch.Tensor, image_hw: torch.Tensor,
             min_depth: float, margin: float) -> ProjectionResult:
    """Core of the single-sample projection, inputs already validated."""
    dtype = _compute_dtype(points)
    device = points.device
    xyz = points[:, :3].to(dtype)
    mat = lidar2img.to(dtype)
    hw = image_hw.to(dtype)
    num_cams = mat.shape[0]
    if num_cams == 0 or xyz.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return ProjectionResult(empty, empty.clone(), torch.zeros(0, 2, dtype=dtype, device=device),
                                torch.zeros(0, dtype=dtype, device=device))
    # camera coordinates (K, N) per row i, as ((x*m_i0 + y*m_i1) + z*m_i2) + m_i3 with every
    # product and sum rounded separately (no BLAS, no fused multiply-add): the compiled
    # kernels evaluate the same expression, so their selections match bit for bit.
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]

    def row(i: int) -> torch.Tensor:
        m = mat[:, i, :, None]  # (K, 4, 1)
        return ((x * m[:, 0] + y * m[:, 1]) + z * m[:, 2]) + m[:, 3]

    depth = row(2)
    u = row(0) / depth
    v = row(1) / depth
    height = hw[:, 0:1]
    width = hw[:, 1:2]
    keep = ((depth > min_depth) & (u > margin) & (u < width - margin)
            & (v > margin) & (v < height - margin))
    cam_idx, pt_idx = torch.nonzero(keep, as_tuple=True)  # row-major: camera, then point
    uv = torch.stack([u[cam_idx, pt_idx], v[cam_idx, pt_idx]], dim=1)
    return ProjectionResult(pt_idx, cam_idx, uv, depth[cam_idx, pt_idx])


def validate_projection_args(points, lidar2img, image_hw, min_depth, margin) -> torch.Tensor:
    """Checks of a single-sample projection (reference and kernels); returns ``image_hw``
    as a tensor."""
    _check_points(points)
    _check_matrices(lidar2img, points)
    image_hw = _as_image_hw(image_hw, points.device, (lidar2img.shape[0], 2))
    _check_scalars(min_depth, margin)
    return image_hw


def project_points_reference(points: torch.Tensor, lidar2img: torch.Tensor, image_hw,
                             min_depth: float = 1.0, margin: float = 1.0) -> ProjectionResult:
    """Every (point, camera) pair of one sample where the point lands inside the image.

    Args:
        points: ``(N, >=3)`` floating tensor, columns x, y, z first (LiDAR frame).
        lidar2img: ``(K, 4, 4)`` floating tensor, ``cam2img @ lidar2cam`` per camera.
        image_hw: ``(K, 2)`` sizes as (height, width) (tensor or nested sequence).
        min_depth: keep ``depth > min_depth`` (metres along the optical axis).
        margin: keep ``margin < u < W - margin`` and ``margin < v < H - margin``.

    Returns:
        :class:`ProjectionResult` with pairs ordered by camera, then point index.
    """
    image_hw = validate_projection_args(points, lidar2img, image_hw, min_depth, margin)
    return _project(points, lidar2img, image_hw, float(min_depth), float(margin))


def _check_offsets(offsets, num_points: int, device) -> torch.Tensor:
    _check_tensor("offsets", offsets)
    if offsets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"offsets must be an int64 (or int32) tensor, got {offsets.dtype}")
    if offsets.dim() != 1:
        raise ValueError(f"offsets must have shape (B,), got {tuple(offsets.shape)}")
    if offsets.device != device:
        raise ValueError(f"offsets is on {offsets.device} but points are on {device}")
    if offsets.numel() == 0:
        if num_points != 0:
            raise ValueError(f"offsets is empty but points has {num_points} rows")
        return offsets.to(torch.int64)
    offsets = offsets.to(torch.int64)
    if int(offsets[0]) < 0 or bool((offsets[1:] < offsets[:-1]).any()):
        raise ValueError("offsets must be non-negative and non-decreasing (cumulative end "
                         f"indices), got {offsets.tolist()}")
    if int(offsets[-1]) != num_points:
        raise ValueError(f"offsets[-1] must equal the number of points ({num_points}), "
                         f"got {int(offsets[-1])}")
    return offsets


def validate_batched_projection_args(points, offsets, lidar2img, image_hw, min_depth,
                                     margin):
    """Checks shared by every batched projection (reference, kernels, fused pooling);
    returns ``(offsets int64, image_hw tensor)``."""
    _check_points(points)
    offsets = _check_offsets(offsets, points.shape[0], points.device)
    batch = offsets.numel()
    _check_tensor("lidar2img", lidar2img)
    _check_float("lidar2img", lidar2img)
    if lidar2img.device != points.device:
        raise ValueError(f"lidar2img is on {lidar2img.device} but points are on {points.device}")
    if lidar2img.dim() != 4 or tuple(lidar2img.shape[2:]) != (4, 4) \
            or lidar2img.shape[0] != batch:
        raise ValueError(f"lidar2img must have shape (B={batch}, K, 4, 4) with B the length of "
                         f"offsets, got {tuple(lidar2img.shape)}")
    image_hw = _as_image_hw(image_hw, points.device, (batch, lidar2img.shape[1], 2))
    _check_scalars(min_depth, margin)
    return offsets, image_hw


def project_points_batched_reference(points: torch.Tensor, offsets: torch.Tensor,
                                     lidar2img: torch.Tensor, image_hw,
                                     min_depth: float = 1.0, margin: float = 1.0
                                     ) -> BatchedProjectionResult:
    """Projection of a batch of concatenated point clouds.

    Args:
        points: ``(N, >=3)`` floating tensor, the samples' points one after another.
        offsets: ``(B,)`` int64 cumulative end indices (``lidarcl.datasets.collate``):
            sample ``b`` is ``points[offsets[b-1]:offsets[b]]``; ``offsets[-1] == N``.
        lidar2img: ``(B, K, 4, 4)`` floating tensor.
        image_hw: ``(B, K, 2)`` sizes as (height, width).
        min_depth, margin: as in :func:`project_points_reference`.

    Returns:
        :class:`BatchedProjectionResult` ordered by sample, camera, point; ``point_index``
        indexes the concatenated ``points``.
    """
    offsets, image_hw = validate_batched_projection_args(points, offsets, lidar2img, image_hw,
                                                         min_depth, margin)
    batch = offsets.numel()
    parts = []
    starts = [0] + offsets.tolist()[:-1]
    ends = offsets.tolist()
    for b in range(batch):  # loop over samples, never over points
        res = _project(points[starts[b]:ends[b]], lidar2img[b], image_hw[b],
                       float(min_depth), float(margin))
        parts.append(BatchedProjectionResult(
            res.point_index + starts[b], res.camera_index, res.uv, res.depth,
            torch.full_like(res.point_index, b)))
    dtype = _compute_dtype(points)
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64, device=points.device)
        return BatchedProjectionResult(empty, empty.clone(),
                                       torch.zeros(0, 2, dtype=dtype, device=points.device),
                                       torch.zeros(0, dtype=dtype, device=points.device),
                                       empty.clone())
    return BatchedProjectionResult(*(torch.cat(field, 0) for field in zip(*parts)))


# ------------------------------------------------------------------ visibility
def prepare_visibility(result, image_hw, window: int, depth_tolerance: float,
                       relative_tolerance: float):
    """Validate the arguments of :func:`visibility_reference` (shared with the kernels).

    Returns ``(uv (M, 2), depth (M,), image (M,) int64 flat image index, hw (I, 2) int64)``.
    """
    if not isinstance(result, (ProjectionResult, BatchedProjectionResult)):
        raise TypeError("result must be a ProjectionResult or BatchedProjectionResult, got "
                        f"{type(result).__name__}")
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 0:
        raise ValueError(f"window must be a non-negative int, got {window!r}")
    for name, value in (("depth_tolerance", depth_tolerance),
                        ("relative_tolerance", relative_tolerance)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    uv, depth, cam = result.uv, result.depth, result.camera_index
    # a hand-made result gets the checks a projection result passes by construction
    for field, value in zip(result._fields, result):
        _check_tensor(f"result.{field}", value)
    _check_float("result.uv", uv)
    _check_float("result.depth", depth)
    num_pairs = depth.shape[0] if depth.dim() == 1 else -1
    if num_pairs < 0 or tuple(uv.shape) != (num_pairs, 2) or any(
            getattr(result, f).dtype != torch.int64 or tuple(getattr(result, f).shape)
            != (num_pairs,) for f in result._fields if f not in ("uv", "depth")):
        raise ValueError("result fields must be uv (M, 2), depth (M,) and int64 (M,) indices; "
                         "got " + ", ".join(f"{f} {tuple(v.shape)} {v.dtype}"
                                            for f, v in zip(result._fields, result)))
    device = depth.device
    batched = isinstance(result, BatchedProjectionResult)
    if not isinstance(image_hw, torch.Tensor):
        image_hw = torch.as_tensor(image_hw, device=device)
    if image_hw.device != device:
        raise ValueError(f"image_hw is on {image_hw.device} but result is on {device}")
    if batched:
        if image_hw.dim() != 3 or image_hw.shape[-1] != 2:
            raise ValueError("image_hw must have shape (B, K, 2) for a batched result, got "
                             f"{tuple(image_hw.shape)}")
    elif image_hw.dim() != 2 or image_hw.shape[-1] != 2:
        raise ValueError(f"image_hw must have shape (K, 2), got {tuple(image_hw.shape)}")
    hw = image_hw.reshape(-1, 2).to(torch.int64)
    num_images = hw.shape[0]
    image = result.batch_index * image_hw.shape[1] + cam if batched else cam
    if depth.numel():
        if int(image.min()) < 0 or int(image.max()) >= num_images:
            raise ValueError(f"result refers to camera images outside image_hw (shape "
                             f"{tuple(image_hw.shape)})")
        if int(hw.min()) <= 0:
            raise ValueError(f"image_hw sizes must be positive, got {image_hw.tolist()}")
        if int(hw.max()) >= 2 ** 31:
            raise ValueError(f"image_hw sizes must be below 2^31, got {image_hw.tolist()}")
        if not (bool(torch.isfinite(uv).all()) and bool(torch.isfinite(depth).all())):
            raise ValueError("result has non-finite uv or depth (projection never gives "
                             "them; a hand-made result must not either)")
    return uv, depth, image, hw


def visibility_reference(result, image_hw, window: int = 1, depth_tolerance: float = 0.3,
                         relative_tolerance: float = 0.0) -> torch.Tensor:
    """Depth-buffer occlusion test of projection pairs, per camera.

    Each pair sits on the integer pixel ``(floor(v), floor(u))`` (clamped into the image).
    A per-camera depth image holds the minimum depth of the pairs on each pixel
    (``scatter_reduce`` ``amin``); its minimum over the ``(2 * window + 1)^2`` neighbourhood
    of a pair's pixel is ``z_min``, and the pair is kept iff
    ``depth <= z_min + depth_tolerance + relative_tolerance * z_min``. The tolerance is
    absolute (metres, default 0.3) plus an optional part relative to ``z_min``. A pair always
    sees itself, so the nearest pair of every neighbourhood is kept.

    Args:
        result: a :class:`ProjectionResult` (cameras ``image_hw (K, 2)``) or a
            :class:`BatchedProjectionResult` (``image_hw (B, K, 2)``; cameras of different
            samples never occlude each other).
        image_hw: image sizes as (height, width), shaped as above.
        window: neighbourhood half-size in pixels (``0``: the pixel alone).
        depth_tolerance: absolute tolerance (>= 0, may be ``inf``).
        relative_tolerance: tolerance as a fraction of ``z_min`` (>= 0).

    Returns:
        ``(M,)`` bool mask over the pairs, True = visible.
    """
    uv, depth, image, hw = prepare_visibility(result, image_hw, window, depth_tolerance,
                                              relative_tolerance)
    device = depth.device
    num_images = hw.shape[0]
    if depth.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=device)
    height = hw[image, 0]
    width = hw[image, 1]
    x = torch.minimum(torch.floor(uv[:, 0]).to(torch.int64).clamp(min=0), width - 1)
    y = torch.minimum(torch.floor(uv[:, 1]).to(torch.int64).clamp(min=0), height - 1)
    hmax, wmax = int(hw[:, 0].max()), int(hw[:, 1].max())
    # padded per-camera depth images; pixels outside a camera's own size stay +inf
    buffer = torch.full((num_images * hmax * wmax,), float("inf"), dtype=depth.dtype,
                        device=device)
    flat = (image * hmax + y) * wmax + x
    buffer.scatter_reduce_(0, flat, depth, reduce="amin", include_self=True)
    buffer = buffer.view(num_images, hmax, wmax)
    # min-pool over the window, read only at the pairs' pixels
    zmin = torch.full_like(depth, float("inf"))
    for dy in range(-window, window + 1):
        yy = (y + dy).clamp(0, hmax - 1)
        for dx in range(-window, window + 1):
            xx = (x + dx).clamp(0, wmax - 1)
            zmin = torch.minimum(zmin, buffer[image, yy, xx])
    return depth <= zmin + depth_tolerance + relative_tolerance * zmin
