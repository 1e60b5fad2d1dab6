"""Semantic-less regions of a LiDAR scan: ground removal, then clustering (CALICO's PRC
regions, arXiv 2306.00349 Sec. 3.1; FAC's over-segmentation, CVPR 2023 Sec. 3.2).

1. Ground: open3d's RANSAC plane fit (``segment_plane``: ``ransac_n = 3`` points per
   hypothesis, ``iterations`` hypotheses, inliers within ``ground_threshold`` metres) on the
   points inside ``ground_z_range`` (a scan's lowest metres, so a wall is not taken for the
   ground), refined by least-squares fits (SVD) to its inliers until they settle; every point
   of the scan within ``ground_threshold`` of that plane is ground. open3d runs the RANSAC
   hypotheses on its TBB threads, and the seeded fit then depends on their timing: 40 calls
   with seed 0 on the real nuScenes frame returned 5 different planes. The fit therefore
   runs with open3d limited to one thread (``open3d.utility.set_max_threads(1)``, restored
   afterwards), where the same 40 calls, and calls in other processes, returned one plane
   (``tests/test_determinism.py``).
2. Regions: open3d's DBSCAN (``cluster_dbscan``, radius ``eps``, ``min_points``) on the
   other points.

Output: ``(N,)`` int32 region ids, ``-1`` for ground and DBSCAN noise, clusters numbered
``0..R-1`` by decreasing size (ties by their lowest point index), so the ids do not depend
on DBSCAN's internal order.

Cache (:func:`cached_regions`): ``<cache_dir>/<method tag>/<sample token>.npy`` (tokens that
are not plain file names are sanitised and hashed: :func:`lidarcl.utils.paths.safe_file_stem`),
written atomically (temporary file, then rename); the method tag encodes every parameter,
so a change of parameters never reads stale regions. A cache that cannot be written
(read-only data root) is skipped with one warning.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os

import numpy as np

from lidarcl.errors import DataError
from lidarcl.utils.fileio import atomic_write
from lidarcl.utils.paths import safe_file_stem

logger = logging.getLogger(__name__)

__all__ = ["REGION_DEFAULTS", "segment_regions", "fit_ground_plane", "regions_tag",
           "cached_regions", "region_cache_path"]

REGION_DEFAULTS = dict(ground_threshold=0.2, iterations=200, ground_z_range=(-3.0, -0.5),
                       eps=0.7, min_points=10, seed=0)

# Cache Directory Tagging Specification (bford.info/cachedir): backup tools skip the folder,
# and FolderDataset never lists its .npy files as scans
CACHEDIR_TAG = "CACHEDIR.TAG"
_CACHEDIR_TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                      "# lidarcl region cache: regions of each scan, recomputed when deleted\n")
_tagged_folders: set[str] = set()      # per process: a cache read costs no extra stat
_warned_unwritable: set[str] = set()


def _open3d():
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ImportError("region segmentation needs open3d (pip install open3d)") from exc
    return o3d


@contextlib.contextmanager
def open3d_single_thread(o3d):
    """open3d limited to one CPU thread inside the block (a process-wide TBB limit, restored
    on exit). An open3d without ``utility.set_max_threads`` (0.20 has it) is an ImportError
    naming the version to install."""
    if not hasattr(o3d.utility, "set_max_threads"):
        raise ImportError(f"open3d {o3d.__version__} cannot be limited to one thread, which "
                          "repeatable RANSAC ground fits need: pip install 'open3d>=0.20'")
    previous = o3d.utility.get_max_threads()
    o3d.utility.set_max_threads(1)
    try:
        yield
    finally:
        o3d.utility.set_max_threads(previous)


def fit_ground_plane(xyz: np.ndarray, ground_threshold: float = 0.2, iterations: int = 200,
                     ground_z_range=(-3.0, -0.5), seed: int = 0):
    """``(plane (4,) [a, b, c, d] with unit normal, c >= 0; ground mask (N,))``, or
    ``(None, all False)`` when fewer than 3 points lie in ``ground_z_range`` (module doc)."""
    o3d = _open3d()
    xyz = np.asarray(xyz, dtype=np.float64)
    ground = np.zeros(len(xyz), dtype=bool)
    low = xyz[(xyz[:, 2] >= ground_z_range[0]) & (xyz[:, 2] <= ground_z_range[1])]
    if len(low) < 3:
        return None, ground
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(low))
    with open3d_single_thread(o3d):  # seeded RANSAC repeats only on one thread (module doc)
        o3d.utility.random.seed(int(seed))
        plane, inliers = cloud.segment_plane(distance_threshold=ground_threshold, ransac_n=3,
                                             num_iterations=int(iterations))
    if len(inliers) < 3:
        return None, ground
    normal = np.asarray(plane[:3], dtype=np.float64)
    plane = np.append(normal, plane[3]) / np.linalg.norm(normal)
    previous = None
    for _ in range(20):  # least-squares refits on the inliers until the inliers settle
        near = np.abs(low @ plane[:3] + plane[3]) <= ground_threshold
        if near.sum() < 3 or (previous is not None and np.array_equal(near, previous)):
            break
        previous = near
        centroid = low[near].mean(0)
        normal = np.linalg.svd(low[near] - centroid, full_matrices=False)[2][-1]
        normal = normal if normal[2] >= 0 else -normal
        plane = np.append(normal, -normal @ centroid)
    return plane, np.abs(xyz @ plane[:3] + plane[3]) <= ground_threshold


def segment_regions(points: np.ndarray, ground_threshold: float = 0.2, iterations: int = 200,
                    ground_z_range=(-3.0, -0.5), eps: float = 0.7, min_points: int = 10,
                    seed: int = 0) -> np.ndarray:
    """Region id of every point of ``points (N, >=3)`` (module doc)."""
    o3d = _open3d()
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    if xyz.ndim != 2 or not np.isfinite(xyz).all():
        raise ValueError("segment_regions needs finite (N, >= 3) points")
    labels = np.full(len(xyz), -1, dtype=np.int32)
    if len(xyz) == 0:
        return labels
    _, ground = fit_ground_plane(xyz, ground_threshold, iterations, ground_z_range, seed)
    rest = np.flatnonzero(~ground)
    if len(rest):
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[rest]))
        found = np.asarray(cloud.cluster_dbscan(eps=eps, min_points=int(min_points)))
        clustered = found >= 0
        if clustered.any():
            ids, first, counts = np.unique(found[clustered], return_index=True,
                                           return_counts=True)
            order = np.lexsort((first, -counts))           # by size, then first point
            rank = np.empty(len(ids), dtype=np.int32)
            rank[order] = np.arange(len(ids), dtype=np.int32)
            labels[rest[clustered]] = rank[np.searchsorted(ids, found[clustered])]
    return labels


def regions_tag(**params) -> str:
    """Cache folder name for a parameter set (defaults filled in)."""
    full = {**REGION_DEFAULTS, **params}
    text = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in
                       sorted(full.items())}, sort_keys=True)
    return "ground_dbscan_" + hashlib.sha1(text.encode()).hexdigest()[:10]


def region_cache_path(cache_dir: str, token, **params) -> str:
    """``<cache_dir>/<regions_tag(params)>/<safe_file_stem(token)>.npy``: the token is never
    used as a path (a token like ``../../x`` cannot leave the cache folder)."""
    params = {**REGION_DEFAULTS, **params}
    return os.path.join(os.fspath(cache_dir), regions_tag(**params),
                        f"{safe_file_stem(token)}.npy")


def cached_regions(points: np.ndarray, token: str, cache_dir: str | None, **params
                   ) -> np.ndarray:
    """:func:`segment_regions`, read from / written to the cache when ``cache_dir`` is set.

    A cached file that is unreadable or whose length differs from ``points`` raises
    :class:`~lidarcl.errors.DataError` naming the file. A cache folder that cannot be
    written (a read-only data root) is skipped with a warning: the regions are computed and
    returned without caching.
    """
    params = {**REGION_DEFAULTS, **params}
    if cache_dir is None:
        return segment_regions(points, **params)
    path = region_cache_path(cache_dir, token, **params)
    if os.path.isfile(path):
        try:
            _tag_cache_folder(os.path.dirname(path))
        except OSError:  # a read-only cache is still read
            _tagged_folders.add(os.path.dirname(path))
        try:
            labels = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(path, f"unreadable region cache ({exc}); delete the file to "
                                  "recompute") from exc
        if labels.shape != (len(points),) or labels.dtype.kind not in "iu":
            raise DataError(path, f"cached regions are {labels.dtype} of shape {labels.shape} "
                                  f"but the scan has {len(points)} points; delete the file "
                                  "to recompute")
        return labels.astype(np.int32)
    labels = segment_regions(points, **params)
    try:
        with atomic_write(path, "wb") as handle:
            np.save(handle, labels)
        _tag_cache_folder(os.path.dirname(path))
    except OSError as exc:  # read-only or full data root: compute without the cache
        if cache_dir not in _warned_unwritable:
            _warned_unwritable.add(cache_dir)
            logger.warning("%s: region cache not writable (%s); regions are computed "
                           "without caching", cache_dir, exc.strerror or exc)
    return labels


def _tag_cache_folder(folder: str) -> None:
    """Tag ``<cache_dir>/<regions tag>/`` (not ``cache_dir``, which may be the data root
    itself), once per folder and process; also done on reads, so a cache written before
    tags existed gets one."""
    if folder in _tagged_folders:
        return
    path = os.path.join(folder, CACHEDIR_TAG)
    if not os.path.isfile(path):
        with atomic_write(path, "w") as handle:
            handle.write(_CACHEDIR_TAG_TEXT)
    _tagged_folders.add(folder)
