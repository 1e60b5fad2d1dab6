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


def matrix_to_quaternion(rot) -> np.ndarray:
    """Unit quaternion ``[w, x, y, z]`` (w >= 0) of a rotation matrix (3, 3)."""
    m = np.asarray(rot, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


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
