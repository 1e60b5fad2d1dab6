"""Numba raycaster for the spinning lidar (and the ground model shared with the cameras).

Rays are intersected with the two-level ground (road at z = 0, curb-level surfaces at
``CURB_HEIGHT`` with exact curb faces) and with every primitive (oriented boxes, vertical
cylinders, vertical-axis ellipsoids). An azimuth-binned index around the sensor keeps the
candidate list per ray short; candidates are sorted by their nearest possible distance so
the search stops as soon as no remaining primitive can beat the current hit.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from .constants import CURB_HEIGHT, GROUND_RAISED
from .maps import ground_at
from .objects import (K_BOX, K_CYL, P_A, P_B, P_C, P_COS, P_CX, P_CY, P_CZ, P_KIND, P_RAD,
                      P_SIN)

INF = np.inf


@nb.njit(cache=True, inline="always")
def _raised(m):
    return GROUND_RAISED[m] > 0


@nb.njit(cache=True)
def ground_hit(ox, oy, oz, dx, dy, dz, tmax, roads_x, roads_y, blocks, sidewalk, ext):
    """Distance along a unit ray to the ground (inf if none before tmax) and its material."""
    if dz >= -1e-9:
        return INF, -1
    t1 = (CURB_HEIGHT - oz) / dz
    if t1 < 0.0:
        t1 = 0.0
    if t1 > tmax:
        return INF, -1
    m1, _ = ground_at(ox + t1 * dx, oy + t1 * dy, roads_x, roads_y, blocks, sidewalk, ext)
    if _raised(m1) and oz >= CURB_HEIGHT:
        return t1, m1
    t0 = -oz / dz
    if t0 > tmax:
        return INF, -1
    m0, _ = ground_at(ox + t0 * dx, oy + t0 * dy, roads_x, roads_y, blocks, sidewalk, ext)
    if not _raised(m0):
        return t0, m0
    # the ray went below the curb level over the road and meets a curb face in (t1, t0)
    lo, hi = t1, t0
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        mm, _ = ground_at(ox + mid * dx, oy + mid * dy, roads_x, roads_y, blocks, sidewalk, ext)
        if _raised(mm):
            hi = mid
        else:
            lo = mid
    return hi, m0


@nb.njit(cache=True)
def hit_prim(p, ox, oy, oz, dx, dy, dz):
    """Entry distance of a ray into primitive row ``p`` (inf if missed or behind)."""
    kind = int(p[P_KIND])
    rx = ox - p[P_CX]
    ry = oy - p[P_CY]
    rz = oz - p[P_CZ]
    if kind == K_BOX:
        c = p[P_COS]
        s = p[P_SIN]
        lo = (c * rx + s * ry, -s * rx + c * ry, rz)
        ld = (c * dx + s * dy, -s * dx + c * dy, dz)
        half = (p[P_A], p[P_B], p[P_C])
        tn = -INF
        tf = INF
        for k in range(3):
            if abs(ld[k]) < 1e-12:
                if lo[k] < -half[k] or lo[k] > half[k]:
                    return INF
            else:
                inv = 1.0 / ld[k]
                ta = (-half[k] - lo[k]) * inv
                tb = (half[k] - lo[k]) * inv
                if ta > tb:
                    ta, tb = tb, ta
                if ta > tn:
                    tn = ta
                if tb < tf:
                    tf = tb
                if tn > tf:
                    return INF
        if tf < 1e-6:
            return INF
        return tn if tn > 1e-6 else INF
    if kind == K_CYL:
        r = p[P_A]
        hz = p[P_C]
        best = INF
        a = dx * dx + dy * dy
        if a > 1e-12:
            b = rx * dx + ry * dy
            cc = rx * rx + ry * ry - r * r
            disc = b * b - a * cc
            if disc >= 0.0:
                t = (-b - math.sqrt(disc)) / a
                if t > 1e-6 and abs(rz + t * dz) <= hz:
                    best = t
        if abs(dz) > 1e-12:
            for zc in (hz, -hz):
                t = (zc - rz) / dz
                if 1e-6 < t < best:
                    qx = rx + t * dx
                    qy = ry + t * dy
                    if qx * qx + qy * qy <= r * r:
                        best = t
        return best
    # ellipsoid with vertical axis: scale z to a sphere of radius a
    r = p[P_A]
    sc = r / p[P_C]
    zz = rz * sc
    dzz = dz * sc
    a = dx * dx + dy * dy + dzz * dzz
    b = rx * dx + ry * dy + zz * dzz
    cc = rx * rx + ry * ry + zz * zz - r * r
    disc = b * b - a * cc
    if disc < 0.0:
        return INF
    t = (-b - math.sqrt(disc)) / a
    return t if t > 1e-6 else INF


@nb.njit(cache=True)
def build_azimuth_index(prims, ox, oy, max_range, n_bins):
    """CSR lists of primitive indices per azimuth bin, each sorted by nearest distance."""
    n = prims.shape[0]
    lo_bin = np.empty(n, np.int64)
    hi_bin = np.empty(n, np.int64)
    dmin = np.empty(n)
    counts = np.zeros(n_bins + 1, np.int64)
    two_pi = 2.0 * math.pi
    for i in range(n):
        cx = prims[i, P_CX] - ox
        cy = prims[i, P_CY] - oy
        d = math.sqrt(cx * cx + cy * cy)
        r = prims[i, P_RAD] + 0.01
        dmin[i] = d - r if d > r else 0.0
        if dmin[i] > max_range:
            lo_bin[i] = 0
            hi_bin[i] = -1
            continue
        if d <= r:
            lo_bin[i] = 0
            hi_bin[i] = n_bins - 1
        else:
            az = math.atan2(cy, cx)
            h = math.asin(r / d)
            lo_bin[i] = int(math.floor((az - h + math.pi) / two_pi * n_bins))
            hi_bin[i] = int(math.floor((az + h + math.pi) / two_pi * n_bins))
        for b in range(lo_bin[i], hi_bin[i] + 1):
            counts[(b % n_bins) + 1] += 1
    start = np.cumsum(counts)
    fill = start[:-1].copy()
    idx = np.empty(start[-1], np.int64)
    for i in range(n):
        for b in range(lo_bin[i], hi_bin[i] + 1):
            bb = b % n_bins
            idx[fill[bb]] = i
            fill[bb] += 1
    for b in range(n_bins):
        seg = idx[start[b]:start[b + 1]]
        order = np.argsort(dmin[seg])
        idx[start[b]:start[b + 1]] = seg[order]
    return start, idx, dmin


@nb.njit(cache=True, parallel=True)
def cast_rays(origin, dirs, max_range, prims, start, idx, dmin, n_bins,
              roads_x, roads_y, blocks, sidewalk, ext, out_t, out_prim, out_mat):
    """Nearest hit of every unit ray ``dirs`` from ``origin``: distance (inf = none),
    primitive index (-1 = ground / none) and ground material (-1 = object / none)."""
    ox, oy, oz = origin[0], origin[1], origin[2]
    two_pi = 2.0 * math.pi
    for r in nb.prange(dirs.shape[0]):
        dx, dy, dz = dirs[r, 0], dirs[r, 1], dirs[r, 2]
        best, mat = ground_hit(ox, oy, oz, dx, dy, dz, max_range, roads_x, roads_y, blocks,
                               sidewalk, ext)
        if best > max_range:
            best = INF
        bp = -1
        b = int(math.floor((math.atan2(dy, dx) + math.pi) / two_pi * n_bins)) % n_bins
        horiz = math.sqrt(dx * dx + dy * dy)
        for k in range(start[b], start[b + 1]):
            i = idx[k]
            if dmin[i] >= best * horiz or dmin[i] > max_range:
                break
            t = hit_prim(prims[i], ox, oy, oz, dx, dy, dz)
            if t < best and t <= max_range:
                best = t
                bp = i
        out_t[r] = best
        out_prim[r] = bp
        out_mat[r] = mat if bp < 0 else -1


@nb.njit(cache=True, parallel=True)
def count_crossings(origin, dirs, max_range, prims, obj, n_obj, start, idx, n_bins, n_chunks):
    """Per object: number of rays that would hit it without occlusion."""
    counts = np.zeros((n_chunks, n_obj), np.int64)
    ox, oy, oz = origin[0], origin[1], origin[2]
    two_pi = 2.0 * math.pi
    n = dirs.shape[0]
    for c in nb.prange(n_chunks):
        seen = np.full(n_obj, -1, np.int64)
        for r in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            dx, dy, dz = dirs[r, 0], dirs[r, 1], dirs[r, 2]
            b = int(math.floor((math.atan2(dy, dx) + math.pi) / two_pi * n_bins)) % n_bins
            for k in range(start[b], start[b + 1]):
                i = idx[k]
                o = obj[i]
                if o < 0 or seen[o] == r:
                    continue
                t = hit_prim(prims[i], ox, oy, oz, dx, dy, dz)
                if t <= max_range:
                    seen[o] = r
                    counts[c, o] += 1
    return counts.sum(axis=0)


def beam_directions(n_azimuth=None, elevations_deg=None, az_offset=0.0):
    """Unit ray directions in the lidar frame ordered by firing (column) then ring, plus the
    ring index. nuScenes LIDAR_TOP: x right, y forward; the head spins clockwise."""
    from .constants import LIDAR_AZIMUTH_STEPS, LIDAR_ELEVATIONS_DEG
    n_az = n_azimuth or LIDAR_AZIMUTH_STEPS
    el = np.radians(LIDAR_ELEVATIONS_DEG if elevations_deg is None else elevations_deg)
    # clockwise seen from above, starting behind-left like nuScenes files
    az = np.radians(-172.0) + az_offset - 2 * np.pi * np.arange(n_az) / n_az
    az_g, el_g = np.meshgrid(az, el, indexing="ij")
    dirs = np.stack([np.cos(el_g) * np.cos(az_g), np.cos(el_g) * np.sin(az_g), np.sin(el_g)], -1)
    ring = np.broadcast_to(np.arange(len(el)), az_g.shape)
    return dirs.reshape(-1, 3), ring.reshape(-1).astype(np.float32)
