"""The camera images of an info index, one item per (sample, camera), for self-supervised
image pretraining (``tools/pretrain_image.py``): the teacher of the camera-LiDAR methods
learns from the images of the same dataset.

An item is ``{"image": uint8 (H, W, 3), "path", "token", "camera"}`` before the pipeline
(e.g. :class:`~lidarcl.datasets.transforms.image_ssl.MoCoV2Crops`); ``max_side`` shrinks
each image on load so that its longer side is at most that many pixels (PIL's box-filter
resize: area averages), and ``cache`` keeps the shrunk images
in the worker's memory (for the small generated sets; off for nuScenes' 204,894 training
images). Paths are checked to stay under ``data_root`` as in the other datasets.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.registry import FUNCTIONS  # the Runner's collate_fn lookup is mmengine's own
from torch.utils.data import Dataset

from lidarcl.datasets.info_format import read_info_index
from lidarcl.datasets.io import load_image
from lidarcl.registry import DATASETS
from lidarcl.utils.paths import confined_path

__all__ = ["CameraImageDataset", "collate_image_views"]


@DATASETS.register_module()
class CameraImageDataset(Dataset):
    """Every camera image of ``ann_file`` (module doc); ``cameras`` keeps those channels."""

    def __init__(self, ann_file: str, data_root: str = "", pipeline: Sequence = (),
                 cameras: Sequence[str] | None = None, max_side: int | None = None,
                 cache: bool = False):
        self.data_root = os.path.abspath(data_root or ".")
        self.ann_file = ann_file if os.path.isabs(ann_file) else os.path.join(self.data_root,
                                                                              ann_file)
        infos, _ = read_info_index(self.ann_file)
        wanted = None if cameras is None else set(cameras)
        self.items = []
        for info in infos:
            for name, cam in sorted(info.get("cams", {}).items()):
                if wanted is not None and name not in wanted:
                    continue
                path = confined_path(self.data_root, cam["path"], self.ann_file,
                                     f"sample {info['token']} camera {name} path")
                self.items.append((path, str(info["token"]), name))
        if not self.items:
            raise ValueError(f"{self.ann_file}: no camera images"
                             + (f" of the cameras {sorted(wanted)}" if wanted else ""))
        self.max_side = None if max_side is None else int(max_side)
        self.cache = bool(cache)
        self._cached: dict[int, np.ndarray] = {}
        self.pipeline = Compose(list(pipeline))
        self.metainfo = {"images": len(self.items),
                         "cameras": sorted({camera for _, _, camera in self.items})}

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> np.ndarray:
        if index in self._cached:
            return self._cached[index]
        image = load_image(self.items[index][0])
        if self.max_side is not None and max(image.shape[:2]) > self.max_side:
            from PIL import Image

            factor = self.max_side / max(image.shape[:2])
            size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
            image = np.asarray(Image.fromarray(image).resize(size, Image.BOX))
        if self.cache:
            self._cached[index] = image
        return image

    def __getitem__(self, index: int) -> dict:
        path, token, camera = self.items[index]
        return self.pipeline({"image": self.load(index), "path": path, "token": token,
                              "camera": camera})


def collate_image_views(batch: Sequence[dict]) -> dict:
    """``{"views": (B, V, 3, H, W), "meta": [(token, camera), ...]}`` of a batch of items
    with ``views``."""
    if not batch:
        raise ValueError("collate_image_views got an empty batch")
    return {"views": torch.stack([item["views"] for item in batch]),
            "meta": [(item["token"], item["camera"]) for item in batch]}


if "collate_image_views" not in FUNCTIONS.module_dict:
    FUNCTIONS.register_module(name="collate_image_views", module=collate_image_views)
