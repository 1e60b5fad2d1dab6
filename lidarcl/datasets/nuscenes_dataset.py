"""nuScenes dataset over an info index written by ``tools/create_data.py nuscenes``.

Detection classes: the 10 of the nuScenes detection challenge; the index stores the full
nuScenes category names (``vehicle.car``, ``human.pedestrian.adult``, ...) and
``NAME_MAPPING`` maps them the way nuscenes-devkit's ``category_to_detection_name`` does
(categories without a detection class, e.g. ``vehicle.emergency.police``, get no label).

Segmentation classes: the 16 classes of the nuScenes-lidarseg challenge
(``LIDARSEG_CLASSES``) and the fine -> coarse map of nuscenes-devkit's
``LidarsegClassMapper`` (``LIDARSEG_FINE_TO_COARSE``); :func:`lidarseg_learning_map` turns a
``.bin`` label (fine category index) into a training label ``0..15`` or ``ignore_index``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from lidarcl.datasets.base import InfoDataset
from lidarcl.datasets.nuscenes_converter import DETECTION_CLASSES
from lidarcl.datasets.nuscenes_constants import LIDARSEG_CATEGORIES
from lidarcl.errors import DataError
from lidarcl.registry import DATASETS

# nuScenes category -> detection class (nuscenes.eval.detection.utils.category_to_detection_name)
NUSCENES_NAME_MAPPING = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}


# the 16 lidarseg challenge classes; LidarsegClassMapper numbers them 1..16 (0 = ignore),
# training labels here are their position 0..15
LIDARSEG_CLASSES = ("barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle",
                    "pedestrian", "traffic_cone", "trailer", "truck", "driveable_surface",
                    "other_flat", "sidewalk", "terrain", "manmade", "vegetation")

# fine category -> challenge class, None = ignored (LidarsegClassMapper.get_fine2coarse)
LIDARSEG_FINE_TO_COARSE: dict[str, str | None] = {
    "noise": None, "animal": None,
    "human.pedestrian.adult": "pedestrian", "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.personal_mobility": None,
    "human.pedestrian.police_officer": "pedestrian",
    "human.pedestrian.stroller": None, "human.pedestrian.wheelchair": None,
    "movable_object.barrier": "barrier", "movable_object.debris": None,
    "movable_object.pushable_pullable": None, "movable_object.trafficcone": "traffic_cone",
    "static_object.bicycle_rack": None, "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus", "vehicle.bus.rigid": "bus", "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle", "vehicle.emergency.ambulance": None,
    "vehicle.emergency.police": None, "vehicle.motorcycle": "motorcycle",
    "vehicle.trailer": "trailer", "vehicle.truck": "truck",
    "flat.driveable_surface": "driveable_surface", "flat.other": "other_flat",
    "flat.sidewalk": "sidewalk", "flat.terrain": "terrain", "static.manmade": "manmade",
    "static.other": None, "static.vegetation": "vegetation", "vehicle.ego": None,
}


def lidarseg_learning_map(categories: Mapping[str, int] | Sequence[str] | None = None,
                          ignore_index: int = 255) -> np.ndarray:
    """Lookup table ``lut[fine category index] -> training label``.

    Args:
        categories: the label index of each fine category, as ``{name: index}`` (e.g. the
            info index's ``metadata["lidarseg_categories"]`` or the devkit's
            ``lidarseg_name2idx_mapping``) or as names in index order; ``None`` uses the
            official release's order (``LIDARSEG_CATEGORIES``).
        ignore_index: label of the categories that the challenge ignores.

    Returns:
        int64 array: ``LIDARSEG_CLASSES.index(coarse)`` or ``ignore_index`` per fine index
        (indices that no category uses get ``ignore_index``).
    """
    if categories is None:
        categories = LIDARSEG_CATEGORIES
    if not isinstance(categories, Mapping):
        categories = {name: i for i, name in enumerate(categories)}
    unknown = [n for n in categories if n not in LIDARSEG_FINE_TO_COARSE]
    if unknown:
        raise ValueError(f"unknown nuScenes-lidarseg categories {unknown}; known: "
                         f"{list(LIDARSEG_FINE_TO_COARSE)}")
    lut = np.full(max(categories.values(), default=-1) + 1, ignore_index, dtype=np.int64)
    for name, index in categories.items():
        coarse = LIDARSEG_FINE_TO_COARSE[name]
        if coarse is not None:
            lut[index] = LIDARSEG_CLASSES.index(coarse)
    return lut


@DATASETS.register_module()
class NuScenesDataset(InfoDataset):
    """nuScenes keyframes from an info index (``nuscenes_converter.py``).

    Args beyond :class:`InfoDataset`:
        version: expected table version (e.g. ``"v1.0-trainval"``); an index written
            from another version raises :class:`DataError`. ``None`` accepts any.
        min_lidar_pts: drop boxes with fewer annotated LiDAR points (0 keeps all).

    Adds to the sample dict: ``gt_attributes`` (M,) and ``instance_tokens`` (M,), filtered
    like the boxes.
    """

    DATASET_NAME = "nuscenes"
    DEFAULT_CLASSES = DETECTION_CLASSES
    ALL_CLASSES = DETECTION_CLASSES
    NAME_MAPPING = NUSCENES_NAME_MAPPING
    LIDARSEG_CLASSES = LIDARSEG_CLASSES

    def __init__(self, ann_file: str, data_root: str = "", version: str | None = None,
                 min_lidar_pts: int = 0, **kwargs):
        self.version = version
        self.min_lidar_pts = int(min_lidar_pts)
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def load_data_list(self) -> list[dict]:
        infos = super().load_data_list()
        found = self.index_metadata.get("version")
        if self.version is not None and found != self.version:
            raise DataError(self.ann_file, f"info index was written from nuScenes version "
                                           f"{found!r}, expected {self.version!r}")
        return infos

    def parse_sample(self, info: dict, index: int) -> dict:
        sample = super().parse_sample(info, index)
        if getattr(self, "_lidarseg_lut", None) is None:
            self._lidarseg_lut = self.lidarseg_learning_map
        # what LoadLidarsegLabels(label_mapping="dataset") maps the raw labels with
        sample["lidarseg_learning_map"] = self._lidarseg_lut
        # the LIDAR_TOP sample_data token: names the keyframe's lidarseg / submission files
        sample["lidar_token"] = (info.get("nuscenes") or {}).get("lidar_token")
        keep = self.class_labels(info["gt_names"]) >= 0
        for key in ("gt_attributes", "instance_tokens"):
            values = np.asarray(info.get(key) or [""] * len(keep), dtype=object)
            if len(values) != len(keep):
                raise DataError(self.ann_file, f"sample {info['token']}: {key} has "
                                               f"{len(values)} entries for {len(keep)} boxes")
            sample[key] = values[keep] if len(keep) else values[:0]
        if self.min_lidar_pts > 0:
            enough = sample["num_lidar_pts"] >= self.min_lidar_pts
            for key in ("gt_boxes", "gt_velocity", "gt_names", "gt_labels", "num_lidar_pts",
                        "gt_attributes", "instance_tokens"):
                sample[key] = sample[key][enough]
        return sample

    @property
    def lidarseg_learning_map(self) -> np.ndarray:
        """Fine -> training label lookup for this index's category numbering."""
        return lidarseg_learning_map(self.index_metadata.get("lidarseg_categories"))
