"""KITTI object dataset (raw release layout) -> lidarcl info index (info_format.py).

Layout read (KITTI 3D object benchmark)::

    <root>/ImageSets/{train,val,test}.txt      frame ids, one per line
    <root>/training/{velodyne,image_2,calib,label_2}/<id>.{bin,png,txt,txt}
    <root>/testing/{velodyne,image_2,calib}/<id>.{bin,png,txt}   (no labels)

Frames used here:

* LiDAR (velodyne): x forward, y left, z up -- lidarcl's box frame.
* Rectified reference camera (camera 0 after ``R0_rect``): x right, y down, z forward.
  KITTI labels live here: ``location`` is the *bottom* centre of the box, dimensions are
  ``h w l`` and ``rotation_y`` turns the object about the camera y axis (down).
  ``x_rect = R0_rect @ Tr_velo_to_cam @ x_velo`` and ``pixel ~ P2 @ x_rect`` (image_2).

Box conversion (done once, when the index is written). The KITTI devkit builds a box
from corners ``(+-l/2, -h..0, +-w/2)`` rotated by ``R_y(ry) = [[c, 0, s], [0, 1, 0],
[-s, 0, c]]``, so the object's heading (its local +x, along ``l``) is
``(cos ry, 0, -sin ry)`` in the camera frame. We map that heading vector through the
rotation of ``inv(R0_rect @ Tr_velo_to_cam)`` and take its angle in the LiDAR xy-plane,
rather than hard-coding a formula; for KITTI's near-axis-aligned calibrations it equals
``-ry - pi/2`` (checked in tests/test_kitti.py). The gravity centre is the bottom centre
lifted by ``h/2`` against camera y, mapped through the same inverse transform.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lidarcl.datasets.info_format import write_info_index
from lidarcl.datasets.io import load_points
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.structures.boxes import points_in_boxes
from lidarcl.structures.camera import pad_to_4x4

# every type that appears in KITTI's label_2 files
KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram",
               "Misc", "DontCare")
KITTI_CLASSES = tuple(t for t in KITTI_TYPES if t != "DontCare")
KITTI_SPLITS = ("train", "val", "test")
NUM_POINT_FEATURES = 4

# calibration entries: name -> shape. Tr_imu_to_velo is optional (not used here).
CALIB_SHAPES = {"P0": (3, 4), "P1": (3, 4), "P2": (3, 4), "P3": (3, 4), "R0_rect": (3, 3),
                "Tr_velo_to_cam": (3, 4), "Tr_imu_to_velo": (3, 4)}
CALIB_OPTIONAL = ("Tr_imu_to_velo",)
# names used by KITTI's tracking/raw releases for the same matrices
CALIB_ALIASES = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam",
                 "Tr_imu_velo": "Tr_imu_to_velo"}

# KITTI's difficulty rules (devkit_object/cpp/evaluate_object.cpp):
# (minimum 2D box height in pixels, maximum occlusion level, maximum truncation)
DIFFICULTY_RULES = ((40.0, 0, 0.15), (25.0, 1, 0.30), (25.0, 2, 0.50))
DIFFICULTY_NAMES = ("easy", "moderate", "hard")  # index = difficulty; -1 = none of them


# --------------------------------------------------------------------------- calibration
@dataclass
class KittiCalib:
    """One frame's calibration (matrices as float64)."""

    P0: np.ndarray
    P1: np.ndarray
    P2: np.ndarray
    P3: np.ndarray
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray
    Tr_imu_to_velo: np.ndarray | None = None
    path: str | None = None

    @property
    def lidar2cam(self) -> np.ndarray:
        """4x4 LiDAR -> rectified camera: ``R0_rect (4x4) @ Tr_velo_to_cam (4x4)``."""
        return pad_to_4x4(self.R0_rect) @ pad_to_4x4(self.Tr_velo_to_cam)

    @property
    def cam2lidar(self) -> np.ndarray:
        """4x4 rectified camera -> LiDAR (general inverse; R0_rect is not exactly orthonormal)."""
        return np.linalg.inv(self.lidar2cam)

    @property
    def cam2img(self) -> np.ndarray:
        """P2 (image_2) padded to 4x4."""
        return pad_to_4x4(self.P2)

    @property
    def lidar2img(self) -> np.ndarray:
        return self.cam2img @ self.lidar2cam


def _text_lines(path: str) -> list[str]:
    """The lines of a KITTI text file; bytes that are not UTF-8 (a corrupt or binary file)
    are a DataError naming it rather than a bare UnicodeDecodeError."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a text file ({exc})") from exc


def parse_calib(path: str | os.PathLike) -> KittiCalib:
    """Read a KITTI calibration text file (``key: v1 v2 ...`` per line).

    Raises :class:`DataError` naming the file for a missing key, a non-numeric value, a
    matrix with the wrong number of values or a singular ``R0_rect`` / ``Tr_velo_to_cam``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "KITTI calibration file")
    raw: dict[str, list[str]] = {}
    for lineno, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line:
            continue
        key, sep, values = line.partition(":")
        if not sep:
            raise DataError(path, f"line {lineno}: expected 'key: values', got {line!r}")
        key = CALIB_ALIASES.get(key.strip(), key.strip())
        raw[key] = values.split()
    mats: dict[str, Any] = {}
    for key, shape in CALIB_SHAPES.items():
        if key not in raw:
            if key in CALIB_OPTIONAL:
                mats[key] = None
                continue
            raise DataError(path, f"calibration lacks {key} (has {sorted(raw)})")
        try:
            values = np.array([float(v) for v in raw[key]], dtype=np.float64)
        except ValueError as exc:
            raise DataError(path, f"calibration {key} has a non-numeric value ({exc})") from exc
        expected = shape[0] * shape[1]
        if values.size != expected:
            raise DataError(path, f"calibration {key} has {values.size} values, expected "
                                  f"{expected} ({shape[0]}x{shape[1]})")
        if not np.isfinite(values).all():
            raise DataError(path, f"calibration {key} has non-finite values")
        mats[key] = values.reshape(shape)
    for key in ("R0_rect", "Tr_velo_to_cam"):
        _check_invertible(path, key, mats[key][:, :3])
    return KittiCalib(**mats, path=path)


def _check_invertible(path: str, key: str, matrix: np.ndarray) -> None:
    """Boxes go to the LiDAR frame through ``inv(R0_rect @ Tr_velo_to_cam)``: a singular or
    badly conditioned 3x3 there yields inf or garbage boxes (or a LinAlgError) far from the
    calibration file that caused them, so it is refused here, naming the file."""
    det = float(np.linalg.det(matrix))
    if not abs(det) >= 1e-6 or np.linalg.cond(matrix) > 1e6:
        raise DataError(path, f"calibration {key} is singular or badly conditioned "
                              f"(3x3 determinant {det:.3g}); expected a rotation")


# --------------------------------------------------------------------------------- labels
@dataclass
class KittiLabels:
    """The objects of one label_2 file, as arrays (one row per line, file order)."""

    names: list[str] = field(default_factory=list)
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0))
    occluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    alpha: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bboxes_2d: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # x1 y1 x2 y2
    dimensions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # h w l (file)
    location: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # bottom centre
    rotation_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    score: np.ndarray | None = None  # only in result files (16th column)

    def __len__(self) -> int:
        return len(self.names)

    def select(self, mask) -> "KittiLabels":
        mask = np.asarray(mask, dtype=bool)
        return KittiLabels(
            names=[n for n, m in zip(self.names, mask) if m], truncated=self.truncated[mask],
            occluded=self.occluded[mask], alpha=self.alpha[mask],
            bboxes_2d=self.bboxes_2d[mask], dimensions=self.dimensions[mask],
            location=self.location[mask], rotation_y=self.rotation_y[mask],
            score=None if self.score is None else self.score[mask])


def parse_label(path: str | os.PathLike) -> KittiLabels:
    """Read a KITTI label_2 file.

    Each line: ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]``.
    Raises :class:`DataError` naming the file and the line for a line with the wrong number
    of fields, a non-numeric field, an unknown type or a non-positive box size.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "KITTI label file")
    rows, names, scores = [], [], []
    for lineno, line in enumerate(_text_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise DataError(path, f"line {lineno}: {len(fields)} fields, expected 15 "
                                  "(type truncated occluded alpha bbox(4) h w l x y z "
                                  "rotation_y) or 16 (+ score)")
        name = fields[0]
        if name not in KITTI_TYPES:
            raise DataError(path, f"line {lineno}: unknown object type {name!r}; known: "
                                  f"{list(KITTI_TYPES)}")
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError as exc:
            raise DataError(path, f"line {lineno}: non-numeric field ({exc})") from exc
        if not all(math.isfinite(v) for v in values):
            raise DataError(path, f"line {lineno}: non-finite field")
        if name != "DontCare" and min(values[7:10]) <= 0:
            raise DataError(path, f"line {lineno}: {name} box size h w l = "
                                  f"{values[7:10]} is not positive")
        if len(fields) == 16:
            scores.append(values[14])
        elif scores:
            raise DataError(path, f"line {lineno}: score missing (earlier lines have one)")
        names.append(name)
        rows.append(values[:14])
    if scores and len(scores) != len(rows):
        raise DataError(path, "some lines have a score and others do not")
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 14)
    return KittiLabels(
        names=names, truncated=arr[:, 0], occluded=arr[:, 1].astype(np.int64),
        alpha=arr[:, 2], bboxes_2d=arr[:, 3:7], dimensions=arr[:, 7:10],
        location=arr[:, 10:13], rotation_y=arr[:, 13],
        score=np.asarray(scores, dtype=np.float64) if scores else None)


# ------------------------------------------------------------------------ box conversion
def camera_boxes_to_lidar(location, dimensions_hwl, rotation_y, calib: KittiCalib
                          ) -> np.ndarray:
    """KITTI camera-frame boxes -> LiDAR-frame boxes ``(M, 7) [x, y, z, l, w, h, yaw]``.

    ``location`` (M, 3) bottom centres in the rectified camera frame, ``dimensions_hwl``
    (M, 3) in the label's order ``h w l``, ``rotation_y`` (M,).
    """
    loc = np.asarray(location, dtype=np.float64).reshape(-1, 3)
    hwl = np.asarray(dimensions_hwl, dtype=np.float64).reshape(-1, 3)
    ry = np.asarray(rotation_y, dtype=np.float64).reshape(-1)
    if len(loc) == 0:
        return np.zeros((0, 7))
    cam2lidar = calib.cam2lidar
    h, w, l = hwl[:, 0], hwl[:, 1], hwl[:, 2]
    centre_cam = loc.copy()
    centre_cam[:, 1] -= h / 2  # camera y points down: the gravity centre is above the bottom
    centre = centre_cam @ cam2lidar[:3, :3].T + cam2lidar[:3, 3]
    heading_cam = np.stack([np.cos(ry), np.zeros_like(ry), -np.sin(ry)], 1)
    heading = heading_cam @ cam2lidar[:3, :3].T
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    return np.concatenate([centre, np.stack([l, w, h, yaw], 1)], 1)


def lidar_boxes_to_camera(boxes, calib: KittiCalib) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    """Inverse of :func:`camera_boxes_to_lidar`: ``(location, dimensions_hwl, rotation_y)``
    in KITTI's label convention (for writing KITTI result files)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    lidar2cam = calib.lidar2cam
    centre = boxes[:, :3] @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
    l, w, h, yaw = boxes[:, 3], boxes[:, 4], boxes[:, 5], boxes[:, 6]
    centre[:, 1] += h / 2
    heading = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], 1) @ lidar2cam[:3, :3].T
    ry = np.arctan2(-heading[:, 2], heading[:, 0])
    return centre, np.stack([h, w, l], 1), ry


def kitti_difficulty(bboxes_2d, occluded, truncated) -> np.ndarray:
    """KITTI difficulty per object: 0 easy, 1 moderate, 2 hard, -1 none (too small,
    too occluded or too truncated). The easiest level whose rules an object meets wins."""
    bboxes_2d = np.asarray(bboxes_2d, dtype=np.float64).reshape(-1, 4)
    height = bboxes_2d[:, 3] - bboxes_2d[:, 1]
    occluded = np.asarray(occluded).reshape(-1)
    truncated = np.asarray(truncated, dtype=np.float64).reshape(-1)
    out = np.full(len(height), -1, dtype=np.int64)
    for level in reversed(range(len(DIFFICULTY_RULES))):
        min_h, max_occ, max_trunc = DIFFICULTY_RULES[level]
        ok = (height >= min_h) & (occluded <= max_occ) & (truncated <= max_trunc)
        out[ok] = level
    return out


# ---------------------------------------------------------------------------- image size
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of a PNG read from its IHDR header (the image is not decoded)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "camera image")
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(path, "not a PNG image (bad signature or missing IHDR header)")
    width, height = struct.unpack(">II", head[16:24])
    if width == 0 or height == 0:
        raise DataError(path, f"PNG header gives an empty image ({width}x{height})")
    return int(height), int(width)


# ------------------------------------------------------------------------------ infos
def _read_split(path: str) -> list[str]:
    ids = [line.strip() for line in _text_lines(path) if line.strip()]
    for i, frame in enumerate(ids, 1):
        if not (frame.isascii() and frame.isdigit()):
            raise DataError(path, f"line {i}: frame id {frame!r} is not a number")
    return ids


def _tolist(arr) -> list:
    return np.asarray(arr, dtype=np.float64).tolist()


def kitti_frame_info(root: str | os.PathLike, frame_id: str, folder: str = "training",
                     with_labels: bool = True) -> dict[str, Any]:
    """The info (info_format.py) of one KITTI frame; paths relative to ``root``."""
    root = os.fspath(root)
    rel = {
        "lidar": f"{folder}/velodyne/{frame_id}.bin",
        "image": f"{folder}/image_2/{frame_id}.png",
        "calib": f"{folder}/calib/{frame_id}.txt",
        "label": f"{folder}/label_2/{frame_id}.txt",
    }
    calib = parse_calib(os.path.join(root, rel["calib"]))
    height, width = png_size(os.path.join(root, rel["image"]))
    lidar_file = os.path.join(root, rel["lidar"])
    if with_labels:
        labels = parse_label(os.path.join(root, rel["label"]))
        points, _ = load_points(lidar_file, NUM_POINT_FEATURES)
    else:
        labels = KittiLabels()
        if not os.path.isfile(lidar_file):
            raise DataFileNotFound(lidar_file, "point file")
        size = os.path.getsize(lidar_file)
        if size % (4 * NUM_POINT_FEATURES):
            raise DataError(lidar_file, f"truncated point file: {size} bytes is not a multiple "
                                        f"of {NUM_POINT_FEATURES} float32 columns")
        points = None

    care = np.array([n != "DontCare" for n in labels.names], dtype=bool)
    ignored = labels.select(~care)
    objects = labels.select(care)
    boxes = camera_boxes_to_lidar(objects.location, objects.dimensions, objects.rotation_y,
                                  calib)
    if points is not None and len(boxes):
        num_pts = points_in_boxes(points, boxes).sum(0).astype(np.int64).tolist()
    else:
        num_pts = [0] * len(boxes)

    identity = np.eye(4).tolist()
    return {
        "token": frame_id,
        "timestamp": 0,
        "lidar_path": rel["lidar"],
        "num_point_features": NUM_POINT_FEATURES,
        "lidar2ego": identity,
        "ego2global": identity,
        "sweeps": [],
        "cams": {"CAM2": {"path": rel["image"], "timestamp": 0, "height": height,
                          "width": width, "cam2img": calib.cam2img.tolist(),
                          "lidar2cam": calib.lidar2cam.tolist(),
                          "lidar2img": calib.lidar2img.tolist()}},
        "gt_boxes": _tolist(boxes.reshape(-1, 7)),
        "gt_velocity": np.full((len(boxes), 2), np.nan).tolist(),
        "gt_names": list(objects.names),
        "gt_attributes": [],
        "num_lidar_pts": num_pts,
        "instance_tokens": [],
        "lidarseg_path": None,
        "scene_token": "",
        "prev": "",
        "next": "",
        "ignored": {"names": list(ignored.names),
                    "bboxes_2d": _tolist(ignored.bboxes_2d.reshape(-1, 4))},
        "kitti": {
            "image_idx": int(frame_id),
            "calib_path": rel["calib"],
            "label_path": rel["label"] if with_labels else None,
            "bboxes_2d": _tolist(objects.bboxes_2d.reshape(-1, 4)),
            "truncated": _tolist(objects.truncated),
            "occluded": np.asarray(objects.occluded, dtype=np.int64).tolist(),
            "alpha": _tolist(objects.alpha),
            "difficulty": kitti_difficulty(objects.bboxes_2d, objects.occluded,
                                           objects.truncated).tolist(),
        },
    }


def create_kitti_infos(root: str | os.PathLike, out_dir: str | os.PathLike,
                       prefix: str = "kitti") -> list[str]:
    """Write ``<out_dir>/<prefix>_infos_<split>.json`` for every ``ImageSets/<split>.txt``
    present (train, val from ``training/``; test from ``testing/``, without labels).

    Returns the paths written. Raises :class:`DataError` (naming the file) for a bad or
    missing calibration, label, image or point file, and when no split file exists.
    """
    root = os.path.abspath(os.fspath(root))
    out_dir = os.fspath(out_dir)
    written = []
    for split in KITTI_SPLITS:
        split_file = os.path.join(root, "ImageSets", f"{split}.txt")
        if not os.path.isfile(split_file):
            continue
        folder, with_labels = ("testing", False) if split == "test" else ("training", True)
        infos = [kitti_frame_info(root, frame, folder, with_labels)
                 for frame in _read_split(split_file)]
        path = str(Path(out_dir) / f"{prefix}_infos_{split}.json")
        write_info_index(path, infos, {
            "dataset": "kitti", "version": "object", "split": split, "data_root": root,
            "classes": list(KITTI_CLASSES), "box_frame": "lidar",
            "box_convention": "[x, y, z (gravity centre), l, w, h, yaw (CCW from +x)]",
        })
        written.append(path)
    if not written:
        raise DataFileNotFound(os.path.join(root, "ImageSets"),
                               "KITTI split files (train.txt, val.txt or test.txt)")
    return written
