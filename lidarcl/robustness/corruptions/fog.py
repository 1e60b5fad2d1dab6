"""Fog: the physical simulation of Hahner et al., "Fog Simulation on Real LiDAR Point Clouds
for 3D Object Detection in Adverse Weather" (ICCV 2021), with Robo3D's nuScenes-C settings.

The LiDAR's received power from a hard target at range ``R0`` in clear weather falls with
``beta_0 / R0^2`` (``beta_0 = Gamma / pi``, a Lambertian target); in fog it is attenuated
twice over the path, ``P_hard = exp(-2 alpha R0) P_clear`` (paper Eq. 4-6). The fog itself
returns a soft echo, the transmitted pulse ``P_T(t) = P0 sin^2(pi t / (2 tau_H))``
convolved with the fog's backscatter up to the target (Eq. 9-11):

    P_soft(R) / (C_A P0 beta) = int_0^{2 tau_H} sin^2(pi t / (2 tau_H))
                                 exp(-2 alpha r) xi(r) / r^2 U(R0 - r) dt,  r = R - c t / 2

with the overlap function ``xi`` linear from 0 at ``R1`` = 0.9 m to 1 at ``R2`` = 1.0 m and
``U`` the Heaviside step (no fog behind the target). The sensor reports the stronger of the
two peaks: if ``i_soft = I(R0) * i * R0^2 * beta / beta_0`` (``I`` the soft peak of the
normalised integral, ``i * R0^2 / beta_0`` the target's ``C_A P0``) exceeds the attenuated
``i_hard = round(exp(-2 alpha R0) i)``, the point becomes a fog return at the soft peak's
range ``R_fog`` (with a range noise of +-10 m on ``R0``, the paper's ``v1`` noise); else it
stays with intensity ``i_hard``.

nuScenes-C (Robo3D ``create/nuscenes_c/fog``): ``beta`` (backscattering, 1/sr) = 0.008 /
0.05 / 0.2 for light / moderate / heavy; ``alpha`` (attenuation, 1/m) is drawn per scan
from {0, 0.005, 0.01, 0.02, 0.03, 0.06} at every severity. Constants: ``tau_H`` = 20 ns,
``P0`` = 80 W, ``Gamma`` = 1e-6. The soft-peak table is computed here (numba) on the grid of
Hahner's lookup tables (``R0`` every 0.1 m to 200 m, ``R`` on ``linspace(0, 200, 2000)``).
Two differences from Robo3D's generator, both toward Hahner's code: fog intensities are
clipped to the sensor's 255 (Robo3D dropped the clip), and the noisy range ``d`` is kept
above 1 m (for ``R0 < 10`` m, ``U(R0 - 10, R0 + 10)`` can reach 0 and throw the point to
infinity; fog returns that close do not occur at these betas in practice).
"""
from __future__ import annotations

import numba
import numpy as np

from lidarcl.robustness.corruptions.base import Corruption, register_corruption
from lidarcl.robustness.corruptions.sensor import _relabel

__all__ = ["Fog", "FOG_ALPHAS", "soft_peak_table", "soft_response"]

SPEED_OF_LIGHT = 299_792_458.0
TAU_H = 20e-9          # half-power pulse width (s)
GAMMA = 1e-6           # target reflectivity of the clear-weather model
BETA_0 = GAMMA / np.pi  # Lambertian target's differential reflectivity (1/sr)
R1, R2 = 0.9, 1.0      # overlap function: 0 below R1, 1 above R2 (m)
TABLE_STEP = 0.1       # R0 grid of the soft-peak table (m)
TABLE_MAX = 200.0
RANGE_NOISE = 10.0     # the v1 range noise of a fog return (m)
FOG_ALPHAS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.06)  # Robo3D's per-scan attenuation draw (1/m)
SIMPSON_POINTS = 2001


@numba.njit(cache=True)
def _integrand(t, R, R0, alpha):
    r = R - SPEED_OF_LIGHT * t / 2.0
    if r <= R1 or r > R0:  # xi(r) = 0; no fog behind the target (U)
        return 0.0
    xi = 1.0 if r >= R2 else (r - R1) / (R2 - R1)
    pulse = np.sin(np.pi * t / (2.0 * TAU_H)) ** 2
    return pulse * np.exp(-2.0 * alpha * r) * xi / (r * r)


@numba.njit(cache=True)
def _soft(R, R0, alpha):
    """Simpson's rule over t in [0, 2 tau_H]."""
    n = SIMPSON_POINTS
    h = 2.0 * TAU_H / (n - 1)
    total = _integrand(0.0, R, R0, alpha) + _integrand(2.0 * TAU_H, R, R0, alpha)
    for k in range(1, n - 1):
        total += (4.0 if k % 2 == 1 else 2.0) * _integrand(k * h, R, R0, alpha)
    return total * h / 3.0


@numba.njit(cache=True)
def _table(alpha, ranges, targets):
    # the soft echo is looked for in front of the target only (R <= R0: Hahner's table
    # generator skips R > R0). There the step U is 1 over the whole pulse, so the curve does
    # not depend on R0 and its running maximum serves every R0
    peak = np.zeros(len(targets))
    where = np.zeros(len(targets))
    best, best_at, j = 0.0, 0.0, 0
    for i in range(len(targets)):
        while j < len(ranges) and ranges[j] <= targets[i]:
            value = _soft(ranges[j], 1e9, alpha)
            if value > best:
                best, best_at = value, ranges[j]
            j += 1
        peak[i], where[i] = best, best_at
    return peak, where


_TABLES: dict[float, tuple[np.ndarray, np.ndarray]] = {}


def soft_peak_table(alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(I, R_fog)`` per target range ``R0 = 0, 0.1, ..., 200`` m: the peak of the
    normalised soft response ``P_soft / (C_A P0 beta)`` and its range (module doc), cached
    per ``alpha``."""
    key = float(alpha)
    if key not in _TABLES:
        ranges = np.linspace(0.0, TABLE_MAX, 2000)
        targets = np.round(np.arange(0.0, TABLE_MAX + TABLE_STEP / 2, TABLE_STEP), 1)
        _TABLES[key] = _table(key, ranges, targets)
    return _TABLES[key]


def soft_response(R: float, R0: float, alpha: float) -> float:
    """The normalised soft response at range ``R`` for a target at ``R0`` (the integral of
    the module doc; exposed for tests)."""
    return float(_soft(float(R), float(R0), float(alpha)))


@register_corruption
class Fog(Corruption):
    """Hahner et al.'s fog on a scan (module doc); fog returns get :data:`IGNORE_LABEL`.

    Args:
        intensity_max: the point files' intensity scale (255 for nuScenes and the generator;
            1.0 for KITTI's reflectance); the model works on 0-255.
        alpha: fix the attenuation instead of drawing it per scan from :data:`FOG_ALPHAS`.
    """

    name = "fog"
    parameter_name = "beta"
    parameters = (0.008, 0.05, 0.2)
    source = "Robo3D create/nuscenes_c/fog (beta 0.008 / 0.05 / 0.2; alpha drawn per scan)"

    def __init__(self, severity=1, seed=0, intensity_max: float = 255.0,
                 alpha: float | None = None):
        super().__init__(severity, seed)
        self.intensity_max = float(intensity_max)
        self.alpha = alpha

    def corrupt(self, sample, rng):
        alpha = float(rng.choice(FOG_ALPHAS)) if self.alpha is None else float(self.alpha)
        points = sample["points"].copy()
        xyz = points[:, :3].astype(np.float64)
        distance = np.linalg.norm(xyz, axis=1)
        intensity = points[:, 3].astype(np.float64) * (255.0 / self.intensity_max)
        hard = np.round(np.exp(-2.0 * alpha * distance) * intensity)
        peak, peak_range = soft_peak_table(alpha)
        index = np.minimum(np.round(distance / TABLE_STEP).astype(np.int64), len(peak) - 1)
        soft = peak[index] * intensity * distance ** 2 * self.parameter / BETA_0
        fog = soft > hard
        noisy = rng.uniform(distance - RANGE_NOISE, distance + RANGE_NOISE)
        noisy = np.maximum(noisy, 1.0)
        scale = np.where(fog, peak_range[index] / noisy, 1.0)  # range R_fog R0 / d
        points[:, :3] = (xyz * scale[:, None]).astype(np.float32)
        points[:, 3] = (np.where(fog, np.minimum(soft, 255.0), hard)
                        * (self.intensity_max / 255.0)).astype(np.float32)
        sample["points"] = points
        sample["fog_alpha"] = alpha
        _relabel(sample, np.flatnonzero(fog))
        return sample
