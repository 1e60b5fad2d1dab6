"""``FolderDataset``: unlabelled scans in a folder, one sample per point file.

Reads ``.bin`` (``num_point_features`` float32 columns), ``.npy`` (2-D float array),
``.pcd`` / ``.ply`` (open3d: x, y, z, intensity; see ``datasets/io.py``). Each sample is a
sample dict with the keys of ``InfoDataset`` (``datasets/base.py``): ``lidar_path``,
``num_point_features``, no sweeps, no cameras, empty boxes, identity poses, so the same
pipeline (``LoadPoints``, filters, augmentations, ``PackSample``) runs on it.

``token`` is the file's path relative to the folder, without its suffix.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from lidarcl.datasets.base import SkipsSamples
from lidarcl.datasets.io import POINT_SUFFIXES
from lidarcl.datasets.regions import CACHEDIR_TAG
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.registry import DATASETS

logger = logging.getLogger(__name__)


def _npy_columns(path: str) -> int | None:
    """Column count from a .npy header (None when it is not a 2-D array: LoadPoints then
    raises the error that names the file)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        return None
    return int(arr.shape[1]) if arr.ndim == 2 else None


@DATASETS.register_module()
class FolderDataset(SkipsSamples, BaseDataset):
    """Point files of a folder as an unlabelled dataset.

    Args:
        data_root: the folder.
        pipeline: transform configs or callables.
        suffixes: point file types to collect (lower-case; matched case-insensitively).
        recursive: also look in subfolders.
        num_point_features: float32 columns of the ``.bin`` files (4: KITTI velodyne,
            5: nuScenes). ``.pcd`` / ``.ply`` give 4 columns, ``.npy`` its own count.
        test_mode, lazy_init, max_refetch, indices: as mmengine's ``BaseDataset``.
    """

    METAINFO = {"classes": ()}

    def __init__(self, data_root: str, pipeline: Sequence = (),
                 suffixes: Sequence[str] = POINT_SUFFIXES, recursive: bool = False,
                 num_point_features: int = 4, test_mode: bool = False, **kwargs):
        bad = [s for s in suffixes if s.lower() not in POINT_SUFFIXES]
        if bad:
            raise ValueError(f"FolderDataset: unsupported suffixes {bad}; supported "
                             f"{POINT_SUFFIXES}")
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.recursive = recursive
        self.num_point_features = int(num_point_features)
        super().__init__(ann_file="", data_root=data_root, pipeline=list(pipeline),
                         test_mode=test_mode, **kwargs)

    def _find_files(self) -> list[str]:
        """Point files of the folder (and, recursively, its subfolders), sorted.

        Hidden files and folders (names starting with ``.``) are left out. Recursion
        follows symlinked folders but visits each real folder once (a symlink
        loop would otherwise list every scan again at each level), skips cache folders
        tagged with ``CACHEDIR.TAG`` (the region cache writes one, so its ``.npy`` files
        are never taken for scans), and lists a file reached by two names once."""
        root = os.path.abspath(self.data_root)
        if not os.path.isdir(root):
            raise DataFileNotFound(root, "scan folder")
        files, seen_dirs, seen_files, duplicates = [], set(), set(), 0
        for folder, subfolders, names in os.walk(root, followlinks=True):
            stat = os.stat(folder)
            if (stat.st_dev, stat.st_ino) in seen_dirs or \
                    os.path.isfile(os.path.join(folder, CACHEDIR_TAG)):
                subfolders[:] = []
                continue
            seen_dirs.add((stat.st_dev, stat.st_ino))
            # hidden entries (.ipynb_checkpoints/, macOS ._scan.bin) are not scans, as glob
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) \
                if self.recursive else []
            for name in names:
                if name.startswith("."):
                    continue
                path = os.path.join(folder, name)
                if not name.lower().endswith(self.suffixes) or not os.path.isfile(path):
                    continue
                real = os.path.realpath(path)
                if real in seen_files:
                    duplicates += 1
                    continue
                seen_files.add(real)
                files.append(path)
        if duplicates:
            logger.warning("%s: %d point files reached through a second name (symlinks) "
                           "listed once", root, duplicates)
        if not files:
            raise DataError(root, f"no point files ({', '.join(self.suffixes)}) found "
                                  f"{'under' if self.recursive else 'in'} the folder"
                                  f"{'' if self.recursive else ' (recursive=False)'}")
        return sorted(files)

    def load_data_list(self) -> list[dict]:
        root = os.path.abspath(self.data_root)
        infos = []
        for path in self._find_files():
            suffix = os.path.splitext(path)[1].lower()
            if suffix == ".bin":
                nf = self.num_point_features
            elif suffix == ".npy":
                nf = _npy_columns(path)
            else:
                nf = 4
            infos.append({"lidar_path": path, "num_point_features": nf,
                          "token": os.path.splitext(os.path.relpath(path, root))[0]})
        return infos

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        return {
            "sample_idx": idx,
            "token": info["token"],
            "timestamp": 0,
            "scene_token": "",
            "prev": "",
            "next": "",
            "data_root": os.path.abspath(self.data_root),
            "lidar_path": info["lidar_path"],
            "num_point_features": info["num_point_features"],
            "lidar2ego": np.eye(4),
            "ego2global": np.eye(4),
            "sweeps": [],
            "cams": {},
            "gt_boxes": np.zeros((0, 7), dtype=np.float32),
            "gt_velocity": np.zeros((0, 2), dtype=np.float32),
            "gt_names": np.zeros((0,), dtype=object),
            "gt_labels": np.zeros((0,), dtype=np.int64),
            "num_lidar_pts": np.zeros((0,), dtype=np.int64),
            "lidarseg_path": None,
        }
