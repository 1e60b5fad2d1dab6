"""BEV map segmentation labels of a sample, from the nuScenes map expansion of its log's
location (:func:`lidarcl.evaluation.bev_map_seg.bev_map_gt`, BEVFusion's
``LoadBEVSegmentation``)."""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from lidarcl.datasets.transforms.base import Transform
from lidarcl.errors import DataError
from lidarcl.registry import TRANSFORMS


@functools.lru_cache(maxsize=8)
def _map(data_root: str, location: str):
    from lidarcl.evaluation.bev_map_seg import load_nusc_map

    return load_nusc_map(data_root, location)


@TRANSFORMS.register_module()
class LoadBEVMapMask(Transform):
    """``gt_masks_bev (C, NX, NY)`` bool: the map classes around the (augmented) LiDAR frame,
    indexed ``[class, i (x), j (y)]`` over ``xbound`` x ``ybound``. Put it after the
    augmentations: the grid follows ``lidar_aug_matrix`` (rotation, flip, scale) as
    BEVFusion's does. The sample needs its log's ``location`` (``tools/create_data.py``
    writes it) and ``<data_root>/maps/expansion/<location>.json``; each worker loads a
    location's map once."""

    def __init__(self, classes: Sequence[str] | None = None,
                 xbound: Sequence[float] = (-50.0, 50.0, 0.5),
                 ybound: Sequence[float] = (-50.0, 50.0, 0.5)):
        from lidarcl.evaluation.bev_map_seg import BEV_MAP_CLASSES, CLASS_LAYERS

        self.classes = tuple(classes or BEV_MAP_CLASSES)
        unknown = [c for c in self.classes if c not in CLASS_LAYERS]
        if unknown:
            raise ValueError(f"unknown BEV map classes {unknown}; known: {sorted(CLASS_LAYERS)}")
        self.xbound, self.ybound = tuple(xbound), tuple(ybound)

    def transform(self, sample: dict) -> dict:
        from lidarcl.evaluation.bev_map_seg import bev_map_gt, lidar2global_of

        location = sample.get("location")
        if not location:
            raise DataError(sample.get("lidar_path", "<sample>"),
                            f"sample {sample.get('token')} has no map location: rewrite its "
                            "info index with tools/create_data.py (it records each log's "
                            "location)")
        try:
            nusc_map = _map(sample["data_root"], location)
        except FileNotFoundError as exc:
            raise DataError(sample["data_root"], str(exc)) from exc
        pose = lidar2global_of(sample["ego2global"], sample["lidar2ego"],
                               sample.get("lidar_aug_matrix", np.eye(4)))
        sample["gt_masks_bev"] = bev_map_gt(nusc_map, pose, self.classes, self.xbound,
                                            self.ybound)
        return sample
