"""Temporal voting at inference: the predictions of neighbouring scans of the same sequence
are brought into the current scan through the ego poses and vote with it.

SuperFlow++ (Xu, Kong et al., arXiv 2503.19912, component (4)) introduces "a temporal
voting strategy that propagates semantic information across LiDAR scans to improve
prediction consistency". Its method section and code were not available to us (the
released SuperFlow code has no voting; only the abstract could be read), so the rule below
is lidarcl's, written to that description, not a reproduction of the paper's:

For scan ``t`` with class probabilities ``p_t (N_t, K)`` and LiDAR pose ``L_t = ego2global @
lidar2ego``, and each neighbour ``s`` in ``t-w .. t+w`` (``window`` scans on each side,
the same scene, by their order in it):

1. the neighbour's points go into scan ``t``'s LiDAR frame, ``x' = inv(L_t) @ L_s @ x``;
2. every point ``i`` of scan ``t`` takes the probabilities of its nearest transported point
   ``j`` of ``s`` when ``|x_i - x'_j| <= radius`` (else no vote from ``s``);
3. ``q_i = p_t[i] + weight * sum_s p_s[j(i, s)]`` and the voted class is ``argmax q_i``.

Soft votes (probabilities, not hard labels) keep the current scan's confidence in the sum;
the radius keeps a moving object's points from voting where the object no longer is. The
neighbours must have been predicted by the same model (their own, unvoted predictions).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["VOTING_DEFAULTS", "transport", "vote"]

VOTING_DEFAULTS = dict(window=1, radius=0.2, weight=1.0)


def transport(points: np.ndarray, pose_from: np.ndarray, pose_to: np.ndarray) -> np.ndarray:
    """``(M, 3)`` points of a scan with LiDAR pose ``pose_from`` expressed in the LiDAR frame
    of the scan with pose ``pose_to`` (4x4 LiDAR-to-global matrices)."""
    transform = np.linalg.inv(pose_to) @ pose_from
    return points[:, :3] @ transform[:3, :3].T + transform[:3, 3]


def vote(points: np.ndarray, scores: np.ndarray, pose: np.ndarray,
         neighbours: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
         radius: float = VOTING_DEFAULTS["radius"],
         weight: float = VOTING_DEFAULTS["weight"]) -> tuple[np.ndarray, np.ndarray]:
    """``(voted scores (N, K), voted labels (N,))`` of one scan (``points (N, >=3)``,
    ``scores (N, K)``, ``pose`` 4x4) from ``neighbours``: ``(points, scores, pose)`` of each
    neighbouring scan (module doc). Nearest neighbours by a KD-tree (scipy's cKDTree)."""
    from scipy.spatial import cKDTree

    total = np.asarray(scores, dtype=np.float64).copy()
    query = np.asarray(points, dtype=np.float64)[:, :3]
    for other_points, other_scores, other_pose in neighbours:
        if len(other_points) == 0:
            continue
        moved = transport(np.asarray(other_points, dtype=np.float64), other_pose, pose)
        distance, nearest = cKDTree(moved).query(query, k=1, distance_upper_bound=radius)
        found = np.isfinite(distance)
        total[found] += weight * np.asarray(other_scores, dtype=np.float64)[nearest[found]]
    return total, total.argmax(1)
