"""Sensor simulation on a ``Scene``: lidar sweeps and camera images at given times."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lidarcl.structures.transforms import transform_from_pose

from . import camera as cam
from . import lidar as L
from . import objects as O
from .constants import (CAMERA_RIG, EGO_BOXES, GROUND_INTENSITY, GROUND_LABEL, LABEL,
                        LIDAR_MAX_RANGE, LIDAR_ROTATION, LIDAR_TRANSLATION, NUSCENES_IMAGE_SIZE)

N_BINS = 720
RANGE_NOISE = 0.015   # metres (1 sigma), truncated at 2 sigma
DROPOUT = 0.01
BAND = 0.01           # points within this distance of an annotation box face are removed


def yaw_quaternion(yaw):
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def ego_to_world(scene, t) -> np.ndarray:
    x, y, yaw = scene.ego_pose(t)
    return transform_from_pose([x, y, 0.0], yaw_quaternion(yaw))


LIDAR_TO_EGO = transform_from_pose(LIDAR_TRANSLATION, LIDAR_ROTATION)


def camera_to_ego(channel) -> np.ndarray:
    trans, rot, _, _ = CAMERA_RIG[channel]
    return transform_from_pose(trans, rot)


def camera_intrinsics(channel, image_size):
    fx, fy, cx, cy = CAMERA_RIG[channel][2]
    sx = image_size[0] / NUSCENES_IMAGE_SIZE[0]
    sy = image_size[1] / NUSCENES_IMAGE_SIZE[1]
    return fx * sx, fy * sy, cx * sx, cy * sy


def ego_prims(ego2world) -> np.ndarray:
    rows = []
    yaw = np.arctan2(ego2world[1, 0], ego2world[0, 0])
    for cx, cy, cz, l, w, h in EGO_BOXES:
        c = ego2world[:3, :3] @ np.array([cx, cy, cz]) + ego2world[:3, 3]
        r = O.prim(O.K_BOX, c[0], c[1], c[2], l / 2, w / 2, h / 2, LABEL["vehicle.ego"], 25,
                   O.T_PAINT, (0.9, 0.9, 0.9))
        r[O.P_COS], r[O.P_SIN] = np.cos(yaw), np.sin(yaw)
        rows.append(r)
    return np.stack(rows)


@dataclass
class Sweep:
    points: np.ndarray       # (N, 5) float32 x, y, z, intensity, ring in the lidar frame
    labels: np.ndarray       # (N,) uint8 lidarseg category index
    obj: np.ndarray          # (N,) int actor index (-1 for none)
    lidar2world: np.ndarray  # 4x4
    visible_rays: np.ndarray | None = None    # per actor: rays whose first hit is the actor
    expected_rays: np.ndarray | None = None   # per actor: rays that cross the actor


_DIRS_CACHE: dict = {}


def simulate_sweep(scene, t, rng: np.random.Generator, keyframe=False, boxes=None) -> Sweep:
    """One lidar revolution at time t (a snapshot of the world, motion-free).

    With ``boxes`` (M, 7 world boxes of the actors, index = actor index), points that fall
    within ``BAND`` of a box face, or inside a box they do not belong to, are removed, so
    that the points-in-box counts are unambiguous (see docs/synthetic_format.md).
    """
    if "dirs" not in _DIRS_CACHE:
        _DIRS_CACHE["dirs"] = L.beam_directions()
    dirs_l, ring = _DIRS_CACHE["dirs"]
    ego2world = ego_to_world(scene, t)
    lidar2world = ego2world @ LIDAR_TO_EGO
    rot = lidar2world[:3, :3]
    origin = lidar2world[:3, 3].copy()
    dirs = np.ascontiguousarray(dirs_l @ rot.T)
    prims = np.concatenate([scene.snapshot(t, origin, LIDAR_MAX_RANGE + 2.0), ego_prims(ego2world)])
    start, idx, dmin = L.build_azimuth_index(prims, origin[0], origin[1], LIDAR_MAX_RANGE, N_BINS)
    n = len(dirs)
    out_t = np.empty(n)
    out_p = np.empty(n, np.int64)
    out_m = np.empty(n, np.int64)
    lay = scene.city.layout
    L.cast_rays(origin, dirs, LIDAR_MAX_RANGE, prims, start, idx, dmin, N_BINS, lay.roads_x,
                lay.roads_y, lay.blocks, lay.sidewalk, lay.half_extent, out_t, out_p, out_m)
    hit = np.isfinite(out_t)
    # random dropout, more likely at long range
    p_drop = DROPOUT + 0.08 * (np.where(hit, out_t, 0) / LIDAR_MAX_RANGE) ** 2
    hit &= rng.random(n) >= p_drop
    noise = np.clip(rng.normal(0.0, RANGE_NOISE, n), -2 * RANGE_NOISE, 2 * RANGE_NOISE)
    rng_t = np.where(hit, out_t + noise, 0.0)
    obj = np.where(out_p >= 0, prims[np.maximum(out_p, 0), O.P_OBJ], -1).astype(np.int64)
    labels = np.where(out_p >= 0, prims[np.maximum(out_p, 0), O.P_LABEL],
                      GROUND_LABEL[np.maximum(out_m, 0)]).astype(np.uint8)
    base_int = np.where(out_p >= 0, prims[np.maximum(out_p, 0), O.P_INT],
                        GROUND_INTENSITY[np.maximum(out_m, 0)])
    # incidence: ground returns weaken at grazing angles
    inc = np.where(out_p >= 0, 1.0, np.clip(np.abs(dirs[:, 2]) * 4.0, 0.35, 1.0))
    intensity = np.clip(np.round(base_int * inc * rng.lognormal(0.0, 0.25, n)), 0, 255)
    # a few spurious returns (dust, multipath): label noise
    spur = rng.random(n) < 0.0006
    rng_t = np.where(spur, rng.uniform(1.0, 40.0, n), rng_t)
    spur &= rng_t < np.where(np.isfinite(out_t), out_t, np.inf)
    labels[spur] = LABEL["noise"]
    obj[spur] = -1
    intensity[spur] = rng.integers(0, 10, n)[spur]
    hit |= spur
    pts_world = origin + dirs[hit] * rng_t[hit, None]
    labels, obj, intensity, ring_h = labels[hit], obj[hit], intensity[hit], ring[hit]
    if boxes is not None and len(boxes):
        keep = _box_band_filter(pts_world, obj, boxes)
        pts_world, labels, obj, intensity, ring_h = (pts_world[keep], labels[keep], obj[keep],
                                                     intensity[keep], ring_h[keep])
    inv = np.linalg.inv(lidar2world)
    pts_l = pts_world @ inv[:3, :3].T + inv[:3, 3]
    points = np.column_stack([pts_l, intensity, ring_h]).astype(np.float32)
    sweep = Sweep(points, labels, obj, lidar2world)
    if keyframe:
        n_act = len(scene.actors)
        first = np.bincount(obj[obj >= 0], minlength=n_act)
        aprims = prims[prims[:, O.P_OBJ] >= 0]
        if len(aprims):
            s2, i2, _ = L.build_azimuth_index(aprims, origin[0], origin[1], LIDAR_MAX_RANGE, N_BINS)
            exp = L.count_crossings(origin, dirs, LIDAR_MAX_RANGE, aprims,
                                    aprims[:, O.P_OBJ].astype(np.int64), n_act, s2, i2, N_BINS, 8)
        else:
            exp = np.zeros(n_act, np.int64)
        sweep.visible_rays, sweep.expected_rays = first, exp
    return sweep


def _box_band_filter(pts, obj, boxes):
    """Keep points that are >= BAND from every box face and inside only their own box."""
    keep = np.ones(len(pts), bool)
    for m, b in enumerate(boxes):
        rad = 0.5 * np.hypot(b[3], b[4]) + BAND
        near = np.flatnonzero((np.abs(pts[:, 0] - b[0]) < rad) & (np.abs(pts[:, 1] - b[1]) < rad))
        if not len(near):
            continue
        rel = pts[near] - b[:3]
        c, s = np.cos(b[6]), np.sin(b[6])
        lx = np.abs(rel[:, 0] * c + rel[:, 1] * s)
        ly = np.abs(-rel[:, 0] * s + rel[:, 1] * c)
        lz = np.abs(rel[:, 2])
        hx, hy, hz = b[3] / 2, b[4] / 2, b[5] / 2
        in_outer = (lx <= hx + BAND) & (ly <= hy + BAND) & (lz <= hz + BAND)
        in_inner = (lx < hx - BAND) & (ly < hy - BAND) & (lz < hz - BAND)
        bad = in_outer & ~(in_inner & (obj[near] == m))
        keep[near[bad]] = False
    return keep


def render_camera(scene, channel, t, image_size, noise_seed=0):
    """(rgb, depth, cam2world) of one camera at time t (its own ego pose)."""
    ego2world = ego_to_world(scene, t)
    cam2world = ego2world @ camera_to_ego(channel)
    pos = cam2world[:3, 3]
    prims = scene.snapshot(t, pos, 320.0)
    rgb, depth = cam.render(prims, cam2world, camera_intrinsics(channel, image_size), image_size,
                            scene.city.layout, noise_seed=noise_seed)
    return rgb, depth, cam2world
