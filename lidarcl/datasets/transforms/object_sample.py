"""``ObjectSample``: ground-truth sampling ("GT-paste", "copy-paste" of annotated objects
from a database into the scene), the augmentation that SECOND introduced and PointPillars,
PV-RCNN and CenterPoint train with.

Algorithm (OpenPCDet ``pcdet/datasets/augmentor/database_sampler.py``,
``DataBaseSampler`` with ``LIMIT_WHOLE_SCENE: True``; mmdetection3d
``mmdet3d/datasets/transforms/dbsampler.py``):

1. the database (``lidarcl/datasets/gt_database.py``) is read once, and filtered by
   points per object (``min_points``) and by KITTI difficulty (``remove_difficulty``);
2. per class, in the order of ``sample_groups``: ``n = sample_groups[class] - (boxes of
   that class already in the sample)``; when ``n > 0``, ``min(n, database size)``
   distinct records are drawn uniformly;
3. a drawn box is rejected when its rotated BEV IoU (``lidarcl.ops.box_iou_bev``) is > 0
   with any box already in the sample (the annotated ones and those accepted for earlier
   classes) or with another box of the same draw (OpenPCDet's rule: both boxes of a
   colliding pair are rejected); accepted boxes join the boxes to avoid;
4. the scene's points inside the accepted boxes (enlarged by ``remove_extra_width``) are
   removed, the objects' points (stored relative to the box centre) are shifted back to
   their box centre and appended, and the boxes with their names, labels, velocities and
   the other per-box arrays are appended.

Objects keep the position they had in their own scan (no placement), as in both codebases.

Randomness: ``seed=None`` draws from numpy's global RNG, which mmengine seeds
(``randomness=dict(seed=...)``, per data loader worker), ``seed=<int>`` gives the transform
its own generator (``transforms/base.py``), like every transform of the pipeline. The draw
depends only on that random state and the sample: unlike OpenPCDet and mmdetection3d,
which walk through a shuffled list of each class kept from one sample to the next (a state
that each data loader worker holds its own copy of anyway), the records are drawn afresh
for every sample, so the same seed and the same sample give the same result.

Published settings (pass them explicitly; module constants below):

* nuScenes, OpenPCDet ``tools/cfgs/nuscenes_models/cbgs_voxel0075_res3d_centerpoint.yaml``
  (``DB_INFO_PATH nuscenes_dbinfos_10sweeps_withvelo.pkl``): :data:`NUSCENES_SAMPLE_GROUPS`
  ``car 2, truck 3, construction_vehicle 7, bus 4, trailer 6, barrier 2, motorcycle 6,
  bicycle 6, pedestrian 2, traffic_cone 2``, ``filter_by_min_points`` 5 for every class,
  ``REMOVE_EXTRA_WIDTH [0, 0, 0]``; the database built with the keyframe and 9 sweeps
  (``create_data.py nuscenes --gt-database``; 5 columns x, y, z, intensity, time lag);
* KITTI, OpenPCDet ``tools/cfgs/dataset_configs/kitti_dataset.yaml``:
  :data:`KITTI_SAMPLE_GROUPS` ``Car 20, Pedestrian 15, Cyclist 15``, min points 5,
  ``filter_by_difficulty [-1]`` (``remove_difficulty=[-1]``), ``REMOVE_EXTRA_WIDTH
  [0, 0, 0]``. OpenPCDet also sets ``USE_ROAD_PLANE: True`` there (objects moved onto the
  road plane of the target frame, from the planes files); not done here, objects keep
  their own height (mmdetection3d's KITTI configs do the same by default; its
  ``kitti-3d-3class.py`` samples ``Car 12, Pedestrian 6, Cyclist 6`` with min points
  ``5, 10, 10``).

Placement in a pipeline: after ``LoadPoints`` / ``LoadSweeps`` (the points must have the
columns the database was built with) and before the global augmentations and range
filters (boxes and points are in the sample's original LiDAR frame; an augmentation that
ran before raises). Sampled objects appear in the points only, not in camera images.

Keys read: ``points``, ``gt_boxes`` (M, 7 or 9), ``gt_labels`` (counted per class
through ``classes``; ``gt_names`` when there are no labels), ``lidar_aug_matrix``
(must be the identity), the per-point and per-box arrays of ``transforms/base.py``.

Keys written: ``points`` (scene points inside sampled boxes removed, object points
appended at the end; per-point arrays such as ``pts_semantic_mask`` get
``point_fill_value`` for them), ``gt_boxes`` (+ velocity columns when it has 9),
``gt_velocity``, ``gt_names`` (the record's dataset category, e.g. ``vehicle.car``, as
the dataset fills ``gt_names``), ``gt_labels`` (``classes.index(record class)``),
``num_lidar_pts`` (the record's annotated count), ``gt_attributes`` (the record's),
``instance_tokens`` (``""``: no track in this scene): every present per-box array
grows by the sampled boxes, appended at the end; ``num_sampled_objects`` (int).
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import torch

from lidarcl.datasets.gt_database import GTDatabase
from lidarcl.datasets.transforms.base import (RandomSource, Transform, box_keys, point_keys,
                                              select_points)
from lidarcl.errors import DataError
from lidarcl.ops import box_iou_bev, points_in_boxes_first
from lidarcl.registry import TRANSFORMS

logger = logging.getLogger(__name__)

NUSCENES_SAMPLE_GROUPS = {"car": 2, "truck": 3, "construction_vehicle": 7, "bus": 4,
                          "trailer": 6, "barrier": 2, "motorcycle": 6, "bicycle": 6,
                          "pedestrian": 2, "traffic_cone": 2}
KITTI_SAMPLE_GROUPS = {"Car": 20, "Pedestrian": 15, "Cyclist": 15}
PUBLISHED_MIN_POINTS = 5  # filter_by_min_points of both configs, every class
KITTI_REMOVE_DIFFICULTY = (-1,)


def _bev_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return box_iou_bev(torch.from_numpy(np.ascontiguousarray(a[:, :7], dtype=np.float64)),
                       torch.from_numpy(np.ascontiguousarray(b[:, :7], dtype=np.float64))
                       ).numpy()


@TRANSFORMS.register_module()
class ObjectSample(Transform):
    """Paste objects of a ground-truth database into the scene (module doc).

    Args:
        db_file: the database index ``<prefix>_dbinfos_train.json``
            (``tools/create_data.py ... --gt-database``).
        sample_groups: ``{class: cap}``; per sample, up to ``cap - existing`` objects of
            the class are drawn (classes in this order). Published values:
            :data:`NUSCENES_SAMPLE_GROUPS`, :data:`KITTI_SAMPLE_GROUPS`.
        classes: the dataset's classes in label order (the config's ``class_names``);
            sampled boxes get ``gt_labels = classes.index(class)``.
        min_points: database objects with fewer points are never drawn: an int for every
            class or ``{class: n}`` (published: 5).
        remove_difficulty: database objects of these KITTI difficulties are never drawn
            (published for KITTI: ``[-1]``; nuScenes records have difficulty 0).
        remove_extra_width: ``[dl, dw, dh]`` added to the sampled boxes' sizes when the
            scene's points inside them are removed (published: 0, 0, 0).
        seed: ``None``: numpy's global RNG; int: the transform's own generator.
        point_fill_value: value of per-point arrays (e.g. ``pts_semantic_mask``) for the
            pasted points.
    """

    def __init__(self, db_file: str, sample_groups: Mapping[str, int],
                 classes: Sequence[str],
                 min_points: int | Mapping[str, int] = PUBLISHED_MIN_POINTS,
                 remove_difficulty: Sequence[int] = (),
                 remove_extra_width: Sequence[float] = (0.0, 0.0, 0.0),
                 seed: int | None = None, point_fill_value: int = -1):
        self.db_file = db_file
        self.sample_groups = {str(k): int(v) for k, v in dict(sample_groups).items()}
        self.classes = tuple(classes)
        unknown = [c for c in self.sample_groups if c not in self.classes]
        if unknown:
            raise ValueError(f"ObjectSample: sample_groups classes {unknown} are not in "
                             f"classes {list(self.classes)}")
        bad = {c: n for c, n in self.sample_groups.items() if n < 0}
        if bad:
            raise ValueError(f"ObjectSample: sample_groups caps must be >= 0, got {bad}")
        self.min_points = (dict(min_points) if isinstance(min_points, Mapping)
                           else int(min_points))
        self.remove_difficulty = tuple(int(d) for d in remove_difficulty)
        width = np.broadcast_to(np.asarray(remove_extra_width, dtype=np.float64), (3,))
        self.remove_extra_width = tuple(float(w) for w in width)
        self.seed = seed
        self.point_fill_value = point_fill_value
        self._rng = RandomSource(seed)
        db = GTDatabase(db_file, classes=list(self.sample_groups))
        db.filter_by_min_points(self.min_points)
        db.filter_by_difficulty(self.remove_difficulty)
        empty = [c for c, n in db.counts().items() if n == 0 and self.sample_groups[c] > 0]
        if empty:
            logger.warning("%s: no database objects of %s left after the filters; they are "
                           "not sampled", db.path, empty)
        self._db = db

    @property
    def database(self) -> GTDatabase:
        return self._db

    # ------------------------------------------------------------------ drawing
    def _draw(self, n: int, k: int) -> np.ndarray:
        """``k`` distinct indices of ``range(n)``, uniformly (``k <= n``)."""
        if 2 * k >= n:  # small database: one permutation
            return np.asarray(self._rng.permutation(n)[:k], dtype=np.int64)
        chosen: list[int] = []
        seen: set[int] = set()
        while len(chosen) < k:  # draws with replacement, duplicates dropped: O(k), not O(n)
            for i in np.asarray(self._rng.choice(n, k - len(chosen), True)).tolist():
                if i not in seen:
                    seen.add(i)
                    chosen.append(i)
        return np.asarray(chosen, dtype=np.int64)

    def _existing_counts(self, sample: dict, num_boxes: int) -> dict[str, int]:
        labels = sample.get("gt_labels")
        if labels is not None and len(labels) == num_boxes:
            labels = np.asarray(labels, dtype=np.int64)
            return {c: int((labels == self.classes.index(c)).sum()) for c in self.sample_groups}
        names = np.asarray(sample.get("gt_names", []), dtype=object)
        return {c: int((names == c).sum()) for c in self.sample_groups}

    # ------------------------------------------------------------------ transform
    def transform(self, sample: dict) -> dict:
        if sample.get("gt_boxes") is None or sample.get("points") is None:
            raise ValueError("ObjectSample needs points and gt_boxes (place it after "
                             "LoadPoints in a training pipeline with annotations)")
        aug = sample.get("lidar_aug_matrix")
        if aug is not None and not np.allclose(np.asarray(aug), np.eye(4)):
            raise ValueError("ObjectSample must run before the global augmentations: the "
                             "database boxes are in the sample's original LiDAR frame")
        points = sample["points"]
        db = self._db
        columns = points.shape[1]
        if db.num_point_features != columns and not (
                db.time_column and db.num_point_features == columns + 1):
            raise DataError(db.path, f"database points have {db.num_point_features} "
                                     f"columns, the sample's points {columns} (build the "
                                     "database with the pipeline's use_dims and sweeps)")
        boxes = np.asarray(sample["gt_boxes"])
        num_boxes = len(boxes)
        existing = np.asarray(boxes[:, :7], dtype=np.float64).reshape(-1, 7)
        counts = self._existing_counts(sample, num_boxes)
        picked: list[tuple[str, np.ndarray]] = []
        for name, cap in self.sample_groups.items():
            objs = db[name]
            n = min(cap - counts[name], len(objs))
            if n <= 0:
                continue
            idx = self._draw(len(objs), n)
            cand = objs.boxes[idx]
            iou_self = _bev_iou(cand, cand)
            np.fill_diagonal(iou_self, 0.0)
            valid = ~(iou_self > 0).any(1)
            if len(existing):
                valid &= ~(_bev_iou(cand, existing) > 0).any(1)
            if valid.any():
                picked.append((name, idx[valid]))
                existing = np.concatenate([existing, cand[valid]], 0)
        num_sampled = len(existing) - num_boxes
        sample["num_sampled_objects"] = int(num_sampled)
        if num_sampled == 0:
            return sample
        self._paste(sample, picked, existing[num_boxes:])
        return sample

    def _paste(self, sample: dict, picked: list[tuple[str, np.ndarray]],
               new_boxes: np.ndarray) -> None:
        db = self._db
        columns = sample["points"].shape[1]
        # scene points inside the (enlarged) sampled boxes go
        large = new_boxes.copy()
        large[:, 3:6] += np.asarray(self.remove_extra_width)
        xyz = torch.from_numpy(np.ascontiguousarray(sample["points"][:, :3], dtype=np.float64))
        inside = points_in_boxes_first(xyz, torch.from_numpy(large)).numpy() >= 0
        select_points(sample, ~inside)

        parts, cats, attrs, velo, nlid, labels = [], [], [], [], [], []
        for name, idx in picked:
            objs = db[name]
            for i in idx.tolist():
                pts = db.load_points(name, i)
                if pts.shape[1] == columns + 1:  # keyframe-only pipeline, database with sweeps
                    pts = pts[np.abs(pts[:, -1]) < 1e-6, :columns]  # OpenPCDet's rule
                pts = pts.copy()
                pts[:, :3] = (pts[:, :3].astype(np.float64) + objs.boxes[i, :3]).astype(
                    np.float32)
                parts.append(pts)
                cats.append(str(objs.categories[i]))
                attrs.append(str(objs.attributes[i]))
                velo.append(objs.velocity[i])
                nlid.append(int(objs.num_lidar_pts[i]))
                labels.append(self.classes.index(name))
        obj_points = np.concatenate(parts, 0).astype(sample["points"].dtype, copy=False)
        num_new_points = len(obj_points)
        for key in point_keys(sample):
            arr = sample[key]
            fill = np.full(num_new_points, self.point_fill_value,
                           dtype=getattr(arr, "dtype", np.int64))
            sample[key] = np.concatenate([np.asarray(arr), fill])
        sample["points"] = np.concatenate([sample["points"], obj_points], 0)

        num_boxes = len(sample["gt_boxes"])
        velo_arr = np.asarray(velo, dtype=np.float64).reshape(-1, 2)
        extend = {
            "gt_velocity": velo_arr,
            "gt_names": np.asarray(cats, dtype=object),
            "gt_labels": np.asarray(labels, dtype=np.int64),
            "num_lidar_pts": np.asarray(nlid, dtype=np.int64),
            "gt_attributes": np.asarray(attrs, dtype=object),
            "instance_tokens": np.asarray([""] * len(cats), dtype=object),
        }
        for key in box_keys(sample):
            value = sample[key]
            if key == "gt_boxes" or len(value) != num_boxes:
                continue  # gt_boxes below; a list of another length is not per-box
            if key not in extend:
                raise ValueError(f"ObjectSample cannot extend the per-box array {key!r} for "
                                 "the sampled boxes; add it after ObjectSample")
            new = extend[key]
            if not isinstance(value, np.ndarray):
                sample[key] = list(value) + new.tolist()
            elif value.dtype.kind in "US":  # numpy widens the strings, never truncates
                sample[key] = np.concatenate([value, np.asarray(new.tolist(), dtype=str)])
            else:
                sample[key] = np.concatenate([value, new.astype(value.dtype, copy=False)], 0)
        boxes = np.asarray(sample["gt_boxes"])
        add = new_boxes
        if boxes.shape[1] >= 9:
            add = np.concatenate([new_boxes, velo_arr,
                                  np.zeros((len(new_boxes), boxes.shape[1] - 9))], 1)
        sample["gt_boxes"] = np.concatenate([boxes, add.astype(boxes.dtype)], 0)
