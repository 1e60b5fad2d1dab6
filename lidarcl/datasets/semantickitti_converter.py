"""SemanticKITTI (Behley et al., ICCV 2019): its files, its 19-class learning map, and the
info indexes ``tools/create_data.py semantickitti`` writes.

Layout (the official ``dataset/`` folder)::

    sequences/NN/velodyne/XXXXXX.bin   float32 (N, 4): x, y, z, remission (velodyne frame)
    sequences/NN/labels/XXXXXX.label   uint32 (N,): semantic id in the low 16 bits, instance
                                       id in the high 16 bits (sequences 00-10 only)
    sequences/NN/poses.txt             one 3x4 row-major pose per scan: camera 0 of the scan
                                       in camera 0 of the first scan
    sequences/NN/calib.txt             P0..P3 (3x4) and Tr (3x4, velodyne -> camera 0)
    sequences/NN/times.txt             seconds since the sequence's start, one per scan

Official split (semantic-kitti-api ``config/semantic-kitti.yaml``): train 00-07, 09, 10;
val 08; test 11-21 (no labels).

The index (``lidarcl/datasets/info_format.py``) has one sample per scan: token ``NN_XXXXXX``,
``scene_token`` the sequence, ``prev``/``next`` its neighbours, ``timestamp`` in
microseconds from times.txt (0 without it), ``lidar2ego`` the identity and ``ego2global``
the scan's velodyne pose in the first scan's velodyne frame,
``inv(Tr) @ pose_cam @ Tr`` (the convention of semantic-kitti-api's ``generate_sequential``);
``lidarseg_path`` the ``.label`` file (null for the test sequences), no boxes, no cameras.
Labels are read with ``LoadSemanticKITTILabels``; ``metadata["lidarseg_format"]`` is
``"semantickitti"``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lidarcl.datasets.info_format import write_info_index
from lidarcl.errors import DataError, DataFileNotFound

__all__ = ["SEMANTICKITTI_CLASSES", "SEMANTICKITTI_RAW_LABELS", "LEARNING_MAP",
           "LEARNING_MAP_INV", "SEMANTICKITTI_SPLITS", "IGNORE_INDEX", "learning_map_lut",
           "read_label_file", "read_poses", "read_odometry_calib", "read_times",
           "sequence_infos", "create_semantickitti_infos"]

IGNORE_INDEX = 255
NUM_POINT_FEATURES = 4
# the 19 evaluated classes, in training-label order 0..18 (cross-entropy index)
SEMANTICKITTI_CLASSES = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence",
    "vegetation", "trunk", "terrain", "pole", "traffic-sign")
# raw semantic id -> name (semantic-kitti.yaml "labels")
SEMANTICKITTI_RAW_LABELS = {
    0: "unlabeled", 1: "outlier", 10: "car", 11: "bicycle", 13: "bus", 15: "motorcycle",
    16: "on-rails", 18: "truck", 20: "other-vehicle", 30: "person", 31: "bicyclist",
    32: "motorcyclist", 40: "road", 44: "parking", 48: "sidewalk", 49: "other-ground",
    50: "building", 51: "fence", 52: "other-structure", 60: "lane-marking", 70: "vegetation",
    71: "trunk", 72: "terrain", 80: "pole", 81: "traffic-sign", 99: "other-object",
    252: "moving-car", 253: "moving-bicyclist", 254: "moving-person",
    255: "moving-motorcyclist", 256: "moving-on-rails", 257: "moving-bus",
    258: "moving-truck", 259: "moving-other-vehicle"}
# semantic-kitti.yaml "learning_map" (raw id -> 0 unlabeled, 1..19 the classes), shifted
# here to 0..18 with unlabeled -> IGNORE_INDEX (mmdetection3d and Pointcept do the same)
_YAML_LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9,
    44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18,
    81: 19, 99: 0, 252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5}
LEARNING_MAP = {raw: (v - 1 if v else IGNORE_INDEX) for raw, v in _YAML_LEARNING_MAP.items()}
# training label -> raw id of a submission (semantic-kitti.yaml "learning_map_inv")
LEARNING_MAP_INV = {i: raw for i, raw in enumerate(
    (10, 11, 15, 18, 20, 30, 31, 32, 40, 44, 48, 49, 50, 51, 70, 71, 72, 80, 81))}
SEMANTICKITTI_SPLITS = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": tuple(f"{i:02d}" for i in range(11, 22)),
}


def learning_map_lut(ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``(65536,)`` int64 lookup from a raw semantic id to its training label; ids the
    learning map does not list get ``ignore_index``."""
    lut = np.full(1 << 16, ignore_index, dtype=np.int64)
    for raw, label in LEARNING_MAP.items():
        lut[raw] = ignore_index if label == IGNORE_INDEX else label
    return lut


def read_label_file(path: str | os.PathLike, num_points: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(semantic, instance)`` uint16 arrays of a ``.label`` file. DataError naming the
    file when its size is not a whole number of uint32 values or, given ``num_points``,
    when it holds another number of labels than the scan has points."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "SemanticKITTI label file")
    size = os.path.getsize(path)
    if size % 4:
        raise DataError(path, f"{size} bytes is not a whole number of uint32 labels "
                              "(a .label file holds one uint32 per point)")
    raw = np.fromfile(path, dtype="<u4")
    if num_points is not None and len(raw) != num_points:
        raise DataError(path, f"{len(raw)} labels but the scan has {num_points} points")
    return (raw & 0xFFFF).astype(np.uint16), (raw >> 16).astype(np.uint16)


def _numbers(path: str, lineno: int, text: str, count: int) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError as exc:
        raise DataError(path, f"line {lineno}: non-numeric value ({exc})") from exc
    if values.size != count or not np.isfinite(values).all():
        raise DataError(path, f"line {lineno}: expected {count} finite numbers, got "
                              f"{values.size}")
    return values


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a text file ({exc})") from exc


def read_poses(path: str | os.PathLike) -> np.ndarray:
    """``(S, 4, 4)`` camera-0 poses of a ``poses.txt`` (12 numbers per line)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "SemanticKITTI poses file")
    poses = []
    for lineno, line in enumerate(_lines(path), 1):
        if line.strip():
            pose = np.eye(4)
            pose[:3] = _numbers(path, lineno, line, 12).reshape(3, 4)
            poses.append(pose)
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def read_odometry_calib(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{"P0".."P3": (3, 4), "Tr": (4, 4)}`` of an odometry ``calib.txt``; Tr (velodyne ->
    camera 0) must be there and invertible."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "SemanticKITTI calibration file")
    calib = {}
    for lineno, line in enumerate(_lines(path), 1):
        key, sep, values = line.partition(":")
        if not line.strip():
            continue
        if not sep:
            raise DataError(path, f"line {lineno}: expected 'key: values', got {line!r}")
        calib[key.strip()] = _numbers(path, lineno, values, 12).reshape(3, 4)
    if "Tr" not in calib:
        raise DataError(path, f"calibration lacks Tr (velodyne -> camera 0); has {sorted(calib)}")
    tr = np.eye(4)
    tr[:3] = calib["Tr"]
    if abs(np.linalg.det(tr[:3, :3])) < 1e-6:
        raise DataError(path, "Tr is singular")
    calib["Tr"] = tr
    return calib


def read_times(path: str | os.PathLike) -> np.ndarray | None:
    """Seconds of every scan from ``times.txt``, or None when the file is absent."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    return np.array([_numbers(path, n, line, 1)[0] for n, line in enumerate(_lines(path), 1)
                     if line.strip()])


def sequence_infos(root: str | os.PathLike, sequence: str, with_labels: bool = True
                   ) -> list[dict]:
    """The sample infos of one sequence (module doc); paths relative to ``root``."""
    root = os.path.abspath(os.fspath(root))
    seq_dir = os.path.join(root, "sequences", sequence)
    velodyne = os.path.join(seq_dir, "velodyne")
    if not os.path.isdir(velodyne):
        raise DataFileNotFound(velodyne, f"SemanticKITTI sequence {sequence} scans")
    frames = sorted(f[:-4] for f in os.listdir(velodyne) if f.endswith(".bin"))
    if not frames:
        raise DataError(velodyne, "no .bin scans")
    tr = read_odometry_calib(os.path.join(seq_dir, "calib.txt"))["Tr"]
    poses_path = os.path.join(seq_dir, "poses.txt")
    poses = read_poses(poses_path)
    if len(poses) != len(frames):
        raise DataError(poses_path, f"{len(poses)} poses for {len(frames)} scans in {velodyne}")
    times = read_times(os.path.join(seq_dir, "times.txt"))
    if times is not None and len(times) != len(frames):
        raise DataError(os.path.join(seq_dir, "times.txt"),
                        f"{len(times)} times for {len(frames)} scans")
    tr_inv = np.linalg.inv(tr)
    infos = []
    for k, frame in enumerate(frames):
        if int(frame) != k:
            raise DataError(velodyne, f"scans are not numbered 000000..{len(frames) - 1:06d} "
                                      f"(found {frame}.bin at position {k})")
        label = os.path.join("sequences", sequence, "labels", f"{frame}.label")
        if with_labels and not os.path.isfile(os.path.join(root, label)):
            raise DataFileNotFound(os.path.join(root, label), "SemanticKITTI label file")
        infos.append({
            "token": f"{sequence}_{frame}",
            "timestamp": int(round(times[k] * 1e6)) if times is not None else 0,
            "lidar_path": os.path.join("sequences", sequence, "velodyne", f"{frame}.bin"),
            "num_point_features": NUM_POINT_FEATURES,
            "lidar2ego": np.eye(4).tolist(),
            "ego2global": (tr_inv @ poses[k] @ tr).tolist(),
            "sweeps": [], "cams": {}, "gt_boxes": [], "gt_names": [],
            "lidarseg_path": label if with_labels else None,
            "scene_token": sequence,
            "prev": f"{sequence}_{frames[k - 1]}" if k > 0 else "",
            "next": f"{sequence}_{frames[k + 1]}" if k + 1 < len(frames) else "",
        })
    return infos


def create_semantickitti_infos(root: str | os.PathLike, out_dir: str | os.PathLike,
                               splits: dict[str, Sequence[str]] | None = None,
                               prefix: str = "semantickitti") -> list[str]:
    """Write ``<out_dir>/<prefix>_infos_<split>.json`` for every split whose sequences are
    present (``splits`` defaults to the official one; a split none of whose sequences is
    there is skipped, one that is partly there is an error naming the missing folder).
    The test split has no labels. Returns the paths written."""
    root = os.path.abspath(os.fspath(root))
    splits = dict(SEMANTICKITTI_SPLITS if splits is None else splits)
    present = lambda seq: os.path.isdir(os.path.join(root, "sequences", seq))  # noqa: E731
    written = []
    for split, sequences in splits.items():
        found = [s for s in sequences if present(s)]
        if not found:
            continue
        if len(found) != len(sequences):
            missing = [s for s in sequences if not present(s)]
            raise DataFileNotFound(os.path.join(root, "sequences", missing[0]),
                                   f"sequence {missing[0]} of the {split} split "
                                   f"({', '.join(sequences)})")
        infos = [info for seq in sequences
                 for info in sequence_infos(root, seq, with_labels=split != "test")]
        path = str(Path(out_dir) / f"{prefix}_infos_{split}.json")
        write_info_index(path, infos, {
            "dataset": "semantickitti", "version": "semantickitti", "split": split,
            "sequences": list(sequences), "data_root": root, "classes": [],
            "lidarseg_format": "semantickitti",
            "seg_classes": list(SEMANTICKITTI_CLASSES)})
        written.append(path)
    if not written:
        raise DataFileNotFound(os.path.join(root, "sequences"),
                               "SemanticKITTI sequences of any split "
                               f"({', '.join(f'{k}: {v}' for k, v in splits.items())})")
    return written


def parse_sequences(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"0,1,2"`` or ``["00", "1"]`` -> ``("00", "01", "02")``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(f"{int(s):02d}" for s in items if str(s).strip())
