"""The info index: a JSON file listing every sample of a dataset with its files,
calibration and annotations, written once by ``tools/create_data.py`` and read by the
datasets (no devkit in the workers, no pickle).

File layout::

    {
      "metadata": {"format": "lidarcl-info", "format_version": 1,
                   "dataset": "nuscenes" | "kitti", "version": "<dataset version>",
                   "data_root": "<root when written, informative only>",
                   "classes": [<detection class names>],
                   "superpixels": {"method": "slic", "n_segments": 150, "compactness": 6.0,
                                   "sigma": 3.0, "tag": "slic150", ...}  (only when
                                   superpixels were computed), ...},
      "infos": [<sample info>, ...]
    }

A sample info (all paths relative to the data root except ``superpixel_path``, matrices as
nested lists, float64)::

    token             unique id of the sample (nuScenes sample token, KITTI frame id)
    timestamp         microseconds (nuScenes) or 0 (KITTI)
    lidar_path        point file of the keyframe
    num_point_features  float32 columns in the point file (5 nuScenes, 4 KITTI)
    lidar2ego, ego2global  4x4 (KITTI: identity, identity)
    sweeps            [{"path", "timestamp", "time_lag" (s, >= 0), "sweep2lidar" 4x4}, ...]
                      newest first; empty for KITTI
    cams              {channel: {"path", "timestamp", "height", "width",
                                 "cam2img" 4x4 (intrinsics, KITTI: P2 padded),
                                 "lidar2cam" 4x4, "lidar2img" 4x4 = cam2img @ lidar2cam,
                                 "superpixel_path" (optional)}}
                      superpixel_path: the image's superpixel id map (PNG), relative to
                      the folder of the info index itself (the maps are cached next to it,
                      ``superpixels/<tag>/<token>_<CHANNEL>.png``; see
                      ``lidarcl/datasets/superpixels.py``); absent when the index was
                      written with ``--superpixels none``
    gt_boxes          (M, 7) LiDAR-frame boxes [x, y, z, l, w, h, yaw] (structures/boxes.py)
    gt_velocity       (M, 2) [vx, vy] in the LiDAR frame, m/s (null when unknown: the file
                      is strict JSON, NaN is written as null and read back as NaN)
    gt_names          (M,) dataset class names (nuScenes category names, KITTI types)
    gt_attributes     (M,) attribute name or "" (nuScenes); [] for KITTI
    num_lidar_pts     (M,) annotated points in the box (nuScenes) or counted (KITTI)
    instance_tokens   (M,) track ids (nuScenes); [] for KITTI
    lidarseg_path     nuScenes-lidarseg .bin of the keyframe, or null
    scene_token, prev, next   temporal neighbours ("" at a scene's ends)
    ignored           KITTI: {"names", "bboxes_2d"} of DontCare regions; absent otherwise
    dataset-specific extras may follow (e.g. "kitti": {"bboxes_2d", "truncated", ...})
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any

from lidarcl.errors import DataError, DataFileNotFound

INFO_FORMAT = "lidarcl-info"
INFO_FORMAT_VERSION = 1

REQUIRED_SAMPLE_KEYS = ("token", "lidar_path", "num_point_features", "lidar2ego",
                        "ego2global", "sweeps", "cams", "gt_boxes", "gt_names")


def _strict_json(value):
    """Replace non-finite floats by None so that the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def write_info_index(path: str | os.PathLike, infos: list[dict[str, Any]],
                     metadata: dict[str, Any]) -> None:
    """Write an info index atomically (temporary file, then rename)."""
    path = os.fspath(path)
    meta = {"format": INFO_FORMAT, "format_version": INFO_FORMAT_VERSION, **metadata}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".info-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_strict_json({"metadata": meta, "infos": infos}), f, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_info_index(path: str | os.PathLike, dataset: str | None = None
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read and check an info index; returns ``(infos, metadata)``.

    Raises :class:`DataError` naming the file when it is not a lidarcl info index, was
    written by another format version, describes another dataset than ``dataset``, or
    lacks a required key.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "info index")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not a JSON info index ({exc})") from exc
    meta = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != INFO_FORMAT:
        raise DataError(path, "not a lidarcl info index (metadata.format is not "
                              f"{INFO_FORMAT!r}); write one with tools/create_data.py")
    if meta.get("format_version") != INFO_FORMAT_VERSION:
        raise DataError(path, f"info index format version {meta.get('format_version')!r}, "
                              f"this lidarcl reads version {INFO_FORMAT_VERSION}; "
                              "regenerate it with tools/create_data.py")
    if dataset is not None and meta.get("dataset") != dataset:
        raise DataError(path, f"info index describes dataset {meta.get('dataset')!r}, "
                              f"expected {dataset!r}")
    infos = data.get("infos")
    if not isinstance(infos, list):
        raise DataError(path, "info index has no 'infos' list")
    for i, info in enumerate(infos):
        missing = [k for k in REQUIRED_SAMPLE_KEYS if k not in info]
        if missing:
            raise DataError(path, f"sample {i} lacks keys {missing}")
    return infos, meta
