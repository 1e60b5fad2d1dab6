"""Bilinear reads of image feature maps at point-pixel pairs: pure-PyTorch reference.

Convention (pixel centres, as ``grid_sample(align_corners=False)`` and ``F.interpolate``):
input-image pixel ``i`` covers ``[i, i + 1)`` with its centre at ``i + 0.5``; a feature map
of stride ``s`` has cell ``j`` centred at input pixel ``(j + 0.5) * s``. So an input-image
point ``(u, v)`` reads the feature map at continuous cell coordinates

    x = (u + 0.5) / sx - 0.5,   y = (v + 0.5) / sy - 0.5

bilinearly, with the coordinates clamped to ``[0, W' - 1]`` and ``[0, H' - 1]`` (border
replication, ``padding_mode="border"``). The result is differentiable with respect to the
features (and to ``uv`` inside the map).
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["gather_pixel_features_reference", "feature_coordinates", "validate_gather_args"]


def _stride_pair(stride) -> tuple[float, float]:
    if isinstance(stride, bool):
        raise TypeError("stride must be a positive number or a (sy, sx) pair, got a bool")
    if isinstance(stride, (int, float)):
        pair = (stride, stride)
    elif isinstance(stride, Sequence) and len(stride) == 2:
        pair = tuple(stride)
    else:
        raise TypeError(f"stride must be a positive number or a (sy, sx) pair, got {stride!r}")
    for s in pair:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0:
            raise ValueError(f"stride must be positive, got {stride!r}")
    return float(pair[0]), float(pair[1])


def feature_coordinates(uv: torch.Tensor, stride) -> torch.Tensor:
    """Continuous feature-map coordinates ``(x, y)`` of input-image pixels ``uv (M, 2)``."""
    sy, sx = _stride_pair(stride)
    scale = uv.new_tensor([sx, sy])
    return (uv + 0.5) / scale - 0.5


def empty_rows(features: torch.Tensor) -> torch.Tensor:
    """A ``(0, C)`` result still attached to ``features``' graph (so that autograd.grad of a
    loss over no pairs gives zeros rather than an error)."""
    return features.flatten(2).sum(-1)[:0]


def validate_gather_args(features, image_index, uv) -> None:
    """Argument checks of :func:`gather_pixel_features_reference` (shared with the kernels)."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if not isinstance(image_index, torch.Tensor):
        raise TypeError(f"image_index must be a torch.Tensor, got {type(image_index).__name__}")
    if not isinstance(uv, torch.Tensor):
        raise TypeError(f"uv must be a torch.Tensor, got {type(uv).__name__}")
    if not features.is_floating_point():
        raise TypeError(f"features must be a floating-point tensor, got {features.dtype}")
    if features.dim() != 4:
        raise ValueError(f"features must have shape (B*K, C, H', W'), got {tuple(features.shape)}")
    if image_index.dtype != torch.int64:
        raise TypeError(f"image_index must be an int64 tensor, got {image_index.dtype}")
    if image_index.dim() != 1:
        raise ValueError(f"image_index must have shape (M,), got {tuple(image_index.shape)}")
    if not uv.is_floating_point():
        raise TypeError(f"uv must be a floating-point tensor, got {uv.dtype}")
    if uv.dim() != 2 or uv.shape[1] != 2 or uv.shape[0] != image_index.shape[0]:
        raise ValueError(f"uv must have shape (M={image_index.shape[0]}, 2) like image_index, "
                         f"got {tuple(uv.shape)}")
    for name, t in (("image_index", image_index), ("uv", uv)):
        if t.device != features.device:
            raise ValueError(f"{name} is on {t.device} but features are on {features.device}")
    num_maps, _, height, width = features.shape
    if image_index.numel() and (int(image_index.min()) < 0
                                or int(image_index.max()) >= num_maps):
        raise ValueError(f"image_index must lie in [0, {num_maps}) (the number of feature "
                         f"maps), got values in [{int(image_index.min())}, "
                         f"{int(image_index.max())}]")
    if image_index.numel() and (height == 0 or width == 0):
        raise ValueError(f"features have an empty spatial size {(height, width)}")
    if uv.numel() and not bool(torch.isfinite(uv).all()):
        raise ValueError("uv must be finite (a NaN or infinite pixel has no feature to read)")


def gather_pixel_features_reference(features: torch.Tensor, image_index: torch.Tensor,
                                    uv: torch.Tensor, stride=1) -> torch.Tensor:
    """Bilinear features at pixel positions of given feature maps.

    Args:
        features: ``(B * K, C, H', W')`` floating feature maps (one per image).
        image_index: ``(M,)`` int64, which feature map each pair reads (for a batched
            projection: ``batch_index * K + camera_index``).
        uv: ``(M, 2)`` floating pixel (x, y) in input-image pixels.
        stride: the maps' stride in input pixels, an int/float or ``(sy, sx)``.

    Returns:
        ``(M, C)`` in the features' dtype.
    """
    validate_gather_args(features, image_index, uv)
    num_maps, channels, height, width = features.shape
    if image_index.numel() == 0:
        return empty_rows(features)

    coords = feature_coordinates(uv, stride)
    x = coords[:, 0].clamp(0, width - 1)
    y = coords[:, 1].clamp(0, height - 1)
    x0 = torch.floor(x).to(torch.int64).clamp(max=max(width - 2, 0))
    y0 = torch.floor(y).to(torch.int64).clamp(max=max(height - 2, 0))
    x1 = (x0 + 1).clamp(max=width - 1)
    y1 = (y0 + 1).clamp(max=height - 1)
    wx = (x - x0).to(features.dtype)[:, None]
    wy = (y - y0).to(features.dtype)[:, None]
    maps = features.permute(0, 2, 3, 1)  # (BK, H', W', C)
    f00 = maps[image_index, y0, x0]
    f01 = maps[image_index, y0, x1]
    f10 = maps[image_index, y1, x0]
    f11 = maps[image_index, y1, x1]
    top = f00 * (1 - wx) + f01 * wx
    bottom = f10 * (1 - wx) + f11 * wx
    return top * (1 - wy) + bottom * wy
