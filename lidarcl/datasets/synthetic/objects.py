"""Primitive-based object models (vehicles, people, street furniture, scenery).

Every object is a set of *primitives*, rows of a float64 array with the columns ``P_*``:
oriented boxes, vertical cylinders and vertical-axis ellipsoids. The lidar raycasts them
exactly; the camera renderer tessellates the same primitives into triangles. Objects are
built in a local frame (x forward, y left, z up from the ground contact), centred in x/y.
"""
from __future__ import annotations

import numpy as np

from .constants import LABEL, T_BUILDING, T_FOLIAGE, T_GLASS, T_PAINT, T_PLAIN

K_BOX, K_CYL, K_ELL = 0, 1, 2
(P_KIND, P_CX, P_CY, P_CZ, P_A, P_B, P_C, P_COS, P_SIN, P_RAD, P_LABEL, P_OBJ, P_INT, P_TEX,
 P_R, P_G, P_B_) = range(17)
P_COLS = 17


def prim(kind, cx, cy, cz, a, b, c, label, intensity, tex, rgb, obj=-1):
    """One primitive row. Box: half sizes ``a, b, c``; cylinder: radius ``a``, half height
    ``c``; ellipsoid: horizontal radius ``a``, vertical radius ``c``."""
    row = np.zeros(P_COLS)
    row[[P_KIND, P_CX, P_CY, P_CZ, P_A, P_B, P_C]] = kind, cx, cy, cz, a, b, c
    row[P_COS], row[P_SIN] = 1.0, 0.0
    row[P_RAD] = np.hypot(a, b) if kind == K_BOX else a
    row[[P_LABEL, P_OBJ, P_INT, P_TEX]] = label, obj, intensity, tex
    row[P_R:P_R + 3] = np.asarray(rgb, dtype=np.float64)
    return row


def box(x0, x1, y0, y1, z0, z1, label, intensity, tex, rgb):
    return prim(K_BOX, (x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2, (x1 - x0) / 2, (y1 - y0) / 2,
                (z1 - z0) / 2, label, intensity, tex, rgb)


def cyl(x, y, r, z0, z1, label, intensity, tex, rgb):
    return prim(K_CYL, x, y, (z0 + z1) / 2, r, r, (z1 - z0) / 2, label, intensity, tex, rgb)


def ell(x, y, z, r, rz, label, intensity, tex, rgb):
    return prim(K_ELL, x, y, z, r, r, rz, label, intensity, tex, rgb)


def transform_prims(parts: np.ndarray, x, y, z, yaw) -> np.ndarray:
    """Place local-frame primitives at world pose ``(x, y, z, yaw)`` (rotation about z)."""
    out = parts.copy()
    c, s = np.cos(yaw), np.sin(yaw)
    lx, ly = parts[:, P_CX], parts[:, P_CY]
    out[:, P_CX] = x + c * lx - s * ly
    out[:, P_CY] = y + s * lx + c * ly
    out[:, P_CZ] = z + parts[:, P_CZ]
    pc, ps = parts[:, P_COS], parts[:, P_SIN]
    out[:, P_COS] = c * pc - s * ps
    out[:, P_SIN] = s * pc + c * ps
    return out


def local_extent(parts: np.ndarray) -> np.ndarray:
    """Axis-aligned local bounds ``[x0, x1, y0, y1, z0, z1]`` of unrotated local primitives."""
    ax = np.where(parts[:, P_KIND] == K_BOX, parts[:, P_A], parts[:, P_A])
    ay = np.where(parts[:, P_KIND] == K_BOX, parts[:, P_B], parts[:, P_A])
    return np.array([(parts[:, P_CX] - ax).min(), (parts[:, P_CX] + ax).max(),
                     (parts[:, P_CY] - ay).min(), (parts[:, P_CY] + ay).max(),
                     (parts[:, P_CZ] - parts[:, P_C]).min(), (parts[:, P_CZ] + parts[:, P_C]).max()])


# ------------------------------------------------------------------ palettes
CAR_COLORS = np.array([[0.85, 0.85, 0.87], [0.08, 0.08, 0.09], [0.55, 0.56, 0.58],
                       [0.70, 0.08, 0.07], [0.10, 0.20, 0.45], [0.30, 0.32, 0.34],
                       [0.90, 0.90, 0.86], [0.15, 0.35, 0.20], [0.75, 0.60, 0.20]])
CLOTHES = np.array([[0.10, 0.10, 0.12], [0.20, 0.25, 0.45], [0.60, 0.10, 0.10],
                    [0.85, 0.85, 0.80], [0.35, 0.30, 0.25], [0.20, 0.45, 0.30],
                    [0.55, 0.55, 0.58]])
SKIN = np.array([[0.92, 0.76, 0.62], [0.76, 0.57, 0.42], [0.45, 0.32, 0.22]])
FACADES = np.array([[0.78, 0.74, 0.66], [0.62, 0.60, 0.58], [0.55, 0.33, 0.25],
                    [0.85, 0.83, 0.78], [0.45, 0.47, 0.50], [0.70, 0.62, 0.48]])
GLASS_RGB = (0.12, 0.15, 0.19)
TYRE_RGB = (0.05, 0.05, 0.05)


def _pick(rng, palette):
    return palette[rng.integers(len(palette))] * rng.uniform(0.9, 1.1)


# ------------------------------------------------------------------ vehicles
def car(rng, label=LABEL["vehicle.car"], size=None):
    l, w, h = size if size is not None else (rng.uniform(3.9, 4.9), rng.uniform(1.70, 1.95),
                                             rng.uniform(1.42, 1.75))
    paint = _pick(rng, CAR_COLORS)
    if label == LABEL["vehicle.emergency.police"]:
        paint = np.array([0.92, 0.92, 0.92])
    inten = rng.uniform(18, 40)
    zt = 0.56 * h
    parts = [box(-l / 2, l / 2, -w / 2, w / 2, 0.22, zt, label, inten, T_PAINT, paint),
             box(-0.36 * l, 0.22 * l, -0.43 * w, 0.43 * w, zt, h - 0.06, label, 12, T_GLASS, GLASS_RGB),
             box(-0.34 * l, 0.20 * l, -0.41 * w, 0.41 * w, h - 0.06, h, label, inten, T_PAINT, paint)]
    for sx in (-1, 1):
        for sy in (-1, 1):
            cx = sx * (l / 2 - 0.85)
            cy = sy * (w / 2 - 0.13)
            parts.append(box(cx - 0.32, cx + 0.32, cy - 0.12, cy + 0.12, 0.0, 0.64, label, 4,
                             T_PLAIN, TYRE_RGB))
    if label == LABEL["vehicle.emergency.police"]:
        parts.append(box(-0.1, 0.1, -0.3, 0.3, h, h + 0.12, label, 90, T_PLAIN, (0.1, 0.2, 0.9)))
    return np.stack(parts)


def truck(rng):
    l, w, h = rng.uniform(6.0, 9.5), rng.uniform(2.3, 2.55), rng.uniform(2.8, 3.7)
    label = LABEL["vehicle.truck"]
    cab = _pick(rng, CAR_COLORS)
    cargo = np.array([0.88, 0.88, 0.86]) if rng.random() < 0.6 else _pick(rng, CAR_COLORS)
    cab_l = 2.1
    parts = [box(l / 2 - cab_l, l / 2, -w / 2, w / 2, 0.45, 0.62 * h, label, 30, T_PAINT, cab),
             box(l / 2 - cab_l + 0.1, l / 2 - 0.15, -w / 2 + 0.05, w / 2 - 0.05, 0.62 * h, 0.86 * h,
                 label, 12, T_GLASS, GLASS_RGB),
             box(-l / 2, l / 2 - cab_l - 0.25, -w / 2, w / 2, 0.85, h, label, 35, T_PAINT, cargo),
             box(-l / 2 + 0.2, l / 2 - 0.3, -w / 2 + 0.3, w / 2 - 0.3, 0.35, 0.85, label, 8, T_PLAIN,
                 (0.12, 0.12, 0.12))]
    for cx in (l / 2 - 1.3, -l / 2 + 1.6, -l / 2 + 2.7):
        for sy in (-1, 1):
            cy = sy * (w / 2 - 0.16)
            parts.append(box(cx - 0.48, cx + 0.48, cy - 0.15, cy + 0.15, 0.0, 0.96, label, 4,
                             T_PLAIN, TYRE_RGB))
    return np.stack(parts)


def bus(rng):
    l, w, h = rng.uniform(10.5, 12.5), rng.uniform(2.45, 2.6), rng.uniform(3.0, 3.4)
    label = LABEL["vehicle.bus.rigid"]
    paint = [np.array([0.85, 0.15, 0.12]), np.array([0.15, 0.35, 0.70]),
             np.array([0.90, 0.90, 0.88]), np.array([0.20, 0.55, 0.30])][rng.integers(4)]
    parts = [box(-l / 2, l / 2, -w / 2, w / 2, 0.30, 0.50 * h, label, 35, T_PAINT, paint),
             box(-l / 2 + 0.02, l / 2 - 0.02, -w / 2 + 0.02, w / 2 - 0.02, 0.50 * h, 0.88 * h,
                 label, 12, T_GLASS, GLASS_RGB),
             box(-l / 2, l / 2, -w / 2, w / 2, 0.88 * h, h, label, 35, T_PAINT, paint)]
    for cx in (l / 2 - 2.4, -l / 2 + 3.0):
        for sy in (-1, 1):
            cy = sy * (w / 2 - 0.16)
            parts.append(box(cx - 0.5, cx + 0.5, cy - 0.15, cy + 0.15, 0.0, 1.0, label, 4,
                             T_PLAIN, TYRE_RGB))
    return np.stack(parts)


def pedestrian(rng, label=LABEL["human.pedestrian.adult"]):
    if label == LABEL["human.pedestrian.child"]:
        h = rng.uniform(1.0, 1.35)
    else:
        h = rng.uniform(1.55, 1.92)
    top = _pick(rng, CLOTHES)
    if label in (LABEL["human.pedestrian.construction_worker"],
                 LABEL["human.pedestrian.police_officer"]):
        top = np.array([0.95, 0.75, 0.05]) if label == LABEL["human.pedestrian.construction_worker"] \
            else np.array([0.10, 0.15, 0.35])
    legs = _pick(rng, CLOTHES) * 0.8
    skin = _pick(rng, SKIN)
    s = h / 1.75
    leg_h = 0.47 * h
    torso_top = 0.83 * h
    parts = [box(-0.08 * s, 0.08 * s, 0.02 * s, 0.16 * s, 0.0, leg_h, label, 18, T_PLAIN, legs),
             box(-0.08 * s, 0.08 * s, -0.16 * s, -0.02 * s, 0.0, leg_h, label, 18, T_PLAIN, legs),
             box(-0.12 * s, 0.12 * s, -0.19 * s, 0.19 * s, leg_h, torso_top, label, 20, T_PLAIN, top),
             box(-0.05 * s, 0.05 * s, 0.19 * s, 0.27 * s, leg_h + 0.05 * h, torso_top - 0.02, label,
                 20, T_PLAIN, top),
             box(-0.05 * s, 0.05 * s, -0.27 * s, -0.19 * s, leg_h + 0.05 * h, torso_top - 0.02,
                 label, 20, T_PLAIN, top),
             ell(0.0, 0.0, h - 0.085 * h, 0.085 * h, 0.085 * h, label, 15, T_PLAIN, skin)]
    return np.stack(parts)


def cyclist(rng, motor=False):
    label = LABEL["vehicle.motorcycle"] if motor else LABEL["vehicle.bicycle"]
    frame = _pick(rng, CAR_COLORS)
    rider = _pick(rng, CLOTHES)
    skin = _pick(rng, SKIN)
    half = 1.0 if motor else 0.85
    r = 0.32 if motor else 0.34
    tw = 0.07 if motor else 0.03
    parts = [box(half - 2 * r, half, -tw, tw, 0.0, 2 * r, label, 6, T_PLAIN, TYRE_RGB),
             box(-half, -half + 2 * r, -tw, tw, 0.0, 2 * r, label, 6, T_PLAIN, TYRE_RGB)]
    if motor:
        parts.append(box(-0.7, 0.7, -0.2, 0.2, 0.3, 0.85, label, 30, T_PAINT, frame))
    else:
        parts.append(box(-0.45, 0.45, -0.03, 0.03, 0.45, 0.60, label, 25, T_PAINT, frame))
        parts.append(box(0.40, 0.46, -0.28, 0.28, 0.95, 1.0, label, 25, T_PLAIN, (0.1, 0.1, 0.1)))
    seat = 0.85 if motor else 0.95
    parts += [box(-0.25, 0.05, -0.17, 0.17, 0.30, seat, label, 18, T_PLAIN, rider * 0.7),
              box(-0.25, 0.10, -0.19, 0.19, seat, seat + 0.58, label, 20, T_PLAIN, rider),
              ell(-0.02, 0.0, seat + 0.72, 0.13, 0.13, label, 15, T_PLAIN,
                  (0.1, 0.1, 0.1) if motor else skin)]
    return np.stack(parts)


def traffic_cone(rng):
    label = LABEL["movable_object.trafficcone"]
    orange = np.array([0.95, 0.38, 0.05])
    h = rng.uniform(0.55, 0.8)
    return np.stack([box(-0.2, 0.2, -0.2, 0.2, 0.0, 0.04, label, 20, T_PLAIN, (0.1, 0.1, 0.1)),
                     cyl(0, 0, 0.14, 0.04, 0.45 * h, label, 60, T_PAINT, orange),
                     cyl(0, 0, 0.10, 0.45 * h, 0.65 * h, label, 160, T_PAINT, (0.95, 0.95, 0.95)),
                     cyl(0, 0, 0.07, 0.65 * h, h, label, 60, T_PAINT, orange)])


def barrier(rng, plastic=None):
    label = LABEL["movable_object.barrier"]
    l = rng.uniform(1.6, 2.6)
    if plastic if plastic is not None else rng.random() < 0.5:
        c1 = np.array([0.85, 0.1, 0.1]) if rng.random() < 0.5 else np.array([0.95, 0.95, 0.95])
        return np.stack([box(-l / 2, l / 2, -0.25, 0.25, 0.0, 0.35, label, 30, T_PAINT, c1),
                         box(-l / 2, l / 2, -0.15, 0.15, 0.35, 0.95, label, 30, T_PAINT, c1)])
    grey = np.array([0.72, 0.71, 0.68])
    return np.stack([box(-l / 2, l / 2, -0.30, 0.30, 0.0, 0.25, label, 25, T_PLAIN, grey),
                     box(-l / 2, l / 2, -0.12, 0.12, 0.25, 0.85, label, 25, T_PLAIN, grey)])


# ------------------------------------------------------------------ scenery (world frame)
def building(rng, x0, x1, y0, y1):
    h = float(np.clip(rng.lognormal(np.log(17), 0.5), 6.0, 60.0))
    rgb = _pick(rng, FACADES)
    lab = LABEL["static.manmade"]
    inten = rng.uniform(20, 45)
    parts = [box(x0, x1, y0, y1, 0.0, h, lab, inten, T_BUILDING, rgb)]
    if h > 15 and rng.random() < 0.4:
        mx, my = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
        parts.append(box(x0 + mx, x1 - mx, y0 + my, y1 - my, h, h + rng.uniform(4, 20), lab,
                         inten, T_BUILDING, rgb * 0.95))
    return parts


def tree(rng, x, y, z):
    lab = LABEL["static.vegetation"]
    trunk_h = rng.uniform(2.3, 3.6)
    r = rng.uniform(1.4, 2.8)
    rz = r * rng.uniform(0.9, 1.4)
    green = np.array([0.20, 0.36, 0.14]) * rng.uniform(0.75, 1.25)
    return [cyl(x, y, rng.uniform(0.12, 0.22), z, z + trunk_h + 0.5 * rz, lab, 10, T_PLAIN,
                (0.30, 0.22, 0.15)),
            ell(x, y, z + trunk_h + rz, r, rz, lab, rng.uniform(5, 14), T_FOLIAGE, green)]


def street_light(rng, x, y, z, ax, ay):
    """Pole at (x, y) with its arm reaching towards the road direction ``(ax, ay)``."""
    lab = LABEL["static.manmade"]
    h = rng.uniform(7.0, 9.0)
    grey = (0.45, 0.46, 0.48)
    arm = 1.8
    cx, cy = x + ax * arm / 2, y + ay * arm / 2
    hx, hy = abs(ax) * arm / 2 + 0.05, abs(ay) * arm / 2 + 0.05
    return [cyl(x, y, 0.11, z, z + h, lab, 35, T_PLAIN, grey),
            box(cx - hx, cx + hx, cy - hy, cy + hy, z + h - 0.1, z + h, lab, 35, T_PLAIN, grey),
            box(x + ax * arm - 0.3, x + ax * arm + 0.3, y + ay * arm - 0.3, y + ay * arm + 0.3,
                z + h - 0.22, z + h - 0.1, lab, 50, T_PLAIN, (0.9, 0.9, 0.8))]


def traffic_light(x, y, z):
    lab = LABEL["static.manmade"]
    return [cyl(x, y, 0.09, z, z + 3.2, lab, 35, T_PLAIN, (0.25, 0.26, 0.27)),
            box(x - 0.17, x + 0.17, y - 0.17, y + 0.17, z + 3.2, z + 4.15, lab, 40, T_PLAIN,
                (0.08, 0.08, 0.08))]


def sign(rng, x, y, z):
    lab = LABEL["static.manmade"]
    rgb = [(0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.95, 0.95, 0.95)][rng.integers(3)]
    return [cyl(x, y, 0.035, z, z + 2.6, lab, 35, T_PLAIN, (0.6, 0.6, 0.62)),
            box(x - 0.3, x + 0.3, y - 0.3, y + 0.3, z + 2.6, z + 3.2, lab, 150, T_PAINT, rgb)]


def hedge(x0, x1, y0, y1, z, h):
    return [box(x0, x1, y0, y1, z, z + h, LABEL["static.vegetation"], 8, T_FOLIAGE,
                (0.16, 0.30, 0.12))]


def bench_or_bin(rng, x, y, z):
    lab = LABEL["static.other"]
    if rng.random() < 0.5:
        return [cyl(x, y, 0.28, z, z + 0.95, lab, 20, T_PLAIN, (0.2, 0.25, 0.2))]
    return [box(x - 0.3, x + 0.3, y - 0.3, y + 0.3, z, z + 0.45, lab, 20, T_PLAIN,
                (0.4, 0.3, 0.2))]


def object_primitives(parts_list) -> np.ndarray:
    return np.stack(parts_list) if parts_list else np.zeros((0, P_COLS))


TEXTURES = (T_PLAIN, T_BUILDING, T_FOLIAGE, T_GLASS, T_PAINT)
