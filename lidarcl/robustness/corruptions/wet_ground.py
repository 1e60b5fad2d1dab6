"""Wet ground: the ground-water model of Hahner et al., "LiDAR Snowfall Simulation for Robust
3D Object Detection" (CVPR 2022, Sec. 3.3; Bijelic's wet-ground code), with Robo3D's
nuScenes-C settings.

A film of water on the road turns part of the diffuse ground return into a specular one
that leaves the sensor. For each ground point (incidence angle ``theta`` from the vertical,
flat-earth: ``cos theta = -z / |p|``):

1. the sensor's emitted power is estimated from the dry ground: a line fitted to the
   normalised intensity ``i / cos theta`` over range, times a power factor 15, gives
   ``P_out(d)``, and the ground's reflectivity is ``rho = i / cos theta / P_out``;
2. the light that reaches the ground through the water and comes back is the Fresnel power
   transmittance air -> water, the ground's ``rho``, water -> air, with the reflections
   inside the film summed: ``T = T_aw rho T_wa / (1 - rho R_wa)`` for each polarisation,
   ``t = max(T_s, T_p)`` (n_air 1.0003, n_water 1.33);
3. a water film of height ``h`` fills the pavement's 1.2 mm texture by ``f = h / 1.2 mm``:
   the return becomes ``P_out cos theta ((1 - f) rho + f t / theta)``, never brighter than
   before;
4. returns below the noise threshold ``noise_floor x`` (a line through the weakest ground
   returns per 1.2 m range bin over 10-70 m, or the intensity line when fewer than four
   bins have one above 5) ``x cos theta`` are lost.

nuScenes-C (Robo3D ``create/nuscenes_c/wet_ground``): water height 0.2 / 1.0 / 1.2 mm with
noise floor 0.2 / 0.3 / 0.7 for light / moderate / heavy; intensities on 0-1 (the file's
0-255 divided by 255); ground = the lidarseg classes driveable surface, other flat and
sidewalk where point labels exist, else the points within 0.5 m of a RANSAC ground plane
(Bijelic's original rule, with the incidence angle to the plane's normal instead of the
flat earth); fewer than 1,000 ground points leave the scan unchanged.
Differences from the generator: the weakest-return bin is the first least-populated one
(``argmin``; the code's ``argpartition(..., 2)[:, 0]`` picks one of the two least populated,
in an order numpy does not specify), and the points keep their order (Robo3D moves the ground
points to the end of the file).
"""
from __future__ import annotations

import numpy as np

from lidarcl.datasets.nuscenes_constants import LIDARSEG_CATEGORIES
from lidarcl.datasets.transforms.base import select_points
from lidarcl.robustness.corruptions.base import Corruption, register_corruption

__all__ = ["WetGround", "fresnel_power", "noise_line", "wet_ground_transmittance"]

N_AIR, N_WATER = 1.0003, 1.33
PAVEMENT_DEPTH_MM = 1.2
POWER_FACTOR = 15.0
GROUND_CATEGORIES = ("flat.driveable_surface", "flat.other", "flat.sidewalk")


def fresnel_power(incidence, n1: float, n2: float):
    """Fresnel power coefficients ``(R_s, T_s, R_p, T_p, refraction angle)`` for light
    from a medium of index ``n1`` into ``n2`` (angles in radians from the normal); total
    internal reflection clips the refraction angle at 90 degrees."""
    incidence = np.asarray(incidence, dtype=np.float64)
    refracted = np.arcsin(np.clip(np.sin(incidence) * n1 / n2, -1.0, 1.0))
    ci, ct = np.cos(incidence), np.cos(refracted)
    rs = (n1 * ci - n2 * ct) / (n1 * ci + n2 * ct)
    rp = (n2 * ci - n1 * ct) / (n2 * ci + n1 * ct)
    ts = 2 * n1 * ci / (n1 * ci + n2 * ct)
    tp = 2 * n1 * ci / (n2 * ci + n1 * ct)
    with np.errstate(divide="ignore", invalid="ignore"):
        beam = (n2 * ct) / (n1 * ci)  # the transmitted beam's cross-section and speed
    return rs ** 2, ts ** 2 * beam, rp ** 2, tp ** 2 * beam, refracted


def wet_ground_transmittance(incidence, rho):
    """``max(T_s, T_p)`` of air -> water -> ground (reflectivity ``rho``) -> water -> air,
    with every reflection inside the film summed (a geometric series)."""
    _, t_in_s, _, t_in_p, refracted = fresnel_power(incidence, N_AIR, N_WATER)
    r_back_s, t_out_s, r_back_p, t_out_p, _ = fresnel_power(refracted, N_WATER, N_AIR)
    ts = t_in_s * rho * t_out_s / (1 - rho * r_back_s)
    tp = t_in_p * rho * t_out_p / (1 - rho * r_back_p)
    return np.maximum(ts, tp)


def noise_line(distance, normalised, fallback, low: float = 0.0):
    """Slope and offset of the weakest ground returns per range bin (module doc, step 4):
    normalised intensities binned 2555 ways from ``low`` (Robo3D's wet ground 0, the snow
    model 5) to their maximum, range 50 ways over 10-70 m; ``fallback`` with fewer than four
    weakest bins above 5."""
    from scipy.stats import linregress

    hist, d_edges, i_edges = np.histogram2d(distance, normalised, bins=(50, 2555),
                                            range=((10, 70), (low, abs(normalised.max()))))
    hist[hist == 0] = len(distance)
    weakest = i_edges[np.argmin(hist, axis=1)]
    useful = weakest > 5
    if useful.sum() > 3:
        centres = (d_edges[:-1] + d_edges[1:]) / 2
        fit = linregress(centres[useful], weakest[useful])
        return fit.slope, fit.intercept
    return fallback


@register_corruption
class WetGround(Corruption):
    """The ground-water model (module doc).

    Args:
        ground_labels: raw labels of ground points in ``pts_semantic_mask`` (default: the
            nuScenes-lidarseg indices of driveable surface, other flat, sidewalk); without
            point labels, a fitted ground plane decides.
        intensity_max: the point files' intensity scale (255 for nuScenes and the
            generator, 1 for KITTI).
    """

    name = "wet_ground"
    parameter_name = "water_height_mm"
    parameters = (0.2, 1.0, 1.2)
    noise_floors = (0.2, 0.3, 0.7)
    source = "Robo3D create/nuscenes_c/wet_ground (water 0.2 / 1.0 / 1.2 mm, noise floor " \
             "0.2 / 0.3 / 0.7)"
    min_ground_points = 1000
    plane_band = 0.5  # m either side of a fitted plane

    def __init__(self, severity=1, seed=0, ground_labels=None, intensity_max: float = 255.0):
        super().__init__(severity, seed)
        if ground_labels is None:
            ground_labels = [LIDARSEG_CATEGORIES.index(c) for c in GROUND_CATEGORIES]
        self.ground_labels = [int(v) for v in ground_labels]
        self.intensity_max = float(intensity_max)

    def ground(self, sample) -> tuple[np.ndarray, np.ndarray | None]:
        """``(ground mask, plane normal)``: by point label (normal ``None``: the incidence
        angle then assumes a flat earth, as Robo3D does), else the points within 0.5 m of a
        RANSAC plane and its unit normal (Bijelic's default)."""
        points = sample["points"]
        if sample.get("pts_semantic_mask") is not None:
            return np.isin(np.asarray(sample["pts_semantic_mask"]), self.ground_labels), None
        from lidarcl.datasets.regions import fit_ground_plane

        plane, _ = fit_ground_plane(points[:, :3], seed=self.seed)
        if plane is None:
            return np.zeros(len(points), dtype=bool), None
        height = points[:, :3].astype(np.float64) @ plane[:3] + plane[3]
        return np.abs(height) < self.plane_band, plane[:3]

    def ground_mask(self, sample) -> np.ndarray:
        return self.ground(sample)[0]

    @staticmethod
    def incidence_cosine(xyz: np.ndarray, normal: np.ndarray | None) -> np.ndarray:
        """``cos theta`` of the rays to ``xyz`` against the ground's normal (flat earth:
        ``-z / |p|``)."""
        distance = np.linalg.norm(xyz, axis=1)
        along = -xyz[:, 2] if normal is None else np.abs(xyz @ normal)
        return np.clip(along / np.maximum(distance, 1e-9), -1.0, 1.0)

    def corrupt(self, sample, rng):
        from scipy.stats import linregress

        mask, normal = self.ground(sample)
        points = sample["points"]
        xyz_all = points[:, :3].astype(np.float64)
        mask &= self.incidence_cosine(xyz_all, normal) > 0  # rays that can hit the ground
        ground = np.flatnonzero(mask)
        if len(ground) < self.min_ground_points:
            return sample
        xyz = xyz_all[ground]
        intensity = points[ground, 3].astype(np.float64) / self.intensity_max
        distance = np.linalg.norm(xyz, axis=1)
        cos = self.incidence_cosine(xyz, normal)
        incidence = np.arccos(cos)
        normalised = intensity / cos
        fit = linregress(distance, normalised)
        power = POWER_FACTOR * (fit.slope * distance + fit.intercept)
        slope, offset = noise_line(distance, normalised, (fit.slope, fit.intercept))
        threshold = self.noise_floors[self.severity - 1] * (slope * distance + offset)
        rho = normalised / power
        transmitted = wet_ground_transmittance(incidence, np.clip(rho, 0.05, 1.0))
        filled = float(np.clip(self.parameter / PAVEMENT_DEPTH_MM, 0.0, 1.0))
        returned = (1 - filled) * rho + filled * transmitted / incidence
        wet = np.clip(power * cos * returned, 0.0, intensity)
        kept = wet > threshold * cos
        points = points.copy()
        points[ground, 3] = (wet * self.intensity_max).astype(np.float32)
        sample["points"] = points
        keep = np.ones(len(points), dtype=bool)
        keep[ground[~kept]] = False
        return select_points(sample, keep)
