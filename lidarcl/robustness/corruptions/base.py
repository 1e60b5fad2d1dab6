"""What every corruption shares: the severity, the per-sample random source, the ring index
and the bookkeeping of labels.

A corruption is a pipeline transform (``sample -> sample``, :class:`Transform`) built with a
``severity`` (1 = light, 2 = moderate, 3 = heavy for Robo3D's eight; 1-5 for Dong et al.'s)
and a ``seed``. Its random numbers come from a generator seeded by the seed, the corruption,
the severity and the sample's token, so the same sample always gets the same corruption, in
any process and in any order (Robo3D's released generators share one global state across
their worker pool, so their sets cannot be regenerated bit for bit).

Points a corruption removes take their per-point arrays (labels, instance ids) with them
(:func:`~lidarcl.datasets.transforms.base.select_points`); points it adds or displaces away
from the surface they hit get :data:`IGNORE_LABEL` (Robo3D marks them 41 / 42 / 43, outside
nuScenes-lidarseg's 32 classes, for the same reason: no class describes a fog return). The
point format (columns, dtype float32) is kept.
"""
from __future__ import annotations

import os
import zlib

import numpy as np

from lidarcl.datasets.synthetic.constants import LIDAR_ELEVATIONS_DEG
from lidarcl.datasets.transforms.base import Transform
from lidarcl.registry import TRANSFORMS

__all__ = ["CORRUPTIONS", "IGNORE_LABEL", "SEVERITY_NAMES", "Corruption", "build_corruption",
           "NOMINAL_ELEVATIONS", "register_corruption", "ring_index", "rings_from_elevation",
           "sample_key"]

SEVERITY_NAMES = ("light", "moderate", "heavy")
# the label of points a corruption creates: the ignore index of lidarcl's segmentation
# configs, and outside the 0-31 of a raw nuScenes-lidarseg file (whose learning map sends
# every unknown raw label to the ignore index)
IGNORE_LABEL = 255
# name -> corruption class
CORRUPTIONS: dict[str, type] = {}


def register_corruption(cls: type) -> type:
    """Class decorator: register ``cls`` as a transform and under ``cls.name``."""
    if cls.name in CORRUPTIONS:
        raise ValueError(f"corruption {cls.name!r} is registered twice")
    CORRUPTIONS[cls.name] = cls
    TRANSFORMS.register_module(module=cls)
    return cls


def build_corruption(name: str, severity: int | str, seed: int = 0, **kwargs) -> "Corruption":
    """The corruption ``name`` (e.g. ``"beam_missing"``) at ``severity``."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(sorted(CORRUPTIONS))}")
    return CORRUPTIONS[name](severity=severity, seed=seed, **kwargs)


def sample_key(sample: dict) -> str:
    """What identifies a sample for its random source: the token, else the index, else the
    point file's name."""
    for key in ("token", "sample_idx"):
        if sample.get(key) not in (None, ""):
            return str(sample[key])
    if sample.get("lidar_path"):
        return os.path.basename(sample["lidar_path"])
    raise ValueError("a corruption needs the sample's token, sample_idx or lidar_path to seed "
                     "its random source; the sample has none")


# nominal beam elevations (degrees, ascending: ring 0 is the lowest) per beam count: the
# HDL-32E of nuScenes (and the generator), 32 beams evenly from -30.67 to +10.67; the HDL-64E
# S2 of KITTI, an upper block of 32 from -8.33 to +2.0 at 1/3 degree and a lower block of 32
# from -24.33 to -8.83 at 1/2 degree (Velodyne's data sheets)
NOMINAL_ELEVATIONS = {
    32: LIDAR_ELEVATIONS_DEG,  # the generator simulates the same HDL-32E
    64: np.concatenate([-8.83 - 0.5 * np.arange(32)[::-1], 2.0 - np.arange(32)[::-1] / 3]),
}


def rings_from_elevation(xyz: np.ndarray, num_beams: int) -> np.ndarray:
    """``(N,)`` int64 ring of each point: the nominal beam elevation nearest to the point's
    (:data:`NOMINAL_ELEVATIONS`). On the real nuScenes frame this matches the file's ring
    for 95.7 % of the points beyond 5 m and 69 % of all (near points see the emitters'
    offset from the sensor's axis); on generated scans, every point."""
    if num_beams not in NOMINAL_ELEVATIONS:
        raise ValueError(f"no nominal beam elevations for a {num_beams}-beam sensor; known: "
                         f"{sorted(NOMINAL_ELEVATIONS)}")
    xyz = np.asarray(xyz, dtype=np.float64)
    elevation = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    table = NOMINAL_ELEVATIONS[num_beams]
    edges = (table[1:] + table[:-1]) / 2
    return np.searchsorted(edges, elevation).astype(np.int64)


def ring_index(sample: dict, ring_column: int | None = 4, num_beams: int = 32) -> np.ndarray:
    """``(N,)`` int64 beam (ring) index of every point: the point file's column
    ``ring_column`` (nuScenes' 5th; the generator writes the same), found among the loaded
    columns through ``sample["points_use_dims"]`` when ``LoadPoints`` kept a subset; with
    ``ring_column=None`` (KITTI's files have no ring) inferred from the elevation
    (:func:`rings_from_elevation`)."""
    points = sample["points"]
    if ring_column is None:
        return rings_from_elevation(points[:, :3], num_beams)
    dims = sample.get("points_use_dims")
    if dims is None:
        column = ring_column if points.shape[1] > ring_column else None
    else:
        dims = list(dims)
        column = dims.index(ring_column) if ring_column in dims else None
    if column is None:
        raise ValueError(f"sample {sample.get('token', '?')}: the corruption needs the ring "
                         f"index (column {ring_column} of the point file), which was not "
                         f"loaded; load the points with use_dims including {ring_column} "
                         f"(e.g. [0, 1, 2, 3, {ring_column}]), or pass ring_column=None to "
                         "infer the rings from the elevation")
    ring = points[:, column]
    if len(ring) and (ring.min() < 0 or not np.all(ring == np.round(ring))):
        raise ValueError(f"sample {sample.get('token', '?')}: column {ring_column} holds "
                         f"{ring.min()}..{ring.max()}, not ring indices")
    return ring.astype(np.int64)


class Corruption(Transform):
    """Base class: ``name``, ``parameter_name`` and ``parameters`` (one value per severity,
    light first) and ``source`` (where the values come from) are class attributes; a
    subclass implements :meth:`corrupt`.

    Args:
        severity: 1-based level (or ``"light"`` / ``"moderate"`` / ``"heavy"`` for the
            three-level corruptions).
        seed: the corruption set's seed (the same seed and sample give the same output).
    """

    name: str = ""
    parameter_name: str = ""
    parameters: tuple = ()
    source: str = ""

    def __init__(self, severity: int | str = 1, seed: int = 0):
        levels = len(self.parameters)
        if isinstance(severity, str):
            if levels != len(SEVERITY_NAMES) or severity not in SEVERITY_NAMES:
                raise ValueError(f"{self.name}: severity {severity!r} is not one of "
                                 f"1..{levels}" + (f" or {SEVERITY_NAMES}" if levels == 3
                                                    else ""))
            severity = SEVERITY_NAMES.index(severity) + 1
        if not 1 <= int(severity) <= levels:
            raise ValueError(f"{self.name}: severity {severity} is not in 1..{levels}")
        self.severity = int(severity)
        self.seed = int(seed)

    @property
    def parameter(self):
        """This severity's parameter value."""
        return self.parameters[self.severity - 1]

    def rng(self, sample: dict) -> np.random.Generator:
        """The sample's own random source (module doc)."""
        return np.random.default_rng([self.seed, zlib.crc32(self.name.encode()),
                                      self.severity, zlib.crc32(sample_key(sample).encode())])

    def transform(self, sample: dict) -> dict:
        sample = self.corrupt(sample, self.rng(sample))
        sample.setdefault("corruptions", []).append(
            {"name": self.name, "severity": self.severity, self.parameter_name: self.parameter})
        return sample

    def corrupt(self, sample: dict, rng: np.random.Generator) -> dict:  # pragma: no cover
        raise NotImplementedError
