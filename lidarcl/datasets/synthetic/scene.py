"""City scenery, the ego route and the annotated actors with their trajectories.

Times are seconds from the scene start. Actors move along straight lane / sidewalk lines
with a smooth speed profile; the ego vehicle follows a lane-centre route through the grid
with rounded turns. ``Scene.snapshot(t)`` returns every primitive of the world at time t.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import objects as O
from .constants import (CURB_HEIGHT, EGO_BODY_CENTER, EGO_BODY_SIZE, LABEL)
from .maps import LANE_WIDTH, CityLayout, make_layout

BOX_MARGIN = 0.05  # annotation boxes enclose the geometry with this margin on every side


# ====================================================================== scenery
@dataclass
class City:
    layout: CityLayout
    scenery: np.ndarray                 # (N, P_COLS) static unannotated primitives
    building_boxes: list = field(default_factory=list)   # (cx, cy, hx, hy) footprints


def _segments(centres, half_widths, lo, hi, other_hw_pad):
    """Intervals along a road between consecutive crossing roads (minus their widths)."""
    edges = [lo]
    for c, hw in zip(centres, half_widths):
        edges += [c - hw - other_hw_pad, c + hw + other_hw_pad]
    edges.append(hi)
    return [(edges[k], edges[k + 1]) for k in range(0, len(edges), 2) if edges[k + 1] > edges[k]]


def make_city(rng: np.random.Generator, half_extent: float) -> City:
    lay = make_layout(rng, half_extent)
    sw = lay.sidewalk
    parts: list = []
    z = CURB_HEIGHT
    # --- street furniture along both sides of every road
    for axis, roads, cross in ((0, lay.roads_y, lay.roads_x), (1, lay.roads_x, lay.roads_y)):
        for centre, hw, lanes, parking in roads:
            for lo, hi in _segments(cross[:, 0], cross[:, 1], -half_extent, half_extent, sw + 6.0):
                for side in (-1, 1):
                    def put(u, off):  # along-road coordinate u, offset from road centre
                        return (u, centre + side * off) if axis == 0 else (centre + side * off, u)
                    u = lo + rng.uniform(2, 8)
                    while u < hi - 2:
                        if rng.random() < 0.75:
                            x, y = put(u, hw + 0.9)
                            parts += O.tree(rng, x, y, z)
                        u += rng.uniform(7, 13)
                    u = lo + rng.uniform(4, 15)
                    while u < hi - 2:
                        x, y = put(u, hw + 0.35)
                        ax, ay = ((0.0, -side) if axis == 0 else (-side, 0.0))
                        parts += O.street_light(rng, x, y, z, ax, ay)
                        u += rng.uniform(24, 34)
                    for _ in range(rng.poisson(1.0)):
                        x, y = put(rng.uniform(lo, hi), hw + 0.5)
                        parts += O.sign(rng, x, y, z)
                    for _ in range(rng.poisson(1.5)):
                        x, y = put(rng.uniform(lo, hi), hw + 0.9)
                        parts += O.bench_or_bin(rng, x, y, z)
    # --- traffic lights at the corners of every intersection
    for cx, hwx, _, _ in lay.roads_x:
        for cy, hwy, _, _ in lay.roads_y:
            for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                parts += O.traffic_light(cx + sx * (hwx + 0.6), cy + sy * (hwy + 0.6), z)
    # --- buildings, parks and hedges in the blocks
    bx = np.concatenate([[-half_extent - 30], lay.roads_x[:, 0], [half_extent + 30]])
    bhx = np.concatenate([[0], lay.roads_x[:, 1], [0]])
    by = np.concatenate([[-half_extent - 30], lay.roads_y[:, 0], [half_extent + 30]])
    bhy = np.concatenate([[0], lay.roads_y[:, 1], [0]])
    buildings = []
    for i in range(len(bx) - 1):
        for j in range(len(by) - 1):
            x0, x1 = bx[i] + bhx[i] + sw, bx[i + 1] - bhx[i + 1] - sw
            y0, y1 = by[j] + bhy[j] + sw, by[j + 1] - bhy[j + 1] - sw
            if x1 - x0 < 15 or y1 - y0 < 15:
                continue
            if rng.random() < 0.12:   # park
                for _ in range(int((x1 - x0) * (y1 - y0) / 120)):
                    parts += O.tree(rng, rng.uniform(x0 + 3, x1 - 3), rng.uniform(y0 + 3, y1 - 3), z)
                continue
            if rng.random() < 0.3:
                sb = 0.8
                parts += O.hedge(x0 + 1, x1 - 1, y0 + sb, y0 + sb + 0.8, z, rng.uniform(0.7, 1.3))
                parts += O.hedge(x0 + 1, x1 - 1, y1 - sb - 0.8, y1 - sb, z, rng.uniform(0.7, 1.3))
            setback = rng.uniform(2.0, 5.0)
            depth_max = 22.0
            for edge in range(4):
                horizontal = edge < 2
                a0, a1 = (x0, x1) if horizontal else (y0 + setback + depth_max + 1,
                                                        y1 - setback - depth_max - 1)
                u = a0 + setback + rng.uniform(0, 3)
                while u < a1 - setback - 6:
                    front = min(rng.uniform(10, 30), a1 - setback - u)
                    depth = rng.uniform(10, depth_max)
                    if edge == 0:
                        rect = (u, u + front, y0 + setback, y0 + setback + depth)
                    elif edge == 1:
                        rect = (u, u + front, y1 - setback - depth, y1 - setback)
                    elif edge == 2:
                        rect = (x0 + setback, x0 + setback + depth, u, u + front)
                    else:
                        rect = (x1 - setback - depth, x1 - setback, u, u + front)
                    r = (max(rect[0], x0 + 1), min(rect[1], x1 - 1), max(rect[2], y0 + 1),
                         min(rect[3], y1 - 1))
                    if r[1] - r[0] > 4 and r[3] - r[2] > 4:
                        bparts = O.building(rng, *r)
                        for p in bparts:
                            p[O.P_CZ] += z
                        parts += bparts
                        buildings.append(((r[0] + r[1]) / 2, (r[2] + r[3]) / 2,
                                          (r[1] - r[0]) / 2, (r[3] - r[2]) / 2))
                    u += front + rng.uniform(0.0, 4.0)
    return City(lay, O.object_primitives(parts), buildings)


# ====================================================================== paths
class Path:
    """Arc-length parametrised 2D polyline with headings."""

    def __init__(self, pts: np.ndarray):
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        keep = np.concatenate([[True], seg > 1e-6])
        self.pts = pts[keep]
        self.s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.pts, axis=0), axis=1))])
        d = np.gradient(self.pts, self.s, axis=0)
        self.yaw = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))

    @property
    def length(self):
        return float(self.s[-1])

    def pose(self, s):
        s = np.clip(s, 0, self.length)
        return (np.interp(s, self.s, self.pts[:, 0]), np.interp(s, self.s, self.pts[:, 1]),
                np.interp(s, self.s, self.yaw))


def _lane_line_point(road_axis, centre, offset, d):
    """Lane centre line of the road: returns (const coordinate) for direction sign d."""
    # right-hand traffic: +x traffic on -y side, +y traffic on +x side
    return centre - d * offset if road_axis == 0 else centre + d * offset


def ego_route(rng, lay: CityLayout, length: float) -> Path:
    """Lane-centre route along the grid, turning at intersections, with rounded corners."""
    # start on a random road near the centre, mid-block
    axis = int(rng.integers(2))
    roads, cross = (lay.roads_y, lay.roads_x) if axis == 0 else (lay.roads_x, lay.roads_y)
    k = int(np.argsort(np.abs(roads[:, 0]) + rng.uniform(0, 40, len(roads)))[0])
    d = 1 if rng.random() < 0.5 else -1
    lane = int(rng.integers(int(roads[k, 2])))
    off = (lane + 0.5) * LANE_WIDTH
    cidx = int(np.argmin(np.abs(cross[:, 0] - rng.uniform(-30, 30))))
    u = cross[cidx, 0] - d * (cross[cidx, 1] + rng.uniform(15, 35))
    # walk along
    corners = []
    line = _lane_line_point(axis, roads[k, 0], off, d)
    pt = (u, line) if axis == 0 else (line, u)
    corners.append(pt)
    travelled = 0.0
    limit = lay.half_extent - 90
    while travelled < length + 60:
        cross = lay.roads_x if axis == 0 else lay.roads_y
        ahead = cross[(cross[:, 0] - u) * d > cross[:, 1] + 0.5]
        if len(ahead) == 0:
            nxt_u = u + d * 200
            travelled += 200
            u = nxt_u
            corners.append((u, line) if axis == 0 else (line, u))
            break
        c = ahead[np.argmin(np.abs(ahead[:, 0] - u))]
        # choose turn
        choice = rng.choice(3, p=[0.55, 0.25, 0.20])  # straight, left, right
        if abs(c[0] + d * 100) > limit and choice == 0:
            choice = 1 + int(rng.integers(2))
        if choice == 0:
            travelled += abs(c[0] - u)
            u = c[0] + d * (c[1] + 1)
            continue
        left = choice == 1
        # new direction on the crossing road (axis flips)
        if axis == 0:   # moving along x with sign d; left turn -> +y if d > 0
            nd = d if left else -d
        else:           # moving along y with sign d; left turn -> -x if d > 0
            nd = -d if left else d
        new_axis = 1 - axis
        nlanes = int(c[2])
        nlane = 0 if left else nlanes - 1
        noff = (nlane + 0.5) * LANE_WIDTH
        nline = _lane_line_point(new_axis, c[0], noff, nd)
        corner_u = nline  # coordinate along old axis where the new lane line lies
        corner = (corner_u, line) if axis == 0 else (line, corner_u)
        travelled += abs(corner_u - u)
        corners.append(corner)
        # continue along the new road: find the road record of c; its along coord = old line
        axis, d, line = new_axis, nd, nline
        u = corners[-1][1] if new_axis == 1 else corners[-1][0]
    if len(corners) == 1 or travelled < length + 60:
        end = (u + d * (length + 80), line) if axis == 0 else (line, u + d * (length + 80))
        corners.append(end)
    else:
        last = corners[-1]
        end = (last[0] + d * 100, last[1]) if axis == 0 else (last[0], last[1] + d * 100)
        corners.append(end)
    return Path(_round_corners(np.array(corners, dtype=np.float64)))


def _round_corners(c: np.ndarray) -> np.ndarray:
    c = c[np.concatenate([[True], np.linalg.norm(np.diff(c, axis=0), axis=1) > 1e-3])]
    pts = [c[0]]
    for k in range(1, len(c) - 1):
        a, b, e = c[k - 1], c[k], c[k + 1]
        d1 = (b - a) / np.linalg.norm(b - a)
        d2 = (e - b) / np.linalg.norm(e - b)
        cross = d1[0] * d2[1] - d1[1] * d2[0]
        r = 11.0 if cross > 0 else 7.0   # left turns sweep wider
        r = min(r, 0.45 * np.linalg.norm(b - a), 0.45 * np.linalg.norm(e - b))
        p0, p2 = b - d1 * r, b + d2 * r
        t = np.linspace(0, 1, 24)[:, None]
        pts += list((1 - t) ** 2 * p0 + 2 * (1 - t) * t * b + t ** 2 * p2)
    pts.append(c[-1])
    out = [pts[0]]
    for p in pts[1:]:
        n = max(1, int(np.ceil(np.linalg.norm(p - out[-1]) / 0.5)))
        out += list(out[-1] + (p - out[-1]) * (np.arange(1, n + 1)[:, None] / n))
    return np.array(out)


# ====================================================================== actors
@dataclass
class Actor:
    category: str
    parts: np.ndarray        # local primitives (centred at the local origin in x/y, z from 0)
    p0: np.ndarray           # start of the motion line (world xy)
    direction: np.ndarray    # unit vector of motion
    length: float            # usable line length (pose clamps at the ends)
    s0: float                # position at t = 0 along the line
    speed: float             # mean speed (m/s), 0 for static actors
    wobble: tuple = (0.0, 1.0, 0.0)  # amplitude (m), angular freq, phase of speed variation
    parked: bool = False
    yaw_offset: float = 0.0  # heading relative to the motion direction
    lateral: np.ndarray | None = None

    def s_at(self, t):
        amp, w, ph = self.wobble
        s = self.s0 + self.speed * t + amp * (np.sin(w * t + ph) - np.sin(ph))
        return np.clip(s, 0.0, self.length)

    def pose(self, t):
        s = self.s_at(t)
        xy = self.p0 + self.direction * s
        yaw = np.arctan2(self.direction[1], self.direction[0]) + self.yaw_offset
        return xy[0], xy[1], yaw

    def velocity(self, t, dt=0.05):
        a = np.array(self.pose(t - dt)[:2])
        b = np.array(self.pose(t + dt)[:2])
        return (b - a) / (2 * dt)


def _extent_info(parts):
    ext = O.local_extent(parts)
    centre = np.array([(ext[0] + ext[1]) / 2, (ext[2] + ext[3]) / 2, (ext[4] + ext[5]) / 2])
    size = np.array([ext[1] - ext[0], ext[3] - ext[2], ext[5] - ext[4]]) + 2 * BOX_MARGIN
    return centre, size


class Scene:
    """One scene: the shared city, an ego route with speed profile, and annotated actors."""

    def __init__(self, city: City, ego: Path, ego_speed: tuple, actors: list, duration: float):
        self.city = city
        self.ego = ego
        self.ego_speed = ego_speed  # (v0, dv, period)
        self.actors = actors
        self.duration = duration
        self.scenery = city.scenery
        parts = [a.parts for a in actors]
        self._owner = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)]) \
            if parts else np.zeros(0, int)
        self._parts = np.concatenate(parts) if parts else np.zeros((0, O.P_COLS))
        self._parts[:, O.P_OBJ] = self._owner
        info = [_extent_info(a.parts) for a in actors]
        self.local_centre = np.array([i[0] for i in info]).reshape(-1, 3)
        self.size = np.array([i[1] for i in info]).reshape(-1, 3)   # l, w, h

    # ---------------------------------------------------------------- ego
    def ego_s(self, t):
        v0, dv, period = self.ego_speed
        w = 2 * np.pi / period
        return 5.0 + v0 * t + dv / w * (1 - np.cos(w * t))

    def ego_pose(self, t):
        """(x, y, yaw) of the ego frame (rear axle on the ground) at time t."""
        x, y, yaw = self.ego.pose(self.ego_s(t))
        return float(x), float(y), float(yaw)

    # ---------------------------------------------------------------- actors
    def actor_poses(self, t):
        """(M, 4) x, y, ground z, yaw of every actor's local origin."""
        out = np.zeros((len(self.actors), 4))
        for k, a in enumerate(self.actors):
            x, y, yaw = a.pose(t)
            out[k] = (x, y, 0.0, yaw)
        if len(out):
            _, _, h = self.city.layout.ground(out[:, 0], out[:, 1])
            out[:, 2] = h
        return out

    def boxes(self, t):
        """(M, 7) world boxes [x, y, z, l, w, h, yaw] (z at the centre) at time t."""
        poses = self.actor_poses(t)
        c, s = np.cos(poses[:, 3]), np.sin(poses[:, 3])
        lc = self.local_centre
        x = poses[:, 0] + c * lc[:, 0] - s * lc[:, 1]
        y = poses[:, 1] + s * lc[:, 0] + c * lc[:, 1]
        z = poses[:, 2] + lc[:, 2]
        return np.column_stack([x, y, z, self.size, poses[:, 3]])

    def actor_prims(self, t):
        poses = self.actor_poses(t)
        if not len(self._parts):
            return self._parts
        p = poses[self._owner]
        out = self._parts.copy()
        c, s = np.cos(p[:, 3]), np.sin(p[:, 3])
        lx, ly = self._parts[:, O.P_CX], self._parts[:, O.P_CY]
        out[:, O.P_CX] = p[:, 0] + c * lx - s * ly
        out[:, O.P_CY] = p[:, 1] + s * lx + c * ly
        out[:, O.P_CZ] = p[:, 2] + self._parts[:, O.P_CZ]
        out[:, O.P_COS] = c
        out[:, O.P_SIN] = s
        return out

    def snapshot(self, t, centre=None, radius=None):
        """All primitives (scenery + actors) at time t, optionally within ``radius`` of a
        point (bounding circles)."""
        scen = self.scenery
        if centre is not None:
            d = np.hypot(scen[:, O.P_CX] - centre[0], scen[:, O.P_CY] - centre[1]) - scen[:, O.P_RAD]
            scen = scen[d < radius]
        return np.concatenate([scen, self.actor_prims(t)])


# ====================================================================== actor placement
def _road_lines(lay):
    """(axis, centre, half_width, lanes, parking) of every road."""
    out = [(0, *r) for r in lay.roads_y] + [(1, *r) for r in lay.roads_x]
    return out


def _point_on(axis, u, line):
    return np.array([u, line]) if axis == 0 else np.array([line, u])


def _dir(axis, d):
    return np.array([d, 0.0]) if axis == 0 else np.array([0.0, d])


def _near_route(p, route_pts, dist):
    return np.min(np.hypot(route_pts[:, 0] - p[0], route_pts[:, 1] - p[1])) < dist


def _far_from_intersections(lay, axis, u, pad):
    cross = lay.roads_x if axis == 0 else lay.roads_y
    return np.all(np.abs(cross[:, 0] - u) > cross[:, 1] + pad)


def place_actors(rng, city: City, route_pts: np.ndarray, duration: float, density: float = 1.0):
    """Candidate actors around the route (collisions are removed afterwards)."""
    lay = city.layout
    ext = lay.half_extent
    sw = lay.sidewalk
    actors = []
    roads = [r for r in _road_lines(lay)]
    near = []
    for r in roads:
        axis, centre = r[0], r[1]
        # does the road pass near the route?
        if axis == 0:
            m = np.abs(route_pts[:, 1] - centre) < 90
        else:
            m = np.abs(route_pts[:, 0] - centre) < 90
        if m.any():
            near.append(r)

    def sample_u(axis, centre, line_lo=-ext, line_hi=ext):
        # along-road coordinate near the route
        for _ in range(20):
            k = rng.integers(len(route_pts))
            u0 = route_pts[k, 0] if axis == 0 else route_pts[k, 1]
            u = u0 + rng.uniform(-70, 70)
            p = _point_on(axis, u, centre)
            if _near_route(p, route_pts, 75) and line_lo < u < line_hi:
                return u
        return None

    for axis, centre, hw, lanes, parking in near:
        lanes = int(lanes)
        seg_len = 160.0
        n_scale = density * seg_len / 100
        # ---- moving / stopped traffic in lanes
        for _ in range(rng.poisson(3.0 * n_scale)):
            u = sample_u(axis, centre)
            if u is None:
                continue
            d = 1 if rng.random() < 0.5 else -1
            lane = int(rng.integers(lanes))
            line = _lane_line_point(axis, centre, (lane + 0.5) * LANE_WIDTH, d)
            r = rng.random()
            if r < 0.72:
                cat, parts = "vehicle.car", O.car(rng)
            elif r < 0.82:
                cat, parts = "vehicle.truck", O.truck(rng)
            elif r < 0.90:
                cat, parts = "vehicle.bus.rigid", O.bus(rng)
            elif r < 0.95:
                cat, parts = "vehicle.motorcycle", O.cyclist(rng, motor=True)
            elif r < 0.975:
                cat, parts = "vehicle.emergency.police", O.car(rng, LABEL["vehicle.emergency.police"])
            else:
                cat, parts = "vehicle.car", O.car(rng, size=(4.6, 1.9, 1.9))
            stopped = rng.random() < 0.2
            speed = 0.0 if stopped else rng.uniform(4.0, 12.0) * (0.7 if "bus" in cat else 1.0)
            p0 = _point_on(axis, -d * ext, line)
            actors.append(Actor(cat, parts, p0, _dir(axis, d), 2 * ext, u * d + ext, speed,
                                (rng.uniform(0, 0.3) * speed / 2, 2 * np.pi / rng.uniform(4, 9),
                                 rng.uniform(0, 2 * np.pi)), parked=False))
        # ---- parked vehicles along the curb
        if parking:
            for side in (-1, 1):
                u = sample_u(axis, centre)
                if u is None:
                    continue
                # a run of parked cars
                for _ in range(rng.integers(2, 9)):
                    if _far_from_intersections(lay, axis, u, sw + 8):
                        big = rng.random() < 0.1
                        parts = O.truck(rng) if big else O.car(rng)
                        cat = "vehicle.truck" if big else "vehicle.car"
                        ext_l = O.local_extent(parts)
                        off = hw - 0.15 - (ext_l[3] - ext_l[2]) / 2 - BOX_MARGIN
                        d = -1 if side * (1 if axis == 1 else -1) < 0 else 1
                        line = centre + side * off
                        p = _point_on(axis, u, line)
                        if rng.random() < 0.85:
                            actors.append(Actor(cat, parts, p, _dir(axis, d), 0.0, 0.0, 0.0,
                                                parked=True,
                                                yaw_offset=rng.normal(0, 0.02)))
                    u += rng.uniform(5.5, 9.0) * (1 if rng.random() < 0.9 else 2)
        # ---- cyclists near the curb (no parking lane) or along the lane edge
        for _ in range(rng.poisson(0.8 * n_scale)):
            u = sample_u(axis, centre)
            if u is None:
                continue
            d = 1 if rng.random() < 0.5 else -1
            line = _lane_line_point(axis, centre, lanes * LANE_WIDTH - 0.7, d)
            p0 = _point_on(axis, -d * ext, line)
            speed = rng.uniform(3.0, 6.5)
            actors.append(Actor("vehicle.bicycle", O.cyclist(rng), p0, _dir(axis, d), 2 * ext,
                                u * d + ext, speed, (0.2, 2 * np.pi / 5, rng.uniform(0, 6))))
        # ---- pedestrians on the sidewalks
        for _ in range(rng.poisson(6.0 * n_scale)):
            u = sample_u(axis, centre)
            if u is None:
                continue
            side = 1 if rng.random() < 0.5 else -1
            off = hw + sw * rng.uniform(0.55, 0.85)
            d = 1 if rng.random() < 0.5 else -1
            line = centre + side * off
            r = rng.random()
            cat = ("human.pedestrian.child" if r < 0.06 else
                   "human.pedestrian.police_officer" if r < 0.08 else "human.pedestrian.adult")
            standing = rng.random() < 0.25
            speed = 0.0 if standing else rng.uniform(0.9, 1.7)
            p0 = _point_on(axis, -d * ext, line)
            actors.append(Actor(cat, O.pedestrian(rng, LABEL[cat]), p0, _dir(axis, d), 2 * ext,
                                u * d + ext, speed, (0.05 * speed, 2 * np.pi / 1.1,
                                                     rng.uniform(0, 6)),
                                yaw_offset=0.0 if speed > 0 else rng.uniform(-np.pi, np.pi)))
        # ---- pedestrians crossing at crosswalks of this road
        cross = lay.roads_x if axis == 0 else lay.roads_y
        for c, chw, _, _ in cross:
            p = _point_on(axis, c, centre)
            if not _near_route(p, route_pts, 60) or rng.random() > 0.5 * density:
                continue
            e = rng.choice([-1, 1]) * (chw + 2.5)
            d = 1 if rng.random() < 0.5 else -1
            start = -(hw + sw * 0.5)
            # crossing line: perpendicular to the road, from one sidewalk to the other
            p0 = _point_on(axis, c + e, centre) + (_dir(1 - axis, 1.0) * (d * start))
            speed = rng.uniform(1.0, 1.6)
            total = 2 * (hw + sw * 0.5)
            actors.append(Actor("human.pedestrian.adult", O.pedestrian(rng), p0, _dir(1 - axis, d),
                                total, rng.uniform(-0.3, 0.6) * total - speed * duration * 0.3,
                                speed))
        # ---- a construction zone with cones, barriers and workers
        if rng.random() < 0.35 * density:
            u = sample_u(axis, centre)
            if u is not None and _far_from_intersections(lay, axis, u, sw + 10):
                side = 1 if rng.random() < 0.5 else -1
                off = hw - 1.0
                d = 1 if axis == 0 else -1
                for k in range(rng.integers(5, 10)):
                    p = _point_on(axis, u + 2.2 * k, centre + side * off)
                    actors.append(Actor("movable_object.trafficcone", O.traffic_cone(rng), p,
                                        _dir(axis, 1), 0.0, 0.0, 0.0))
                for k in range(rng.integers(2, 5)):
                    p = _point_on(axis, u + 3.0 + 2.8 * k, centre + side * (off + 0.9))
                    actors.append(Actor("movable_object.barrier", O.barrier(rng, plastic=True), p,
                                        _dir(axis, d), 0.0, 0.0, 0.0))
                p = _point_on(axis, u + 6.0, centre + side * (off + 2.1))
                actors.append(Actor("human.pedestrian.construction_worker",
                                    O.pedestrian(rng, LABEL["human.pedestrian.construction_worker"]),
                                    p, _dir(axis, 1), 0.0, 0.0, 0.0,
                                    yaw_offset=rng.uniform(-np.pi, np.pi)))
        # ---- concrete barriers along a sidewalk edge
        if rng.random() < 0.25 * density:
            u = sample_u(axis, centre)
            if u is not None and _far_from_intersections(lay, axis, u, sw + 20):
                side = 1 if rng.random() < 0.5 else -1
                for k in range(rng.integers(3, 7)):
                    p = _point_on(axis, u + 2.7 * k, centre + side * (hw + 0.45))
                    actors.append(Actor("movable_object.barrier", O.barrier(rng, plastic=False), p,
                                        _dir(axis, 1), 0.0, 0.0, 0.0))
    return actors


# ---------------------------------------------------------------------- collision filter
def _obb_corners(boxes):
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    hl, hw = boxes[:, 3] / 2, boxes[:, 4] / 2
    ux = np.stack([c, s], -1)
    uy = np.stack([-s, c], -1)
    ctr = boxes[:, :2]
    return np.stack([ctr + ux * hl[:, None] + uy * hw[:, None], ctr - ux * hl[:, None] + uy * hw[:, None],
                     ctr - ux * hl[:, None] - uy * hw[:, None], ctr + ux * hl[:, None] - uy * hw[:, None]], 1)


def _obb_overlap(ca, cb):
    for poly in (ca, cb):
        for k in range(4):
            e = poly[(k + 1) % 4] - poly[k]
            n = np.array([-e[1], e[0]])
            pa, pb = ca @ n, cb @ n
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def remove_collisions(scene_actors, boxes_at, ego_boxes_at, times, static_boxes=None, pad=0.3):
    """Indices of actors to keep: greedily drop actors whose footprint (padded) overlaps the
    ego or an already kept actor at any of ``times``."""
    n = len(scene_actors)
    keep = np.ones(n, bool)
    order = sorted(range(n), key=lambda k: (scene_actors[k].speed > 0, k))  # static first
    all_boxes = [boxes_at(t) for t in times]
    ego_boxes = [ego_boxes_at(t) for t in times]
    kept: list = []
    for k in order:
        ok = True
        for ti in range(len(times)):
            b = all_boxes[ti][k].copy()
            b[3:5] += pad
            ck = _obb_corners(b[None])[0]
            eb = ego_boxes[ti]
            if np.hypot(*(b[:2] - eb[:2])) < (np.hypot(b[3], b[4]) + np.hypot(eb[3], eb[4])) / 2 \
                    and _obb_overlap(ck, _obb_corners(eb[None])[0]):
                ok = False
                break
            for j in kept:
                o = all_boxes[ti][j]
                if np.hypot(*(b[:2] - o[:2])) < (np.hypot(b[3], b[4]) + np.hypot(o[3], o[4])) / 2 \
                        and _obb_overlap(ck, _obb_corners(o[None])[0]):
                    ok = False
                    break
            if not ok:
                break
        if ok:
            kept.append(k)
        else:
            keep[k] = False
    return keep


def make_scene(rng, city: City, duration: float, density: float = 1.0) -> Scene:
    v0 = rng.uniform(4.0, 9.0)
    speed = (v0, rng.uniform(0.0, 0.35) * v0, rng.uniform(8.0, 16.0))
    route_len = 5.0 + speed[0] * duration + 2 * speed[1] * speed[2] / (2 * np.pi) + 20
    route = ego_route(rng, city.layout, route_len)
    # only the part of the route the ego drives matters for placement
    tmp = Scene(city, route, speed, [], duration)
    s_end = tmp.ego_s(duration)
    route_pts = route.pts[route.s <= s_end + 20]
    cands = place_actors(rng, city, route_pts, duration, density)
    tmp = Scene(city, route, speed, cands, duration)
    # drop actors that would hit the ego vehicle or each other, and those far away all along
    times = np.arange(0.0, duration + 1e-9, 0.1)

    def ego_box(t):
        x, y, yaw = tmp.ego_pose(t)
        c, s = np.cos(yaw), np.sin(yaw)
        cx, cy = EGO_BODY_CENTER[0], EGO_BODY_CENTER[1]
        return np.array([x + c * cx - s * cy, y + s * cx + c * cy, 0, EGO_BODY_SIZE[0] + 1.0,
                         EGO_BODY_SIZE[1] + 0.4, 0, yaw])
    keep = remove_collisions(cands, tmp.boxes, ego_box, times)
    # keep actors that come within 90 m of the ego at some time
    ego_xy = np.array([tmp.ego_pose(t)[:2] for t in times[::5]])
    for k, a in enumerate(cands):
        if keep[k]:
            pos = np.array([a.pose(t)[:2] for t in times[::5]])
            keep[k] = np.min(np.hypot(*(pos - ego_xy).T)) < 90
    actors = [a for a, k in zip(cands, keep) if k]
    return Scene(city, route, speed, actors, duration)
