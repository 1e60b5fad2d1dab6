"""The ground-truth database of ``ObjectSample`` (GT sampling, "copy-paste" of annotated
objects, as SECOND, PointPillars and CenterPoint train): the format, and reading it.

Written by :func:`lidarcl.datasets.gt_database_converter.create_gt_database`
(``tools/create_data.py ... --gt-database`` or ``tools/create_data.py gt-database``),
read by :class:`lidarcl.datasets.transforms.ObjectSample`. No pickle: one JSON index and
one raw float32 file per object::

    <out>/<prefix>_dbinfos_<split>.json
    <out>/gt_database/<token>_<class>_<k>.bin   (float32, num_point_features columns)

The index::

    {
      "metadata": {"format": "lidarcl-gt-database", "format_version": 1,
                   "dataset": "nuscenes" | "kitti" | ..., "split": "train",
                   "info_index": "<info index file name>",
                   "num_point_features": C   (columns of every .bin),
                   "use_dims": [0, 1, 2, 3]  (columns of the keyframe file kept),
                   "num_sweeps": 9 | null    (sweeps merged as LoadSweeps does; null: the
                                              keyframe alone and no time column),
                   "time_column": true|false (last column is the sweep time lag, s),
                   "min_points": 1, "database_dir": "gt_database",
                   "counts": {<class>: <records>}},
      "objects": {<class>: [<record>, ...], ...}
    }

A record (one annotated box of one training sample)::

    path           the .bin file, relative to the folder of the index
    name           detection class (nuScenes: the devkit's detection name, e.g. "car";
                   KITTI: the label type, e.g. "Car"); the key it is listed under
    category       the dataset's own class name, what the sample dict's ``gt_names``
                   holds (nuScenes "vehicle.car"; KITTI the same as name)
    box            [x, y, z, l, w, h, yaw] in the LiDAR frame of its sample
    velocity       [vx, vy] m/s, null when unknown (only when the info index has them)
    num_points     rows of the .bin file
    num_lidar_pts  the info's num_lidar_pts of the box (-1 when the index has none)
    difficulty     KITTI difficulty (0 easy, 1 moderate, 2 hard, -1 none); 0 otherwise
    attribute      nuScenes attribute name or ""
    token          sample token; gt_index: position of the box in the info's gt_boxes

Points are stored **relative to the box centre** (x, y, z minus the box's x, y, z; axes
of the LiDAR frame, not rotated), other columns as loaded, as OpenPCDet stores them;
``ObjectSample`` adds the centre back.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from lidarcl.datasets.info_format import read_json_document
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.utils.paths import confined_path

logger = logging.getLogger(__name__)

GT_DATABASE_FORMAT = "lidarcl-gt-database"
GT_DATABASE_FORMAT_VERSION = 1
DEFAULT_DATABASE_DIR = "gt_database"
RECORD_KEYS = ("path", "name", "box", "num_points")


def gt_database_index_name(prefix: str, split: str = "train") -> str:
    """File name of the database index: ``<prefix>_dbinfos_<split>.json``."""
    return f"{prefix}_dbinfos_{split}.json"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class ClassObjects:
    """The records of one class as arrays (compact: no Python object per record, so the
    data loader's forked workers share them)."""

    name: str
    paths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    categories: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    attributes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    velocity: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    num_points: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    num_lidar_pts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    difficulty: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, keep: np.ndarray) -> "ClassObjects":
        return ClassObjects(self.name, *(getattr(self, k)[keep] for k in (
            "paths", "categories", "attributes", "boxes", "velocity", "num_points",
            "num_lidar_pts", "difficulty")))


def _class_objects(path: str, name: str, records) -> ClassObjects:
    """Check the records of one class and turn them into arrays (DataError naming the
    index, the class and the record)."""
    if not isinstance(records, list):
        raise DataError(path, f"objects[{name!r}] must be a list of records, got "
                              f"{_short(records)}")
    paths, cats, attrs, boxes, velo, npts, nlid, diff = [], [], [], [], [], [], [], []
    for i, rec in enumerate(records):
        where = f"objects[{name!r}] record {i}"
        if not isinstance(rec, dict):
            raise DataError(path, f"{where} must be an object, got {_short(rec)}")
        missing = [k for k in RECORD_KEYS if k not in rec]
        if missing:
            raise DataError(path, f"{where} lacks keys {missing}")
        if rec["name"] != name:
            raise DataError(path, f"{where} has name {rec['name']!r} but is listed under "
                                  f"{name!r}")
        if not isinstance(rec["path"], str) or not rec["path"]:
            raise DataError(path, f"{where}: path must be a non-empty string, got "
                                  f"{_short(rec['path'])}")
        n = rec["num_points"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DataError(path, f"{where}: num_points must be an integer >= 0, got "
                                  f"{_short(n)}")
        box = rec["box"]
        if not (isinstance(box, list) and len(box) == 7 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in box)) or min(box[3:6]) < 0:
            raise DataError(path, f"{where}: box must be 7 finite numbers [x, y, z, l, w, h, "
                                  f"yaw] with sizes >= 0, got {_short(box)}")
        vel = rec.get("velocity")
        if vel is None:
            vel = [None, None]
        if not (isinstance(vel, list) and len(vel) == 2 and all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for v in vel)):
            raise DataError(path, f"{where}: velocity must be [vx, vy] (null when unknown), "
                                  f"got {_short(vel)}")
        for key, default in (("num_lidar_pts", -1), ("difficulty", 0)):
            value = rec.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError(path, f"{where}: {key} must be an integer, got "
                                      f"{_short(value)}")
        for key in ("category", "attribute"):
            if not isinstance(rec.get(key, ""), str):
                raise DataError(path, f"{where}: {key} must be a string, got "
                                      f"{_short(rec[key])}")
        paths.append(rec["path"])
        cats.append(rec.get("category", name))
        attrs.append(rec.get("attribute", ""))
        boxes.append(box)
        velo.append([np.nan if v is None else float(v) for v in vel])
        npts.append(n)
        nlid.append(rec.get("num_lidar_pts", -1))
        diff.append(rec.get("difficulty", 0))
    return ClassObjects(
        name, np.asarray(paths, dtype=str), np.asarray(cats, dtype=str),
        np.asarray(attrs, dtype=str), np.asarray(boxes, dtype=np.float64).reshape(-1, 7),
        np.asarray(velo, dtype=np.float64).reshape(-1, 2), np.asarray(npts, dtype=np.int64),
        np.asarray(nlid, dtype=np.int64), np.asarray(diff, dtype=np.int64))


class GTDatabase:
    """A ground-truth database index (module doc), read and checked.

    Args:
        path: the ``<prefix>_dbinfos_<split>.json`` file.
        classes: classes to keep (others are not even converted to arrays); ``None``
            keeps all. A class the database lacks gets no records (and a warning).

    Raises :class:`DataFileNotFound` / :class:`DataError` naming the file when it is
    missing, not JSON, not a lidarcl ground-truth database (or another format version),
    or a record is malformed.
    """

    def __init__(self, path: str | os.PathLike, classes: Iterable[str] | None = None):
        self.path = os.path.abspath(os.fspath(path))
        self.root = os.path.dirname(self.path)
        data = read_json_document(self.path, "ground-truth database index")
        meta = data.get("metadata") if isinstance(data, dict) else None
        if not isinstance(meta, dict) or meta.get("format") != GT_DATABASE_FORMAT:
            raise DataError(self.path, "not a lidarcl ground-truth database index "
                                       f"(metadata.format is not {GT_DATABASE_FORMAT!r}); "
                                       "write one with tools/create_data.py gt-database")
        if meta.get("format_version") != GT_DATABASE_FORMAT_VERSION:
            raise DataError(self.path, f"ground-truth database format version "
                                       f"{meta.get('format_version')!r}, this lidarcl reads "
                                       f"version {GT_DATABASE_FORMAT_VERSION}; rebuild it "
                                       "with tools/create_data.py gt-database")
        nf = meta.get("num_point_features")
        if isinstance(nf, bool) or not isinstance(nf, int) or nf < 3:
            raise DataError(self.path, f"metadata.num_point_features must be an integer "
                                       f">= 3, got {_short(nf)}")
        objects = data.get("objects")
        if not isinstance(objects, dict):
            raise DataError(self.path, "ground-truth database index has no 'objects' "
                                       "mapping {class: [records]}")
        self.metadata = meta
        self.num_point_features = nf
        self.time_column = bool(meta.get("time_column", False))
        wanted = list(objects) if classes is None else list(classes)
        lacking = [c for c in wanted if c not in objects]
        if lacking:
            logger.warning("%s: no objects of classes %s in the ground-truth database "
                           "(it has %s)", self.path, lacking, sorted(objects))
        self.objects: dict[str, ClassObjects] = {
            c: _class_objects(self.path, c, objects[c]) if c in objects else ClassObjects(c)
            for c in wanted}

    def __getitem__(self, name: str) -> ClassObjects:
        return self.objects[name]

    def counts(self) -> dict[str, int]:
        return {c: len(o) for c, o in self.objects.items()}

    def filter_by_min_points(self, min_points: int | Mapping[str, int]) -> None:
        """Drop records with fewer than ``min_points`` points (an int for every class, or
        ``{class: n}``), OpenPCDet's / mmdetection3d's ``filter_by_min_points``."""
        for name, objs in self.objects.items():
            n = min_points.get(name, 0) if isinstance(min_points, Mapping) else min_points
            if int(n) > 0:
                kept = objs.select(objs.num_points >= int(n))
                logger.info("ground-truth database filter by min points %s: %d => %d", name,
                            len(objs), len(kept))
                self.objects[name] = kept

    def filter_by_difficulty(self, removed: Iterable[int]) -> None:
        """Drop records whose ``difficulty`` is in ``removed`` (KITTI: ``[-1]``)."""
        removed = np.asarray(list(removed), dtype=np.int64)
        if not removed.size:
            return
        for name, objs in self.objects.items():
            kept = objs.select(~np.isin(objs.difficulty, removed))
            logger.info("ground-truth database filter by difficulty %s: %d => %d", name,
                        len(objs), len(kept))
            self.objects[name] = kept

    def file_path(self, name: str, i: int) -> str:
        """Absolute path of record ``i`` of class ``name`` (kept inside the index's
        folder)."""
        return confined_path(self.root, str(self.objects[name].paths[i]), self.path,
                             f"objects[{name!r}] record path")

    def load_points(self, name: str, i: int) -> np.ndarray:
        """Points ``(num_points, num_point_features)`` float32 of record ``i`` of class
        ``name``, relative to its box centre. :class:`DataFileNotFound` when the file is
        missing, :class:`DataError` naming it when its size does not match the record."""
        path = self.file_path(name, i)
        if not os.path.isfile(path):
            raise DataFileNotFound(path, f"ground-truth database point file (listed in "
                                         f"{self.path})")
        n = int(self.objects[name].num_points[i])
        expected = n * self.num_point_features * 4
        size = os.path.getsize(path)
        if size != expected:
            raise DataError(path, f"{size} bytes, but the ground-truth database index "
                                  f"{self.path} lists {n} points of {self.num_point_features} "
                                  f"float32 columns ({expected} bytes); rebuild the database")
        return np.fromfile(path, dtype=np.float32).reshape(n, self.num_point_features)
