"""Transforms of the sample dict (registered in ``lidarcl.registry.TRANSFORMS``).

Importing this package registers them. Conventions for per-point / per-box arrays and
randomness: ``base.py``; augmentation geometry (boxes, velocity, cameras): ``augment.py``.
"""
from lidarcl.datasets.transforms.augment import (GlobalRotScaleTrans, PointDropout,
                                                 PointJitter, RandomFlip3D,
                                                 apply_lidar_transform)
from lidarcl.datasets.transforms.filters import (ObjectMinPointsFilter, ObjectNameFilter,
                                                 ObjectRangeFilter, PointSample,
                                                 PointShuffle, PointsInCameraFOV,
                                                 PointsRangeFilter)
from lidarcl.datasets.transforms.formatting import PackSample
from lidarcl.datasets.transforms.image import (DropCuboids, RandomFlipImages,
                                               RandomResizedCropImages, ResizeImages,
                                               SelectCameras, apply_image_affine)
from lidarcl.datasets.transforms.image_ssl import MoCoV2Crops
from lidarcl.datasets.transforms.loading import (LoadDenseCloud, LoadImages,
                                                 LoadLidarsegLabels, LoadPoints,
                                                 LoadSemanticKITTILabels, LoadSuperpixels,
                                                 LoadSweeps)
from lidarcl.datasets.transforms.object_sample import ObjectSample
from lidarcl.datasets.transforms.map_labels import LoadBEVMapMask
from lidarcl.datasets.transforms.regions import SegmentRegions
from lidarcl.datasets.transforms.views import (MultiViewAugment, TemporalViews, match_views,
                                               mutual_nearest)

__all__ = [
    "LoadPoints", "LoadSweeps", "LoadDenseCloud", "LoadImages", "LoadSuperpixels",
    "LoadLidarsegLabels", "LoadSemanticKITTILabels",
    "PointsRangeFilter", "ObjectRangeFilter", "ObjectNameFilter", "ObjectMinPointsFilter",
    "PointsInCameraFOV", "PointSample", "PointShuffle",
    "GlobalRotScaleTrans", "RandomFlip3D", "PointJitter", "PointDropout",
    "apply_lidar_transform", "PackSample", "SegmentRegions", "MultiViewAugment",
    "TemporalViews", "match_views", "mutual_nearest", "ResizeImages",
    "RandomResizedCropImages", "RandomFlipImages", "SelectCameras", "apply_image_affine",
    "MoCoV2Crops", "DropCuboids", "ObjectSample",
]
