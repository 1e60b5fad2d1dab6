"""Point-pixel correspondence ops (issue 3, in progress).

Each op has a pure-PyTorch reference here that the compiled kernels of ``lidarcl._C`` are
tested against. Until the kernels land, the public functions run the reference and warn
once per op (see ``_extension.py``).
"""
from lidarcl.ops._extension import kernel
from lidarcl.ops.gather import gather_pixel_features_reference
from lidarcl.ops.projection import (BatchedProjectionResult, ProjectionResult,
                                    project_points_batched_reference,
                                    project_points_reference, visibility_reference)


def project_points(points, lidar2img, image_hw, min_depth: float = 1.0,
                   margin: float = 1.0) -> ProjectionResult:
    """(point, camera, u, v, depth) pairs of one sample, with nuscenes-devkit's rule
    (see :func:`lidarcl.ops.projection.project_points_reference`)."""
    fn = kernel("project_points", "project_points")
    if fn is not None:
        return ProjectionResult(*fn(points, lidar2img, image_hw, min_depth, margin))
    return project_points_reference(points, lidar2img, image_hw, min_depth, margin)


def project_points_batched(points, offsets, lidar2img, image_hw, min_depth: float = 1.0,
                           margin: float = 1.0) -> BatchedProjectionResult:
    """Batched :func:`project_points` over points concatenated with ``offsets``."""
    fn = kernel("project_points_batched", "project_points_batched")
    if fn is not None:
        return BatchedProjectionResult(*fn(points, offsets, lidar2img, image_hw, min_depth,
                                           margin))
    return project_points_batched_reference(points, offsets, lidar2img, image_hw, min_depth,
                                            margin)


def visibility(result, image_hw, window: int = 1, depth_tolerance: float = 0.3,
               relative_tolerance: float = 0.0):
    """Depth-buffer mask over projection pairs (points hidden behind nearer points drop)."""
    fn = kernel("visibility", "visibility")
    if fn is not None:
        return fn(result, image_hw, window, depth_tolerance, relative_tolerance)
    return visibility_reference(result, image_hw, window, depth_tolerance, relative_tolerance)


def gather_pixel_features(features, image_index, uv, stride=1):
    """Bilinear samples ``(M, C)`` of feature maps at the pairs' pixels."""
    fn = kernel("gather_pixel_features", "gather_pixel_features")
    if fn is not None:
        return fn(features, image_index, uv, stride)
    return gather_pixel_features_reference(features, image_index, uv, stride)


__all__ = ["ProjectionResult", "BatchedProjectionResult", "project_points",
           "project_points_batched", "visibility", "gather_pixel_features"]
