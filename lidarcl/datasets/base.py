"""Base dataset: reads an info index (info_format.py) and turns each sample info into the
sample dict that the transform pipeline works on.

Sample dict keys produced here (before any transform)::

    sample_idx, token, timestamp, scene_token, prev, next
    location             the log's map location ("" when the index has none)
    data_root            absolute root the relative paths in the index refer to
    lidar_path           absolute path of the keyframe point file (every path of the index
                         must stay inside its root, else DataError naming the index)
    num_point_features   float32 columns in that file
    sweeps               [{"path" (absolute), "timestamp", "time_lag", "sweep2lidar" (4, 4)}]
    cams                 {channel: {"path" (absolute), "height", "width", "timestamp",
                                    "cam2img", "lidar2cam", "lidar2img" (4, 4) float64,
                                    "superpixel_path" (absolute; only when the index has
                                    superpixels, resolved against the index's folder)}}
    lidar2ego, ego2global  (4, 4) float64
    gt_boxes             (M, 7) float32 LiDAR-frame boxes (structures/boxes.py)
    gt_velocity          (M, 2) float32
    gt_names             (M,) str, the dataset's own class names
    gt_labels            (M,) int64 index into ``classes`` (boxes of other classes removed)
    num_lidar_pts        (M,) int64
    lidarseg_path        absolute path or None

Transforms add ``points`` (N, C) float32, ``images`` / ``lidar2img`` (K, 4, 4),
``pts_semantic_mask`` and more; see ``lidarcl/datasets/transforms``.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from lidarcl.datasets.info_format import read_info_index
from lidarcl.datasets.superpixels import SUPERPIXEL_DIRNAME, superpixel_path
from lidarcl.errors import DataError
from lidarcl.utils.paths import confined_path


class SkipsSamples:
    """mmengine ``BaseDataset.__getitem__`` with errors that name the sample.

    A pipeline skips a sample by returning ``None`` (an empty scan: ``LoadPoints``,
    ``PackSample``; each warns naming the file). In training another sample is drawn, as
    mmengine does, up to ``max_refetch`` times; when every draw was skipped, or in test
    mode (an evaluation cannot drop a sample), :class:`DataError` names the sample's
    file instead of mmengine's generic exception.
    """

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        tries = 1 if self.test_mode else self.max_refetch + 1
        first = idx
        for _ in range(tries):
            data = self.prepare_data(idx)
            if data is not None:
                return data
            idx = self._rand_another()
        path = self.get_data_info(first).get("lidar_path")
        if self.test_mode:
            raise DataError(path, f"sample {first} was skipped by the pipeline (an empty "
                                  "scan, or no points left after its filters); an evaluation "
                                  "cannot skip samples: remove it from the dataset")
        raise DataError(path, f"sample {first} and {tries - 1} other samples drawn in its "
                              "place were all skipped by the pipeline (empty scans, or no "
                              "points left after its filters); check the data and the "
                              "range filters")


class InfoDataset(SkipsSamples, BaseDataset):
    """A dataset backed by a lidarcl info index.

    Args:
        ann_file: info index path (absolute, or relative to ``data_root``).
        data_root: root that the index's relative paths refer to.
        pipeline: transform configs or callables.
        classes: detection classes to keep, in label order; ``None`` keeps
            ``DEFAULT_CLASSES`` of the subclass. Names are mapped through ``NAME_MAPPING``.
        filter_empty_gt: drop samples without any box of ``classes`` (training).
        test_mode: no filtering.
        split_file: a label-fraction split (``lidarcl/datasets/splits.py``): only the
            samples it lists are kept. Every token it lists must be in the index.
    """

    DATASET_NAME: str = ""
    DEFAULT_CLASSES: tuple[str, ...] = ()
    # every detection class name the dataset can produce (after NAME_MAPPING)
    ALL_CLASSES: tuple[str, ...] = ()
    # dataset class name -> detection class name (identity when absent)
    NAME_MAPPING: dict[str, str] = {}

    def __init__(self, ann_file: str, data_root: str = "", pipeline: Sequence = (),
                 classes: Sequence[str] | None = None, filter_empty_gt: bool = False,
                 test_mode: bool = False, split_file: str | None = None, **kwargs):
        self.split_file = split_file
        self.classes = tuple(classes) if classes is not None else tuple(self.DEFAULT_CLASSES)
        unknown = [c for c in self.classes if self.ALL_CLASSES and c not in self.ALL_CLASSES]
        if unknown:
            raise ValueError(f"{ann_file}: unknown class names {unknown} for "
                             f"{type(self).__name__}; known: {list(self.ALL_CLASSES)}")
        self.filter_empty_gt = filter_empty_gt
        self.index_metadata: dict[str, Any] = {}
        super().__init__(ann_file=ann_file, data_root=data_root, pipeline=list(pipeline),
                         test_mode=test_mode, metainfo={"classes": self.classes}, **kwargs)

    # mmengine calls this once (lazily); keep infos as plain dicts
    def load_data_list(self) -> list[dict]:
        infos, meta = read_info_index(self.ann_file, dataset=self.DATASET_NAME or None)
        self.index_metadata = meta
        if self.split_file:
            infos = self._split_infos(infos)
        return infos

    def _split_infos(self, infos: list[dict]) -> list[dict]:
        """The samples the split file lists, in index order."""
        from lidarcl.datasets.splits import read_split

        wanted = set(read_split(self.split_file)["tokens"])
        kept = [info for info in infos if str(info["token"]) in wanted]
        if len(kept) != len(wanted):
            missing = sorted(wanted - {str(info["token"]) for info in kept})
            raise DataError(self.split_file, f"{len(missing)} sample tokens of the split are "
                                             f"not in the index {self.ann_file} (first: "
                                             f"{missing[0]}); the split was drawn for another "
                                             "index")
        return kept

    def class_labels(self, gt_names) -> np.ndarray:
        """Label of each dataset class name (through ``NAME_MAPPING``) in ``classes``;
        -1 for names of other classes. The one place that decides which boxes are kept."""
        mapped = (self.NAME_MAPPING.get(n, n) for n in gt_names)
        return np.array([self.classes.index(n) if n in self.classes else -1 for n in mapped],
                        dtype=np.int64)

    def filter_data(self) -> list[dict]:
        if self.test_mode or not self.filter_empty_gt:
            return self.data_list
        return [info for info in self.data_list
                if (self.class_labels(info["gt_names"]) >= 0).any()]

    def _serialize_data(self):
        # mmengine's serialisation concatenates per-sample buffers and fails on an empty
        # list (an empty split, or a class filter that keeps nothing): give an empty buffer.
        if not self.data_list:
            return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
        return super()._serialize_data()

    def parse_sample(self, info: dict, index: int) -> dict:
        """Turn one sample info into the sample dict documented in this module."""
        root = os.path.abspath(self.data_root or ".")
        index_dir = os.path.dirname(os.path.abspath(self.ann_file))
        token = info["token"]

        superpixel_sets = sorted((self.index_metadata or {}).get("superpixel_sets") or {})

        def inside(base: str, entry, what: str) -> str:
            # every path of the index stays under its root (lidarcl.utils.paths)
            return confined_path(base, entry, self.ann_file, f"sample {token} {what}")

        sample = {
            "sample_idx": index,
            "token": token,
            "timestamp": info.get("timestamp", 0),
            "scene_token": info.get("scene_token", ""),
            "location": info.get("location", ""),
            "prev": info.get("prev", ""),
            "next": info.get("next", ""),
            "data_root": root,
            "lidar_path": inside(root, info["lidar_path"], "lidar_path"),
            "num_point_features": int(info["num_point_features"]),
            "lidar2ego": np.asarray(info["lidar2ego"], dtype=np.float64),
            "ego2global": np.asarray(info["ego2global"], dtype=np.float64),
            "sweeps": [{**s, "path": inside(root, s["path"], f"sweep {j} path"),
                        "sweep2lidar": np.asarray(s["sweep2lidar"], dtype=np.float64)}
                       for j, s in enumerate(info.get("sweeps", []))],
            "cams": {name: {**cam, "path": inside(root, cam["path"], f"camera {name} path"),
                            **{k: np.asarray(cam[k], dtype=np.float64)
                               for k in ("cam2img", "lidar2cam", "lidar2img") if k in cam},
                            **({"superpixel_path": inside(index_dir, cam["superpixel_path"],
                                                          f"camera {name} superpixel_path")}
                               if cam.get("superpixel_path") else {}),
                            "superpixel_sets": {
                                tag: inside(index_dir, superpixel_path(
                                    SUPERPIXEL_DIRNAME, tag, token, name),
                                    f"camera {name} superpixel set {tag}")
                                for tag in superpixel_sets}}
                     for name, cam in info.get("cams", {}).items()},
            "lidarseg_path": (inside(root, info["lidarseg_path"], "lidarseg_path")
                              if info.get("lidarseg_path") else None),
        }
        # shapes and per-box lengths were checked when the index was read (check_sample_info)
        boxes = np.asarray(info["gt_boxes"], dtype=np.float32).reshape(-1, 7)
        names = np.asarray(info["gt_names"], dtype=object)
        velocity = np.asarray(info.get("gt_velocity", np.full((len(boxes), 2), np.nan)),
                              dtype=np.float32).reshape(-1, 2)
        num_pts = np.asarray(info.get("num_lidar_pts", np.full(len(boxes), -1)),
                             dtype=np.int64).reshape(-1)
        labels = self.class_labels(names)
        keep = labels >= 0
        sample.update(gt_boxes=boxes[keep], gt_velocity=velocity[keep], gt_names=names[keep],
                      gt_labels=labels[keep], num_lidar_pts=num_pts[keep])
        return sample

    def get_data_info(self, idx: int) -> dict:
        info = copy.deepcopy(super().get_data_info(idx))
        info.pop("sample_idx", None)
        try:
            return self.parse_sample(info, idx)
        except DataError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            # a field read_info_index does not check (dataset extras): still name the index
            raise DataError(self.ann_file, f"sample {idx} ({info.get('token')}): malformed "
                                           f"entry ({type(exc).__name__}: {exc})") from exc
