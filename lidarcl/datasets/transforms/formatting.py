"""``PackSample``: the last transform; numpy arrays to torch tensors, metadata apart.

Packed sample (one dict, what :func:`lidarcl.datasets.collate.collate_samples` batches)::

    points               (N, C) float32 tensor
    <per-point keys>     (N,) tensors (pts_semantic_mask int64, ...), listed in
                         ``point_keys`` so that collate concatenates them with the points
    gt_boxes (M, 7) float32, gt_velocity (M, 2) float32, gt_labels (M,) int64
    images               (K, 3, H, W) uint8 (float32 with LoadImages(to_float=True));
                         a list of (3, H, W) when the cameras differ in size
    superpixels          (K, H, W) int16 (int32 past 32767) superpixel ids, aligned with ``images``
                         (``LoadSuperpixels``); a list of (H, W) when the cameras differ
    lidar2img, cam2img, lidar2cam  (K, 4, 4) float32; img_shape (K, 2) int64 (H, W)
    lidar_aug_matrix     (4, 4) float32 (identity when no augmentation ran)
    views                list of {points (M, C) float32, index (M,) int64, matrix (4, 4)
                         float32} (``MultiViewAugment``)
    point_keys           tuple of the per-point keys packed
    meta                 dict of ``meta_keys`` (plain Python / numpy values)

Float64 arrays become float32 tensors; integer arrays int64; bool stays bool. Keys that
the sample lacks are skipped.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from lidarcl.datasets.transforms.base import Transform, point_keys, warn_skipped
from lidarcl.registry import TRANSFORMS

DEFAULT_PACK_KEYS = ("points", "pts_semantic_mask", "pts_instance_mask", "gt_boxes",
                     "gt_velocity", "gt_labels", "images", "superpixels", "lidar2img",
                     "cam2img", "lidar2cam", "img_shape", "lidar_aug_matrix", "img_aug_matrix",
                     "views")
DEFAULT_META_KEYS = ("sample_idx", "token", "timestamp", "scene_token", "lidar_path",
                     "img_paths", "cam_names", "superpixel_paths", "gt_names",
                     "num_dropped_points",
                     "lidar2ego", "ego2global", "pcd_rotation_angle", "pcd_scale_factor",
                     "pcd_trans", "pcd_horizontal_flip", "pcd_vertical_flip")


def to_tensor(value: Any) -> torch.Tensor:
    """numpy array / number / sequence of numbers -> tensor (float64 -> float32,
    other integers -> int64)."""
    if isinstance(value, torch.Tensor):
        return value
    arr = np.asarray(value)
    if arr.dtype == np.float64 or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu" and arr.dtype != np.uint8:
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "fb" and arr.dtype != np.uint8:
        raise TypeError(f"cannot make a tensor of a {arr.dtype} array")
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. images from PIL
        arr = arr.copy()
    return torch.from_numpy(arr)


def _pack_images(images: Sequence[np.ndarray]):
    chw = [to_tensor(img).permute(2, 0, 1).contiguous() for img in images]
    if not chw:
        return torch.zeros((0, 3, 0, 0), dtype=torch.uint8)
    if len({tuple(t.shape) for t in chw}) == 1:
        return torch.stack(chw)
    return chw


def _pack_superpixels(maps):
    """(K, H, W) array -> tensor of the same integer dtype (int16 from LoadSuperpixels);
    a list of (H, W) maps -> one tensor when they have one size (stacked like the images),
    else a list."""
    def as_ids(m):
        return m if isinstance(m, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(m))

    if isinstance(maps, (np.ndarray, torch.Tensor)):
        return as_ids(maps)
    tensors = [as_ids(m) for m in maps]
    if not tensors:
        return torch.zeros((0, 0, 0), dtype=torch.int16)
    if len({tuple(t.shape) for t in tensors}) == 1:
        return torch.stack(tensors)
    return tensors


@TRANSFORMS.register_module()
class PackSample(Transform):
    """Convert ``keys`` to tensors and gather ``meta_keys`` under ``meta``.

    Args:
        keys: tensor keys to pack (absent ones skipped); per-point arrays named in the
            sample's ``point_keys`` are packed too.
        meta_keys: keys copied as they are into ``meta``.
        skip_empty: a sample whose points (or a view's points) are empty, e.g. after a
            range filter, is skipped (``None``, with a warning naming its file): alone in
            a batch it would reach the backbone with no voxel. ``False`` packs it.
    """

    def __init__(self, keys: Sequence[str] = DEFAULT_PACK_KEYS,
                 meta_keys: Sequence[str] = DEFAULT_META_KEYS, skip_empty: bool = True):
        self.keys = tuple(keys)
        self.meta_keys = tuple(meta_keys)
        self.skip_empty = skip_empty

    def transform(self, sample: dict) -> dict | None:
        points = [sample["points"]] if sample.get("points") is not None else []
        points += [v["points"] for v in sample.get("views") or () if "points" in v]
        if self.skip_empty and any(len(p) == 0 for p in points):
            # a scan with no point left after the filters would crash the backbone
            warn_skipped(sample.get("lidar_path", "<sample>"), "no points left after the "
                         f"pipeline's filters in sample {sample.get('token', '?')}")
            return None
        per_point = point_keys(sample)
        keys = list(self.keys) + [k for k in per_point if k not in self.keys]
        packed: dict[str, Any] = {}
        for key in keys:
            value = sample.get(key)
            if value is None:
                continue
            if key == "images":
                packed[key] = _pack_images(value)
            elif key == "superpixels":
                packed[key] = _pack_superpixels(value)
            elif key == "views":
                packed[key] = [{k: to_tensor(v) for k, v in view.items()} for view in value]
            else:
                packed[key] = to_tensor(value)
        if "points" in packed and "lidar_aug_matrix" in self.keys \
                and "lidar_aug_matrix" not in packed:
            packed["lidar_aug_matrix"] = torch.eye(4)
        packed["point_keys"] = tuple(k for k in per_point if k in packed)
        packed["meta"] = {k: sample[k] for k in self.meta_keys if k in sample}
        return packed
