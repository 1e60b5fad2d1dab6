"""KITTI 3D object detection: label / result files and the official AP (2D image box, BEV,
3D and AOS), on the CPU.

Sources of the algorithm and its constants (the code here is written anew):

* the KITTI object devkit, ``cpp/evaluate_object.cpp`` (Geiger, Lenz, Urtasun; the 3D/BEV
  version with 41 recall points), and
* its Python port ``kitti_object_eval_python/eval.py`` (traveller59/kitti-object-eval-python,
  vendored by OpenPCDet as ``pcdet/datasets/kitti/kitti_object_eval_python/`` and by
  mmdet3d), whose numbers papers report. Where the two differ this module follows the port
  (listed under "Port conventions" below).

The port computes the rotated bird's-eye-view overlap with ``numba.cuda``
(``rotate_iou.py``); here it is the area of the intersection of two convex quadrilaterals by
Sutherland-Hodgman polygon clipping, compiled with ``numba.njit`` for the CPU, in float64
(the port's CUDA kernel works in float32). Like the rest of the numba code here it is compiled
on first use and cached in ``__pycache__`` (as lidarcl's other numba code).

**Files.** A label or result file has one object per line::

    type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]

in the rectified camera frame (x right, y down, z forward): ``x1 y1 x2 y2`` the 2D box in
image_2 pixels, ``h w l`` the 3D size in metres, ``x y z`` the *bottom* centre of the box,
``rotation_y`` the yaw about the camera y axis, ``alpha`` the observation angle. Result files
add a score (the port reads a score of 0 for files without one). The annotation dict
(:func:`read_kitti_label`) holds numpy arrays ``name, truncated, occluded, alpha, bbox (N, 4),
dimensions (N, 3), location (N, 3), rotation_y, score``. **``dimensions`` is ``l, h, w``**,
not the file's ``h w l``: the port's ``kitti_common.get_label_anno`` reorders the columns
``[2, 0, 1]`` and its overlap code indexes that order (BEV box ``x, z, l, w, ry`` from
``location[:, [0, 2]]``, ``dimensions[:, [0, 2]]``; 3D box ``x, y, z, l, h, w, ry``).

**Procedure** (``eval.py`` ``eval_class``; per class, difficulty, metric and minimum overlap):

1. Ground truth (``clean_data``): an object of the class is *valid* unless its occlusion
   exceeds the difficulty's maximum (0 / 1 / 2), its truncation exceeds (0.15 / 0.3 / 0.5) or
   its 2D height is at most (40 / 25 / 25 px) -- then it is *ignored* (neither TP nor FN, but
   it can absorb a detection). The neighbour class is ignored likewise: Van for Car,
   Person_sitting for Pedestrian. Every other class plays no part. Detections of the class
   are evaluated; a detection of *any* class whose 2D height is below the difficulty's
   minimum is an ignored detection (never a FP, but it can absorb a ground truth object).
   ``DontCare`` objects of the ground truth are "don't care" regions.
2. Overlap: 2D box IoU (metric "image"), rotated BEV IoU ("bev") or 3D IoU ("3d", BEV
   intersection x overlap of the vertical extents ``[y - h, y]``). A match needs an overlap
   *strictly above* the minimum: 0.7 / 0.5 / 0.5 for Car / Pedestrian / Cyclist (Van 0.7,
   Person_sitting 0.5, Truck 0.7) in the strict set; the port's second, "loose" set is
   0.7 / 0.5 / 0.5 for the 2D box and 0.5 / 0.25 / 0.25 for BEV and 3D (Van 0.7 / 0.5,
   Person_sitting 0.5 / 0.25, Truck 0.5 / 0.5).
3. Score thresholds (``compute_statistics_jit`` without FPs + ``get_thresholds``): each valid
   ground truth object takes the highest-scoring unassigned detection above the overlap; the
   scores of these true positives over all frames, sorted high to low, are thinned to at
   most 41 so that their recalls step by about 1/40: score ``i`` (recall ``(i+1)/n_gt``) is
   skipped when the next one's recall is nearer the current recall target, which starts at
   0 and grows by 1/40 at each kept score.
4. Per threshold (``fused_compute_statistics``): detections scoring below it are dropped;
   each ground truth object takes the unassigned detection of largest overlap (a non-ignored
   one preferred); TP / FN counted on valid ground truth, FP on unassigned evaluated
   detections less those that overlap a DontCare region by more than the minimum overlap
   (intersection over the *detection's* 2D box area; the port does this for the image
   metric only). Orientation similarity of a TP: ``(1 + cos(alpha_gt - alpha_det)) / 2``,
   summed per frame (FPs add 0); ``aos = sum / (TP + FP)``.
5. ``precision[i] = TP / (TP + FP)`` for threshold ``i`` (an array of 41, zero beyond the last
   threshold), made monotone by ``precision[i] = max(precision[i:])`` (AOS likewise).
   **R11** = mean of ``precision[0], precision[4], ..., precision[40]`` (11 points, recall
   0 to 1 by 0.1); **R40** = mean of ``precision[1..40]`` (recall 0 left out) -- both x 100.

Note the consequence of 3. and 5. on small sets: index ``i`` of the curve is the ``i``-th
kept threshold, which is recall ``i/40`` only when there are at least 41 valid ground truth
objects. With fewer, every TP score is kept and the curve ends early, so even perfect
detections score below 100 (one valid object: R40 0, R11 100/11; 40 objects: R40 97.5).
This is the devkit's behaviour (OpenPCDet issue #1060 reports it); it is kept here.

**Port conventions** followed where the C++ devkits differ: a class is evaluated when asked
for, even without detections of it (the C++ evaluates only classes that were detected);
AOS is computed when the first non-empty result frame's first alpha is not -10 (the C++:
unless any alpha is -10); DontCare regions suppress FPs in the image metric only (the C++
compares 3D/BEV detections with the DontCare entries' own -1000 placeholders, so those
overlaps are 0 there too).
"""
from __future__ import annotations

import io
import math
import os
from typing import Iterable, Sequence

import numba as nb
import numpy as np

from lidarcl.errors import DataError, DataFileNotFound

__all__ = ["CLASS_NAMES", "DEFAULT_CLASSES", "DIFFICULTIES", "MIN_OVERLAPS", "empty_annotation",
           "parse_kitti_lines", "read_kitti_label", "read_kitti_results", "read_split_ids",
           "image_box_overlap", "bev_box_overlap", "d3_box_overlap", "ap_r11", "ap_r40",
           "kitti_eval", "evaluate_kitti_det"]

# classes the port knows (eval.py get_official_eval_result, class_to_name), in its order
CLASS_NAMES = ("Car", "Pedestrian", "Cyclist", "Van", "Person_sitting", "Truck")
DEFAULT_CLASSES = ("Car", "Pedestrian", "Cyclist")
METRICS = ("image", "bev", "3d")  # the port's metric 0, 1, 2
DIFFICULTIES = ("easy", "moderate", "hard")
MIN_HEIGHT = (40, 25, 25)  # px, 2D box height (ground truth: ignored when <=; detections: <)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
N_SAMPLE_PTS = 41
NEIGHBOUR_CLASS = {"car": "van", "pedestrian": "person_sitting"}  # ignored, not FN / FP
# minimum overlaps per set, metric and class (CLASS_NAMES order): eval.py overlap_0_7 and
# overlap_0_5; the devkit's MIN_OVERLAP is the strict set
MIN_OVERLAPS = {
    "strict": {"image": (0.7, 0.5, 0.5, 0.7, 0.5, 0.7),
               "bev": (0.7, 0.5, 0.5, 0.7, 0.5, 0.7),
               "3d": (0.7, 0.5, 0.5, 0.7, 0.5, 0.7)},
    "loose": {"image": (0.7, 0.5, 0.5, 0.7, 0.5, 0.5),
              "bev": (0.5, 0.25, 0.25, 0.5, 0.25, 0.5),
              "3d": (0.5, 0.25, 0.25, 0.5, 0.25, 0.5)},
}
NO_ALPHA = -10.0  # alpha of a result without orientation: AOS is not computed
_FIELDS = ("type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y")


# ----------------------------------------------------------------------------- files
def empty_annotation() -> dict:
    """An annotation dict without objects (a frame without detections)."""
    return {"name": np.zeros(0, dtype="<U1"), "truncated": np.zeros(0),
            "occluded": np.zeros(0, dtype=np.int64), "alpha": np.zeros(0),
            "bbox": np.zeros((0, 4)), "dimensions": np.zeros((0, 3)),
            "location": np.zeros((0, 3)), "rotation_y": np.zeros(0), "score": np.zeros(0)}


def parse_kitti_lines(lines: Iterable[str], path: str | os.PathLike | None = None) -> dict:
    """The annotation dict (module doc; ``dimensions`` as ``l, h, w``) of KITTI label lines.

    Blank lines are skipped. Every other line has 15 fields, or 16 with a score; a file
    mixing the two, a wrong field count, a non-numeric or non-finite value or a
    non-integral occlusion is a :class:`DataError` naming ``path`` and the line. Without
    scores the score is 0 (the port's ``get_label_anno``)."""
    names, rows, n_fields = [], [], None
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise DataError(path, f"line {lineno}: {len(fields)} fields, expected 15 "
                                  f"({_FIELDS}) or 16 (+ score)")
        if n_fields is not None and len(fields) != n_fields:
            raise DataError(path, f"line {lineno}: {len(fields)} fields where earlier lines "
                                  f"have {n_fields} (score given on some lines only)")
        n_fields = len(fields)
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError as exc:
            raise DataError(path, f"line {lineno}: non-numeric field ({exc})") from exc
        if not all(math.isfinite(v) for v in values):
            raise DataError(path, f"line {lineno}: non-finite value in {line.strip()!r}")
        if values[1] != int(values[1]):
            raise DataError(path, f"line {lineno}: occlusion {fields[2]!r} is not an integer")
        names.append(fields[0])
        rows.append(values if n_fields == 16 else values + [0.0])
    if not rows:
        return empty_annotation()
    arr = np.asarray(rows, dtype=np.float64)
    return {"name": np.asarray(names), "truncated": arr[:, 0],
            "occluded": arr[:, 1].astype(np.int64), "alpha": arr[:, 2],
            "bbox": arr[:, 3:7].copy(),
            "dimensions": arr[:, [9, 7, 8]],  # file h w l -> l h w (the port's order)
            "location": arr[:, 10:13].copy(), "rotation_y": arr[:, 13].copy(),
            "score": arr[:, 14].copy()}


def _read_text_lines(path: str, what: str) -> list[str]:
    if not os.path.isfile(path):
        raise DataFileNotFound(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not a text file ({exc})") from exc


def read_kitti_label(path: str | os.PathLike, what: str = "KITTI label file") -> dict:
    """Read one label or result file (:func:`parse_kitti_lines`); a missing file is a
    :class:`DataFileNotFound` naming it."""
    path = os.fspath(path)
    return parse_kitti_lines(_read_text_lines(path, what), path)


def read_kitti_results(results_dir: str | os.PathLike, frame_ids: Sequence[str]) -> list[dict]:
    """The detections of each frame id, from ``<results_dir>/<id>.txt``; a frame without a
    result file has no detections (the devkit requires one file per frame; the port reads
    them all, so an absent file would stop it). A malformed line is a DataError naming the
    file and the line."""
    results_dir = os.fspath(results_dir)
    if not os.path.isdir(results_dir):
        raise DataFileNotFound(results_dir, "results folder")
    out = []
    for frame in frame_ids:
        path = os.path.join(results_dir, f"{frame}.txt")
        out.append(read_kitti_label(path, "result file") if os.path.isfile(path)
                   else empty_annotation())
    return out


def read_split_ids(path: str | os.PathLike) -> list[str]:
    """Frame ids of a split file (``ImageSets/val.txt``: one id per line)."""
    path = os.fspath(path)
    ids = [line.strip() for line in _read_text_lines(path, "split file") if line.strip()]
    for lineno, frame in enumerate(ids, 1):
        if not (frame.isascii() and frame.isdigit()):
            raise DataError(path, f"line {lineno}: frame id {frame!r} is not a number")
    if not ids:
        raise DataError(path, "lists no frame ids")
    return ids


# ------------------------------------------------------------------------- overlaps
@nb.njit(cache=True)
def _image_overlap(a, b, criterion):
    """2D box overlap (eval.py ``image_box_overlap``): intersection over the union
    (criterion -1), over ``a``'s area (0), over ``b``'s area (1), or the intersection."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    if iw <= 0:
        return 0.0
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0:
        return 0.0
    inter = iw * ih
    if criterion == -1:
        den = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    elif criterion == 0:
        den = (a[2] - a[0]) * (a[3] - a[1])
    elif criterion == 1:
        den = (b[2] - b[0]) * (b[3] - b[1])
    else:
        return inter
    return inter / den if den > 0 else 0.0


@nb.njit(cache=True)
def _rect_corners(x, z, l, w, ry, out):
    """Corners of a BEV rectangle centred at (x, z), size l (along the heading) x w, turned
    by ry: the devkit's ``toPolygon`` / the port's ``rbbox_to_corners`` (local corner (u, v)
    -> (x + cos(ry) u + sin(ry) v, z - sin(ry) u + cos(ry) v), i.e. camera R_y(ry))."""
    c = math.cos(ry)
    s = math.sin(ry)
    us = (-0.5 * l, -0.5 * l, 0.5 * l, 0.5 * l)
    vs = (-0.5 * w, 0.5 * w, 0.5 * w, -0.5 * w)
    for k in range(4):
        out[k, 0] = x + c * us[k] + s * vs[k]
        out[k, 1] = z - s * us[k] + c * vs[k]


@nb.njit(cache=True)
def _signed_area(pts, n):
    """Shoelace formula: positive for counter-clockwise vertices."""
    acc = 0.0
    for k in range(n):
        j = k + 1 if k + 1 < n else 0
        acc += pts[k, 0] * pts[j, 1] - pts[j, 0] * pts[k, 1]
    return 0.5 * acc


@nb.njit(cache=True)
def _convex_intersection_area(subject, clip):
    """Area of the intersection of two convex quadrilaterals (4, 2), by Sutherland-Hodgman:
    the subject polygon is clipped by the half-plane of each edge of ``clip`` in turn (either
    vertex order). Touching boundaries give a degenerate polygon of area 0."""
    orient = _signed_area(clip, 4)
    if orient == 0.0 or _signed_area(subject, 4) == 0.0:
        return 0.0
    sign = 1.0 if orient > 0 else -1.0
    cap = 64
    cur = np.empty((cap, 2))
    nxt = np.empty((cap, 2))
    for k in range(4):
        cur[k, 0] = subject[k, 0]
        cur[k, 1] = subject[k, 1]
    n = 4
    for e in range(4):
        ax = clip[e, 0]
        ay = clip[e, 1]
        f = e + 1 if e < 3 else 0
        ex = clip[f, 0] - ax
        ey = clip[f, 1] - ay
        m = 0
        for k in range(n):
            j = k + 1 if k + 1 < n else 0
            px, py = cur[k, 0], cur[k, 1]
            qx, qy = cur[j, 0], cur[j, 1]
            dp = sign * (ex * (py - ay) - ey * (px - ax))  # >= 0: inside the half-plane
            dq = sign * (ex * (qy - ay) - ey * (qx - ax))
            if dp >= 0 and m < cap:
                nxt[m, 0] = px
                nxt[m, 1] = py
                m += 1
            if (dp >= 0) != (dq >= 0) and m < cap:
                t = dp / (dp - dq)
                nxt[m, 0] = px + t * (qx - px)
                nxt[m, 1] = py + t * (qy - py)
                m += 1
        n = m
        if n < 3:
            return 0.0
        cur, nxt = nxt, cur
    return abs(_signed_area(cur, n))


@nb.njit(cache=True)
def _bev_pair(a, b, criterion):
    """Rotated BEV overlap of boxes ``(x, z, l, w, ry)``: criterion -1 IoU, 0 over ``a``'s
    area, 1 over ``b``'s, 2 the intersection area (the port's ``devRotateIoUEval``)."""
    ca = np.empty((4, 2))
    cb = np.empty((4, 2))
    _rect_corners(a[0], a[1], a[2], a[3], a[4], ca)
    _rect_corners(b[0], b[1], b[2], b[3], b[4], cb)
    inter = _convex_intersection_area(ca, cb)
    if criterion == 2:
        return inter
    area_a = abs(a[2] * a[3])
    area_b = abs(b[2] * b[3])
    if criterion == -1:
        den = area_a + area_b - inter
    elif criterion == 0:
        den = area_a
    else:
        den = area_b
    return inter / den if den > 0 else 0.0


@nb.njit(cache=True)
def _d3_pair(a, b, criterion):
    """3D overlap of camera boxes ``(x, y, z, l, h, w, ry)``, ``y`` the bottom (the box spans
    ``[y - h, y]``, camera y pointing down): BEV intersection x vertical overlap, over the
    union of the volumes (criterion -1; eval.py ``d3_box_overlap_kernel``)."""
    bev_a = np.empty(5)
    bev_b = np.empty(5)
    for k, c in enumerate((0, 2, 3, 5, 6)):  # x z l w ry
        bev_a[k] = a[c]
        bev_b[k] = b[c]
    inter_area = _bev_pair(bev_a, bev_b, 2)
    if inter_area <= 0:
        return 0.0
    ih = min(a[1], b[1]) - max(a[1] - a[4], b[1] - b[4])
    if ih <= 0:
        return 0.0
    inter = ih * inter_area
    if criterion == 2:
        return inter
    vol_a = abs(a[3] * a[4] * a[5])
    vol_b = abs(b[3] * b[4] * b[5])
    if criterion == -1:
        den = vol_a + vol_b - inter
    elif criterion == 0:
        den = vol_a
    else:
        den = vol_b
    return inter / den if den > 0 else 0.0


@nb.njit(cache=True)
def _pair(metric, a, b, criterion):
    if metric == 0:
        return _image_overlap(a, b, criterion)
    if metric == 1:
        return _bev_pair(a, b, criterion)
    return _d3_pair(a, b, criterion)


@nb.njit(cache=True)
def _pairwise(metric, boxes, qboxes, criterion):
    out = np.zeros((boxes.shape[0], qboxes.shape[0]))
    for i in range(boxes.shape[0]):
        for j in range(qboxes.shape[0]):
            out[i, j] = _pair(metric, boxes[i], qboxes[j], criterion)
    return out


def _as_boxes(boxes, width: int, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{what}: expected an (N, {width}) array, got shape {arr.shape}")
    return arr


def image_box_overlap(boxes, qboxes, criterion: int = -1) -> np.ndarray:
    """(N, K) overlaps of 2D boxes ``x1 y1 x2 y2`` (IoU for criterion -1)."""
    return _pairwise(0, _as_boxes(boxes, 4, "boxes"), _as_boxes(qboxes, 4, "qboxes"),
                     criterion)


def bev_box_overlap(boxes, qboxes, criterion: int = -1) -> np.ndarray:
    """(N, K) rotated bird's-eye-view overlaps of camera-frame boxes ``x z l w ry`` (IoU for
    criterion -1, intersection area for 2)."""
    return _pairwise(1, _as_boxes(boxes, 5, "boxes"), _as_boxes(qboxes, 5, "qboxes"),
                     criterion)


def d3_box_overlap(boxes, qboxes, criterion: int = -1) -> np.ndarray:
    """(N, K) 3D overlaps of camera-frame boxes ``x y z l h w ry`` (``y`` the bottom; IoU for
    criterion -1, intersection volume for 2)."""
    return _pairwise(2, _as_boxes(boxes, 7, "boxes"), _as_boxes(qboxes, 7, "qboxes"),
                     criterion)


@nb.njit(cache=True)
def _frame_overlaps(metric, dt_boxes, gt_boxes, dt_off, gt_off, ov_off):
    """Per frame f, the (n_dt, n_gt) overlaps (IoU) of its detections with its ground
    truth, stored row-major from ``ov_off[f]`` of one flat array."""
    out = np.zeros(ov_off[-1])
    for f in range(dt_off.shape[0] - 1):
        n_gt = gt_off[f + 1] - gt_off[f]
        base = ov_off[f]
        for j in range(dt_off[f], dt_off[f + 1]):
            for i in range(gt_off[f], gt_off[f + 1]):
                out[base + (j - dt_off[f]) * n_gt + (i - gt_off[f])] = _pair(
                    metric, dt_boxes[j], gt_boxes[i], -1)
    return out


# ----------------------------------------------------------------------- statistics
NO_DETECTION = -10000000.0


@nb.njit(cache=True)
def _frame_statistics(overlaps, gt_alpha, dt_bbox, dt_alpha, dt_score, ignored_gt,
                      ignored_det, dc_bbox, metric, min_overlap, thresh, compute_fp,
                      compute_aos, tp_scores):
    """One frame's TP, FP, FN and orientation similarity at score threshold ``thresh``
    (eval.py ``compute_statistics_jit`` / devkit ``computeStatistics``; module doc, steps
    3 and 4). ``overlaps`` is (n_dt, n_gt); the TP scores are written to ``tp_scores``.
    Returns ``(tp, fp, fn, similarity, n_tp_scores)``; similarity -1: neither TP nor FP."""
    n_dt = overlaps.shape[0]
    n_gt = overlaps.shape[1]
    assigned = np.zeros(n_dt, dtype=np.bool_)
    below = np.zeros(n_dt, dtype=np.bool_)
    if compute_fp:
        for j in range(n_dt):
            below[j] = dt_score[j] < thresh
    tp = 0
    fp = 0
    fn = 0
    n_scores = 0
    delta = np.zeros(n_gt)
    n_delta = 0
    for i in range(n_gt):
        if ignored_gt[i] == -1:
            continue
        det_idx = -1
        valid = NO_DETECTION
        max_overlap = 0.0
        assigned_ignored_det = False
        for j in range(n_dt):
            if ignored_det[j] == -1 or assigned[j] or below[j]:
                continue
            overlap = overlaps[j, i]
            if not compute_fp and overlap > min_overlap and dt_score[j] > valid:
                # thresholds: the highest-scoring candidate
                det_idx = j
                valid = dt_score[j]
            elif (compute_fp and overlap > min_overlap
                  and (overlap > max_overlap or assigned_ignored_det) and ignored_det[j] == 0):
                # PR curve: the largest overlap, an evaluated detection before an ignored one
                max_overlap = overlap
                det_idx = j
                valid = 1.0
                assigned_ignored_det = False
            elif (compute_fp and overlap > min_overlap and valid == NO_DETECTION
                  and ignored_det[j] == 1):
                det_idx = j
                valid = 1.0
                assigned_ignored_det = True
        if valid == NO_DETECTION and ignored_gt[i] == 0:
            fn += 1
        elif valid != NO_DETECTION and (ignored_gt[i] == 1 or ignored_det[det_idx] == 1):
            assigned[det_idx] = True  # absorbed: neither TP nor FP
        elif valid != NO_DETECTION:
            tp += 1
            tp_scores[n_scores] = dt_score[det_idx]
            n_scores += 1
            if compute_aos:
                delta[n_delta] = gt_alpha[i] - dt_alpha[det_idx]
                n_delta += 1
            assigned[det_idx] = True
    similarity = 0.0
    if compute_fp:
        for j in range(n_dt):
            if not (assigned[j] or ignored_det[j] != 0 or below[j]):
                fp += 1
        n_stuff = 0
        if metric == 0:  # DontCare regions (the port: image metric only)
            for c in range(dc_bbox.shape[0]):
                for j in range(n_dt):
                    if assigned[j] or ignored_det[j] != 0 or below[j]:
                        continue
                    if _image_overlap(dt_bbox[j], dc_bbox[c], 0) > min_overlap:
                        assigned[j] = True
                        n_stuff += 1
        fp -= n_stuff
        if compute_aos:
            if tp > 0 or fp > 0:
                for k in range(n_delta):
                    similarity += (1.0 + math.cos(delta[k])) / 2.0
            else:
                similarity = -1.0
    return tp, fp, fn, similarity, n_scores


@nb.njit(cache=True)
def _collect_tp_scores(ov, ov_off, gt_off, dt_off, dc_off, gt_alpha, dt_bbox, dt_alpha,
                       dt_score, ignored_gt, ignored_det, dc_bbox, metric, min_overlap):
    """The TP scores of all frames, matching by highest score (step 3)."""
    out = np.zeros(gt_alpha.shape[0])
    n = 0
    for f in range(gt_off.shape[0] - 1):
        g0, g1, d0, d1 = gt_off[f], gt_off[f + 1], dt_off[f], dt_off[f + 1]
        overlaps = ov[ov_off[f]:ov_off[f + 1]].reshape((d1 - d0, g1 - g0))
        _, _, _, _, k = _frame_statistics(
            overlaps, gt_alpha[g0:g1], dt_bbox[d0:d1], dt_alpha[d0:d1], dt_score[d0:d1],
            ignored_gt[g0:g1], ignored_det[d0:d1], dc_bbox[dc_off[f]:dc_off[f + 1]], metric,
            min_overlap, 0.0, False, False, out[n:])
        n += k
    return out[:n]


@nb.njit(cache=True)
def _get_thresholds(scores, num_gt, n_sample_pts):
    """Scores that step recall by about 1 / (n_sample_pts - 1) (eval.py ``get_thresholds``,
    devkit ``getThresholds``; module doc, step 3)."""
    s = np.sort(scores)[::-1]
    out = np.zeros(s.shape[0])
    n = 0
    if num_gt == 0:
        return out[:0]
    current_recall = 0.0
    last = s.shape[0] - 1
    for i in range(s.shape[0]):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < last else l_recall
        if (r_recall - current_recall) < (current_recall - l_recall) and i < last:
            continue
        out[n] = s[i]
        n += 1
        current_recall += 1.0 / (n_sample_pts - 1.0)
    return out[:n]


@nb.njit(cache=True)
def _accumulate(ov, ov_off, gt_off, dt_off, dc_off, gt_alpha, dt_bbox, dt_alpha, dt_score,
                ignored_gt, ignored_det, dc_bbox, metric, min_overlap, thresholds,
                compute_aos):
    """(T, 4) TP, FP, FN, similarity summed over frames per threshold (eval.py
    ``fused_compute_statistics``)."""
    pr = np.zeros((thresholds.shape[0], 4))
    scratch = np.zeros(gt_alpha.shape[0] + 1)
    for f in range(gt_off.shape[0] - 1):
        g0, g1, d0, d1 = gt_off[f], gt_off[f + 1], dt_off[f], dt_off[f + 1]
        overlaps = ov[ov_off[f]:ov_off[f + 1]].reshape((d1 - d0, g1 - g0))
        for t in range(thresholds.shape[0]):
            tp, fp, fn, similarity, _ = _frame_statistics(
                overlaps, gt_alpha[g0:g1], dt_bbox[d0:d1], dt_alpha[d0:d1], dt_score[d0:d1],
                ignored_gt[g0:g1], ignored_det[d0:d1], dc_bbox[dc_off[f]:dc_off[f + 1]],
                metric, min_overlap, thresholds[t], True, compute_aos, scratch)
            pr[t, 0] += tp
            pr[t, 1] += fp
            pr[t, 2] += fn
            if similarity != -1.0:
                pr[t, 3] += similarity
    return pr


# ------------------------------------------------------------------------ evaluation
def ap_r11(curve: np.ndarray) -> np.ndarray:
    """AP over 11 recall points (0, 0.1, ..., 1) of a 41-point monotone curve, in percent
    (eval.py ``get_mAP``)."""
    return np.asarray(curve)[..., 0::4].sum(-1) / 11 * 100


def ap_r40(curve: np.ndarray) -> np.ndarray:
    """AP over the 40 recall points 1/40 ... 1 (recall 0 left out), in percent
    (eval.py ``get_mAP_R40``)."""
    return np.asarray(curve)[..., 1:].sum(-1) / 40 * 100


def _canonical_class(name: str) -> str:
    for known in CLASS_NAMES:
        if known.lower() == str(name).lower():
            return known
    raise ValueError(f"unknown KITTI class {name!r}; the evaluator knows {list(CLASS_NAMES)}")


_REQUIRED = ("name", "truncated", "occluded", "alpha", "bbox", "dimensions", "location",
             "rotation_y")


def _concat(annos: Sequence[dict], what: str, need_score: bool) -> dict:
    """All frames' objects in one set of arrays, with per-frame offsets."""
    keys = _REQUIRED + (("score",) if need_score else ())
    for f, anno in enumerate(annos):
        missing = [k for k in keys if k not in anno]
        if missing:
            raise ValueError(f"{what} frame {f}: annotation lacks {missing}")
        n = len(anno["name"])
        for k in keys:
            if len(anno[k]) != n:
                raise ValueError(f"{what} frame {f}: {k!r} has {len(anno[k])} rows for "
                                 f"{n} names")
    counts = np.array([len(a["name"]) for a in annos], dtype=np.int64)
    off = np.zeros(len(annos) + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])

    def cat(key, shape):
        parts = [np.asarray(a[key], dtype=np.float64).reshape(shape) for a in annos]
        return np.ascontiguousarray(np.concatenate(parts))

    names = [str(n) for a in annos for n in a["name"]]
    out = {"off": off, "name": np.array(names, dtype=object),
           "lower": np.array([n.lower() for n in names], dtype=object),
           "truncated": cat("truncated", (-1,)), "occluded": cat("occluded", (-1,)),
           "alpha": cat("alpha", (-1,)), "bbox": cat("bbox", (-1, 4)),
           "score": cat("score", (-1,)) if need_score else None}
    loc, dims, ry = cat("location", (-1, 3)), cat("dimensions", (-1, 3)), cat("rotation_y", (-1,))
    # camera boxes x y z l h w ry (dimensions already l h w) and their BEV x z l w ry
    out["box3d"] = np.ascontiguousarray(np.concatenate([loc, dims, ry[:, None]], 1))
    out["bev"] = np.ascontiguousarray(out["box3d"][:, [0, 2, 3, 5, 6]])
    return out


def _clean(gt: dict, dt: dict, cls: str, difficulty: int):
    """Ignore codes (eval.py ``clean_data``; module doc, step 1): ground truth 0 valid,
    1 ignored, -1 other class; detections 0 evaluated, 1 ignored (too small), -1 other."""
    current = cls.lower()
    height = gt["bbox"][:, 3] - gt["bbox"][:, 1]
    same = gt["lower"] == current
    neighbour = gt["lower"] == NEIGHBOUR_CLASS.get(current, "\0")
    hard = ((gt["occluded"] > MAX_OCCLUSION[difficulty])
            | (gt["truncated"] > MAX_TRUNCATION[difficulty])
            | (height <= MIN_HEIGHT[difficulty]))
    ignored_gt = np.full(len(height), -1, dtype=np.int64)
    ignored_gt[neighbour | (same & hard)] = 1
    ignored_gt[same & ~hard] = 0
    dt_height = np.abs(dt["bbox"][:, 3] - dt["bbox"][:, 1])
    ignored_dt = np.where(dt_height < MIN_HEIGHT[difficulty], 1,
                          np.where(dt["lower"] == current, 0, -1)).astype(np.int64)
    return ignored_gt, ignored_dt, int((ignored_gt == 0).sum())


def _curves(gt, dt, dc_bbox, dc_off, metric: int, classes, overlap_sets, compute_aos):
    """Monotone precision (and AOS) curves ``[class, difficulty, overlap set, 41]``."""
    boxes = {0: "bbox", 1: "bev", 2: "box3d"}[metric]
    n_gt = np.diff(gt["off"])
    n_dt = np.diff(dt["off"])
    ov_off = np.zeros(len(n_gt) + 1, dtype=np.int64)
    np.cumsum(n_gt * n_dt, out=ov_off[1:])
    ov = _frame_overlaps(metric, dt[boxes], gt[boxes], dt["off"], gt["off"], ov_off)
    shape = (len(classes), len(DIFFICULTIES), len(overlap_sets), N_SAMPLE_PTS)
    precision = np.zeros(shape)
    aos = np.zeros(shape)
    for m, cls in enumerate(classes):
        column = CLASS_NAMES.index(cls)
        for d in range(len(DIFFICULTIES)):
            ignored_gt, ignored_dt, num_valid = _clean(gt, dt, cls, d)
            args = (ov, ov_off, gt["off"], dt["off"], dc_off, gt["alpha"], dt["bbox"],
                    dt["alpha"], dt["score"], ignored_gt, ignored_dt, dc_bbox, metric)
            for k, set_name in enumerate(overlap_sets):
                min_overlap = float(MIN_OVERLAPS[set_name][METRICS[metric]][column])
                scores = _collect_tp_scores(*args, min_overlap)
                thresholds = _get_thresholds(scores, num_valid, N_SAMPLE_PTS)
                if len(thresholds) > N_SAMPLE_PTS:  # cannot happen (module doc, step 3)
                    raise AssertionError(f"{len(thresholds)} score thresholds")
                pr = _accumulate(*args, min_overlap, thresholds, bool(compute_aos))
                kept = len(thresholds)
                with np.errstate(invalid="ignore", divide="ignore"):
                    denom = pr[:, 0] + pr[:, 1]
                    precision[m, d, k, :kept] = np.where(denom > 0, pr[:, 0] / denom, 0.0)
                    if compute_aos:
                        aos[m, d, k, :kept] = np.where(denom > 0, pr[:, 3] / denom, 0.0)
                for i in range(kept):  # monotone: max over this and higher recall
                    precision[m, d, k, i] = precision[m, d, k, i:].max()
                    if compute_aos:
                        aos[m, d, k, i] = aos[m, d, k, i:].max()
    return precision, aos


def kitti_eval(gt_annos: Sequence[dict], dt_annos: Sequence[dict],
               classes: Iterable[str] = DEFAULT_CLASSES,
               overlap_sets: Sequence[str] = ("strict", "loose"),
               compute_aos: bool | None = None,
               curves: dict | None = None) -> tuple[str, dict[str, float]]:
    """The official KITTI AP of ``dt_annos`` against ``gt_annos`` (one annotation dict per
    frame, same order; :func:`read_kitti_label`). Returns ``(summary, metrics)``:

    * ``metrics``: a flat dict, in percent, ``<Class>_<metric>/<difficulty>_<R40|R11>`` for
      metric ``image`` (2D box), ``bev``, ``3d`` and ``aos`` (when computed), difficulty
      ``easy``, ``moderate``, ``hard`` -- the strict overlaps (OpenPCDet's keys, e.g.
      ``Car_3d/moderate_R40``); the loose set as ``<Class>_<metric>_loose/...``;
    * ``summary``: the port's printout (``Car AP@0.70, 0.70, 0.70:`` / ``bbox AP:...``).

    ``compute_aos`` None: as the port, AOS when the first frame with detections has a first
    alpha other than -10. ``curves``: when a dict, it receives the monotone curves
    ``[class, difficulty, overlap set, 41]`` under ``image``, ``bev``, ``3d``, ``aos``.
    """
    gt_annos, dt_annos = list(gt_annos), list(dt_annos)
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f"{len(gt_annos)} ground truth frames but {len(dt_annos)} result "
                         "frames")
    if not gt_annos:
        raise ValueError("no frames to evaluate")
    classes = [_canonical_class(c) for c in classes]
    for name in overlap_sets:
        if name not in MIN_OVERLAPS:
            raise ValueError(f"unknown overlap set {name!r}; known: {list(MIN_OVERLAPS)}")
    if compute_aos is None:
        compute_aos = False
        for anno in dt_annos:
            if len(anno["alpha"]) > 0:
                compute_aos = bool(anno["alpha"][0] != NO_ALPHA)
                break
    gt = _concat(gt_annos, "ground truth", need_score=False)
    dt = _concat(dt_annos, "results", need_score=True)
    dontcare = gt["name"] == "DontCare"
    dc_bbox = np.ascontiguousarray(gt["bbox"][dontcare]).reshape(-1, 4)
    frame_of = np.repeat(np.arange(len(gt_annos)), np.diff(gt["off"]))
    dc_off = np.zeros(len(gt_annos) + 1, dtype=np.int64)
    np.cumsum(np.bincount(frame_of[dontcare], minlength=len(gt_annos)), out=dc_off[1:])

    results = {}
    for metric, name in enumerate(METRICS):
        prec, aos = _curves(gt, dt, dc_bbox, dc_off, metric, classes, overlap_sets,
                            compute_aos and metric == 0)
        results[name] = prec
        if metric == 0 and compute_aos:
            results["aos"] = aos
    if curves is not None:
        curves.update(results)

    metrics: dict[str, float] = {}
    for m, cls in enumerate(classes):
        for k, set_name in enumerate(overlap_sets):
            suffix = "" if set_name == "strict" else f"_{set_name}"
            for name, curve in results.items():
                for d, diff in enumerate(DIFFICULTIES):
                    for label, fn in (("R40", ap_r40), ("R11", ap_r11)):
                        metrics[f"{cls}_{name}{suffix}/{diff}_{label}"] = float(
                            fn(curve[m, d, k]))
    return _summary(metrics, classes, overlap_sets, compute_aos), metrics


def _summary(metrics: dict, classes, overlap_sets, compute_aos: bool) -> str:
    out = io.StringIO()
    rows = (("bbox", "image", 4), ("bev ", "bev", 4), ("3d  ", "3d", 4))
    if compute_aos:
        rows += (("aos ", "aos", 2),)
    for cls in classes:
        column = CLASS_NAMES.index(cls)
        for set_name in overlap_sets:
            suffix = "" if set_name == "strict" else f"_{set_name}"
            overlaps = ", ".join(f"{MIN_OVERLAPS[set_name][m][column]:.2f}" for m in METRICS)
            for label, title in (("R11", "AP"), ("R40", "AP_R40")):
                print(f"{cls} {title}@{overlaps}:", file=out)
                for head, name, digits in rows:
                    values = ", ".join(
                        f"{metrics[f'{cls}_{name}{suffix}/{diff}_{label}']:.{digits}f}"
                        for diff in DIFFICULTIES)
                    print(f"{head} AP:{values}", file=out)
    return out.getvalue()


def _results_folder(results_dir: str) -> str:
    """``results_dir``, or its ``data/`` subfolder (the devkit's and OpenPCDet's
    ``final_result/data`` layout) when only that holds the .txt files."""
    if not os.path.isdir(results_dir):
        raise DataFileNotFound(results_dir, "results folder")
    sub = os.path.join(results_dir, "data")
    if os.path.isdir(sub) and not any(n.endswith(".txt") for n in os.listdir(results_dir)):
        return sub
    return results_dir


def _split_path(split: str, root: str) -> str:
    if os.path.isfile(split) or os.path.isabs(split):
        return split
    under_root = os.path.join(root, split)
    return under_root if os.path.isfile(under_root) else split


def evaluate_kitti_det(results_dir: str | os.PathLike, root: str | os.PathLike,
                       split: str | os.PathLike,
                       classes: Iterable[str] = DEFAULT_CLASSES) -> dict:
    """Score the result files ``<results_dir>/<id>.txt`` (or ``<results_dir>/data/<id>.txt``)
    of the frames of ``split`` (a path, or one relative to ``root`` such as
    ``ImageSets/val.txt``) against ``<root>/training/label_2/<id>.txt``.

    Returns ``{"metrics", "summary", "frames", "frames_with_results", "classes", "aos"}``
    (:func:`kitti_eval`). A missing label, split or results folder, or a malformed line,
    is a :class:`DataError` naming the file."""
    root, split = os.fspath(root), os.fspath(split)
    classes = [_canonical_class(c) for c in classes]
    split_path = _split_path(split, root)
    if not os.path.isfile(split_path):
        raise DataFileNotFound(split_path if os.path.isabs(split) else
                               f"{split} (nor {os.path.join(root, split)})", "split file")
    ids = read_split_ids(split_path)
    label_dir = os.path.join(root, "training", "label_2")
    if not os.path.isdir(label_dir):
        raise DataFileNotFound(label_dir, "KITTI label folder")
    gt_annos = [read_kitti_label(os.path.join(label_dir, f"{frame}.txt")) for frame in ids]
    folder = _results_folder(os.fspath(results_dir))
    dt_annos = read_kitti_results(folder, ids)
    with_results = sum(os.path.isfile(os.path.join(folder, f"{frame}.txt")) for frame in ids)
    summary, metrics = kitti_eval(gt_annos, dt_annos, classes)
    return {"metrics": metrics, "summary": summary, "frames": len(ids),
            "frames_with_results": int(with_results), "classes": classes,
            "aos": any(k.split("/")[0].endswith("_aos") for k in metrics)}
