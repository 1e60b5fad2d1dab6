"""Loading transforms: keyframe points, sweeps, camera images, lidarseg labels.

Order in a pipeline: ``LoadPoints`` -> ``LoadLidarsegLabels`` -> ``LoadSweeps`` ->
``LoadImages`` -> ``LoadSuperpixels`` -> filters / augmentations -> ``PackSample``.
(``LoadImages`` may come anywhere: augmentations keep ``sample["cams"]`` matrices in step
with the points, and no augmentation moves image pixels, so superpixels stay aligned.)

Keys added
    ``LoadPoints``: ``points`` (N, len(use_dims)) float32, ``points_use_dims``,
    ``num_dropped_points`` (points with NaN/inf x, y, z removed), ``valid_point_mask``
    (bool, one entry per row of the raw file: False where a point was dropped).
    ``LoadSweeps``: appends sweep points and a time column (seconds; keyframe 0) to
    ``points``; ``num_sweeps_loaded``, ``num_dropped_sweep_points``.
    ``LoadImages``: ``images``, ``cam_names``, ``img_paths``, ``lidar2img`` /
    ``cam2img`` / ``lidar2cam`` (K, 4, 4) float64, ``img_shape`` (K, 2) int64 as (H, W).
    ``LoadLidarsegLabels``: ``pts_semantic_mask`` (N,) int64.
    ``LoadSuperpixels``: ``superpixels`` (K, H, W) int16 (int32 past 32767 ids), one id map per image of
    ``LoadImages`` in the same camera order (a list of (H, W) when the cameras differ in
    size), ``superpixel_paths``.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping, Sequence

import numpy as np

from lidarcl.datasets.io import MAX_ABS_COORDINATE, load_image, load_points
from lidarcl.datasets.nuscenes_constants import CAMERA_CHANNELS
from lidarcl.datasets.superpixels import SUPERPIXEL_KEY, load_superpixels
from lidarcl.datasets.transforms.base import Transform, warn_skipped
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.registry import TRANSFORMS
from lidarcl.structures.camera import pad_to_4x4
from lidarcl.structures.transforms import transform_points

logger = logging.getLogger(__name__)

# mmdetection3d's / the nuScenes devkit's camera order; other channels follow, sorted.
DEFAULT_CAMERA_ORDER = CAMERA_CHANNELS


def _check_dims(path: str, use_dims: Sequence[int] | None, num_cols: int) -> list[int]:
    if use_dims is None:
        return list(range(num_cols))
    dims = [int(d) for d in use_dims]
    bad = [d for d in dims if d >= num_cols or d < -num_cols]
    if bad:
        raise DataError(path, f"use_dims {dims} asks for columns {bad} but the file has "
                              f"{num_cols} columns")
    return dims


@TRANSFORMS.register_module()
class LoadPoints(Transform):
    """Read the keyframe point file ``sample["lidar_path"]``.

    Args:
        use_dims: columns to keep (x, y, z must be the first three kept);
            ``None`` keeps all.
        strict: raise :class:`DataError` on NaN/inf or implausible coordinates instead
            of dropping them.
        num_point_features: override ``sample["num_point_features"]`` (columns of a
            ``.bin`` file).
        skip_empty: an empty scan (no points, or none left after dropping) makes the
            transform return ``None`` with a warning naming the file, so the dataset
            skips the sample (``lidarcl.datasets.base.SkipsSamples``); ``False`` raises
            :class:`DataError` instead.
        max_abs_coordinate: points farther than this (metres, per axis) are implausible
            (``lidarcl.datasets.io``); ``None`` for georeferenced clouds.
    """

    def __init__(self, use_dims: Sequence[int] | None = (0, 1, 2, 3), strict: bool = False,
                 num_point_features: int | None = None, skip_empty: bool = True,
                 max_abs_coordinate: float | None = MAX_ABS_COORDINATE):
        self.use_dims = None if use_dims is None else tuple(int(d) for d in use_dims)
        if self.use_dims is not None and self.use_dims[:3] != (0, 1, 2):
            raise ValueError(f"LoadPoints: use_dims {list(self.use_dims)} must start with the "
                             "x, y, z columns 0, 1, 2")
        self.strict = strict
        self.num_point_features = num_point_features
        self.skip_empty = skip_empty
        self.max_abs_coordinate = max_abs_coordinate

    def transform(self, sample: dict) -> dict | None:
        path = sample["lidar_path"]
        nf = self.num_point_features or sample.get("num_point_features")
        points, dropped, valid = load_points(path, nf, drop_nonfinite=not self.strict,
                                             return_mask=True,
                                             max_abs_coordinate=self.max_abs_coordinate)
        if len(points) == 0:
            problem = (f"empty scan (0 points{f', {dropped} dropped' if dropped else ''}) "
                       f"of sample {sample.get('token', '?')}")
            if not self.skip_empty:
                raise DataError(path, problem)
            warn_skipped(path, problem)
            return None
        dims = _check_dims(path, self.use_dims, points.shape[1])
        sample["points"] = np.ascontiguousarray(points[:, dims], dtype=np.float32)
        sample["points_use_dims"] = tuple(dims)
        sample["num_dropped_points"] = int(dropped)
        sample["valid_point_mask"] = valid
        return sample


def load_sweep(sample: dict, sweep: dict, dims: Sequence[int] | None, columns: int,
               remove_close: float = 1.0, strict: bool = False,
               max_abs_coordinate: float | None = MAX_ABS_COORDINATE
               ) -> tuple[np.ndarray, int]:
    """One sweep ``{"path", "sweep2lidar", ...}`` of ``sample`` in the keyframe's LiDAR
    frame: ``(points (N, columns) float32, non-finite rows dropped)``. Points within
    ``remove_close`` metres of the sensor (``|x| < r and |y| < r`` in the sweep's own
    frame) are removed before mapping by ``sweep2lidar``."""
    path = sweep["path"]
    if not os.path.isfile(path):
        raise DataFileNotFound(path, f"sweep of sample {sample.get('token', '?')}")
    nf = sweep.get("num_point_features", sample.get("num_point_features"))
    pts, dropped = load_points(path, nf, drop_nonfinite=not strict,
                               max_abs_coordinate=max_abs_coordinate)
    cols = _check_dims(path, dims, pts.shape[1])
    pts = pts[:, cols].astype(np.float32, copy=False)
    if pts.shape[1] != columns:
        raise DataError(path, f"sweep points have {pts.shape[1]} columns after "
                              f"use_dims, keyframe points {columns}")
    mat = np.asarray(sweep["sweep2lidar"], dtype=np.float64)
    if mat.shape != (4, 4) or not np.isfinite(mat).all():
        raise DataError(path, f"sweep2lidar of sample {sample.get('token', '?')} "
                              f"must be a finite 4x4 matrix, got shape {mat.shape}")
    if remove_close > 0:
        close = (np.abs(pts[:, 0]) < remove_close) & (np.abs(pts[:, 1]) < remove_close)
        pts = pts[~close]
    return transform_points(pts, mat), dropped


@TRANSFORMS.register_module()
class LoadSweeps(Transform):
    """Merge the previous LiDAR sweeps into the keyframe's LiDAR frame.

    Each sweep ``{"path", "sweep2lidar" (4, 4), "time_lag" (s)}`` (newest first, as in the
    info index) is loaded, points within ``remove_close`` metres of the sensor
    (``|x| < r and |y| < r`` in the sweep's own frame: the ego vehicle's returns) are
    removed, the rest are mapped by ``sweep2lidar`` and appended. A time column is
    appended to every point: 0 for keyframe points, the sweep's ``time_lag`` for sweep
    points.

    Args:
        num_sweeps: newest sweeps to use (fewer when the sample has fewer).
        use_dims: columns of the sweep files to keep; ``None`` uses the keyframe's
            ``points_use_dims`` (from ``LoadPoints``).
        remove_close: radius in metres (``0`` keeps everything).
        pad_empty: for every missing sweep (sample has fewer than ``num_sweeps``), append
            a copy of the keyframe points with time 0 (keeps point density steady at the
            start of a scene). Default off.
        strict: raise on NaN/inf sweep coordinates instead of dropping them.
        seg_ignore_index: value given to sweep points in ``pts_semantic_mask`` when labels
            were loaded before this transform.
        max_abs_coordinate: as ``LoadPoints``.
    """

    def __init__(self, num_sweeps: int = 9, use_dims: Sequence[int] | None = None,
                 remove_close: float = 1.0, pad_empty: bool = False, strict: bool = False,
                 seg_ignore_index: int = -1,
                 max_abs_coordinate: float | None = MAX_ABS_COORDINATE):
        self.num_sweeps = int(num_sweeps)
        self.use_dims = None if use_dims is None else tuple(int(d) for d in use_dims)
        self.remove_close = float(remove_close)
        self.pad_empty = pad_empty
        self.strict = strict
        self.seg_ignore_index = seg_ignore_index
        self.max_abs_coordinate = max_abs_coordinate

    def transform(self, sample: dict) -> dict:
        key_points = sample["points"]
        dims = self.use_dims if self.use_dims is not None else sample.get("points_use_dims")
        parts = [np.concatenate([key_points, np.zeros((len(key_points), 1), np.float32)], 1)]
        dropped_total = 0
        sweeps = list(sample.get("sweeps", []))[:self.num_sweeps]
        for sweep in sweeps:
            pts, dropped = load_sweep(sample, sweep, dims, key_points.shape[1],
                                      self.remove_close, self.strict, self.max_abs_coordinate)
            dropped_total += dropped
            lag = np.full((len(pts), 1), float(sweep.get("time_lag", 0.0)), np.float32)
            parts.append(np.concatenate([pts, lag], 1))
        if self.pad_empty:
            for _ in range(self.num_sweeps - len(sweeps)):
                parts.append(parts[0].copy())
        merged = np.concatenate(parts, 0).astype(np.float32, copy=False)
        num_extra = len(merged) - len(key_points)
        if sample.get("pts_semantic_mask") is not None and num_extra:
            mask = sample["pts_semantic_mask"]
            pad = np.full(num_extra, self.seg_ignore_index, dtype=mask.dtype)
            if self.pad_empty and len(sweeps) < self.num_sweeps:
                # padded copies of the keyframe keep their labels
                pads = [mask] * (self.num_sweeps - len(sweeps))
                n_sweep_pts = num_extra - len(mask) * len(pads)
                pad = np.concatenate([np.full(n_sweep_pts, self.seg_ignore_index,
                                              dtype=mask.dtype)] + pads)
            sample["pts_semantic_mask"] = np.concatenate([mask, pad])
        for key in ("pts_instance_mask",):
            if sample.get(key) is not None and num_extra:
                sample[key] = np.concatenate([sample[key], np.full(num_extra, -1,
                                                                   sample[key].dtype)])
        sample["points"] = merged
        sample["num_sweeps_loaded"] = len(sweeps)
        sample["num_dropped_sweep_points"] = int(dropped_total)
        return sample


def _camera_order(available: Sequence[str], channels: Sequence[str] | None) -> list[str]:
    if channels is not None:
        return list(channels)
    known = [c for c in DEFAULT_CAMERA_ORDER if c in available]
    return known + sorted(c for c in available if c not in DEFAULT_CAMERA_ORDER)


_FEW_SWEEPS_WARNED: set[str] = set()


@TRANSFORMS.register_module()
class LoadDenseCloud(Transform):
    """The dense cloud of SuperFlow's dense-to-sparse consistency (Xu et al., ECCV 2024):
    the keyframe's points (``sample["points"]`` as the pipeline left them) followed by its
    ``num_sweeps`` newest sweeps (2 in the released code: three scans), each mapped into
    the keyframe's LiDAR frame by ``sweep2lidar`` and then by the augmentation applied so
    far (``lidar_aug_matrix``), so that the dense cloud projects with the keyframe's
    ``lidar2img``; placed after the augmentations. Adds ``dense_points`` (N_d, C) float32
    and ``dense_sweep_index`` (N_d,) int64: 0 for keyframe points, ``k`` for the k-th sweep.
    Sweep points within ``remove_close`` metres of the sensor (the ego vehicle) are
    dropped, and with ``point_cloud_range`` those outside it (in the keyframe's LiDAR frame
    before augmentation, where ``PointsRangeFilter`` filtered the keyframe). A sample with
    fewer sweeps than ``num_sweeps`` gets a warning naming its file.

    Departure: the released code augments the dense cloud apart from the keyframe (another
    rotation and flip); here both share the keyframe's, which keeps one ``lidar2img`` per
    camera for both. The pooled features are compared per superpixel, not per point, so
    the loss still asks the backbone for the same feature from a sparser and a denser scan.
    """

    def __init__(self, num_sweeps: int = 2, remove_close: float = 1.0,
                 point_cloud_range: Sequence[float] | None = None,
                 max_abs_coordinate: float | None = MAX_ABS_COORDINATE):
        self.num_sweeps = int(num_sweeps)
        self.remove_close = float(remove_close)
        self.point_cloud_range = None if point_cloud_range is None else \
            np.asarray(point_cloud_range, dtype=np.float64)
        self.max_abs_coordinate = max_abs_coordinate

    def transform(self, sample: dict) -> dict:
        key_points = np.asarray(sample["points"], dtype=np.float32)
        dims = sample.get("points_use_dims")
        aug = np.asarray(sample.get("lidar_aug_matrix", np.eye(4)), dtype=np.float64)
        parts, index = [key_points], [np.zeros(len(key_points), dtype=np.int64)]
        sweeps = list(sample.get("sweeps", []))[:self.num_sweeps]
        path = sample.get("lidar_path", "<sample>")
        if len(sweeps) < self.num_sweeps and path not in _FEW_SWEEPS_WARNED:
            # D2S then compares the scan with a cloud barely denser, or with itself
            _FEW_SWEEPS_WARNED.add(path)
            logger.warning("%s: LoadDenseCloud found %d of %d sweeps (a scene's start, or an "
                           "index written with fewer); its dense cloud is that much sparser",
                           path, len(sweeps), self.num_sweeps)
        for k, sweep in enumerate(sweeps, 1):
            pts, _ = load_sweep(sample, sweep, dims, key_points.shape[1], self.remove_close,
                                False, self.max_abs_coordinate)
            if self.point_cloud_range is not None:  # in the frame the keyframe was filtered
                low, high = self.point_cloud_range[:3], self.point_cloud_range[3:]
                pts = pts[((pts[:, :3] >= low) & (pts[:, :3] < high)).all(1)]
            pts = transform_points(pts, aug)
            parts.append(pts.astype(np.float32, copy=False))
            index.append(np.full(len(pts), k, dtype=np.int64))
        sample["dense_points"] = np.concatenate(parts, 0)
        sample["dense_sweep_index"] = np.concatenate(index)
        return sample


@TRANSFORMS.register_module()
class LoadImages(Transform):
    """Load the sample's camera images and their calibration, in a fixed channel order.

    Args:
        channels: channel names to load, in this order; ``None`` loads every camera of
            the sample in :data:`DEFAULT_CAMERA_ORDER` (others after, sorted).
        to_float: images as float32 (values 0..255) instead of uint8.

    Checks (each raises :class:`DataError` naming the image file, the sample token and
    the camera): the image size equals the info's ``height`` x ``width``; ``cam2img`` is
    3x3, 3x4 or 4x4 (padded to 4x4); ``lidar2cam`` is 4x4; a stored ``lidar2img`` is 4x4 and
    equals ``cam2img @ lidar2cam``; all entries finite.
    """

    def __init__(self, channels: Sequence[str] | None = None, to_float: bool = False):
        self.channels = None if channels is None else tuple(channels)
        self.to_float = to_float

    def transform(self, sample: dict) -> dict:
        cams: Mapping[str, dict] = sample.get("cams", {}) or {}
        token = sample.get("token", "?")
        names = _camera_order(list(cams), self.channels)
        images, paths, l2i, c2i, l2c, shapes = [], [], [], [], [], []
        for name in names:
            if name not in cams:
                raise DataError(sample.get("lidar_path"), f"sample {token} has no camera "
                                                          f"{name!r}; it has {sorted(cams)}")
            cam = cams[name]
            path = cam["path"]
            where = f"sample {token} camera {name}"
            cam2img = np.asarray(cam["cam2img"], dtype=np.float64)
            if cam2img.shape not in ((3, 3), (3, 4), (4, 4)):
                raise DataError(path, f"{where}: cam2img must be 3x3, 3x4 or 4x4, got shape "
                                      f"{cam2img.shape}")
            cam2img = pad_to_4x4(cam2img)
            lidar2cam = np.asarray(cam["lidar2cam"], dtype=np.float64)
            if lidar2cam.shape != (4, 4):
                raise DataError(path, f"{where}: lidar2cam must be 4x4, got shape "
                                      f"{lidar2cam.shape}")
            lidar2img = cam2img @ lidar2cam
            if cam.get("lidar2img") is not None:
                stored = np.asarray(cam["lidar2img"], dtype=np.float64)
                if stored.shape != (4, 4):
                    raise DataError(path, f"{where}: lidar2img must be 4x4, got shape "
                                          f"{stored.shape}")
                scale = max(1.0, float(np.abs(lidar2img).max()))
                if not np.allclose(stored, lidar2img, rtol=0, atol=1e-6 * scale):
                    raise DataError(path, f"{where}: lidar2img differs from cam2img @ "
                                          "lidar2cam (inconsistent calibration)")
                lidar2img = stored
            if not (np.isfinite(cam2img).all() and np.isfinite(lidar2cam).all()):
                raise DataError(path, f"{where}: calibration has NaN or infinite entries")
            img = load_image(path)
            h, w = int(cam.get("height", img.shape[0])), int(cam.get("width", img.shape[1]))
            if img.shape[:2] != (h, w):
                raise DataError(path, f"{where}: image is {img.shape[0]}x{img.shape[1]} "
                                      f"(HxW) but the info says {h}x{w}")
            images.append(img.astype(np.float32) if self.to_float else img)
            paths.append(path)
            l2i.append(lidar2img)
            c2i.append(cam2img)
            l2c.append(lidar2cam)
            shapes.append((h, w))
        sample["images"] = images
        sample["img_paths"] = paths
        sample["cam_names"] = names
        sample["lidar2img"] = np.asarray(l2i, dtype=np.float64).reshape(-1, 4, 4)
        sample["cam2img"] = np.asarray(c2i, dtype=np.float64).reshape(-1, 4, 4)
        sample["lidar2cam"] = np.asarray(l2c, dtype=np.float64).reshape(-1, 4, 4)
        sample["img_shape"] = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
        return sample


@TRANSFORMS.register_module()
class LoadSuperpixels(Transform):
    """Load the cached superpixel map of every camera image (``lidarcl/datasets/
    superpixels.py``; written by ``tools/create_data.py --superpixels slic``).

    Camera order: with ``channels=None``, that of ``LoadImages`` when it ran before
    (``sample["cam_names"]``), else :data:`DEFAULT_CAMERA_ORDER` (others after, sorted),
    exactly as ``LoadImages`` orders them; explicit ``channels`` are used as given.

    Adds ``superpixels``: ``(K, H, W)`` int16 ids (``0 .. S-1`` per image), or a list of
    ``(H, W)`` when the cameras differ in size; ``superpixel_paths``.

    ``tag``: load the set of that tag (``metadata["superpixel_sets"]`` of the index: SLIC
    ``slic150``, semantic ``kmeans17``, a user's own; ``lidarcl/datasets/
    semantic_superpixels.py``) instead of the cameras' ``superpixel_path``.

    Raises :class:`DataError` naming the file: a camera whose index entry has no
    ``superpixel_path`` (or no set ``tag``) (names the image; the index was written without superpixels), a
    missing, unreadable or wrongly typed map, a map of another size than the info's
    ``height`` x ``width``.
    """

    def __init__(self, channels: Sequence[str] | None = None, tag: str | None = None):
        self.channels = None if channels is None else tuple(channels)
        self.tag = tag

    def _path(self, sample: dict, name: str, cam: dict) -> str:
        token = sample.get("token", "?")
        if self.tag is None:
            path = cam.get(SUPERPIXEL_KEY)
            if not path:
                raise DataError(cam.get("path"), f"sample {token} camera {name}: the info "
                                                 "index has no superpixel map for this image; "
                                                 "run tools/create_data.py with "
                                                 "--superpixels slic")
            return path
        path = (cam.get("superpixel_sets") or {}).get(self.tag)
        if not path:
            raise DataError(cam.get("path"), f"sample {token} camera {name}: the info index "
                                             f"records no superpixel set {self.tag!r} (it has "
                                             f"{sorted(cam.get('superpixel_sets') or {})}); "
                                             "compute it with tools/superpixels.py")
        return path

    def transform(self, sample: dict) -> dict:
        cams: Mapping[str, dict] = sample.get("cams", {}) or {}
        token = sample.get("token", "?")
        if self.channels is None and sample.get("cam_names") is not None:
            names = list(sample["cam_names"])
        else:
            names = _camera_order(list(cams), self.channels)
        maps, paths = [], []
        for name in names:
            if name not in cams:
                raise DataError(sample.get("lidar_path"), f"sample {token} has no camera "
                                                          f"{name!r}; it has {sorted(cams)}")
            cam = cams[name]
            path = self._path(sample, name, cam)
            shape = None
            if cam.get("height") is not None and cam.get("width") is not None:
                shape = (int(cam["height"]), int(cam["width"]))
            maps.append(load_superpixels(path, expected_shape=shape))
            paths.append(path)
        if maps and len({m.shape for m in maps}) == 1:
            sample["superpixels"] = np.stack(maps)
        elif maps:
            sample["superpixels"] = maps
        else:
            sample["superpixels"] = np.zeros((0, 0, 0), dtype=np.int16)
        sample["superpixel_paths"] = paths
        return sample


@TRANSFORMS.register_module()
class LoadLidarsegLabels(Transform):
    """Per-point semantic labels from a nuScenes-lidarseg ``.bin`` (uint8, one per raw
    keyframe point) at ``sample["lidarseg_path"]``.

    Must follow ``LoadPoints`` directly (before ``LoadSweeps`` and any filter): the file's
    length is checked against the raw keyframe point count (``valid_point_mask``) and the
    rows that ``LoadPoints`` dropped (NaN/inf) are dropped from the labels too.

    Args:
        label_mapping: optional lookup from raw label to training label (a sequence
            indexed by raw label, or a dict; raw labels absent from a dict get
            ``ignore_index``), or ``"dataset"``: the dataset's own map for its index's
            category numbering (``sample["lidarseg_learning_map"]``, set by
            ``NuScenesDataset``: the 16 challenge classes 0..15, ignored categories 255).
        ignore_index: see ``label_mapping``.
    """

    LABEL_RANGE = 256  # raw labels are uint8
    WHAT = "lidarseg label file"

    def __init__(self, label_mapping: Sequence[int] | Mapping[int, int] | None = None,
                 ignore_index: int = -1):
        self.ignore_index = ignore_index
        self.label_mapping = label_mapping
        self._lut = None
        self._dataset_lut = None
        if isinstance(label_mapping, str):
            if label_mapping != "dataset":
                raise ValueError(f"label_mapping must be a lookup or 'dataset', got "
                                 f"{label_mapping!r}")
        elif label_mapping is not None:
            lut = np.full(self.LABEL_RANGE, ignore_index, dtype=np.int64)
            if isinstance(label_mapping, Mapping):
                for k, v in label_mapping.items():
                    lut[int(k)] = int(v)
            else:
                vals = np.asarray(label_mapping, dtype=np.int64)
                lut[:len(vals)] = vals
            self._lut = lut

    def read_labels(self, path: str) -> np.ndarray:
        """The raw label of every point of the file (before ``valid_point_mask``)."""
        return np.fromfile(path, dtype=np.uint8)

    def transform(self, sample: dict) -> dict:
        path = sample.get("lidarseg_path")
        if not path:
            raise DataError(sample.get("lidar_path"), f"sample {sample.get('token', '?')} "
                                                      "has no lidarseg_path (no labels)")
        if not os.path.isfile(path):
            raise DataFileNotFound(path, self.WHAT)
        labels = self.read_labels(path)
        valid = sample.get("valid_point_mask")
        if valid is None:
            raise ValueError("LoadLidarsegLabels needs LoadPoints first (valid_point_mask)")
        if len(labels) != len(valid):
            raise DataError(path, f"{len(labels)} labels but the point file "
                                  f"{sample.get('lidar_path')} has {len(valid)} points")
        if len(sample["points"]) != int(valid.sum()):
            raise ValueError("LoadLidarsegLabels must come right after LoadPoints (points "
                             "were already filtered or merged with sweeps)")
        labels = labels[valid]
        lut = self._lut
        if isinstance(self.label_mapping, str):  # "dataset" (an array mapping is a lookup)
            lut = sample.get("lidarseg_learning_map")
            if lut is None:
                raise ValueError("LoadLidarsegLabels(label_mapping='dataset'): the dataset "
                                 "gives no lidarseg_learning_map (NuScenesDataset does)")
            if self._dataset_lut is None or self._dataset_lut[0] is not lut:
                # padded once per dataset map, not once per sample in the workers
                self._dataset_lut = (lut, np.concatenate([np.asarray(lut, dtype=np.int64),
                                     np.full(max(0, 256 - len(lut)), self.ignore_index,
                                             dtype=np.int64)]))
            lut = self._dataset_lut[1]
        sample["pts_semantic_mask"] = (lut[labels] if lut is not None
                                       else labels.astype(np.int64))
        return sample


@TRANSFORMS.register_module()
class LoadSemanticKITTILabels(LoadLidarsegLabels):
    """Per-point labels of a SemanticKITTI ``.label`` file (uint32 per point, semantic id in
    the low 16 bits) at ``sample["lidarseg_path"]``, through the learning map to the 19
    training labels 0..18 (unlabeled and unmapped ids -> ``ignore_index``, default 255;
    ``lidarcl/datasets/semantickitti_converter.py``). ``label_mapping`` replaces the
    learning map (raw id -> label). Same placement and checks as ``LoadLidarsegLabels``;
    a file of the wrong length is a DataError naming it. ``pts_instance_mask`` gets the
    high 16 bits."""

    LABEL_RANGE = 1 << 16
    WHAT = "SemanticKITTI label file"

    def __init__(self, label_mapping: Mapping[int, int] | None = None,
                 ignore_index: int = 255):
        from lidarcl.datasets.semantickitti_converter import LEARNING_MAP, IGNORE_INDEX

        if label_mapping is None:
            label_mapping = {raw: (ignore_index if v == IGNORE_INDEX else v)
                             for raw, v in LEARNING_MAP.items()}
        super().__init__(label_mapping, ignore_index)
        self._instances = None

    def read_labels(self, path: str) -> np.ndarray:
        from lidarcl.datasets.semantickitti_converter import read_label_file

        semantic, self._instances = read_label_file(path)
        return semantic

    def transform(self, sample: dict) -> dict:
        sample = super().transform(sample)
        sample["pts_instance_mask"] = self._instances[sample["valid_point_mask"]].astype(
            np.int64)
        self._instances = None
        return sample
