"""The city's vector map in nuScenes' map-expansion format (``maps/expansion/<location>.json``).

Every polygon and line is derived from the same :class:`~.maps.CityLayout` numbers that
``ground_at`` evaluates (road centres, half widths, lanes, parking, sidewalk width), so the
devkit's ``NuScenesMap.get_map_mask`` and the generator's rasters describe one geometry; they
differ only by the rasterisers' boundary cells (tests/test_bev_map_seg.py).

Coordinates: node ``x, y`` are global metres, the city's internal coordinates plus
``offset`` (the writer passes ``half_extent``, so the map spans ``[0, 2 * half_extent]`` like
the ego poses and ``maps/bev/meta.json``). ``canvas_edge`` is ``[2 * half_extent] * 2``.

Roads run along an axis ``u`` (y for north-south roads, x for east-west roads); ``a`` is the
offset across the road, positive on the right of traffic moving towards ``+u`` (east of a
north-south road, south of an east-west road). Traffic keeps right. Between two crossing
roads a road is one *segment*; with ``hw`` the crossing road's half width and ``e`` the
distance from its centre line, the zones of ``maps._road_surface`` are:

==================  =====================================================================
intersection        the overlap of two road strips (a ``road_segment`` with
                    ``is_intersection``)
gap                 ``hw <= |e| <= hw + 1``: road only
ped_crossing        ``hw + 1 < |e| < hw + 4``, the full road width
stop_line           ``hw + 4.6 < |e| < hw + 5``, the lanes of the approaching side only
lane                ``|a| <= lanes * 3.5`` and ``|e| > hw + 1`` (crossings included)
carpark_area        ``lanes * 3.5 < |a| < half_width`` on roads with parking, whole segment
road_divider        the centre line ``a = 0`` where ``|e| >= hw + 4``
lane_divider        ``|a| = k * 3.5`` (k = 1 .. lanes - 1, broken where a stop line crosses)
                    and the edge lines ``|a| = lanes * 3.5``, where ``|e| >= hw + 4``
walkway             the sidewalk bands beside every road strip, cut by the crossing roads
==================  =====================================================================

``drivable_area`` is one record listing every road_segment polygon. There are no traffic
lights and no lane connectors; ``connectivity`` lists every lane with empty
``incoming``/``outgoing`` and ``arcline_path_3`` holds one straight path per lane.
Everything is clipped to the city square ``[-half_extent, half_extent]^2`` (outside it the
ground is terrain).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .maps import LANE_WIDTH, CityLayout

MAP_EXPANSION_VERSION = "1.3"   # the oldest version NuScenesMap accepts (it refuses < 1.3)
CROSSING_GAP = 1.0              # zone offsets from the crossing road's edge (maps._road_surface)
CROSSING_END = 4.0
STOP_LINE_START = 4.6
STOP_LINE_END = 5.0
# nuScenes lane-divider segment types for the generator's paint
CENTRE_LINE_TYPE = "DOUBLE_SOLID_YELLOW"
LANE_LINE_TYPE = "SINGLE_DASHED_WHITE"   # dashed lane dividers (maps._road_surface: u % 12 < 4)
EDGE_LINE_TYPE = "SINGLE_SOLID_WHITE"
LAYERS = ("drivable_area", "road_segment", "road_block", "lane", "ped_crossing", "walkway",
          "stop_line", "carpark_area", "road_divider", "lane_divider", "traffic_light",
          "lane_connector")


class _Builder:
    """Appends records; ``(a, u)`` helpers work in one road's frame (module doc)."""

    def __init__(self, layout: CityLayout, offset, token: Callable[[], str]):
        self.layout = layout
        self.ext = float(layout.half_extent)
        self.ox, self.oy = float(offset[0]), float(offset[1])
        self.token = token
        self.out: dict = {"node": [], "line": [], "polygon": []}
        for name in LAYERS:
            self.out[name] = []
        self.out["arcline_path_3"] = {}
        self.out["connectivity"] = {}
        self.drivable_token = token()
        self.road_polygons: list[str] = []

    # ------------------------------------------------------------------ geometry records
    def node(self, x, y) -> str:
        t = self.token()
        self.out["node"].append({"token": t, "x": float(x) + self.ox, "y": float(y) + self.oy})
        return t

    def rect(self, x0, y0, x1, y1) -> str:
        """A polygon record for the world rectangle, counter-clockwise."""
        nodes = [self.node(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        t = self.token()
        self.out["polygon"].append({"token": t, "exterior_node_tokens": nodes, "holes": []})
        return t

    def line(self, points) -> tuple[str, list[str]]:
        nodes = [self.node(x, y) for x, y in points]
        t = self.token()
        self.out["line"].append({"token": t, "node_tokens": nodes})
        return t, nodes

    def record(self, layer: str, **fields) -> str:
        t = self.token()
        self.out[layer].append({"token": t, **fields})
        return t

    def clip(self, lo, hi):
        return max(lo, -self.ext), min(hi, self.ext)

    def rect_au(self, to_world, a0, a1, u0, u1):
        """Polygon of the road-frame box ``[a0, a1] x [u0, u1]`` clipped to the city, or None."""
        u0, u1 = self.clip(u0, u1)
        if u1 - u0 <= 1e-9 or a1 - a0 <= 1e-9:
            return None
        (xa, ya), (xb, yb) = to_world(a0, u0), to_world(a1, u1)
        return self.rect(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))

    def line_au(self, to_world, a, u0, u1):
        """Line ``a = const`` over ``[u0, u1]`` clipped to the city, or None."""
        u0, u1 = self.clip(u0, u1)
        if u1 - u0 <= 1e-9:
            return None
        return self.line([to_world(a, u0), to_world(a, u1)])

    # ------------------------------------------------------------------ the city
    def intersections(self) -> None:
        for cx, hwx in self.layout.roads_x[:, :2]:
            for cy, hwy in self.layout.roads_y[:, :2]:
                poly = self.rect(cx - hwx, cy - hwy, cx + hwx, cy + hwy)
                self.road_polygons.append(poly)
                self.record("road_segment", polygon_token=poly, is_intersection=True,
                            drivable_area_token=self.drivable_token)

    def road(self, centre, hw, lanes, parking, crossing: np.ndarray, along_x: bool) -> None:
        """Every stretch of one road between its crossing roads, then its sidewalks."""
        to_world = _road_frame(centre, along_x)
        bounds = [(-self.ext, False)]
        for c, chw in crossing[:, :2]:
            bounds += [(c - chw, True), (c + chw, True)]
        bounds.append((self.ext, False))
        for (u0, low), (u1, high) in zip(bounds[0::2], bounds[1::2]):
            self.stretch(to_world, hw, int(lanes), bool(parking), u0, u1, low, high)
        # north-south roads' bands run between the crossing strips; east-west roads' bands
        # stop at the north-south sidewalks (each corner square once)
        sw = self.layout.sidewalk
        stops = [-self.ext]
        for c, chw in crossing[:, :2]:
            margin = chw + (sw if along_x else 0.0)
            stops += [c - margin, c + margin]
        stops.append(self.ext)
        for u0, u1 in zip(stops[0::2], stops[1::2]):
            for a0, a1 in ((hw, hw + sw), (-hw - sw, -hw)):
                poly = self.rect_au(to_world, a0, a1, u0, u1)
                if poly is not None:
                    self.record("walkway", polygon_token=poly)

    def stretch(self, to_world, hw, lanes, parking, u0, u1, low: bool, high: bool) -> None:
        """A road segment ``[u0, u1]``; ``low`` / ``high``: a crossing road at that end."""
        seg_poly = self.rect_au(to_world, -hw, hw, u0, u1)
        if seg_poly is None:
            return
        self.road_polygons.append(seg_poly)
        seg = self.record("road_segment", polygon_token=seg_poly, is_intersection=False,
                          drivable_area_token=self.drivable_token)
        crossings = {}
        for end, has, lo, hi in ((1, high, u1 - CROSSING_END, u1 - CROSSING_GAP),
                                 (-1, low, u0 + CROSSING_GAP, u0 + CROSSING_END)):
            poly = self.rect_au(to_world, -hw, hw, lo, hi) if has else None
            if poly is not None:
                crossings[end] = self.record("ped_crossing", polygon_token=poly,
                                             road_segment_token=seg)
        dividers = (u0 + CROSSING_END if low else u0, u1 - CROSSING_END if high else u1)
        lanes_span = (u0 + CROSSING_GAP if low else u0, u1 - CROSSING_GAP if high else u1)
        line = self.line_au(to_world, 0.0, *dividers)
        centre_nodes = []
        if line is not None:
            self.record("road_divider", line_token=line[0], road_segment_token=seg)
            centre_nodes = line[1]
        for side in (1, -1):
            self.half(to_world, hw, lanes, parking, u0, u1, side, seg, crossings.get(side),
                      dividers, lanes_span, centre_nodes)

    def half(self, to_world, hw, lanes, parking, u0, u1, side, seg, crossing_ahead,
             dividers, lanes_span, centre_nodes) -> None:
        """One travel direction of a stretch: traffic on ``side`` moves towards ``side * u``
        and meets ``crossing_ahead`` (a ped_crossing token or None) at the end."""
        lane_edge = lanes * LANE_WIDTH
        start, end = self.clip(u0, u1)[::side]
        a_lo, a_hi = sorted((0.0, side * hw))
        block = self.record(
            "road_block", polygon_token=self.rect_au(to_world, a_lo, a_hi, u0, u1),
            from_edge_line_token=self.line([to_world(0.0, start), to_world(side * hw, start)])[0],
            to_edge_line_token=self.line([to_world(0.0, end), to_world(side * hw, end)])[0],
            road_segment_token=seg)
        stop_band = None
        if crossing_ahead is not None:
            stop_band = ((u1 - STOP_LINE_END, u1 - STOP_LINE_START) if side > 0 else
                         (u0 + STOP_LINE_START, u0 + STOP_LINE_END))
            a_lo, a_hi = sorted((0.0, side * lane_edge))
            poly = self.rect_au(to_world, a_lo, a_hi, *stop_band)
            if poly is not None:
                self.record("stop_line", polygon_token=poly, stop_line_type="PED_CROSSING",
                            ped_crossing_tokens=[crossing_ahead], traffic_light_tokens=[],
                            road_block_token=block)
        # lane boundaries k = 1 .. lanes: inner lines broken by the stop line, then the edge
        boundary_nodes = [centre_nodes]
        for k in range(1, lanes + 1):
            pieces = [dividers]
            if k < lanes and stop_band is not None:
                pieces = [(dividers[0], stop_band[0]), (stop_band[1], dividers[1])]
            kind = LANE_LINE_TYPE if k < lanes else EDGE_LINE_TYPE
            nodes = []
            for p0, p1 in pieces:
                line = self.line_au(to_world, side * k * LANE_WIDTH, p0, p1)
                if line is not None:
                    self.record("lane_divider", line_token=line[0], lane_divider_segments=[
                        {"node_token": n, "segment_type": kind} for n in line[1]])
                    nodes += line[1]
            boundary_nodes.append(nodes)
        first, last = self.clip(*lanes_span)[::side]
        for k in range(lanes):
            a_in, a_out = side * k * LANE_WIDTH, side * (k + 1) * LANE_WIDTH
            poly = self.rect_au(to_world, *sorted((a_in, a_out)), *lanes_span)
            if poly is None:
                continue
            left = CENTRE_LINE_TYPE if k == 0 else LANE_LINE_TYPE     # right-hand traffic:
            right = EDGE_LINE_TYPE if k == lanes - 1 else LANE_LINE_TYPE  # left = inwards
            lane = self.record(
                "lane", polygon_token=poly, lane_type="CAR",
                from_edge_line_token=self.line([to_world(a_in, first), to_world(a_out, first)])[0],
                to_edge_line_token=self.line([to_world(a_in, last), to_world(a_out, last)])[0],
                left_lane_divider_segments=[{"node_token": n, "segment_type": left}
                                            for n in boundary_nodes[k]],
                right_lane_divider_segments=[{"node_token": n, "segment_type": right}
                                             for n in boundary_nodes[k + 1]])
            a_mid = side * (k + 0.5) * LANE_WIDTH
            (x0, y0), (x1, y1) = to_world(a_mid, first), to_world(a_mid, last)
            heading = float(np.arctan2(y1 - y0, x1 - x0))
            self.out["arcline_path_3"][lane] = [{
                "start_pose": [x0 + self.ox, y0 + self.oy, heading],
                "end_pose": [x1 + self.ox, y1 + self.oy, heading],
                "shape": "LSR", "radius": 999.999,    # straight: only the S part has length
                "segment_length": [0.0, float(abs(last - first)), 0.0]}]
            self.out["connectivity"][lane] = {"incoming": [], "outgoing": []}
        if parking:
            a_lo, a_hi = sorted((side * lane_edge, side * hw))
            poly = self.rect_au(to_world, a_lo, a_hi, u0, u1)
            if poly is not None:
                (x0, y0), (x1, y1) = to_world(0.0, start), to_world(0.0, end)
                self.record("carpark_area", polygon_token=poly,
                            orientation=float(np.arctan2(y1 - y0, x1 - x0)),
                            road_block_token=block)


def _road_frame(centre: float, along_x: bool):
    """(a, u) -> world (x, y) for a road: ``u`` along it, ``a`` right of +u traffic."""
    if along_x:        # east-west road: x = u, y = centre - a (+x traffic keeps to -y)
        return lambda a, u: (u, centre - a)
    return lambda a, u: (centre + a, u)   # north-south road: +y traffic keeps to +x


def build_map_expansion(layout: CityLayout, offset, token: Callable[[], str]) -> dict:
    """The map-expansion JSON object (module doc) of ``layout``; ``token()`` names records."""
    b = _Builder(layout, offset, token)
    b.intersections()
    for centre, hw, lanes, parking in layout.roads_x:
        b.road(centre, hw, lanes, parking, layout.roads_y, along_x=False)
    for centre, hw, lanes, parking in layout.roads_y:
        b.road(centre, hw, lanes, parking, layout.roads_x, along_x=True)
    b.out["drivable_area"].append({"token": b.drivable_token, "polygon_tokens": b.road_polygons})
    b.out["canvas_edge"] = [2.0 * b.ext, 2.0 * b.ext]
    b.out["version"] = MAP_EXPANSION_VERSION
    return b.out
