"""Rigid transforms as 4x4 homogeneous matrices (float64 for poses, applied in float32).

Quaternions follow nuScenes' tables: ``[w, x, y, z]``.
"""
from __future__ import annotations

import numpy as np


def quaternion_to_matrix(q) -> np.ndarray:
    """Rotation matrix (3, 3) of a unit quaternion ``[w, x, y, z]`` (normalised here)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def transform_from_pose(translation, rotation) -> np.ndarray:
    """4x4 matrix mapping the pose's local frame into its parent frame.

    ``rotation`` is a quaternion ``[w, x, y, z]`` or a 3x3 matrix.
    """
    mat = np.eye(4)
    rotation = np.asarray(rotation, dtype=np.float64)
    mat[:3, :3] = quaternion_to_matrix(rotation) if rotation.shape == (4,) else rotation
    mat[:3, 3] = np.asarray(translation, dtype=np.float64)
    return mat


def inverse_rigid(mat) -> np.ndarray:
    """Inverse of a rigid 4x4 transform, without a general matrix inverse."""
    mat = np.asarray(mat, dtype=np.float64)
    inv = np.eye(4)
    inv[:3, :3] = mat[:3, :3].T
    inv[:3, 3] = -mat[:3, :3].T @ mat[:3, 3]
    return inv


def transform_points(points: np.ndarray, mat) -> np.ndarray:
    """Apply a 4x4 transform to the first three columns of ``points`` (other columns kept)."""
    mat = np.asarray(mat, dtype=np.float64)
    out = np.array(points, copy=True)
    xyz = points[:, :3].astype(np.float64) @ mat[:3, :3].T + mat[:3, 3]
    out[:, :3] = xyz.astype(out.dtype, copy=False)
    return out
