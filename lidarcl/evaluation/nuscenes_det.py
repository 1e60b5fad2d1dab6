"""nuScenes detection results: the devkit's submission JSON and its evaluation.

Submission (nuscenes-devkit ``eval/detection``; https://www.nuscenes.org/object-detection)::

    {"meta": {"use_camera", "use_lidar", "use_radar", "use_map", "use_external"} (booleans),
     "results": {sample_token: [{"sample_token", "translation" [x, y, z] global box centre (m),
                                 "size" [w, l, h] (m), "rotation" [w, x, y, z] global,
                                 "velocity" [vx, vy] global (m/s), "detection_name",
                                 "detection_score", "attribute_name"}, ...]}}

Every sample of the eval set needs an entry (an empty list when nothing was detected), and no
other sample may have one; at most 500 boxes per sample.

From our LiDAR frame (:func:`boxes_to_nuscenes_results`) -- the exact inverse of
``lidarcl/datasets/nuscenes_converter.py``, which maps a global annotation into the LiDAR
frame with ``R = ego2global[:3, :3] @ lidar2ego[:3, :3]``:

* centre: ``R @ [x, y, z] + t`` (``t`` the translation of ``ego2global @ lidar2ego``);
* size: ``[w, l, h]``;
* rotation: the converter keeps the heading of the box's +x axis seen in the LiDAR frame's xy
  plane. The writer returns the **upright** global box (rotation about global z only, as the
  annotations are up to a small roll / pitch) whose heading, seen so, is ``yaw``: with
  ``A = R[:2, :2].T`` (the LiDAR-frame xy of a horizontal global vector is ``A @ v``), the
  global heading is ``atan2`` of ``A^-1 @ [cos yaw, sin yaw]``;
* velocity: the converter zeroes the global vz and keeps the LiDAR-frame xy, so the global
  velocity is ``A^-1 @ [vx, vy]`` (horizontal).
  mmdetection3d and OpenPCDet instead rotate ``(vx, vy, 0)`` and ``Rz(yaw)`` with ``R``; with
  nuScenes' LiDAR mount (tilted by about 0.025 rad) that differs from the inverse above by
  about ``tilt**2`` (6e-4 relative), far below what the metrics resolve but not zero.
* attribute: given per box, or the default of mmdetection3d's ``NuScenesMetric`` /
  ``NuScenesDataset._format_bbox`` (:func:`default_attribute`): above 0.2 m/s (global xy
  speed) cars, trucks, buses, trailers and construction vehicles are ``vehicle.moving`` and
  bicycles / motorcycles ``cycle.with_rider``; at or below it pedestrians are
  ``pedestrian.standing`` and buses ``vehicle.stopped``; everything else takes
  ``DefaultAttribute`` (car / truck / trailer / construction_vehicle ``vehicle.parked``,
  bus ``vehicle.moving``, pedestrian ``pedestrian.moving``, bicycle / motorcycle
  ``cycle.without_rider``, barrier / traffic_cone ``''``). OpenPCDet's
  ``transform_det_annos_to_nusc_annos`` has the same speed rule but falls back on the most
  frequent attribute of the training set, which agrees except for barrier / traffic_cone,
  which get ``cycle.with_rider`` there (harmless: the devkit scores no attribute for them).
* boxes outside the devkit's class range (the xy distance of the global centre from the ego
  pose, as ``add_center_dist`` + ``filter_eval_boxes`` measure it) are dropped by default --
  the devkit would drop them anyway -- before the 500 highest scores are kept, so that far
  boxes cannot crowd out boxes that count.

Evaluation (:func:`evaluate_nuscenes_det`), config ``detection_cvpr_2019``:

* official versions (``v1.0-mini``, ``v1.0-trainval``, ``v1.0-test``) with a split the devkit
  knows for them: the devkit's ``DetectionEval`` itself (its loaders, filters and
  ``evaluate``). Our split names are accepted too (``val`` on ``v1.0-mini`` is ``mini_val``,
  as in the converter);
* any other version (the generated data): the devkit's split table does not know its scenes
  (and ``load_gt`` refuses ``val`` on a version not ending in ``trainval``), so the eval set's
  samples come from ``<root>/<version>/splits.json`` (as the converter reads it). The ground
  truth is built **from the devkit's tables through the devkit's own code**: ``NuScenes`` +
  ``load_gt_of_sample_tokens`` (devkit >= 1.2; :func:`_load_gt_of_samples` is the same
  ``DetectionBox`` branch of ``load_gt`` for older devkits) -- the category -> detection class
  mapping, the attribute, ``box_velocity``, ``num_lidar_pts + num_radar_pts`` -- then
  ``add_center_dist`` and ``filter_eval_boxes`` (class range, boxes without lidar and radar
  points, bicycles / motorcycles in a bicycle rack). Our info index cannot serve here: it has
  no radar point counts, and its boxes went through the LiDAR frame (1e-13 m round-trip error,
  the global vz dropped). Predictions are read by the devkit's ``load_prediction`` and go
  through the same two filters; :func:`detection_metrics` then runs the devkit's
  ``accumulate``, ``calc_ap``, ``calc_tp`` and ``DetectionMetrics`` exactly as
  ``DetectionEval.evaluate`` does (NaN by rule for traffic_cone AOE / AVE / AAE and barrier
  AVE / AAE).

Both paths return the devkit's ``metrics_summary.json`` content (:func:`metrics_summary`):
``label_aps`` (class -> {"0.5", "1.0", "2.0", "4.0"} -> AP), ``mean_dist_aps``, ``mean_ap``,
``label_tp_errors``, ``tp_errors`` (trans / scale / orient / vel / attr), ``tp_scores``,
``nd_score``, ``eval_time``, ``cfg``, ``meta``. As in the devkit, **mAP is the mean over all 10
classes**: a class without ground truth in the eval set has AP 0 and TP errors 1 and still
counts (``accumulate`` returns ``no_predictions``), so perfect predictions on data that lacks
some classes give mAP = (classes present) / 10. TP errors are ``nanmean``-ed over classes;
NDS = (5 mAP + sum of max(0, 1 - mTP error)) / 10.

Bad input (checked before the devkit, which only asserts): a missing or non-JSON file, a
missing ``results`` / ``meta``, a sample of the eval set without an entry or an entry for a
sample outside it, more than 500 boxes, or a malformed record raise :class:`DataError`
naming the file, the sample and the field. Parsing the file for these checks and again in the
devkit's loader costs a second read (seconds for a full val submission).
"""
from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.utils.fileio import atomic_write

__all__ = ["SUBMISSION_META", "MAX_BOXES_PER_SAMPLE", "DEFAULT_ATTRIBUTE", "default_attribute",
           "boxes_to_nuscenes_results", "write_nuscenes_results", "read_nuscenes_results",
           "eval_set_samples", "load_eval_ground_truth", "load_eval_predictions",
           "detection_metrics", "metrics_summary", "evaluate_nuscenes_det",
           "cropped_detection_config"]

CONFIG_NAME = "detection_cvpr_2019"
MAX_BOXES_PER_SAMPLE = 500
SUBMISSION_META = {"use_camera": False, "use_lidar": True, "use_radar": False,
                   "use_map": False, "use_external": False}

# mmdetection3d NuScenesMetric.DefaultAttribute (and NuScenesDataset in mmdet3d < 1.0)
DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked", "pedestrian": "pedestrian.moving", "trailer": "vehicle.parked",
    "truck": "vehicle.parked", "bus": "vehicle.moving", "motorcycle": "cycle.without_rider",
    "construction_vehicle": "vehicle.parked", "bicycle": "cycle.without_rider",
    "barrier": "", "traffic_cone": "",
}
MOVING_SPEED = 0.2  # m/s, mmdetection3d's and OpenPCDet's threshold
_VEHICLES = ("car", "construction_vehicle", "bus", "truck", "trailer")
_CYCLES = ("bicycle", "motorcycle")

# TP errors that DetectionEval.evaluate sets to NaN by rule
_UNDEFINED_TP = {"traffic_cone": ("attr_err", "vel_err", "orient_err"),
                 "barrier": ("attr_err", "vel_err")}

# the devkit's split names per official version (load_gt's compatibility checks)
_DEVKIT_SPLITS = {"v1.0-mini": ("mini_train", "mini_val"),
                  "v1.0-trainval": ("train", "val", "train_detect", "train_track"),
                  "v1.0-test": ("test",)}

_RECORD_KEYS = ("sample_token", "translation", "size", "rotation", "velocity",
                "detection_name", "detection_score", "attribute_name")


def _devkit():
    try:
        from nuscenes.eval.detection import constants
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise ImportError("nuScenes detection evaluation needs nuscenes-devkit "
                          "(pip install nuscenes-devkit)") from exc
    return constants


def detection_config():
    """The devkit's ``detection_cvpr_2019`` :class:`DetectionConfig` (a new object)."""
    from nuscenes.eval.common.config import config_factory

    return config_factory(CONFIG_NAME)


def cropped_detection_config(max_range: float):
    """``detection_cvpr_2019`` with every class range capped at ``max_range`` metres (the
    devkit's own ego-distance filter then drops ground truth and predictions beyond it), for
    a detector that only sees points within that range."""
    from nuscenes.eval.detection.data_classes import DetectionConfig

    serialized = detection_config().serialize()
    serialized["class_range"] = {name: min(float(r), float(max_range))
                                 for name, r in serialized["class_range"].items()}
    return DetectionConfig.deserialize(serialized)


@functools.lru_cache(maxsize=1)
def _class_range() -> dict:
    return dict(detection_config().class_range)


# ------------------------------------------------------------------------------- writing
def default_attribute(name: str, velocity) -> str:
    """mmdetection3d's attribute of a box of class ``name`` moving at ``velocity`` (global
    [vx, vy], m/s) -- module doc. A NaN velocity counts as not moving, as there."""
    speed = math.hypot(float(velocity[0]), float(velocity[1]))
    if speed > MOVING_SPEED:
        if name in _VEHICLES:
            return "vehicle.moving"
        if name in _CYCLES:
            return "cycle.with_rider"
    else:
        if name == "pedestrian":
            return "pedestrian.standing"
        if name == "bus":
            return "vehicle.stopped"
    return DEFAULT_ATTRIBUTE[name]


def boxes_to_nuscenes_results(sample_token: str, boxes, scores, labels: Sequence[str],
                              lidar2ego, ego2global, velocities=None,
                              attributes: Sequence[str] | None = None,
                              drop_out_of_range: bool = True,
                              max_boxes: int = MAX_BOXES_PER_SAMPLE) -> list[dict[str, Any]]:
    """The devkit's result records of one sample's predictions (module doc).

    Args:
        sample_token: the nuScenes sample token (our info's ``token``).
        boxes: (K, 7) LiDAR-frame ``[x, y, z, l, w, h, yaw]`` (gravity centre), or (K, 9)
            with ``[vx, vy]`` appended (used when ``velocities`` is None).
        scores: (K,) finite confidences.
        labels: K detection class names (``car`` ... ``traffic_cone``).
        lidar2ego, ego2global: the sample's 4x4 transforms (info index).
        velocities: (K, 2) LiDAR-frame ``[vx, vy]`` in m/s; NaN allowed (unknown: the devkit
            leaves it out of AVE); None and 7-column boxes: zeros, as mmdetection3d and
            OpenPCDet write for a model without a velocity head.
        attributes: K attribute names (or ``''``) to write instead of :func:`default_attribute`.
        drop_out_of_range: drop boxes beyond the devkit's class range (they would be
            filtered by the devkit) before keeping the ``max_boxes`` best.
        max_boxes: at most this many records, the highest scores (500: the devkit's limit).

    Returns:
        Records sorted by decreasing score. A malformed argument raises ValueError naming
        the sample.
    """
    constants = _devkit()
    where = f"sample {sample_token}"
    if not isinstance(sample_token, str) or not sample_token:
        raise ValueError(f"sample_token must be a non-empty string, got {sample_token!r}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 7)
    if boxes.ndim != 2 or boxes.shape[1] not in (7, 9):
        raise ValueError(f"{where}: boxes must have shape (K, 7) or (K, 9), got {boxes.shape}")
    if boxes.shape[1] == 9:
        velocities = boxes[:, 7:9] if velocities is None else velocities
        boxes = boxes[:, :7]
    k = len(boxes)
    if not np.isfinite(boxes).all():
        raise ValueError(f"{where}: boxes holds NaN or inf")
    if (boxes[:, 3:6] <= 0).any():
        raise ValueError(f"{where}: box sizes l, w, h must be > 0")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape != (k,) or not np.isfinite(scores).all():
        raise ValueError(f"{where}: scores must be {k} finite numbers, got shape {scores.shape}")
    labels = [str(n) for n in labels]
    if len(labels) != k:
        raise ValueError(f"{where}: {len(labels)} labels for {k} boxes")
    unknown = sorted(set(labels) - set(constants.DETECTION_NAMES))
    if unknown:
        raise ValueError(f"{where}: unknown detection class {unknown[0]!r}; the devkit knows "
                         f"{', '.join(constants.DETECTION_NAMES)}")
    velocities = (np.zeros((k, 2)) if velocities is None
                  else np.asarray(velocities, dtype=np.float64).reshape(-1, 2))
    if velocities.shape != (k, 2) or np.isinf(velocities).any():
        raise ValueError(f"{where}: velocities must be ({k}, 2) numbers, finite or NaN")
    if attributes is not None:
        attributes = [str(a) for a in attributes]
        bad = [a for a in attributes if a != "" and a not in constants.ATTRIBUTE_NAMES]
        if len(attributes) != k or bad:
            raise ValueError(f"{where}: attributes must be {k} names of "
                             f"{', '.join(constants.ATTRIBUTE_NAMES)} or ''"
                             + (f", got {bad[0]!r}" if bad else f", got {len(attributes)}"))
    lidar2ego = np.asarray(lidar2ego, dtype=np.float64)
    ego2global = np.asarray(ego2global, dtype=np.float64)
    if lidar2ego.shape != (4, 4) or ego2global.shape != (4, 4):
        raise ValueError(f"{where}: lidar2ego and ego2global must be 4x4 matrices")
    lidar2global = ego2global @ lidar2ego
    rot, trans = lidar2global[:3, :3], lidar2global[:3, 3]

    centres = boxes[:, :3] @ rot.T + trans
    # A maps a horizontal global xy vector to its LiDAR-frame xy (the converter's rule)
    a_inv = np.linalg.inv(rot[:2, :2].T)
    headings = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], 1) @ a_inv.T
    yaw_global = np.arctan2(headings[:, 1], headings[:, 0])
    velocity_global = velocities @ a_inv.T

    keep = np.ones(k, dtype=bool)
    if drop_out_of_range and k:
        class_range = _class_range()
        ego_dist = np.hypot(centres[:, 0] - ego2global[0, 3], centres[:, 1] - ego2global[1, 3])
        keep = ego_dist < np.array([class_range[n] for n in labels], dtype=np.float64)
    order = [i for i in np.argsort(-scores, kind="stable") if keep[i]][:max_boxes]

    records = []
    for i in order:
        name = str(labels[i])
        velocity = [float(velocity_global[i, 0]), float(velocity_global[i, 1])]
        records.append({
            "sample_token": sample_token,
            "translation": [float(v) for v in centres[i]],
            "size": [float(boxes[i, 4]), float(boxes[i, 3]), float(boxes[i, 5])],
            "rotation": [float(np.cos(yaw_global[i] / 2)), 0.0, 0.0,
                         float(np.sin(yaw_global[i] / 2))],
            "velocity": velocity,
            "detection_name": name,
            "detection_score": float(scores[i]),
            "attribute_name": (attributes[i] if attributes is not None
                               else default_attribute(name, velocity)),
        })
    return records


def write_nuscenes_results(path: str | os.PathLike,
                           results_by_token: Mapping[str, Iterable[Mapping[str, Any]]],
                           meta: Mapping[str, bool] | None = None) -> int:
    """Write the submission JSON (module doc) atomically; returns the number of boxes.

    ``meta`` overrides :data:`SUBMISSION_META` (a LiDAR-only submission). Records are checked
    as the reader checks them (ValueError naming the sample and the field); a velocity that
    is NaN is written as ``NaN``, which Python's and the devkit's JSON reader accept."""
    path = os.fspath(path)
    meta = {**SUBMISSION_META, **(meta or {})}
    for key, value in meta.items():
        if not isinstance(value, bool):
            raise ValueError(f"meta[{key!r}] must be true or false, got {value!r}")
    results = {str(token): [dict(r) for r in records]
               for token, records in results_by_token.items()}
    try:
        _check_results(results, _devkit())
    except DataError as err:
        raise ValueError(err.problem) from None
    with atomic_write(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f)
    return sum(len(r) for r in results.values())


# ------------------------------------------------------------------------------- reading
def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _numbers(value, n: int, allow_nan: bool = False) -> bool:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return False
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if not math.isfinite(v) and not (allow_nan and math.isnan(v)):
            return False
    return True


def _check_record(rec, token: str, i: int, constants) -> None:
    """Raise DataError(None, ...) describing what is wrong with one result record."""
    at = f"results[{token!r}][{i}]"
    if not isinstance(rec, dict):
        raise DataError(None, f"{at} must be an object, got {_short(rec)}")
    missing = [k for k in _RECORD_KEYS if k not in rec]
    if missing:
        raise DataError(None, f"{at} lacks {missing}")
    if rec["sample_token"] != token:
        raise DataError(None, f"{at}: sample_token {_short(rec['sample_token'])} differs from "
                              "the sample it is listed under")
    if not _numbers(rec["translation"], 3):
        raise DataError(None, f"{at}: translation must be 3 finite numbers, got "
                              f"{_short(rec['translation'])}")
    if not _numbers(rec["size"], 3) or min(rec["size"]) <= 0:
        raise DataError(None, f"{at}: size must be 3 numbers > 0 [w, l, h], got "
                              f"{_short(rec['size'])}")
    if not _numbers(rec["rotation"], 4) or not any(rec["rotation"]):
        raise DataError(None, f"{at}: rotation must be a non-zero quaternion of 4 finite "
                              f"numbers [w, x, y, z], got {_short(rec['rotation'])}")
    if not _numbers(rec["velocity"], 2, allow_nan=True):
        raise DataError(None, f"{at}: velocity must be 2 numbers [vx, vy] (finite or NaN), got "
                              f"{_short(rec['velocity'])}")
    if rec["detection_name"] not in constants.DETECTION_NAMES:
        raise DataError(None, f"{at}: detection_name {_short(rec['detection_name'])} is none of "
                              f"{', '.join(constants.DETECTION_NAMES)}")
    score = rec["detection_score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise DataError(None, f"{at}: detection_score must be a finite number, got "
                              f"{_short(score)}")
    attr = rec["attribute_name"]
    if not isinstance(attr, str) or (attr and attr not in constants.ATTRIBUTE_NAMES):
        raise DataError(None, f"{at}: attribute_name {_short(attr)} is none of "
                              f"{', '.join(constants.ATTRIBUTE_NAMES)} or ''")


def _check_results(results, constants) -> None:
    if not isinstance(results, dict):
        raise DataError(None, f"'results' must be an object {{sample_token: [records]}}, got "
                              f"{type(results).__name__}")
    for token, records in results.items():
        if not isinstance(records, list):
            raise DataError(None, f"results[{token!r}] must be a list of records, got "
                                  f"{_short(records)}")
        if len(records) > MAX_BOXES_PER_SAMPLE:
            raise DataError(None, f"results[{token!r}] has {len(records)} boxes; the devkit "
                                  f"allows at most {MAX_BOXES_PER_SAMPLE} per sample")
        for i, rec in enumerate(records):
            _check_record(rec, token, i, constants)


def read_nuscenes_results(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(results, meta)`` of a submission JSON, checked (module doc, "Bad input");
    DataFileNotFound / DataError naming the file otherwise."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "nuScenes detection results file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(path, f"not a JSON nuScenes detection results file ({exc})") from exc
    if not isinstance(data, dict) or "results" not in data or "meta" not in data:
        raise DataError(path, 'expected {"meta": {...}, "results": {sample_token: [records]}}'
                              + ("" if not isinstance(data, dict) else
                                 f", got the keys {sorted(data)[:5]}"))
    meta = data["meta"]
    if not isinstance(meta, dict) or any(not isinstance(meta[k], bool)
                                         for k in SUBMISSION_META if k in meta):
        raise DataError(path, f"'meta' must be an object of booleans "
                              f"({', '.join(SUBMISSION_META)}), got {_short(meta)}")
    try:
        _check_results(data["results"], _devkit())
    except DataError as err:
        raise DataError(path, err.problem) from None
    return data["results"], meta


# ----------------------------------------------------------------------------- eval sets
def eval_set_samples(nusc, dataroot: str, version: str, eval_set: str
                     ) -> tuple[list[str], str | None]:
    """``(sample tokens, devkit split)`` of an eval set, the tokens in ``nusc.sample`` order
    as ``load_gt`` lists them. ``devkit split`` is the split name ``DetectionEval`` takes on
    an official version, None for another version (module doc). DataError naming the tables
    or the split file for an eval set that does not exist or holds no annotated box."""
    from nuscenes.eval.detection.utils import category_to_detection_name

    from lidarcl.datasets.nuscenes_converter import OFFICIAL_SPLITS, _scene_splits

    table_root = os.path.join(dataroot, version)
    if version in OFFICIAL_SPLITS:
        from nuscenes.utils.splits import create_splits_scenes

        split = OFFICIAL_SPLITS[version].get(eval_set, eval_set)
        if split not in _DEVKIT_SPLITS[version]:
            known = ", ".join(_DEVKIT_SPLITS[version])
            raise DataError(table_root, f"eval set {eval_set!r} is not a split of {version} "
                                        f"(the devkit evaluates {known})")
        scenes = set(create_splits_scenes()[split])
        where = table_root
    else:
        split = None
        splits = _scene_splits(nusc, dataroot, version)
        where = os.path.join(table_root, "splits.json")
        if eval_set not in splits:
            raise DataError(where, f"no split {eval_set!r} in {version} (has {sorted(splits)})"
                            + ("" if os.path.isfile(where) else
                               "; without this file every scene is 'train'"))
        scenes = set(splits[eval_set])
    scene_names = {s["token"]: s["name"] for s in nusc.scene}
    tokens = [s["token"] for s in nusc.sample if scene_names[s["scene_token"]] in scenes]
    if not tokens:
        raise DataError(where, f"eval set {eval_set!r} of {version} has no sample in these tables")
    if not any(category_to_detection_name(nusc.get("sample_annotation", ann)["category_name"])
               for t in tokens for ann in nusc.get("sample", t)["anns"]):
        raise DataError(table_root, f"eval set {eval_set!r} of {version} has no annotated box of "
                                    "a detection class (no ground truth to score against)")
    return tokens, split


def _check_samples(path: str, results: dict, tokens: Sequence[str], eval_set: str) -> None:
    """Exactly the eval set's samples, and at least one box (the devkit's filter needs one)."""
    wanted = set(tokens)
    missing = [t for t in tokens if t not in results]
    if missing:
        raise DataError(path, f"no entry for {len(missing)} of the {len(tokens)} samples of eval "
                              f"set {eval_set!r}, e.g. {missing[0]} (list every sample, [] when "
                              "nothing was detected)")
    extra = [t for t in results if t not in wanted]
    if extra:
        raise DataError(path, f"{len(extra)} entries for samples outside eval set "
                              f"{eval_set!r}, e.g. {extra[0]}; the devkit requires exactly the "
                              "eval set's samples")
    if not any(results.values()):
        raise DataError(path, "holds no detection at all; the devkit cannot score an empty "
                              "submission")


# ---------------------------------------------------------------------- the devkit's code
def _load_gt_of_samples(nusc, sample_tokens: Sequence[str]):
    """The ``DetectionBox`` branch of the devkit's ``load_gt`` over given samples (the
    devkit's ``load_gt_of_sample_tokens``, which devkits before 1.2 lack)."""
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.eval.detection.utils import category_to_detection_name

    attribute_map = {a["token"]: a["name"] for a in nusc.attribute}
    boxes = EvalBoxes()
    for sample_token in sample_tokens:
        sample_boxes = []
        for ann_token in nusc.get("sample", sample_token)["anns"]:
            ann = nusc.get("sample_annotation", ann_token)
            name = category_to_detection_name(ann["category_name"])
            if name is None:
                continue
            attrs = ann["attribute_tokens"]
            if len(attrs) > 1:
                raise DataError(os.path.join(nusc.table_root, "sample_annotation.json"),
                                f"annotation {ann_token} has {len(attrs)} attributes; the "
                                "devkit allows at most one")
            sample_boxes.append(DetectionBox(
                sample_token=sample_token, translation=ann["translation"], size=ann["size"],
                rotation=ann["rotation"], velocity=nusc.box_velocity(ann["token"])[:2],
                num_pts=ann["num_lidar_pts"] + ann["num_radar_pts"], detection_name=name,
                detection_score=-1.0,
                attribute_name=attribute_map[attrs[0]] if attrs else ""))
        boxes.add_boxes(sample_token, sample_boxes)
    return boxes


def load_eval_ground_truth(nusc, sample_tokens: Sequence[str], config=None):
    """The devkit's ground truth ``EvalBoxes`` of ``sample_tokens``, with center distances
    and filtered as ``DetectionEval`` does (module doc)."""
    from nuscenes.eval.common import loaders

    config = config or detection_config()
    load = getattr(loaders, "load_gt_of_sample_tokens", None)
    if load is not None:
        from nuscenes.eval.detection.data_classes import DetectionBox

        gt = load(nusc, list(sample_tokens), DetectionBox, verbose=False)
    else:  # pragma: no cover - devkit < 1.2
        gt = _load_gt_of_samples(nusc, sample_tokens)
    gt = loaders.add_center_dist(nusc, gt)
    return loaders.filter_eval_boxes(nusc, gt, config.class_range, verbose=False)


def load_eval_predictions(results_path: str, nusc, config=None):
    """``(EvalBoxes, meta)`` of a results file by the devkit's ``load_prediction``, with
    center distances and filtered as ``DetectionEval`` does. Check the file first
    (:func:`read_nuscenes_results`): the devkit only asserts."""
    from nuscenes.eval.common import loaders
    from nuscenes.eval.detection.data_classes import DetectionBox

    config = config or detection_config()
    pred, meta = loaders.load_prediction(results_path, config.max_boxes_per_sample,
                                         DetectionBox, verbose=False)
    pred = loaders.add_center_dist(nusc, pred)
    return loaders.filter_eval_boxes(nusc, pred, config.class_range, verbose=False), meta


def detection_metrics(gt_boxes, pred_boxes, config=None):
    """``(DetectionMetrics, DetectionMetricDataList)`` of filtered EvalBoxes: the body of the
    devkit's ``DetectionEval.evaluate`` (``accumulate`` per class and distance threshold,
    ``calc_ap``, ``calc_tp`` at ``dist_th_tp``, NaN by rule for traffic_cone AOE / AVE / AAE
    and barrier AVE / AAE)."""
    from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp
    from nuscenes.eval.detection.constants import TP_METRICS
    from nuscenes.eval.detection.data_classes import DetectionMetricDataList, DetectionMetrics

    config = config or detection_config()
    start = time.time()
    md_list = DetectionMetricDataList()
    for name in config.class_names:
        for dist_th in config.dist_ths:
            md_list.set(name, dist_th, accumulate(gt_boxes, pred_boxes, name,
                                                  config.dist_fcn_callable, dist_th))
    metrics = DetectionMetrics(config)
    for name in config.class_names:
        for dist_th in config.dist_ths:
            metrics.add_label_ap(name, dist_th, calc_ap(md_list[(name, dist_th)],
                                                        config.min_recall, config.min_precision))
        for metric in TP_METRICS:
            if metric in _UNDEFINED_TP.get(name, ()):
                tp = np.nan
            else:
                tp = calc_tp(md_list[(name, config.dist_th_tp)], config.min_recall, metric)
            metrics.add_label_tp(name, metric, tp)
    metrics.add_runtime(time.time() - start)
    return metrics, md_list


def metrics_summary(metrics, meta: Mapping) -> dict:
    """The content of the devkit's ``metrics_summary.json``: ``metrics.serialize()`` plus
    ``meta``, through JSON (distance thresholds become the strings "0.5" ... "4.0", NaN
    stays NaN)."""
    summary = metrics.serialize()
    summary["meta"] = dict(meta)
    return json.loads(json.dumps(summary))


def evaluate_nuscenes_det(results_path: str | os.PathLike, dataroot: str, version: str,
                          eval_set: str, nusc=None, output_dir: str | None = None,
                          verbose: bool = False, config=None,
                          sample_tokens: Sequence[str] | None = None) -> dict:
    """Score a submission JSON with the devkit's detection evaluation (module doc).

    Args:
        results_path: the submission (:func:`write_nuscenes_results`).
        dataroot, version: the tables (``<dataroot>/<version>/*.json``).
        eval_set: a devkit split (``val``, ``mini_val``, ...) or, on another version, a split
            of ``<dataroot>/<version>/splits.json``.
        nusc: a loaded ``NuScenes`` of these tables (loaded and checked here otherwise).
        output_dir: also write ``metrics_summary.json`` and ``metrics_details.json`` here,
            as the devkit's ``DetectionEval.main`` does.
        verbose: let the devkit print its progress.
        config: a devkit ``DetectionConfig`` in place of ``detection_cvpr_2019`` (e.g.
            :func:`cropped_detection_config` for a model that sees a smaller range).
        sample_tokens: score only these samples of the eval set (the submission lists
            exactly them; the devkit's ground truth of these samples, its metrics code).

    Returns:
        The devkit's metrics summary (:func:`metrics_summary`).
    """
    from lidarcl.datasets.nuscenes_converter import load_nuscenes

    results_path = os.fspath(results_path)
    results, _ = read_nuscenes_results(results_path)
    nusc = nusc or load_nuscenes(dataroot, version)
    tokens, devkit_split = eval_set_samples(nusc, dataroot, version, eval_set)
    if sample_tokens is not None:
        wanted = set(sample_tokens)
        unknown = sorted(wanted - set(tokens))
        if unknown:
            raise DataError(results_path, f"{len(unknown)} of the samples to score are not in "
                                          f"eval set {eval_set!r}, e.g. {unknown[0]}")
        tokens, devkit_split = [t for t in tokens if t in wanted], None
    _check_samples(results_path, results, tokens, eval_set)
    del results
    config = config or detection_config()
    if devkit_split is not None:
        from nuscenes.eval.detection.evaluate import DetectionEval

        with tempfile.TemporaryDirectory(prefix="lidarcl_nusc_det_") as scratch:
            evaluator = DetectionEval(nusc, config, results_path, devkit_split,
                                      output_dir=output_dir or scratch, verbose=verbose)
            metrics, md_list = evaluator.evaluate()
        meta = evaluator.meta
    else:
        gt = load_eval_ground_truth(nusc, tokens, config)
        pred, meta = load_eval_predictions(results_path, nusc, config)
        metrics, md_list = detection_metrics(gt, pred, config)
    summary = metrics_summary(metrics, meta)
    if output_dir:
        with atomic_write(os.path.join(output_dir, "metrics_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        with atomic_write(os.path.join(output_dir, "metrics_details.json"), "w") as f:
            json.dump(md_list.serialize(), f, indent=2)
    return summary
