"""Shared pieces of the transforms: a small base class, the random source, and the
helpers that index per-point and per-box arrays together.

Per-point arrays
    ``points`` (N, C) and every array named in :data:`DEFAULT_POINT_KEYS` or in the
    sample's ``point_keys`` list are row-aligned: a filter that drops points drops the
    same rows from all of them (:func:`select_points`). A transform that adds a per-point
    array appends its key to ``sample["point_keys"]``.

Per-box arrays
    ``gt_boxes`` (M, 7) and :data:`DEFAULT_BOX_KEYS` (plus ``sample["box_keys"]``) are
    row-aligned the same way (:func:`select_boxes`).

Randomness
    A transform built with ``seed=None`` draws from numpy's global RNG, which mmengine
    seeds (``randomness=dict(seed=...)`` in a config, per worker in the data loader), so
    augmentation repeats under a fixed config seed. ``seed=<int>`` gives the transform its
    own ``numpy.random.Generator`` (repeats per process, independent of the global state).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)
_WARNED_SKIPS: set[str] = set()

DEFAULT_POINT_KEYS = ("pts_semantic_mask", "pts_instance_mask")
DEFAULT_BOX_KEYS = ("gt_boxes", "gt_velocity", "gt_names", "gt_labels", "num_lidar_pts",
                    "gt_attributes", "instance_tokens")


def warn_skipped(path, problem: str) -> None:
    """Warn, once per file and process, that a sample is skipped: ``path: problem;
    sample skipped``. A transform then returns ``None`` and the dataset draws another
    sample (``lidarcl.datasets.base.SkipsSamples``)."""
    key = f"{path}: {problem}"
    if key not in _WARNED_SKIPS:
        _WARNED_SKIPS.add(key)
        logger.warning("%s; sample skipped", key)


class Transform:
    """Callable ``sample dict -> sample dict``; subclasses implement :meth:`transform`.
    ``None`` in or out means the sample is skipped (passed on as ``None``)."""

    def __call__(self, sample: dict | None) -> dict | None:
        return None if sample is None else self.transform(sample)

    def transform(self, sample: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomSource:
    """numpy's global RNG (``seed=None``) or a private Generator (``seed=int``)."""

    def __init__(self, seed: int | None = None):
        self._rng = None if seed is None else np.random.default_rng(seed)

    def uniform(self, low=0.0, high=1.0, size=None):
        return (np.random.uniform(low, high, size) if self._rng is None
                else self._rng.uniform(low, high, size))

    def normal(self, loc=0.0, scale=1.0, size=None):
        return (np.random.normal(loc, scale, size) if self._rng is None
                else self._rng.normal(loc, scale, size))

    def rand(self) -> float:
        return float(np.random.rand() if self._rng is None else self._rng.random())

    def choice(self, n: int, size: int, replace: bool) -> np.ndarray:
        return (np.random.choice(n, size, replace=replace) if self._rng is None
                else self._rng.choice(n, size, replace=replace))

    def permutation(self, n: int) -> np.ndarray:
        return np.random.permutation(n) if self._rng is None else self._rng.permutation(n)


def point_keys(sample: dict) -> list[str]:
    """Keys of the per-point arrays present in ``sample`` (``points`` excluded)."""
    keys = list(DEFAULT_POINT_KEYS) + [k for k in sample.get("point_keys", ())
                                       if k not in DEFAULT_POINT_KEYS]
    return [k for k in keys if sample.get(k) is not None and k != "points"]


def box_keys(sample: dict) -> list[str]:
    """Keys of the per-box arrays present in ``sample``."""
    keys = list(DEFAULT_BOX_KEYS) + [k for k in sample.get("box_keys", ())
                                     if k not in DEFAULT_BOX_KEYS]
    return [k for k in keys if sample.get(k) is not None]


def _index(value: Any, keep: np.ndarray) -> Any:
    if isinstance(value, np.ndarray):
        return value[keep]
    return [value[i] for i in np.flatnonzero(keep)] if keep.dtype == bool else \
        [value[i] for i in keep]


def select_points(sample: dict, keep: np.ndarray) -> dict:
    """Keep rows ``keep`` (bool mask or indices) of ``points`` and every per-point array."""
    points = sample["points"]
    for key in point_keys(sample):
        if len(sample[key]) != len(points):
            raise ValueError(f"per-point array {key!r} has {len(sample[key])} rows but "
                             f"points has {len(points)}; a transform broke row alignment")
    sample["points"] = points[keep]
    for key in point_keys(sample):
        sample[key] = _index(sample[key], keep)
    return sample


def select_boxes(sample: dict, keep: np.ndarray) -> dict:
    """Keep rows ``keep`` (bool mask or indices) of ``gt_boxes`` and every per-box array."""
    if sample.get("gt_boxes") is None:
        return sample
    num = len(sample["gt_boxes"])
    for key in box_keys(sample):
        if len(sample[key]) != num:
            # e.g. an empty gt_attributes list next to boxes: not a per-box array here
            continue
        sample[key] = _index(sample[key], keep)
    return sample


def limit_yaw(yaw: np.ndarray) -> np.ndarray:
    """Wrap angles into ``[-pi, pi)``."""
    return (yaw + np.pi) % (2 * np.pi) - np.pi
