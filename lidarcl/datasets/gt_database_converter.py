"""Build the ground-truth database (``lidarcl/datasets/gt_database.py``) of an info index:
for every sample and every annotated box of a detection class, the points inside the box,
relative to its centre, in one float32 file, and a JSON index of the records by class.

How the points are gathered (OpenPCDet's ``create_groundtruth_database`` for KITTI and
nuScenes, mmdetection3d's ``create_gt_database``):

* the scan is loaded exactly as the training pipeline loads it, by the pipeline's own
  transforms: ``LoadPoints(use_dims)`` (NaN / implausible rows dropped), then, for
  nuScenes, ``LoadSweeps(num_sweeps)`` which maps the previous sweeps into the keyframe's
  LiDAR frame (points within 1 m of the sensor removed) and appends the time-lag column.
  OpenPCDet builds its nuScenes CenterPoint database (``nuscenes_dbinfos_10sweeps_withvelo``)
  with ``max_sweeps=10``: the keyframe and 9 sweeps, columns x, y, z, intensity, time lag,
  the columns its training pipeline loads. The default here is the same: 9 sweeps with
  ``use_dims=(0, 1, 2, 3)``, as ``configs/_base_/datasets/nuscenes.py`` loads them
  (``LoadPoints(use_dims=[0, 1, 2, 3])``, ``LoadSweeps(num_sweeps=9)``), so a sampled
  object carries its sweep points and time column like the scene it is pasted into. (One
  departure: OpenPCDet draws the 9 sweeps in a random order; ``LoadSweeps`` takes the 9
  newest in order. The set is the same whenever the index has 9 or more.) KITTI: the
  keyframe alone (``num_sweeps=None``, no time column), all points, not only the camera's
  field of view, as OpenPCDet does;
* a point belongs to every box that contains it (``lidarcl.ops.points_in_boxes_all``,
  faces included; mmdetection3d's rule and OpenPCDet's for KITTI; OpenPCDet's nuScenes
  builder gives a point to the first box only, which matters only for overlapping boxes);
* boxes whose name has no detection class (nuScenes categories such as
  ``vehicle.emergency.police``) are left out, as are boxes with fewer than ``min_points``
  points (default 1: an empty object could never be sampled, and the published settings
  filter at 5 when sampling anyway; OpenPCDet stores empty ones too).

Writing: the ``.bin`` files go to a fresh hidden folder next to the output, which then
replaces ``<out>/gt_database`` in one rename; the JSON index is written atomically after
it (``lidarcl.utils.fileio.atomic_write``); the old folder is deleted last. A rerun
overwrites cleanly (no file of an earlier build survives); an interrupted build leaves the
previous database as it was. ``ObjectSample`` checks every file's size against its record.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Sequence

import numpy as np
import torch

from lidarcl.datasets.gt_database import (DEFAULT_DATABASE_DIR, GT_DATABASE_FORMAT,
                                          GT_DATABASE_FORMAT_VERSION, gt_database_index_name)
from lidarcl.datasets.info_format import read_info_index
from lidarcl.datasets.transforms.loading import LoadPoints, LoadSweeps
from lidarcl.errors import DataError
from lidarcl.ops import points_in_boxes_all
from lidarcl.utils.fileio import atomic_write, current_umask, default_file_mode
from lidarcl.utils.paths import confined_path, safe_file_stem

logger = logging.getLogger(__name__)

# sweeps merged into the database's scans, per dataset (None: keyframe only, no time column)
DEFAULT_NUM_SWEEPS = {"nuscenes": 9}


def detection_name_mapping(dataset: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """``(dataset name -> detection class, detection classes)`` of a dataset: nuScenes
    categories through the devkit's ``category_to_detection_name``
    (``NuScenesDataset.NAME_MAPPING``), KITTI types as they are (DontCare excluded);
    another dataset keeps every name (empty classes tuple: any)."""
    if dataset == "nuscenes":
        from lidarcl.datasets.nuscenes_converter import DETECTION_CLASSES
        from lidarcl.datasets.nuscenes_dataset import NUSCENES_NAME_MAPPING
        return dict(NUSCENES_NAME_MAPPING), tuple(DETECTION_CLASSES)
    if dataset == "kitti":
        from lidarcl.datasets.kitti_converter import KITTI_CLASSES
        return {c: c for c in KITTI_CLASSES}, tuple(KITTI_CLASSES)
    return {}, ()


def _load_scan(info: dict, root: str, index_path: str, use_dims, num_sweeps: int | None
               ) -> np.ndarray | None:
    """The sample's points as the training pipeline loads them (module doc); ``None`` for
    an empty scan (LoadPoints warns naming the file)."""
    token = info["token"]

    def inside(entry, what):
        return confined_path(root, entry, index_path, f"sample {token} {what}")

    sample = {
        "token": token,
        "lidar_path": inside(info["lidar_path"], "lidar_path"),
        "num_point_features": int(info["num_point_features"]),
        "sweeps": [{**s, "path": inside(s["path"], f"sweep {j} path")}
                   for j, s in enumerate(info.get("sweeps") or [])],
    }
    sample = LoadPoints(use_dims=use_dims)(sample)
    if sample is not None and num_sweeps is not None:
        sample = LoadSweeps(num_sweeps=num_sweeps)(sample)
    return None if sample is None else sample["points"]


def _per_box(info: dict, key: str, num: int) -> list | None:
    """``info[key]`` when it holds one entry per box, else ``None``."""
    values = info.get(key)
    if values is None or len(values) != num:
        return None
    return list(values)


def _replace_folder(new: str, final: str) -> str | None:
    """Move ``new`` to ``final``; an existing ``final`` is renamed aside first and its new
    name returned (deleted by the caller once the index is written)."""
    old = None
    if os.path.lexists(final):
        if not os.path.isdir(final) or os.path.islink(final):
            raise DataError(final, "exists and is not a folder; cannot hold the ground-truth "
                                   "database")
        parent = os.path.dirname(final)
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.", suffix=".old",
                               dir=parent)
        os.rmdir(old)
        os.replace(final, old)
    try:
        os.replace(new, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    return old


def create_gt_database(index_path: str | os.PathLike, data_root: str | os.PathLike,
                       out_dir: str | os.PathLike | None = None, prefix: str | None = None,
                       num_sweeps: int | None | str = "default",
                       use_dims: Sequence[int] = (0, 1, 2, 3), min_points: int = 1,
                       database_dir: str = DEFAULT_DATABASE_DIR,
                       log_every: int = 100, split_file: str | os.PathLike | None = None
                       ) -> str:
    """Build the ground-truth database of the info index ``index_path`` (module doc).

    Args:
        index_path: the info index, normally ``<prefix>_infos_train.json``.
        data_root: the root the index's paths are relative to.
        out_dir: where the database goes (default: the index's folder).
        prefix: file name prefix (default: the index's, ``<prefix>_infos_<split>.json``,
            or its dataset name).
        num_sweeps: sweeps merged into each scan (``LoadSweeps``, adds a time column);
            ``None``: the keyframe alone; ``"default"``: 9 for nuScenes, ``None`` for
            other datasets.
        use_dims: columns of the keyframe file kept (``LoadPoints``).
        min_points: boxes with fewer points get no record.
        database_dir: folder name of the point files under ``out_dir``.
        log_every: progress is logged every this many samples.
        split_file: a label-fraction split (``tools/make_splits.py``): only the objects of
            its samples go into the database, so that fine-tuning on a fraction of the labels
            pastes no object of an unlabelled scan. The split's tag (its file name less the
            index's, e.g. ``10pct_seed0``) then names the database's own files: prefix
            ``<prefix>_<tag>`` (unless ``prefix`` is given) and folder
            ``<database_dir>_<tag>``.

    Returns:
        The path of the database index, ``<out_dir>/<prefix>_dbinfos_<split>.json``.
    """
    index_path = os.path.abspath(os.fspath(index_path))
    root = os.path.abspath(os.fspath(data_root))
    out_dir = os.path.abspath(os.fspath(out_dir) if out_dir is not None
                              else os.path.dirname(index_path))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(out_dir, "exists and is not a folder")
    if os.path.basename(database_dir) != database_dir or database_dir in ("", ".", ".."):
        raise ValueError(f"database_dir must be a plain folder name, got {database_dir!r}")
    if int(min_points) < 0:
        raise ValueError(f"min_points must be >= 0, got {min_points}")
    infos, meta = read_info_index(index_path)
    if split_file is not None:
        from lidarcl.datasets.splits import read_split

        kept = set(read_split(split_file)["tokens"])
        unknown = kept - {str(info["token"]) for info in infos}
        if unknown:
            raise DataError(os.fspath(split_file), f"{len(unknown)} tokens of the split are "
                                                   f"not in {index_path} (e.g. "
                                                   f"{sorted(unknown)[0]})")
        infos = [info for info in infos if str(info["token"]) in kept]
        # nuscenes_infos_train_10pct_seed0.json of nuscenes_infos_train.json -> 10pct_seed0
        index_stem = os.path.splitext(os.path.basename(index_path))[0]
        split_tag = os.path.splitext(os.path.basename(os.fspath(split_file)))[0]
        if split_tag.startswith(index_stem + "_"):
            split_tag = split_tag[len(index_stem) + 1:]
    dataset = str(meta.get("dataset", ""))
    split = str(meta.get("split", "train"))
    if num_sweeps == "default":
        num_sweeps = DEFAULT_NUM_SWEEPS.get(dataset)
    if num_sweeps is not None and int(num_sweeps) < 0:
        raise ValueError(f"num_sweeps must be >= 0 or None, got {num_sweeps}")
    if prefix is None:
        base = os.path.basename(index_path)
        prefix = base.split("_infos_")[0] if "_infos_" in base else (dataset or "dataset")
        if split_file is not None:
            prefix = f"{prefix}_{split_tag}"
    if split_file is not None:
        database_dir = f"{database_dir}_{split_tag}"
    mapping, classes = detection_name_mapping(dataset)
    use_dims = tuple(int(d) for d in use_dims)

    os.makedirs(out_dir, exist_ok=True)
    final_dir = os.path.join(out_dir, database_dir)
    work_dir = tempfile.mkdtemp(prefix=f".{database_dir}.", suffix=".part", dir=out_dir)
    objects: dict[str, list[dict[str, Any]]] = {c: [] for c in classes}
    skipped_names: dict[str, int] = {}
    file_mode = default_file_mode()

    def one_sample(info: dict) -> int | None:
        """Write the objects of one sample into ``work_dir`` and list them in ``objects``;
        returns the point columns (``None`` when no scan was read)."""
        token = str(info["token"])
        names = list(info["gt_names"])
        boxes = np.asarray(info["gt_boxes"], dtype=np.float64).reshape(-1, 7)
        if not np.isfinite(boxes).all():
            bad = int(np.flatnonzero(~np.isfinite(boxes).all(1))[0])
            raise DataError(index_path, f"sample {token}: gt box {bad} has a non-finite "
                                        f"value {boxes[bad].tolist()}")
        wanted = [k for k, name in enumerate(names) if not mapping or name in mapping]
        for name in names:
            if mapping and name not in mapping:
                skipped_names[name] = skipped_names.get(name, 0) + 1
        if not wanted:
            return None
        points = _load_scan(info, root, index_path, use_dims, num_sweeps)
        if points is None:
            return None
        inside = points_in_boxes_all(
            torch.from_numpy(np.ascontiguousarray(points[:, :3], dtype=np.float64)),
            torch.from_numpy(boxes[wanted])).numpy()
        velocity = _per_box(info, "gt_velocity", len(boxes))
        num_lidar = _per_box(info, "num_lidar_pts", len(boxes))
        attributes = _per_box(info, "gt_attributes", len(boxes))
        difficulty = _per_box(info.get("kitti") or {}, "difficulty", len(boxes))
        stem = safe_file_stem(token)
        for col, k in enumerate(wanted):
            mask = inside[:, col]
            count = int(mask.sum())
            if count < min_points:
                continue
            det = mapping.get(names[k], names[k]) if mapping else names[k]
            rel = points[mask].copy()
            rel[:, :3] = (points[mask, :3].astype(np.float64) - boxes[k, :3]).astype(
                np.float32)
            fname = f"{stem}_{safe_file_stem(det)}_{k}.bin"
            with open(os.path.join(work_dir, fname), "wb") as handle:
                handle.write(np.ascontiguousarray(rel, dtype=np.float32).tobytes())
            os.chmod(os.path.join(work_dir, fname), file_mode)
            record = {"path": f"{database_dir}/{fname}", "name": det, "category": names[k],
                      "box": boxes[k].tolist()}
            if velocity is not None:
                record["velocity"] = [None if v is None else float(v) for v in velocity[k]]
            record.update({
                "num_points": count,
                "num_lidar_pts": int(num_lidar[k]) if num_lidar is not None else -1,
                "difficulty": int(difficulty[k]) if difficulty is not None else 0,
                "attribute": str(attributes[k]) if attributes is not None else "",
                "token": token, "gt_index": k})
            objects.setdefault(det, []).append(record)
        return points.shape[1]

    num_features = None
    start = time.perf_counter()
    try:
        for n_done, info in enumerate(infos, 1):
            columns = one_sample(info)
            if columns is not None and num_features is not None and columns != num_features:
                raise DataError(info["lidar_path"], f"sample {info['token']}: {columns} point "
                                                    f"columns, earlier samples {num_features}")
            num_features = num_features if columns is None else columns
            if n_done % max(1, log_every) == 0 or n_done == len(infos):
                elapsed = time.perf_counter() - start
                logger.info("gt database: %d/%d samples, %d objects (%.2f s per sample)",
                            n_done, len(infos), sum(map(len, objects.values())),
                            elapsed / n_done)
        os.chmod(work_dir, 0o777 & ~current_umask())  # mkdtemp gives 0o700
        counts = {c: len(v) for c, v in objects.items()}
        metadata = {
            "format": GT_DATABASE_FORMAT, "format_version": GT_DATABASE_FORMAT_VERSION,
            "dataset": dataset, "version": meta.get("version"), "split": split,
            "info_index": os.path.basename(index_path),
            "num_point_features": int(num_features if num_features is not None
                                      else len(use_dims) + (num_sweeps is not None)),
            "use_dims": list(use_dims),
            "num_sweeps": None if num_sweeps is None else int(num_sweeps),
            "time_column": num_sweeps is not None,
            "min_points": int(min_points), "database_dir": database_dir,
            "box_convention": "[x, y, z (gravity centre), l, w, h, yaw (CCW from +x)], "
                              "LiDAR frame of the sample; points relative to the box centre",
            "counts": counts,
        }
        path = os.path.join(out_dir, gt_database_index_name(prefix, split))
        # boxes were checked finite and unknown velocities are None: strict JSON
        text = json.dumps({"metadata": metadata, "objects": objects}, allow_nan=False)
        old = _replace_folder(work_dir, final_dir)
        try:
            with atomic_write(path, "w") as f:
                f.write(text)
        except BaseException:  # put the previous database back with its index
            os.replace(final_dir, work_dir)
            if old is not None:
                os.replace(old, final_dir)
            raise
        work_dir = old  # the previous folder, deleted below
    finally:
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)
    for name, count in counts.items():
        logger.info("gt database %s: %d objects", name, count)
    if skipped_names:
        logger.info("gt database: boxes without a detection class left out: %s",
                    dict(sorted(skipped_names.items())))
    return path
