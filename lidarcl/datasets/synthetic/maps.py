"""Road-grid city layout and its ground surface / BEV map layers.

The city is a Manhattan grid: north-south roads ("columns", along y) at sorted x positions and
east-west roads ("rows", along x) at sorted y positions. A road record is
``[centre, half_width, lanes_per_direction, has_parking]``; traffic drives on the right.
Everything outside a road and its two sidewalks is block interior (grass or paved plaza),
raised like the sidewalks by ``CURB_HEIGHT``. The ground is evaluated analytically
(``ground_at``), so lidar, renderer and map rasters agree to the millimetre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from .constants import (CURB_HEIGHT, GROUND_RAISED, M_CROSS, M_GRASS, M_PARKING, M_PLAZA,
                        M_ROAD, M_SIDEWALK, M_WHITE, M_YELLOW)

LANE_WIDTH = 3.5
PARKING_WIDTH = 2.5
SHOULDER_WIDTH = 0.5

# Bits of the BEV layer mask returned by ``ground_at``.
MAP_LAYERS = ("drivable_area", "road_segment", "lane", "ped_crossing", "walkway", "stop_line",
              "carpark_area", "road_divider", "lane_divider", "terrain", "other_flat",
              "intersection")
L_DRIVABLE, L_ROAD_SEGMENT, L_LANE, L_PED_CROSSING, L_WALKWAY, L_STOP_LINE, L_CARPARK, \
    L_ROAD_DIVIDER, L_LANE_DIVIDER, L_TERRAIN, L_OTHER_FLAT, L_INTERSECTION = \
    [1 << i for i in range(len(MAP_LAYERS))]


@dataclass
class CityLayout:
    roads_x: np.ndarray   # (NX, 4) north-south roads: [x_centre, half_width, lanes, parking]
    roads_y: np.ndarray   # (NY, 4) east-west roads:   [y_centre, half_width, lanes, parking]
    blocks: np.ndarray    # (NX + 1, NY + 1) uint8: 1 = paved plaza interior, 0 = grass
    sidewalk: float
    half_extent: float

    def ground(self, x, y):
        """Material codes, BEV layer bits and surface heights at arrays of points."""
        x = np.ascontiguousarray(x, dtype=np.float64).ravel()
        y = np.ascontiguousarray(y, dtype=np.float64).ravel()
        mat = np.empty(len(x), np.uint8)
        bits = np.empty(len(x), np.int32)
        _ground_many(x, y, self.roads_x, self.roads_y, self.blocks, self.sidewalk,
                     self.half_extent, mat, bits)
        return mat, bits, GROUND_RAISED[mat] * CURB_HEIGHT


def make_layout(rng: np.random.Generator, half_extent: float) -> CityLayout:
    """Random grid city covering ``[-half_extent, half_extent]^2``."""
    def roads():
        centres = []
        pos = -half_extent + rng.uniform(10, 40)
        while pos < half_extent - 10:
            centres.append(pos)
            pos += rng.uniform(75, 125)
        out = np.zeros((len(centres), 4))
        for k, c in enumerate(centres):
            lanes = 2 if rng.random() < 0.55 else 1
            parking = 1 if rng.random() < 0.65 else 0
            out[k] = (c, lanes * LANE_WIDTH + (PARKING_WIDTH if parking else SHOULDER_WIDTH),
                      lanes, parking)
        return out
    roads_x, roads_y = roads(), roads()
    blocks = (rng.random((len(roads_x) + 1, len(roads_y) + 1)) < 0.3).astype(np.uint8)
    return CityLayout(roads_x, roads_y, blocks, float(rng.uniform(3.0, 4.5)), float(half_extent))


@nb.njit(cache=True)
def _nearest(centres, v):
    i = np.searchsorted(centres, v)
    if i == 0:
        return 0
    if i >= len(centres):
        return len(centres) - 1
    return i if centres[i] - v < v - centres[i - 1] else i - 1


@nb.njit(cache=True)
def _road_surface(a, e, u, hw_cross, lanes, parking, hw):
    """Material and layer bits on a road, ``a`` across (positive = right of +u traffic),
    ``e`` along, measured from the nearest crossing road's centre; ``u`` along coordinate."""
    aa = abs(a)
    ae = abs(e)
    bits = L_DRIVABLE | L_ROAD_SEGMENT
    lane_edge = lanes * LANE_WIDTH
    if aa > lane_edge:
        bits |= L_CARPARK if parking > 0 else 0
    elif ae > hw_cross + 1.0:
        bits |= L_LANE
    if hw_cross + 1.0 < ae < hw_cross + 4.0:
        bits |= L_PED_CROSSING
        if (aa % 1.2) < 0.6 and aa < hw - 0.3:
            return M_CROSS, bits
        return M_ROAD, bits
    if ae <= hw_cross + 1.0:
        return M_ROAD, bits
    if hw_cross + 4.6 < ae < hw_cross + 5.0 and a * e < 0 and aa < lane_edge:
        return M_WHITE, bits | L_STOP_LINE
    if aa < 0.2:
        bits |= L_ROAD_DIVIDER
        if aa > 0.06:
            return M_YELLOW, bits
        return M_ROAD, bits
    for k in range(1, int(lanes)):
        if abs(aa - k * LANE_WIDTH) < 0.075:
            bits |= L_LANE_DIVIDER
            if (u % 12.0) < 4.0:
                return M_WHITE, bits
            return M_ROAD, bits
    if abs(aa - lane_edge) < 0.075:
        return M_WHITE, bits | L_LANE_DIVIDER
    if aa > lane_edge and parking > 0:
        return M_PARKING, bits
    return M_ROAD, bits


@nb.njit(cache=True)
def ground_at(x, y, roads_x, roads_y, blocks, sidewalk, half_extent):
    """(material code, BEV layer bits) of the ground at world ``(x, y)``."""
    if abs(x) > half_extent or abs(y) > half_extent:
        return M_GRASS, L_TERRAIN
    i = _nearest(roads_x[:, 0], x)
    j = _nearest(roads_y[:, 0], y)
    dx = x - roads_x[i, 0]
    dy = y - roads_y[j, 0]
    hwc = roads_x[i, 1]
    hwr = roads_y[j, 1]
    in_col = abs(dx) < hwc
    in_row = abs(dy) < hwr
    if in_col and in_row:
        return M_ROAD, L_DRIVABLE | L_ROAD_SEGMENT | L_INTERSECTION
    if in_row:   # east-west road: +x traffic keeps to -y
        return _road_surface(-dy, dx, x, hwc, roads_y[j, 2], roads_y[j, 3], hwr)
    if in_col:   # north-south road: +y traffic keeps to +x
        return _road_surface(dx, dy, y, hwr, roads_x[i, 2], roads_x[i, 3], hwc)
    if abs(dy) < hwr + sidewalk or abs(dx) < hwc + sidewalk:
        return M_SIDEWALK, L_WALKWAY
    bi = np.searchsorted(roads_x[:, 0], x)
    bj = np.searchsorted(roads_y[:, 0], y)
    if blocks[bi, bj] > 0:
        return M_PLAZA, L_OTHER_FLAT
    return M_GRASS, L_TERRAIN


@nb.njit(cache=True)
def _ground_many(x, y, roads_x, roads_y, blocks, sidewalk, half_extent, mat, bits):
    for k in range(len(x)):
        m, b = ground_at(x[k], y[k], roads_x, roads_y, blocks, sidewalk, half_extent)
        mat[k] = m
        bits[k] = b


def rasterize_layers(layout: CityLayout, resolution: float, building_boxes=None):
    """BEV rasters ``{layer: uint8 (H, W) in {0, 255}}`` plus the raster's world origin.

    Row 0 is the northern edge (max y), column 0 the western edge (min x); pixel
    ``(r, c)`` covers world ``x = x0 + (c + 0.5) * res``, ``y = y1 - (r + 0.5) * res``.
    """
    ext = layout.half_extent
    n = int(round(2 * ext / resolution))
    centres = -ext + (np.arange(n) + 0.5) * resolution
    xx, yy = np.meshgrid(centres, centres[::-1])
    _, bits, _ = layout.ground(xx, yy)
    bits = bits.reshape(n, n)
    layers = {name: (((bits >> k) & 1) * 255).astype(np.uint8) for k, name in enumerate(MAP_LAYERS)}
    if building_boxes is not None:
        mask = np.zeros((n, n), np.uint8)
        for cx, cy, hx, hy in building_boxes:
            c0 = int(np.floor((cx - hx + ext) / resolution))
            c1 = int(np.ceil((cx + hx + ext) / resolution))
            r0 = int(np.floor((ext - (cy + hy)) / resolution))
            r1 = int(np.ceil((ext - (cy - hy)) / resolution))
            mask[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)] = 255
        layers["building"] = mask
    return layers, (-ext, -ext, ext, ext)
