"""``SegmentRegions``: semantic-less regions of the scan as a per-point array
(``lidarcl/datasets/regions.py``: RANSAC ground removal + DBSCAN, open3d), cached per
sample token when ``cache_dir`` is set. Run it right after loading the points, before any
transform that moves or drops them, so that a cached file always matches the raw scan."""
from __future__ import annotations

import os

import numpy as np

from lidarcl.datasets.regions import REGION_DEFAULTS, cached_regions
from lidarcl.datasets.transforms.base import Transform
from lidarcl.registry import TRANSFORMS


@TRANSFORMS.register_module()
class SegmentRegions(Transform):
    """Add ``regions (N,)`` int64 (``-1`` = ground / noise) and list it in ``point_keys``.

    Args:
        cache_dir: folder of the cache; a relative path is taken under the sample's
            ``data_root`` (so one pipeline serves every dataset); ``None``: no cache.
        **params: :data:`lidarcl.datasets.regions.REGION_DEFAULTS` overrides.
    """

    def __init__(self, cache_dir: str | None = None, **params):
        unknown = sorted(set(params) - set(REGION_DEFAULTS))
        if unknown:
            raise ValueError(f"SegmentRegions: unknown parameters {unknown}; known: "
                             f"{sorted(REGION_DEFAULTS)}")
        self.cache_dir = cache_dir
        self.params = params

    def transform(self, sample: dict) -> dict:
        token = str(sample.get("token") or sample.get("sample_idx"))
        cache_dir = self.cache_dir
        if cache_dir is not None and not os.path.isabs(cache_dir):
            cache_dir = os.path.join(sample.get("data_root") or ".", cache_dir)
        sample["regions"] = cached_regions(sample["points"], token, cache_dir,
                                           **self.params).astype(np.int64)
        keys = list(sample.get("point_keys", ()))
        if "regions" not in keys:
            sample["point_keys"] = keys + ["regions"]
        return sample
