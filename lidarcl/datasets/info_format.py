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
                                   superpixels were computed),
                   "superpixel_sets": {<tag>: {"method", "num_superpixels", ...}}  (every
                                   cached set of maps in <index dir>/superpixels/<tag>/, SLIC
                                   and semantic; lidarcl/datasets/semantic_superpixels.py),
                   ...},
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
    location          nuScenes: the map location of the sample's log (which map expansion
                      file holds its surroundings); absent for KITTI
    ignored           KITTI: {"names", "bboxes_2d"} of DontCare regions; absent otherwise
    dataset-specific extras may follow (e.g. "kitti": {"bboxes_2d", "truncated", ...})
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.utils.fileio import atomic_write

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
    with atomic_write(path, "w") as f:
        json.dump(_strict_json({"metadata": meta, "infos": infos}), f, allow_nan=False)


def read_json_document(path: str, what: str):
    """The parsed JSON of ``path``; DataFileNotFound / DataError naming the file and
    ``what`` it should be when it is missing or not JSON."""
    if not os.path.isfile(path):
        raise DataFileNotFound(path, what)
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(path, f"not a JSON {what} ({exc})") from exc


def read_info_index(path: str | os.PathLike, dataset: str | None = None
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read and check an info index; returns ``(infos, metadata)``.

    Raises :class:`DataError` naming the file when it is not a lidarcl info index, was
    written by another format version, describes another dataset than ``dataset``, has a
    sample that lacks a required key or holds a field of the wrong type or shape
    (:func:`check_sample_info`), or lists one token twice.
    """
    path = os.fspath(path)
    data = read_json_document(path, "info index")
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
    seen: dict = {}
    for i, info in enumerate(infos):
        check_sample_info(info, i, path)
        first = seen.setdefault(str(info["token"]), i)
        if first != i:
            raise DataError(path, f"samples {first} and {i} share the token {info['token']!r}")
    return infos, meta


def _matrix(value, shape: tuple[int, ...], where: str, path: str):
    """``value`` as a finite float64 array of ``shape``; DataError otherwise."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(path, f"{where} must be a {'x'.join(map(str, shape))} numeric "
                              f"matrix, got {_short(value)}") from None
    if arr.shape != shape or not np.isfinite(arr).all():
        raise DataError(path, f"{where} must be a finite {'x'.join(map(str, shape))} matrix, "
                              f"got shape {arr.shape}"
                              + ("" if arr.shape != shape else " with NaN or inf"))
    return arr


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _count(value, where: str, path: str, minimum: int) -> int:
    # bool is an int in Python; a JSON true is not a count
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(path, f"{where} must be an integer >= {minimum}, got {_short(value)}")
    return value


def _string(value, where: str, path: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise DataError(path, f"{where} must be a {'' if allow_empty else 'non-empty '}"
                              f"string, got {_short(value)}")
    return value


def check_sample_info(info, i: int, path: str) -> None:
    """Check the types and shapes of one sample info (module doc); raises
    :class:`DataError` naming the index, the sample and the field. Paths are checked to be
    strings here and confined to their root where the dataset joins them
    (:func:`lidarcl.utils.paths.confined_path`)."""
    if not isinstance(info, dict):
        raise DataError(path, f"sample {i} must be an object, got {_short(info)}")
    missing = [k for k in REQUIRED_SAMPLE_KEYS if k not in info]
    if missing:
        raise DataError(path, f"sample {i} lacks keys {missing}")
    token = info["token"]
    if isinstance(token, bool) or not isinstance(token, (str, int)) or token == "":
        raise DataError(path, f"sample {i}: token must be a non-empty string, got "
                              f"{_short(token)}")
    at = f"sample {i} ({token})"
    _string(info["lidar_path"], f"{at}: lidar_path", path)
    _count(info["num_point_features"], f"{at}: num_point_features", path, 3)
    for key in ("lidar2ego", "ego2global"):
        _matrix(info[key], (4, 4), f"{at}: {key}", path)
    if not isinstance(info["sweeps"], list):
        raise DataError(path, f"{at}: sweeps must be a list, got {_short(info['sweeps'])}")
    for j, sweep in enumerate(info["sweeps"]):
        if not isinstance(sweep, dict) or "path" not in sweep or "sweep2lidar" not in sweep:
            raise DataError(path, f"{at}: sweep {j} must be an object with 'path' and "
                                  f"'sweep2lidar', got {_short(sweep)}")
        _string(sweep["path"], f"{at}: sweep {j} path", path)
        _matrix(sweep["sweep2lidar"], (4, 4), f"{at}: sweep {j} sweep2lidar", path)
        lag = sweep.get("time_lag", 0.0)
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not math.isfinite(lag):
            raise DataError(path, f"{at}: sweep {j} time_lag must be a finite number, got "
                                  f"{_short(lag)}")
    if not isinstance(info["cams"], dict):
        raise DataError(path, f"{at}: cams must be an object, got {_short(info['cams'])}")
    for name, cam in info["cams"].items():
        where = f"{at}: camera {name}"
        if not isinstance(cam, dict):
            raise DataError(path, f"{where} must be an object, got {_short(cam)}")
        lacking = [k for k in ("path", "height", "width", "cam2img", "lidar2cam") if k not in cam]
        if lacking:
            raise DataError(path, f"{where} lacks keys {lacking}")
        _string(cam["path"], f"{where} path", path)
        _count(cam["height"], f"{where} height", path, 1)
        _count(cam["width"], f"{where} width", path, 1)
        _matrix(cam["lidar2cam"], (4, 4), f"{where} lidar2cam", path)
        cam2img = np.asarray(cam["cam2img"], dtype=object)
        if cam2img.shape not in ((3, 3), (3, 4), (4, 4)):
            raise DataError(path, f"{where} cam2img must be 3x3, 3x4 or 4x4, got shape "
                                  f"{cam2img.shape}")
        _matrix(cam["cam2img"], cam2img.shape, f"{where} cam2img", path)
        if cam.get("lidar2img") is not None:
            _matrix(cam["lidar2img"], (4, 4), f"{where} lidar2img", path)
        if cam.get("superpixel_path") is not None:
            _string(cam["superpixel_path"], f"{where} superpixel_path", path)
    for key in ("gt_boxes", "gt_names"):
        if not isinstance(info[key], list):
            raise DataError(path, f"{at}: {key} must be a list, got {_short(info[key])}")
    if not all(isinstance(n, str) for n in info["gt_names"]):
        raise DataError(path, f"{at}: gt_names must be strings")
    if info["gt_boxes"]:
        try:
            boxes = np.asarray(info["gt_boxes"], dtype=np.float64)
        except (TypeError, ValueError):
            boxes = np.zeros(0)
        if boxes.ndim != 2 or boxes.shape[1] != 7:
            raise DataError(path, f"{at}: gt_boxes must be (M, 7) numbers [x, y, z, l, w, h, "
                                  f"yaw], got {_short(info['gt_boxes'])}")
    num_boxes = len(info["gt_boxes"])
    if info.get("gt_velocity") is not None:
        try:
            velocity = np.asarray(info["gt_velocity"], dtype=np.float64)  # null -> NaN
        except (TypeError, ValueError):
            velocity = np.zeros(0)
        if velocity.shape != (num_boxes, 2) and not (num_boxes == 0 and velocity.size == 0):
            raise DataError(path, f"{at}: gt_velocity must be ({num_boxes}, 2) numbers (null "
                                  f"when unknown), got {_short(info['gt_velocity'])}")
    for key in ("num_lidar_pts", "gt_names"):
        values = info.get(key)
        if values is not None and (not isinstance(values, list) or len(values) != num_boxes):
            raise DataError(path, f"{at}: {key} must be a list of {num_boxes} entries (one "
                                  f"per box), got {_short(values)}")
    if any(isinstance(n, bool) or not isinstance(n, int) for n in info.get("num_lidar_pts")
           or ()):
        raise DataError(path, f"{at}: num_lidar_pts must be integers")
    if info.get("lidarseg_path") is not None:
        _string(info["lidarseg_path"], f"{at}: lidarseg_path", path)
