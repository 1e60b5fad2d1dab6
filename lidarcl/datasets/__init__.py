"""Datasets, info indexes and transforms. Importing this package registers them."""
import lidarcl.datasets.transforms  # noqa: F401  (registers LoadPoints ... PackSample)
from lidarcl.datasets.collate import collate_samples
from lidarcl.datasets.folder_dataset import FolderDataset
from lidarcl.datasets.kitti_dataset import KittiDataset
from lidarcl.datasets.nuscenes_dataset import NuScenesDataset

__all__ = ["collate_samples", "FolderDataset", "KittiDataset", "NuScenesDataset"]
