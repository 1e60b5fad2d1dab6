"""3D boxes in the LiDAR frame: ``[x, y, z, l, w, h, yaw]`` (+ optional ``[vx, vy]``).

Convention (docs/conventions.md): x forward, y left, z up; ``(x, y, z)`` is the gravity centre,
``l`` runs along the heading, ``w`` across it, ``h`` up; ``yaw`` is counter-clockwise
from +x. Velocity, when present, is in the LiDAR frame in m/s.
"""
from __future__ import annotations

import numpy as np

BOX_DIM = 7

# Unit corners (x along l, y along w, z along h), ordered like nuscenes-devkit's
# Box.corners(): four front corners (+x) first, top before bottom, then the rear four.
_UNIT_CORNERS = 0.5 * np.array([
    [1, 1, 1], [1, -1, 1], [1, -1, -1], [1, 1, -1],
    [-1, 1, 1], [-1, -1, 1], [-1, -1, -1], [-1, 1, -1],
], dtype=np.float64)


def rotation_z(yaw) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about +z by ``yaw`` (radians, counter-clockwise)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    zeros, ones = np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack([
        np.stack([c, -s, zeros], -1),
        np.stack([s, c, zeros], -1),
        np.stack([zeros, zeros, ones], -1),
    ], -2)


def yaw_from_matrix(rot) -> float:
    """Heading of a rotation matrix: the angle of its rotated +x axis in the xy-plane."""
    rot = np.asarray(rot, dtype=np.float64)
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def _as_boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] < BOX_DIM:
        raise ValueError(f"boxes must have shape (M, >={BOX_DIM}), got {boxes.shape}")
    return boxes


def box_corners(boxes) -> np.ndarray:
    """Corners (M, 8, 3) of boxes (M, >=7), in the order documented at ``_UNIT_CORNERS``."""
    boxes = _as_boxes(boxes)
    local = _UNIT_CORNERS[None] * boxes[:, None, 3:6]
    return local @ rotation_z(boxes[:, 6]).transpose(0, 2, 1) + boxes[:, None, :3]


def points_in_boxes(points, boxes) -> np.ndarray:
    """Boolean mask (N, M): point n lies inside box m (faces included).

    Points are expressed in each box's own frame, which is the test that
    nuscenes-devkit's ``points_in_box`` performs with its corner vectors.
    """
    boxes = _as_boxes(boxes)
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    if len(boxes) == 0:
        return np.zeros((len(xyz), 0), dtype=bool)
    rel = xyz[:, None, :] - boxes[None, :, :3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local_x = rel[..., 0] * c + rel[..., 1] * s
    local_y = -rel[..., 0] * s + rel[..., 1] * c
    half = boxes[:, 3:6] / 2
    return ((np.abs(local_x) <= half[:, 0]) & (np.abs(local_y) <= half[:, 1])
            & (np.abs(rel[..., 2]) <= half[:, 2]))
