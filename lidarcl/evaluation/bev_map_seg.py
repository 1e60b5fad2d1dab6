"""BEV map segmentation: ground truth from nuScenes map-expansion layers and the IoU metric,
as BEVFusion (mit-han-lab/bevfusion) defines them.

Ground truth (``LoadBEVSegmentation`` in BEVFusion's ``mmdet3d/datasets/pipelines/loading.py``)
    Six multi-label classes :data:`BEV_MAP_CLASSES`; ``divider`` is ``road_divider`` or
    ``lane_divider`` (lines), the others are the map layers of the same name. The devkit
    rasterises a ``100 x 100`` m patch centred on the LiDAR and turned by the LiDAR's global
    yaw (the heading of its +x axis; ``patch_angle`` in degrees) into a ``200 x 200`` canvas
    (rows along the patch's y, columns along its x), which is transposed so that the mask is
    indexed ``[class, i, j]``:

    * ``i`` (axis 1) runs along the LiDAR frame's **x** axis, ``j`` (axis 2) along its **y**
      axis, both from the low bound: cell ``(i, j)`` is centred on the LiDAR-frame point
      ``(x, y) = (xbound[0] + i * res, ybound[0] + j * res)`` (default ``(-50 + 0.5 i,
      -50 + 0.5 j)``), the *low corner* of the nominal cell ``[x, x + res)``: the devkit maps
      ``x`` to the canvas coordinate ``(x - xbound[0]) / res`` and pixel ``k`` sits at the
      integer coordinate ``k``. Polygons are filled with ``cv2.fillPoly`` on vertices rounded
      to integers, boundary pixels included, so an edge snaps to the nearest cell centre and
      areas come out up to one cell larger than the exact polygon; lines are drawn with
      ``cv2.polylines(thickness=2)`` (3 cells wide, one cell past each end) at coordinates
      truncated to integers. BEVFusion trains and scores on exactly this raster; we keep it.
    * "x forward, y left" (docs/conventions.md) makes ``i`` the forward axis and ``j`` the
      left axis. The nuScenes ``LIDAR_TOP`` sensor frame (and the generated data, which copies
      its mounting) points x to the vehicle's right and y forward; the grid follows the frame
      the points are in, whatever that is (BEVFusion does the same).

    The LiDAR pose is ``ego2global @ lidar2ego @ inv(lidar_aug_matrix)`` (the augmented frame
    in the world, as BEVFusion composes it). Beyond BEVFusion, a uniform scale in the
    augmentation scales the patch (``100 / s`` m), and a reflection of y (det < 0) flips the
    ``j`` axis (``[:, :, ::-1]``, as BEVFusion's ``RandomFlip3D`` flips its masks, exact to
    one cell); without scale or reflection the result is BEVFusion's.

    Rasterisation calls the devkit's ``NuScenesMapExplorer.get_map_geom`` and
    ``map_geom_to_mask``, the two steps of ``NuScenesMap.get_map_mask``, because
    ``get_map_mask`` itself refuses any map but the four nuScenes cities (it looks their
    sizes up by name before it needs them) and, with shapely >= 2, raises ``TypeError`` on a
    line that leaves and re-enters the patch (it iterates a ``MultiLineString``) and fails on
    a polygon piece without area (a polygon that only touches the patch). Between the two
    steps :func:`map_mask` splits multi-part line geometry into its lines and drops polygon
    pieces without area; the result equals ``get_map_mask`` wherever that runs
    (tests/test_bev_map_seg.py).

Metric (``NuScenesDataset.evaluate_map`` in BEVFusion's ``mmdet3d/datasets/nuscenes_dataset.py``)
    For every class and threshold ``t`` in :data:`THRESHOLDS` (0.35, 0.40, ..., 0.65), a cell
    is predicted when ``prob >= t``; TP, FP and FN are summed over all cells of all evaluated
    samples, ``IoU = TP / (TP + FP + FN + 1e-7)`` (a class absent from both counts 0).
    Per class the best threshold's IoU (``@max``; picked on the evaluation set itself), and
    ``mIoU@max`` = mean over classes of those maxima. Counts are int64 (BEVFusion sums into
    float32, which rounds counts above 2**24; the IoUs agree to ~1e-6).
"""
from __future__ import annotations

import math
import os.path as osp
from typing import Sequence

import numpy as np
import torch

__all__ = ["BEV_MAP_CLASSES", "CLASS_LAYERS", "THRESHOLDS", "BEV_XBOUND", "BEV_YBOUND",
           "load_nusc_map", "lidar2global_of", "map_mask", "bev_map_gt", "BEVMapSegIoU"]

BEV_MAP_CLASSES = ("drivable_area", "ped_crossing", "walkway", "stop_line", "carpark_area",
                   "divider")
# map-expansion layers of each class (BEVFusion also knows "drivable_area*")
CLASS_LAYERS = {"drivable_area": ("drivable_area",), "ped_crossing": ("ped_crossing",),
                "walkway": ("walkway",), "stop_line": ("stop_line",),
                "carpark_area": ("carpark_area",), "divider": ("road_divider", "lane_divider"),
                "road_divider": ("road_divider",), "lane_divider": ("lane_divider",),
                "drivable_area*": ("road_segment", "lane")}
THRESHOLDS = (0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65)
BEV_XBOUND = (-50.0, 50.0, 0.5)
BEV_YBOUND = (-50.0, 50.0, 0.5)
LINE_LAYERS = ("road_divider", "lane_divider", "traffic_light")


# ------------------------------------------------------------------------ map loading
def load_nusc_map(dataroot: str, location: str):
    """``NuScenesMap`` of ``<dataroot>/maps/expansion/<location>.json``.

    The devkit accepts only the four nuScenes cities by name; another location (the
    generated ``synthetic-grid-city``) is added to its list of known names first. A missing
    file raises ``FileNotFoundError`` naming it (the real expansion is a separate download:
    nuScenes-map-expansion-v1.3, unpacked into ``<dataroot>/maps/``)."""
    try:
        from nuscenes.map_expansion import map_api
    except ImportError as e:   # optional dependency
        raise ImportError("BEV map ground truth needs nuscenes-devkit "
                          "(pip install nuscenes-devkit)") from e
    path = osp.join(dataroot, "maps", "expansion", f"{location}.json")
    if not osp.isfile(path):
        raise FileNotFoundError(f"no map expansion for location {location!r}: {path} is "
                                "missing (download nuScenes-map-expansion-v1.3 into "
                                "<dataroot>/maps/, or regenerate the synthetic data)")
    if location not in map_api.locations:
        map_api.locations.append(location)
    return map_api.NuScenesMap(dataroot=dataroot, map_name=location)


def lidar2global_of(ego2global, lidar2ego, lidar_aug_matrix=None) -> np.ndarray:
    """World pose of the (augmented) LiDAR frame: ``ego2global @ lidar2ego @ inv(aug)``."""
    m = np.asarray(ego2global, np.float64) @ np.asarray(lidar2ego, np.float64)
    if lidar_aug_matrix is not None:
        m = m @ np.linalg.inv(np.asarray(lidar_aug_matrix, np.float64))
    return m


# ------------------------------------------------------------------------ rasterising
def _lines(geom) -> list:
    if geom.is_empty:
        return []
    if geom.geom_type in ("LineString", "Point"):
        return [geom]
    if hasattr(geom, "geoms"):   # MultiLineString, GeometryCollection
        return [part for g in geom.geoms for part in _lines(g)]
    return []


def _polygons(geom):
    from shapely.geometry import MultiPolygon

    parts = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if g.is_empty:
            continue
        if g.geom_type == "Polygon":
            if g.area > 0:
                parts.append(g)
        elif hasattr(g, "geoms"):
            stack.extend(g.geoms)
    return MultiPolygon(parts) if parts else None


def map_mask(nusc_map, patch_box: Sequence[float], patch_angle: float,
             layer_names: Sequence[str], canvas_size: Sequence[int]) -> np.ndarray:
    """``NuScenesMap.get_map_mask(patch_box, patch_angle, layer_names, canvas_size)`` for any
    map and shapely version (module doc): ``(len(layer_names), H, W)`` uint8, rows along
    the patch's local y, columns along its local x, both from the low edge."""
    explorer = nusc_map.explorer
    geoms = explorer.get_map_geom(tuple(patch_box), float(patch_angle), list(layer_names))
    clean = []
    for name, layer_geom in geoms:
        if name in LINE_LAYERS:
            clean.append((name, [line for g in layer_geom for line in _lines(g)]))
        else:
            clean.append((name, [p for p in (_polygons(g) for g in layer_geom) if p is not None]))
    local_box = (0.0, 0.0, float(patch_box[2]), float(patch_box[3]))
    h, w = (int(v) for v in canvas_size)
    masks = explorer.map_geom_to_mask(clean, local_box, (h, w))
    # the devkit gives traffic_light no geometry and no plane: an empty one keeps the order
    planes = dict(zip([name for name, _ in clean], masks))
    out = np.zeros((len(layer_names), h, w), np.uint8)
    for k, name in enumerate(layer_names):
        if name in planes:
            out[k] = planes[name]
    return out


def bev_map_gt(nusc_map, lidar2global, classes: Sequence[str] = BEV_MAP_CLASSES,
               xbound: Sequence[float] = BEV_XBOUND,
               ybound: Sequence[float] = BEV_YBOUND) -> np.ndarray:
    """Multi-label BEV map ground truth ``(len(classes), NX, NY)`` bool of one sample, indexed
    ``[class, i (LiDAR x), j (LiDAR y)]`` (module doc). ``lidar2global`` 4x4: the LiDAR
    frame the grid is in (:func:`lidar2global_of`); ``nusc_map``: :func:`load_nusc_map` of the
    sample's log location."""
    pose = np.asarray(lidar2global, np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f"lidar2global must be a finite 4x4 matrix, got shape {pose.shape}")
    unknown = [c for c in classes if c not in CLASS_LAYERS]
    if unknown:
        raise ValueError(f"unknown BEV map classes {unknown}; known: {sorted(CLASS_LAYERS)}")
    x0, x1, xres = (float(v) for v in xbound)
    y0, y1, yres = (float(v) for v in ybound)
    nx, ny = int(round((x1 - x0) / xres)), int(round((y1 - y0) / yres))
    lin = pose[:2, :2]
    ex = lin[:, 0]
    scale = float(np.hypot(*ex))       # metres per unit of the (augmented) frame
    mirrored = np.linalg.det(lin) < 0  # y reflected: raster the right-handed frame, flip j
    yaw = math.atan2(ex[1], ex[0])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if mirrored:
        cy = -cy
    centre = pose[:2, 3] + scale * (np.array([math.cos(yaw), math.sin(yaw)]) * cx
                                    + np.array([-math.sin(yaw), math.cos(yaw)]) * cy)
    layers = sorted({name for c in classes for name in CLASS_LAYERS[c]})
    masks = map_mask(nusc_map, (centre[0], centre[1], (y1 - y0) * scale, (x1 - x0) * scale),
                     math.degrees(yaw), layers, (ny, nx))
    masks = masks.transpose(0, 2, 1).astype(bool)     # [layer, y, x] -> [layer, x, y]
    if mirrored:
        masks = masks[:, :, ::-1]
    out = np.zeros((len(classes), nx, ny), bool)
    for k, c in enumerate(classes):
        for name in CLASS_LAYERS[c]:
            out[k] |= masks[layers.index(name)]
    return out


# ------------------------------------------------------------------------ metric
class BEVMapSegIoU:
    """Accumulates TP/FP/FN per class and threshold over an evaluation set (module doc).

    ``update(pred_probs, gt)``: ``(B, C, H, W)`` probabilities (after the sigmoid) and
    boolean ground truth, numpy or torch (counted on the tensors' device). ``compute()``:
    ``{"<class>@<t:.2f>": IoU, "<class>@max": IoU, "mIoU@max": mean}`` as floats in [0, 1].
    """

    def __init__(self, classes: Sequence[str] = BEV_MAP_CLASSES,
                 thresholds: Sequence[float] = THRESHOLDS):
        self.classes = tuple(classes)
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.classes or not self.thresholds:
            raise ValueError("need at least one class and one threshold")
        self.reset()

    def reset(self) -> None:
        shape = (len(self.classes), len(self.thresholds))
        self.tp = np.zeros(shape, np.int64)
        self.fp = np.zeros(shape, np.int64)
        self.fn = np.zeros(shape, np.int64)

    def update(self, pred_probs, gt) -> None:
        pred = torch.as_tensor(pred_probs)
        label = torch.as_tensor(gt, device=pred.device)
        c = len(self.classes)
        if pred.dim() != 4 or pred.shape[1] != c or tuple(label.shape) != tuple(pred.shape):
            raise ValueError(f"pred_probs and gt must both be (B, {c}, H, W), got "
                             f"{tuple(pred.shape)} and {tuple(label.shape)}")
        if not torch.is_floating_point(pred):
            raise ValueError(f"pred_probs must be probabilities (float), got {pred.dtype}")
        pred = pred.detach().transpose(0, 1).reshape(c, -1)
        label = label.detach().bool().transpose(0, 1).reshape(c, -1)
        n_pos = label.sum(1)
        for k, t in enumerate(self.thresholds):
            hit = pred >= t
            tp = (hit & label).sum(1)
            self.tp[:, k] += tp.cpu().numpy()
            self.fp[:, k] += (hit.sum(1) - tp).cpu().numpy()
            self.fn[:, k] += (n_pos - tp).cpu().numpy()

    def ious(self) -> np.ndarray:
        """``(C, T)`` IoU per class and threshold."""
        return self.tp / (self.tp + self.fp + self.fn + 1e-7)

    def compute(self) -> dict:
        ious = self.ious()
        out: dict = {}
        for k, name in enumerate(self.classes):
            for t, v in zip(self.thresholds, ious[k]):
                out[f"{name}@{t:.2f}"] = float(v)
            out[f"{name}@max"] = float(ious[k].max())
        out["mIoU@max"] = float(ious.max(axis=1).mean())
        return out

