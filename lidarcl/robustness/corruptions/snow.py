"""Snow: the physical simulation of Hahner et al., "LiDAR Snowfall Simulation for Robust 3D
Object Detection" (CVPR 2022, Sec. 3.1-3.2), with Robo3D's nuScenes-C settings.

Snowflakes are spheres in the air; in the plane of one beam each is a disc. Per beam (ring),
flakes are sampled in a disc of 80 m around the sensor:

- the snowfall rate ``S`` (mm/h, water equivalent) and the flakes' terminal velocity ``v``
  (m/s) give the equivalent rain rate ``R_r = (S / (487 rho_s D_s v))^{3/2}`` (mm/h) and the
  fraction of the volume the flakes fill ``eta = S / (3.6e6 rho_s v)`` (``rho_s`` = 0.1
  g/cm^3, ``D_s`` = 0.003), the paper's Eq. 13-14;
- diameters follow Gunn and Marshall's exponential distribution, ``D ~ Exp(1 / Lambda)``
  with ``Lambda = 25.5 R_r^{-0.48}`` per cm, capped at 20 mm; a sphere of diameter ``D`` cut
  at a height ``h ~ U(-D/2, D/2)`` from the beam's plane is a disc of radius
  ``sqrt(D^2/4 - h^2)``; centres are uniform in the 80 m disc, none covers the sensor, and
  flakes are drawn until their discs cover ``eta`` of it.

A beam of total divergence 0.003 rad is a wedge; the flakes in front of its target that cut
the wedge occlude it, nearer flakes first, each taking the fraction of the wedge's angle
that it covers and no nearer flake covers (the target keeps the rest). The received power is
the sum of their echoes (Sec. 3.2, the pulse of ``tau_H`` = 10 ns on a 0.1 m range grid):

    P(R) = sum_j A_j ratio_j xi(r_j) / r_j^2 sin^2(pi (R - r_j) / (c tau_H)),
           for r_j <= R <= r_j + c tau_H

with ``A = i d^2`` for the target (its intensity ``i`` at range ``d``: ``P = i ratio xi(d)``
at its peak) and ``A = 0.9 x 255`` for a flake (a 90 % reflector, not range-normalised). The
strongest echo is reported: within 0.2 m of the target the point keeps its place with the
new intensity; else the point moves to the flake (range ``argmax - c tau_H / 2``) and its
label becomes :data:`IGNORE_LABEL`. Finally every point that is not a flake echo and whose
intensity is at or below the noise threshold is lost: ``0.7 x`` the weakest ground returns'
line (the wet-ground model's estimate, Bijelic) times ``cos theta``, fitted as a quadratic
in range.

nuScenes-C (Robo3D ``create/nuscenes_c/snow``): snowfall rate 0.5 / 1.0 / 2.5 mm/h with
terminal velocity 2.0 / 1.6 / 1.6 m/s for light / moderate / heavy. Differences from
Robo3D's generator: flakes are sampled per scan and ring from the sample's own random source
(Robo3D loads 64 precomputed particle files, rng 42, and shuffles which ring gets which), the
overlap rejection between flakes is left out (the discs cover at most 4.3e-6 of the area;
one overlapping pair is expected among 10^4-10^5 flakes), the HDL-64's per-laser focal
intensity correction is not applied (Robo3D applies an HDL-64 calibration to nuScenes'
HDL-32 points), the ring column keeps the ring (Robo3D writes its 0 / 1 / 2 flags there), and
the ground for the noise threshold is the lidarseg ground classes or a fitted plane.
"""
from __future__ import annotations

import numba
import numpy as np

from lidarcl.datasets.transforms.base import select_points
from lidarcl.robustness.corruptions.base import Corruption, register_corruption, ring_index
from lidarcl.robustness.corruptions.sensor import _relabel
from lidarcl.robustness.corruptions.wet_ground import GROUND_CATEGORIES, noise_line

__all__ = ["Snow", "equivalent_rain_rate", "occupancy", "sample_flakes", "beam_occlusion",
           "snowfall_parameters"]

SPEED_OF_LIGHT = 299_792_458.0
SNOW_DENSITY = 0.1       # rho_s, g/cm^3
FLAKE_SCALE = 0.003      # D_s of the rate conversion
DISC_RADIUS = 80.0       # m, the flakes' disc around the sensor
MAX_DIAMETER_MM = 20.0
BEAM_DIVERGENCE = 0.003  # rad, total opening of one beam
TAU_H = 10e-9            # s
PULSE = SPEED_OF_LIGHT * TAU_H  # m
GRID = 0.1               # m, range grid of the received power
FLAKE_REFLECTANCE = 0.9
MAX_INTENSITY = 255.0
SAME_TARGET = 0.2        # m: a peak this close to the target keeps the point in place
NOISE_FLOOR = 0.7


def equivalent_rain_rate(snowfall_rate: float, terminal_velocity: float) -> float:
    """Rain rate (mm/h) whose drop-size distribution matches the snowfall's (Eq. 13)."""
    return (snowfall_rate / (487.0 * SNOW_DENSITY * FLAKE_SCALE * terminal_velocity)) ** 1.5


def occupancy(snowfall_rate: float, terminal_velocity: float) -> float:
    """Fraction of the volume (and of a beam's plane) filled by flakes (Eq. 14)."""
    return snowfall_rate / (3.6e6 * SNOW_DENSITY * terminal_velocity)


def snowfall_parameters(snowfall_rate: float, terminal_velocity: float) -> tuple[float, float]:
    """``(equivalent rain rate, occupancy)``."""
    return (equivalent_rain_rate(snowfall_rate, terminal_velocity),
            occupancy(snowfall_rate, terminal_velocity))


def sample_flakes(rng: np.random.Generator, rain_rate: float, fill: float,
                  radius: float = DISC_RADIUS) -> np.ndarray:
    """``(K, 3)`` flake discs ``x, y, r`` (m) in the plane of one beam (module doc)."""
    scale_mm = 10.0 / (25.5 * rain_rate ** -0.48)  # 1 / Lambda, Lambda per cm
    target = fill * np.pi * radius ** 2
    mean_area = np.pi * 2 * (scale_mm * 1e-3) ** 2 / 6  # E[pi (D^2/4 - h^2)]
    discs, area = [], 0.0
    while area < target:
        n = int(1.3 * (target - area) / mean_area) + 64
        diameter = rng.exponential(scale_mm, n)
        height = rng.uniform(-0.5, 0.5, n) * diameter
        keep = diameter <= MAX_DIAMETER_MM
        r = np.sqrt(np.maximum((diameter / 2) ** 2 - height ** 2, 0.0)) * 1e-3
        rho = radius * np.sqrt(rng.uniform(0.0, 1.0, n))
        phi = rng.uniform(0.0, 2 * np.pi, n)
        keep &= rho > r  # no flake covers the sensor
        r, rho, phi = r[keep], rho[keep], phi[keep]
        cumulative = area + np.cumsum(np.pi * r ** 2)
        take = int(np.searchsorted(cumulative, target)) + 1
        discs.append(np.stack([rho * np.cos(phi), rho * np.sin(phi), r], 1)[:take])
        area = float(cumulative[min(take, len(cumulative)) - 1]) if len(cumulative) else area
    return np.concatenate(discs)


@numba.njit(cache=True)
def _wrap(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


@numba.njit(cache=True)
def _occlusion(offsets, halves, ranges, divergence):
    """Fractions of a wedge ``[-divergence/2, divergence/2]`` taken by discs seen at angular
    offsets ``offsets`` with half-widths ``halves``, nearer first; the last entry is the
    target's share."""
    n = len(offsets)
    lo = np.maximum(offsets - halves, -divergence / 2)
    hi = np.minimum(offsets + halves, divergence / 2)
    order = np.argsort(ranges)
    edges = np.empty(2 * n + 2)
    edges[0], edges[1] = -divergence / 2, divergence / 2
    edges[2:2 + n], edges[2 + n:] = lo, hi
    edges = np.unique(edges)
    share = np.zeros(n + 1)
    for s in range(len(edges) - 1):
        a, b = edges[s], edges[s + 1]
        if b <= a or a < -divergence / 2 or b > divergence / 2:
            continue
        middle = 0.5 * (a + b)
        owner = n
        for k in range(n):
            j = order[k]
            if lo[j] <= middle <= hi[j]:
                owner = j
                break
        share[owner] += b - a
    return share / divergence


def beam_occlusion(offsets, halves, ranges, divergence: float = BEAM_DIVERGENCE) -> np.ndarray:
    """Share of one beam's angle taken by each disc (nearer first) and, last, the target's
    (exposed for tests)."""
    return _occlusion(np.asarray(offsets, np.float64), np.asarray(halves, np.float64),
                      np.asarray(ranges, np.float64), float(divergence))


@numba.njit(cache=True)
def _xi(r):
    if r <= 0.9:
        return 0.0
    return 1.0 if r >= 1.0 else (r - 0.9) / 0.1


@numba.njit(cache=True)
def _add_echo(power, r, amplitude):
    start = int(np.ceil(r / GRID))
    stop = min(int(np.floor((r + PULSE) / GRID)) + 1, len(power))
    for k in range(max(start, 0), stop):
        power[k] += amplitude * np.sin(np.pi * (k * GRID - r) / PULSE) ** 2


@numba.njit(cache=True)
def _snow_ring(azimuth, distance, intensity, flake_az, flake_rho, flake_half, max_half,
               divergence, grid_size, flag, new_distance, new_intensity):
    m = len(flake_az)
    power = np.zeros(grid_size)
    for i in range(len(azimuth)):
        reach = divergence / 2 + max_half
        lows = np.empty(2, np.int64)
        highs = np.empty(2, np.int64)
        lows[0] = np.searchsorted(flake_az, azimuth[i] - reach)
        highs[0] = np.searchsorted(flake_az, azimuth[i] + reach)
        lows[1], highs[1] = 0, 0
        if azimuth[i] - reach < -np.pi:
            lows[1], highs[1] = np.searchsorted(flake_az, azimuth[i] - reach + 2 * np.pi), m
        elif azimuth[i] + reach >= np.pi:
            lows[1], highs[1] = 0, np.searchsorted(flake_az, azimuth[i] + reach - 2 * np.pi)
        count = 0
        for part in range(2):
            for j in range(lows[part], highs[part]):
                if flake_rho[j] < distance[i] and abs(_wrap(flake_az[j] - azimuth[i])) <= \
                        divergence / 2 + flake_half[j]:
                    count += 1
        if count == 0:
            continue
        offsets = np.empty(count)
        halves = np.empty(count)
        ranges = np.empty(count)
        c = 0
        for part in range(2):
            for j in range(lows[part], highs[part]):
                offset = _wrap(flake_az[j] - azimuth[i])
                if flake_rho[j] < distance[i] and abs(offset) <= divergence / 2 + flake_half[j]:
                    offsets[c], halves[c], ranges[c] = offset, flake_half[j], flake_rho[j]
                    c += 1
        share = _occlusion(offsets, halves, ranges, divergence)
        power[:] = 0.0
        _add_echo(power, distance[i], intensity[i] * share[count] * _xi(distance[i]))
        for k in range(count):
            if share[k] > 0:
                _add_echo(power, ranges[k], FLAKE_REFLECTANCE * MAX_INTENSITY * share[k]
                          * _xi(ranges[k]) / ranges[k] ** 2)
        peak = np.argmax(power)
        if power[peak] <= 0.0:  # target and flakes inside the receiver's blind 0.9 m
            continue
        strongest = min(max(power[peak], 0.0), MAX_INTENSITY)
        at = peak * GRID - PULSE / 2
        new_intensity[i] = np.floor(strongest)
        if abs(at - distance[i]) < SAME_TARGET:
            flag[i] = 1
            new_distance[i] = distance[i]
        else:
            flag[i] = 2
            new_distance[i] = at


@register_corruption
class Snow(Corruption):
    """Hahner et al.'s snowfall on a scan (module doc).

    Args:
        ring_column: the point file's ring column (one flake set per ring), or ``None`` to
            infer the rings from the elevation of a ``num_beams`` sensor (KITTI: 64).
        intensity_max: the point files' intensity scale (the model works on 0-255).
        ground_labels: raw labels of ground points for the noise threshold (default: the
            nuScenes-lidarseg indices of driveable surface, other flat, sidewalk); without
            point labels a fitted ground plane decides.
    """

    name = "snow"
    parameter_name = "snowfall_rate"
    parameters = (0.5, 1.0, 2.5)
    terminal_velocities = (2.0, 1.6, 1.6)
    source = ("Robo3D create/nuscenes_c/snow (snowfall 0.5 / 1.0 / 2.5 mm/h, terminal velocity "
              "2.0 / 1.6 / 1.6 m/s)")

    def __init__(self, severity=1, seed=0, ring_column: int | None = 4,
                 intensity_max: float = 255.0, ground_labels=None, num_beams: int = 32):
        super().__init__(severity, seed)
        from lidarcl.datasets.nuscenes_constants import LIDARSEG_CATEGORIES

        self.ring_column = None if ring_column is None else int(ring_column)
        self.num_beams = int(num_beams)
        self.intensity_max = float(intensity_max)
        if ground_labels is None:
            ground_labels = [LIDARSEG_CATEGORIES.index(c) for c in GROUND_CATEGORIES]
        self.ground_labels = [int(v) for v in ground_labels]

    @property
    def terminal_velocity(self) -> float:
        return self.terminal_velocities[self.severity - 1]

    def noise_threshold(self, sample, distance, intensity) -> np.ndarray | None:
        """Per point: ``0.7 x`` the weakest ground returns' line times ``cos theta``, fitted
        as a quadratic in range; ``None`` with too few ground points."""
        from lidarcl.robustness.corruptions.wet_ground import WetGround

        model = WetGround(1, seed=self.seed, ground_labels=self.ground_labels)
        ground, normal = model.ground(sample)
        cos = model.incidence_cosine(sample["points"][:, :3].astype(np.float64), normal)
        ground &= cos > 0
        if ground.sum() < 3:
            return None
        d, cos = distance[ground], cos[ground]
        normalised = intensity[ground] / cos
        fit = np.polyfit(d, normalised, 1)
        slope, offset = noise_line(d, normalised, (fit[0], fit[1]), low=5.0)
        ground_threshold = NOISE_FLOOR * (slope * d + offset) * cos
        return np.polyval(np.polyfit(d, ground_threshold, 2), distance)

    def corrupt(self, sample, rng):
        points = sample["points"]
        ring = ring_index(sample, self.ring_column, self.num_beams)
        xyz = points[:, :3].astype(np.float64)
        distance = np.linalg.norm(xyz, axis=1)
        intensity = points[:, 3].astype(np.float64) * (MAX_INTENSITY / self.intensity_max)
        azimuth = np.arctan2(xyz[:, 1], xyz[:, 0])
        rain, fill = snowfall_parameters(self.parameter, self.terminal_velocity)
        flag = np.zeros(len(points), np.int64)
        new_distance = distance.copy()
        new_intensity = intensity.copy()
        grid_size = int(np.ceil((max(120.0, distance.max(initial=0.0)) + PULSE) / GRID)) + 2
        for channel in np.unique(ring):
            rows = np.flatnonzero(ring == channel)
            flakes = sample_flakes(rng, rain, fill)
            flake_rho = np.hypot(flakes[:, 0], flakes[:, 1])
            flake_az = np.arctan2(flakes[:, 1], flakes[:, 0])
            order = np.argsort(flake_az)
            half = np.arcsin(np.minimum(flakes[order, 2] / flake_rho[order], 1.0))
            ring_flag = np.zeros(len(rows), np.int64)
            ring_distance = distance[rows].copy()
            ring_intensity = intensity[rows].copy()
            _snow_ring(azimuth[rows], distance[rows], intensity[rows], flake_az[order],
                       flake_rho[order], half, float(half.max(initial=0.0)), BEAM_DIVERGENCE,
                       grid_size, ring_flag, ring_distance, ring_intensity)
            flag[rows], new_distance[rows], new_intensity[rows] = (ring_flag, ring_distance,
                                                                   ring_intensity)
        threshold = self.noise_threshold(sample, distance, intensity)
        points = points.copy()
        scale = new_distance / np.maximum(distance, 1e-9)
        points[:, :3] = (xyz * scale[:, None]).astype(np.float32)
        points[:, 3] = (np.round(new_intensity) * (self.intensity_max / MAX_INTENSITY)
                        ).astype(np.float32)
        sample["points"] = points
        sample["snow_flags"] = flag
        sample.setdefault("point_keys", [])
        if "snow_flags" not in sample["point_keys"]:
            sample["point_keys"] = list(sample["point_keys"]) + ["snow_flags"]
        _relabel(sample, np.flatnonzero(flag == 2))
        if threshold is None:
            return sample
        keep = (flag == 2) | (np.round(new_intensity) > threshold)
        return select_points(sample, keep)
