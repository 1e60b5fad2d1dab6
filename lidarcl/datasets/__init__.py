"""Datasets, info indexes and transforms. Importing this package registers them."""
import lidarcl.datasets.transforms  # noqa: F401  (registers LoadPoints ... PackSample)
from lidarcl.datasets.camera_images import CameraImageDataset, collate_image_views
from lidarcl.datasets.collate import collate_samples
from lidarcl.datasets.folder_dataset import FolderDataset
from lidarcl.datasets.kitti_dataset import KittiDataset
from lidarcl.datasets.multi_frame import MultiFrameDataset
from lidarcl.datasets.nuscenes_dataset import NuScenesDataset
from lidarcl.datasets.semantickitti_dataset import SemanticKITTIDataset

__all__ = ["CameraImageDataset", "collate_image_views", "collate_samples", "FolderDataset", "KittiDataset", "MultiFrameDataset", "NuScenesDataset",
           "SemanticKITTIDataset"]
