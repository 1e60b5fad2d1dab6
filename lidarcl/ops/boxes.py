"""Rotated-box ops: BEV and 3D IoU, rotated BEV NMS, points in boxes (pure-PyTorch
references and argument checks).

Boxes are rows ``[x, y, z, l, w, h, yaw, ...]`` in lidarcl's LiDAR-frame convention
(:mod:`lidarcl.structures.boxes`): ``(x, y, z)`` the gravity centre, ``l`` along the
heading, ``w`` across it, ``h`` up, ``yaw`` counter-clockwise from ``+x``; extra columns
(velocity, ...) are ignored. Sizes must be ``>= 0`` and every value finite.

* **BEV IoU**: area of the intersection of the two rotated rectangles over the area of their
  union. **3D IoU**: BEV intersection times the overlap of the vertical extents
  ``[z - h/2, z + h/2]``, over the union of the volumes (the rule of OpenPCDet's
  ``boxes_iou3d_gpu`` and mmdet3d's ``bbox_overlaps_3d``). A union of zero (two degenerate
  boxes) gives IoU 0.
* **NMS**: greedy in the order of decreasing score (ties: lower index first); a box is
  dropped when its BEV IoU with a kept box is *greater than* the threshold (OpenPCDet's
  ``nms_gpu``).
* **Points in boxes**: faces included, tested in the box frame exactly as
  :func:`lidarcl.structures.boxes.points_in_boxes` (float64).

The compiled kernels (``csrc/box_geometry.h``) clip one rectangle by the other
(Sutherland-Hodgman). The reference here finds the intersection polygon differently, from
the candidate vertices (corners of each rectangle inside the other, and edge-edge
crossings) sorted by angle around their centroid, so the two are independent checks of each
other; both compute in float64.
"""
from __future__ import annotations

import torch

__all__ = ["box_iou_reference", "nms_bev_reference", "points_in_boxes_reference",
           "validate_boxes", "validate_points", "box_corners_bev"]

IOU_MODES = ("bev", "3d")
_PAIR_CHUNK = 1 << 16  # pairs per chunk of the reference (bounds its memory)


def validate_boxes(boxes, name: str = "boxes") -> torch.Tensor:
    """Check a box tensor (N, >=7) of floats: finite values and sizes >= 0."""
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if not boxes.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] < 7:
        raise ValueError(f"{name} must have shape (N, >=7) [x, y, z, l, w, h, yaw, ...], "
                         f"got {tuple(boxes.shape)}")
    if boxes.numel():
        core = boxes[:, :7]
        if not bool(torch.isfinite(core).all()):
            bad = int((~torch.isfinite(core)).any(1).nonzero()[0, 0])
            raise ValueError(f"{name} row {bad} has a non-finite value: {boxes[bad].tolist()}")
        if bool((core[:, 3:6] < 0).any()):
            bad = int((core[:, 3:6] < 0).any(1).nonzero()[0, 0])
            raise ValueError(f"{name} row {bad} has a negative size (l, w, h): "
                             f"{core[bad, 3:6].tolist()}")
    return boxes


def validate_points(points, name: str = "points") -> torch.Tensor:
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(points).__name__}")
    if not points.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {points.dtype}")
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"{name} must have shape (N, >=3), got {tuple(points.shape)}")
    return points


def same_device(*named) -> None:
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}")


def box_corners_bev(boxes: torch.Tensor) -> torch.Tensor:
    """BEV corners (N, 4, 2) in float64, counter-clockwise from the front-left corner."""
    b = boxes.to(torch.float64)
    hl, hw = b[:, 3] / 2, b[:, 4] / 2
    lx = torch.stack([hl, -hl, -hl, hl], 1)
    ly = torch.stack([hw, hw, -hw, -hw], 1)
    c, s = torch.cos(b[:, 6:7]), torch.sin(b[:, 6:7])
    return torch.stack([b[:, 0:1] + lx * c - ly * s, b[:, 1:2] + lx * s + ly * c], -1)


def _inside(points: torch.Tensor, corners: torch.Tensor, tol: float) -> torch.Tensor:
    """(P, K) points inside (edges included, within tol) the convex CCW quads (P, 4, 2)."""
    p = corners
    q = torch.roll(corners, -1, dims=1)
    edge = q - p                                                    # (P, 4, 2)
    rel = points[:, :, None, :] - p[:, None, :, :]                  # (P, K, 4, 2)
    cross = edge[:, None, :, 0] * rel[..., 1] - edge[:, None, :, 1] * rel[..., 0]
    scale = edge.norm(dim=-1)[:, None, :].clamp(min=1.0)
    return (cross >= -tol * scale).all(-1)


def _intersection_area(ca: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """Intersection area of pairs of CCW quads ca, cb (P, 4, 2), float64."""
    tol = 1e-9
    cand = [ca, cb]
    valid = [_inside(ca, cb, tol), _inside(cb, ca, tol)]
    # edge-edge crossings: a_i + t (a_{i+1} - a_i) = b_j + u (b_{j+1} - b_j), t, u in [0, 1]
    pa, da = ca, torch.roll(ca, -1, 1) - ca
    pb, db = cb, torch.roll(cb, -1, 1) - cb
    pa, da = pa[:, :, None, :], da[:, :, None, :]                  # (P, 4, 1, 2)
    pb, db = pb[:, None, :, :], db[:, None, :, :]                  # (P, 1, 4, 2)
    denom = da[..., 0] * db[..., 1] - da[..., 1] * db[..., 0]      # (P, 4, 4)
    w = pb - pa
    t = (w[..., 0] * db[..., 1] - w[..., 1] * db[..., 0])
    u = (w[..., 0] * da[..., 1] - w[..., 1] * da[..., 0])
    nonparallel = denom.abs() > 1e-12
    safe = torch.where(nonparallel, denom, torch.ones_like(denom))
    t, u = t / safe, u / safe
    hit = nonparallel & (t >= -tol) & (t <= 1 + tol) & (u >= -tol) & (u <= 1 + tol)
    crossing = pa + t[..., None] * da                               # (P, 4, 4, 2)
    cand.append(crossing.reshape(-1, 16, 2))
    valid.append(hit.reshape(-1, 16))
    pts = torch.cat(cand, 1)                                        # (P, 24, 2)
    ok = torch.cat(valid, 1)                                        # (P, 24)
    count = ok.sum(1)
    okf = ok.to(pts.dtype)
    centre = (pts * okf[..., None]).sum(1) / count.clamp(min=1)[:, None].to(pts.dtype)
    angle = torch.atan2(pts[..., 1] - centre[:, None, 1], pts[..., 0] - centre[:, None, 0])
    angle = torch.where(ok, angle, torch.full_like(angle, float("inf")))
    order = angle.argsort(1)
    pts = torch.gather(pts, 1, order[..., None].expand(-1, -1, 2))
    ok = torch.gather(ok, 1, order)
    # invalid candidates (sorted last) become copies of the first vertex: zero-area edges
    pts = torch.where(ok[..., None], pts, pts[:, :1, :])
    nxt = torch.roll(pts, -1, 1)
    twice = (pts[..., 0] * nxt[..., 1] - pts[..., 1] * nxt[..., 0]).sum(1)
    area = 0.5 * twice.abs()
    return torch.where(count >= 3, area, torch.zeros_like(area))


def box_iou_reference(boxes_a, boxes_b, mode: str = "bev") -> torch.Tensor:
    """IoU matrix (N, M) of two box sets, BEV (``mode="bev"``) or 3D (``"3d"``), in the
    dtype of ``boxes_a`` (computed in float64)."""
    validate_boxes(boxes_a, "boxes_a")
    validate_boxes(boxes_b, "boxes_b")
    if mode not in IOU_MODES:
        raise ValueError(f"mode must be one of {IOU_MODES}, got {mode!r}")
    n, m = boxes_a.shape[0], boxes_b.shape[0]
    a = boxes_a.to(torch.float64)
    b = boxes_b.to(device=boxes_a.device, dtype=torch.float64)
    out = torch.zeros(n * m, dtype=torch.float64, device=boxes_a.device)
    if n and m:
        corners_a, corners_b = box_corners_bev(a), box_corners_bev(b)
        for start in range(0, n * m, _PAIR_CHUNK):
            idx = torch.arange(start, min(start + _PAIR_CHUNK, n * m), device=a.device)
            i, j = idx // m, idx % m
            inter = _intersection_area(corners_a[i], corners_b[j])
            size_a, size_b = a[i, 3] * a[i, 4], b[j, 3] * b[j, 4]
            if mode == "3d":
                top = torch.minimum(a[i, 2] + a[i, 5] / 2, b[j, 2] + b[j, 5] / 2)
                bottom = torch.maximum(a[i, 2] - a[i, 5] / 2, b[j, 2] - b[j, 5] / 2)
                inter = inter * (top - bottom).clamp(min=0)
                size_a, size_b = size_a * a[i, 5], size_b * b[j, 5]
            union = size_a + size_b - inter
            iou = torch.where(union > 0, inter / torch.where(union > 0, union, 1.0),
                              torch.zeros_like(union))
            out[start:start + len(idx)] = iou.clamp(0, 1)
    return out.reshape(n, m).to(boxes_a.dtype)


def nms_bev_reference(boxes, scores, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy rotated BEV NMS, by decreasing score."""
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou_reference(boxes[order].to(torch.float64), boxes[order].to(torch.float64))
    keep = []
    removed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= iou[i].cpu() > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64, device=order.device)]


def points_in_boxes_reference(points, boxes) -> torch.Tensor:
    """(N, M) bool: point n lies in box m (faces included), in float64."""
    p = points[:, :3].to(torch.float64)
    b = boxes.to(device=points.device, dtype=torch.float64)
    rel = p[:, None, :] - b[None, :, :3]
    c, s = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    local_x = rel[..., 0] * c + rel[..., 1] * s
    local_y = -rel[..., 0] * s + rel[..., 1] * c
    half = b[:, 3:6] / 2
    return ((local_x.abs() <= half[:, 0]) & (local_y.abs() <= half[:, 1])
            & (rel[..., 2].abs() <= half[:, 2]))
