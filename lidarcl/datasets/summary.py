"""A readable summary of what a data loader yields: samples, points, boxes per class,
semantic labels, cameras and point-pixel pairs. Used by ``tools/demo.py``."""
from __future__ import annotations

import collections
import time

import numpy as np

from lidarcl.structures.camera import points_to_image


def _as_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def summarize_batches(loader, class_names, max_batches: int | None = None) -> dict:
    """Iterate ``loader`` (batches from ``collate_samples``) and count what it holds."""
    stats = collections.Counter()
    per_class = collections.Counter()
    points_per_sample, pairs_per_camera = [], collections.Counter()
    start = time.perf_counter()
    batches = 0
    for batch in loader:
        batches += 1
        offsets = _as_numpy(batch["offsets"])
        points = _as_numpy(batch["points"])
        starts = np.concatenate([[0], offsets[:-1]])
        for i, (lo, hi) in enumerate(zip(starts, offsets)):
            sample_points = points[lo:hi]
            points_per_sample.append(hi - lo)
            labels = _as_numpy(batch["gt_labels"][i])
            for label in labels:
                per_class[class_names[int(label)]] += 1
            if "lidar2img" in batch:
                lidar2img = _as_numpy(batch["lidar2img"][i])
                img_shape = _as_numpy(batch["img_shape"][i])
                for k, name in enumerate(batch["meta"][i]["cam_names"]):
                    index, _, _ = points_to_image(sample_points, lidar2img[k], img_shape[k])
                    pairs_per_camera[name] += len(index)
        stats["samples"] += len(offsets)
        if max_batches is not None and batches >= max_batches:
            break
    seconds = time.perf_counter() - start
    return {
        "batches": batches,
        "samples": stats["samples"],
        "points_per_sample_mean": float(np.mean(points_per_sample)) if points_per_sample else 0,
        "point_columns": int(points.shape[1]) if batches else 0,
        "boxes_per_class": dict(sorted(per_class.items())),
        "pairs_per_camera_mean": {k: v / max(stats["samples"], 1)
                                  for k, v in sorted(pairs_per_camera.items())},
        "seconds_per_sample": seconds / max(stats["samples"], 1),
    }


def format_summary(summary: dict) -> str:
    lines = [f"samples {summary['samples']} in {summary['batches']} batches, "
             f"{summary['seconds_per_sample']:.3f} s per sample through the pipeline",
             f"points per sample (keyframe + sweeps): {summary['points_per_sample_mean']:.0f}, "
             f"{summary['point_columns']} columns"]
    boxes = ", ".join(f"{k} {v}" for k, v in summary["boxes_per_class"].items())
    lines.append(f"boxes: {boxes or 'none'}")
    pairs = ", ".join(f"{k} {v:.0f}" for k, v in summary["pairs_per_camera_mean"].items())
    if pairs:
        lines.append(f"point-pixel pairs per sample: {pairs}")
    return "\n".join(lines)
