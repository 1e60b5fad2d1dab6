"""Shared pytest fixtures.

``synthetic_root`` (session scope) generates a small synthetic nuScenes-layout dataset once
per test session and returns a ``SyntheticRoot(dataroot, version)`` named tuple:
2 scenes x 10 keyframes, six 320x180 cameras, 1 lidar sweep between keyframes, with the
optional per-camera depth maps (``depth/<CHANNEL>/<image basename>.png``, uint16 cm).
Load it with ``NuScenes(version=root.version, dataroot=root.dataroot)``.

``tiny_dataset`` (session scope): 2 generated scenes x 2 keyframes (160x90 cameras) with
their info indexes, the data root of the short pretraining runs (test_pretrain.py,
test_checkpoints.py); returns the root as a string.
"""
from __future__ import annotations

from typing import NamedTuple

import pytest


class SyntheticRoot(NamedTuple):
    dataroot: str
    version: str


SYNTHETIC_FIXTURE_ARGS = dict(scenes=2, keyframes=10, seed=0, image_size=(320, 180),
                              sweeps_per_keyframe=1, version="v1.0-synthetic",
                              write_depth=True)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> SyntheticRoot:
    from lidarcl.datasets.synthetic import generate_dataset
    out = tmp_path_factory.mktemp("synthetic_nuscenes")
    summary = generate_dataset(str(out), **SYNTHETIC_FIXTURE_ARGS)
    return SyntheticRoot(summary["dataroot"], summary["version"])


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("pretrain_data")
    summary = generate_dataset(str(root), scenes=2, keyframes=2, seed=0,
                               image_size=(160, 90), version="v1.0-synthetic", overwrite=True)
    create_nuscenes_infos(summary["dataroot"], "v1.0-synthetic", summary["dataroot"])
    return summary["dataroot"]
