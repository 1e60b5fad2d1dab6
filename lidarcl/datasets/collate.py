"""Batching packed samples (``PackSample``) without padding.

``collate_samples(batch)`` returns::

    points      (sum N_i, C) tensor: the samples' points one after another
    offsets     (B,) int64: cumulative point counts (Pointcept's ``offset``): sample i
                is ``points[start:offsets[i]]`` with ``start = offsets[i - 1]`` (0 for
                i = 0); ``offsets[-1] == len(points)``
    batch_idx   (sum N_i,) int64: the sample index of every point
    <per-point keys of the samples' ``point_keys``>  concatenated like ``points``
    gt_boxes, gt_velocity, gt_labels, images, superpixels, lidar2img, cam2img, lidar2cam,
    img_shape, lidar_aug_matrix and any other key: a list with one entry per sample
    (``images[i]`` (K, 3, H, W) and ``superpixels[i]`` (K, H, W) int64 of sample i, pixel
    for pixel; ``torch.stack(batch["superpixels"])`` gives the (B, K, H, W) of
    ``lidarcl.ops`` pooling when all samples have the same cameras)
    meta        list of the samples' ``meta`` dicts
    batch_size  B

Use it as ``DataLoader(collate_fn=collate_samples)``, or in an mmengine config as
``collate_fn=dict(type="collate_samples")`` (registered in mmengine's ``FUNCTIONS``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from mmengine.registry import FUNCTIONS


def offsets_to_batch_index(offsets: torch.Tensor) -> torch.Tensor:
    """Per-point sample index from cumulative counts."""
    counts = torch.diff(offsets, prepend=offsets.new_zeros(1))
    return torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), counts)


def collate_samples(batch: Sequence[dict]) -> dict[str, Any]:
    """Concatenate the points of packed samples with ``offsets``; lists for the rest."""
    if len(batch) == 0:
        raise ValueError("collate_samples got an empty batch")
    out: dict[str, Any] = {"batch_size": len(batch)}
    cat_keys = ["points"] + [k for k in batch[0].get("point_keys", ()) if k != "points"]
    if "points" in batch[0]:
        for i, sample in enumerate(batch):
            missing = [k for k in cat_keys if k not in sample]
            if missing:
                raise KeyError(f"sample {i} of the batch lacks per-point keys {missing}")
        counts = torch.tensor([len(s["points"]) for s in batch], dtype=torch.int64)
        out["offsets"] = torch.cumsum(counts, 0)
        out["batch_idx"] = offsets_to_batch_index(out["offsets"])
        for key in cat_keys:
            parts = [torch.as_tensor(s[key]) for s in batch]
            shapes = {tuple(p.shape[1:]) for p in parts}
            if len(shapes) > 1:
                raise ValueError(f"collate_samples: {key!r} has different trailing shapes "
                                 f"in one batch {sorted(shapes)} (e.g. point files with "
                                 "different columns; set LoadPoints(use_dims=...))")
            out[key] = torch.cat(parts, 0)
    else:
        cat_keys = []
    skip = set(cat_keys) | {"point_keys"}
    keys: list[str] = []
    for sample in batch:
        keys += [k for k in sample if k not in skip and k not in keys]
    for key in keys:
        out[key] = [s.get(key) for s in batch]
    return out


if "collate_samples" not in FUNCTIONS.module_dict:
    FUNCTIONS.register_module(name="collate_samples", module=collate_samples)
