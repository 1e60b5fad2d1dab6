"""Multi-frame samples: a keyframe ``t`` with its neighbouring keyframes ``t + o`` for the
offsets ``frame_offsets`` (``(-1, 1)``: SuperFlow's ``t-1, t, t+1``), each with its own
points, cameras, superpixels and ``lidar2img``.

``MultiFrameDataset(dataset=..., frame_pipeline=...)`` wraps an info dataset: item ``i`` is
the wrapped dataset's item ``i`` (its pipeline, e.g. with ``LoadDenseCloud``) plus
``frames``: one packed sample per offset, each the neighbour's info through
``frame_pipeline``. Neighbours follow the index's ``prev`` / ``next`` tokens within the
scene; at a scene's end (no neighbour that far) the frame is the keyframe itself under the
frame pipeline's own augmentation (SuperFlow's released code does the same), or the sample
is left out of the dataset with ``at_scene_end="drop"``. A neighbour sees the cameras the
keyframe's pipeline kept (``cam_names`` of its meta), so a camera subset drawn for ``t``
(``SelectCameras``) is the one used at ``t +- 1``.

Geometry. Every frame stays in its own LiDAR frame (SuperFlow matches frames by semantic ids,
not by coordinates). Each neighbour carries ``frame_to_key`` (4x4): the map of its LiDAR
frame into the keyframe's, through the ego poses,

    frame_to_key = inv(ego2global_t @ lidar2ego_t) @ (ego2global_j @ lidar2ego_j),

which is nuscenes-devkit's chain sensor -> ego -> global -> ego -> sensor
(``tests/test_multi_frame.py`` checks it against the devkit's quaternions); with the
augmentations (``lidar_aug_matrix`` ``A`` of each frame), an augmented neighbour point maps
into the augmented keyframe by ``A_t @ frame_to_key @ inv(A_j)`` (:func:`neighbour_to_key`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from mmengine.dataset import BaseDataset, Compose
from torch.utils.data import Dataset

from lidarcl.errors import DataError
from lidarcl.registry import DATASETS

__all__ = ["MultiFrameDataset", "frame_to_key_matrix", "neighbour_to_key"]


def _lidar2global(info: dict) -> np.ndarray:
    return np.asarray(info["ego2global"], np.float64) @ np.asarray(info["lidar2ego"], np.float64)


def frame_to_key_matrix(frame_info: dict, key_info: dict) -> np.ndarray:
    """4x4 map from ``frame_info``'s LiDAR frame into ``key_info``'s (module doc)."""
    return np.linalg.inv(_lidar2global(key_info)) @ _lidar2global(frame_info)


def neighbour_to_key(frame_to_key, frame_aug, key_aug):
    """The map of an augmented neighbour's points into the augmented keyframe:
    ``key_aug @ frame_to_key @ inv(frame_aug)`` (tensors or arrays, 4x4)."""
    if isinstance(frame_to_key, torch.Tensor):
        return key_aug.to(frame_to_key) @ frame_to_key @ torch.linalg.inv(
            frame_aug.to(frame_to_key))
    return np.asarray(key_aug) @ np.asarray(frame_to_key) @ np.linalg.inv(frame_aug)


@DATASETS.register_module()
class MultiFrameDataset(Dataset):
    """Keyframe samples with their neighbouring keyframes (module doc).

    Args:
        dataset: the info dataset (config or object) whose pipeline makes the keyframe
            sample; its ``PackSample`` must keep ``token`` and ``cam_names`` in the meta
            (the default meta keys do).
        frame_pipeline: transforms of each neighbour (load, augment, pack).
        frame_offsets: keyframe steps of the neighbours, non-zero.
        at_scene_end: ``"self"`` (the keyframe stands in) or ``"drop"``.
    """

    def __init__(self, dataset, frame_pipeline: Sequence = (),
                 frame_offsets: Sequence[int] = (-1, 1), at_scene_end: str = "self"):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.frame_offsets = tuple(int(o) for o in frame_offsets)
        if not self.frame_offsets or 0 in self.frame_offsets:
            raise ValueError(f"frame_offsets must be non-zero steps, got {frame_offsets}")
        if at_scene_end not in ("self", "drop"):
            raise ValueError(f"at_scene_end must be 'self' or 'drop', got {at_scene_end!r}")
        self.at_scene_end = at_scene_end
        self.frame_pipeline = Compose(list(frame_pipeline))
        if hasattr(self.dataset, "full_init"):
            self.dataset.full_init()
        raw = [BaseDataset.get_data_info(self.dataset, i) for i in range(len(self.dataset))]
        self._links = [(str(r["token"]), r.get("prev", ""), r.get("next", ""),
                        r.get("scene_token", "")) for r in raw]
        self._index_of = {token: i for i, (token, *_rest) in enumerate(self._links)}
        self.metainfo = getattr(self.dataset, "metainfo", {})
        self._items = list(range(len(self._links)))
        if at_scene_end == "drop":
            self._items = [i for i in self._items
                           if all(self.neighbour(i, o) is not None for o in self.frame_offsets)]

    def __len__(self) -> int:
        return len(self._items)

    def neighbour(self, index: int, offset: int) -> int | None:
        """Dataset index of keyframe ``index`` moved by ``offset`` steps along ``prev`` /
        ``next`` within its scene, or None when the scene (or the dataset) ends first."""
        scene = self._links[index][3]
        for _ in range(abs(offset)):
            token = self._links[index][1 if offset < 0 else 2]
            if not token or token not in self._index_of:
                return None
            index = self._index_of[token]
            if self._links[index][3] != scene:
                return None
        return index

    def __getitem__(self, item: int) -> dict:
        sample = self.dataset[self._items[item]]
        meta = sample.get("meta") or {}
        if "token" not in meta:
            raise KeyError("MultiFrameDataset needs 'token' in the keyframe's packed meta "
                           "(PackSample meta_keys)")
        key_index = self._index_of[str(meta["token"])]  # a skipped sample is replaced
        key_info = self.dataset.get_data_info(key_index)
        cameras = meta.get("cam_names")
        frames = []
        for offset in self.frame_offsets:
            index = self.neighbour(key_index, offset)
            index = key_index if index is None else index
            info = self.dataset.get_data_info(index)
            if cameras is not None:
                missing = [c for c in cameras if c not in info["cams"]]
                if missing:
                    raise DataError(info.get("lidar_path"), f"sample {info['token']} (frame "
                                    f"{offset:+d} of {meta['token']}) has no camera {missing}")
                info["cams"] = {name: info["cams"][name] for name in cameras}
            matrix = frame_to_key_matrix(info, key_info)
            packed = self.frame_pipeline(info)
            if packed is None:
                raise DataError(info.get("lidar_path"), f"frame {offset:+d} of sample "
                                f"{meta['token']} was skipped by the frame pipeline (no "
                                "points left after its filters)")
            packed["frame_to_key"] = torch.as_tensor(matrix, dtype=torch.float64)
            packed["frame_offset"] = torch.tensor(offset if index != key_index else 0)
            frames.append(packed)
        sample["frames"] = frames
        return sample
