"""KITTI 3D object dataset over a lidarcl info index (written by
:func:`lidarcl.datasets.kitti_converter.create_kitti_infos`).

Boxes in the index are already in the LiDAR frame (``[x, y, z, l, w, h, yaw]``, gravity
centre, yaw CCW from +x); nothing is converted here. Besides the keys of
:class:`~lidarcl.datasets.base.InfoDataset`, a sample dict carries:

    ignored   {"names": (K,) str, "bboxes_2d": (K, 4) float32} DontCare regions (image_2)
    kitti     per kept box, aligned with gt_boxes: "bboxes_2d" (M, 4), "truncated" (M,),
              "occluded" (M,) int64, "alpha" (M,), "difficulty" (M,) int64
              (0 easy, 1 moderate, 2 hard, -1 none); plus "image_idx"
"""
from __future__ import annotations

import numpy as np

from lidarcl.datasets.base import InfoDataset
from lidarcl.datasets.kitti_converter import KITTI_CLASSES
from lidarcl.errors import DataError
from lidarcl.registry import DATASETS

_PER_BOX_EXTRAS = {"bboxes_2d": (np.float32, (-1, 4)), "truncated": (np.float32, (-1,)),
                   "occluded": (np.int64, (-1,)), "alpha": (np.float32, (-1,)),
                   "difficulty": (np.int64, (-1,))}


@DATASETS.register_module()
class KittiDataset(InfoDataset):
    """KITTI object detection frames (LiDAR + image_2 as camera ``CAM2``)."""

    DATASET_NAME = "kitti"
    DEFAULT_CLASSES = ("Pedestrian", "Cyclist", "Car")
    ALL_CLASSES = KITTI_CLASSES

    def parse_sample(self, info: dict, index: int) -> dict:
        sample = super().parse_sample(info, index)
        keep = self.class_labels(info["gt_names"]) >= 0
        extras = info.get("kitti", {})
        kitti = {"image_idx": extras.get("image_idx", info["token"])}
        for key, (dtype, shape) in _PER_BOX_EXTRAS.items():
            if key not in extras:
                continue
            arr = np.asarray(extras[key], dtype=dtype).reshape(shape)
            if len(arr) != len(keep):
                raise DataError(self.ann_file, f"sample {info['token']}: kitti.{key} has "
                                               f"{len(arr)} rows for {len(keep)} boxes")
            kitti[key] = arr[keep]
        sample["kitti"] = kitti
        ignored = info.get("ignored", {})
        sample["ignored"] = {
            "names": np.asarray(ignored.get("names", []), dtype=object),
            "bboxes_2d": np.asarray(ignored.get("bboxes_2d", []),
                                    dtype=np.float32).reshape(-1, 4),
        }
        return sample
