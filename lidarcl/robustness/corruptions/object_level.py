"""Object-level corruptions of Dong et al., "Benchmarking Robustness of 3D Object Detection
to Common Corruptions in Autonomous Driving" (CVPR 2023), at their five severities: each acts
on the points inside every ground-truth box (``gt_boxes``, lidarcl's convention: z at the
box's centre), independently per box, with the sample's random source. Boxes and labels are
unchanged; removed points take their labels with them, moved points keep theirs (they still
belong to the object).

Parameters (``3D_Corruptions_AD``, ``LiDAR_corruptions.py`` / ``utils/bbox_util.py``), severity
1-5: density decrease drops 10-50 % of a box's points; cutout removes the 30-70 % of them
nearest to one of them; Gaussian noise of 0.02-0.10 m; shear 0.05-0.25; scale 4-20 % along
one axis; rotation 1-9 degrees (each +-1 degree) about the box's vertical axis.

Differences from the released code: its in-box test takes the box's z as the bottom of an
mmdetection3d box and treats it as the centre (here the box convention is the library's, and
the test is the devkit's); cutout's nearest neighbours and the noise use x, y, z only (the
code includes intensity and the other columns); points keep their order (the code moves the
in-box points to the front). The released density, cutout and noise functions raise a
TypeError as called (3D_Corruptions_AD issue 6); their documented behaviour is implemented.
"""
from __future__ import annotations

import numpy as np

from lidarcl.datasets.transforms.base import select_points
from lidarcl.robustness.corruptions.base import Corruption, register_corruption

__all__ = ["LocalDensityDecrease", "LocalCutout", "LocalGaussianNoise", "LocalShear",
           "LocalScale", "LocalRotation", "box_members"]

SOURCE = "3D_Corruptions_AD (Dong et al., CVPR 2023) utils/bbox_util.py"


def box_members(sample: dict) -> list[np.ndarray]:
    """Per ground-truth box, the rows of the points inside it (a point in several boxes
    belongs to the first)."""
    import torch

    from lidarcl.ops import points_in_boxes_first

    boxes = sample.get("gt_boxes")
    if boxes is None:
        raise ValueError(f"sample {sample.get('token', '?')}: an object-level corruption "
                         "needs the ground-truth boxes (gt_boxes)")
    boxes = np.asarray(boxes, dtype=np.float64)[:, :7]
    if len(boxes) == 0:
        return []
    first = points_in_boxes_first(torch.from_numpy(sample["points"][:, :3].astype(np.float64)),
                                  torch.from_numpy(boxes)).numpy()
    order = np.argsort(first, kind="stable")
    bounds = np.searchsorted(first[order], np.arange(len(boxes) + 1))
    return [order[bounds[b]:bounds[b + 1]] for b in range(len(boxes))]


def _to_box(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    c, s = np.cos(box[6]), np.sin(box[6])
    rel = xyz - box[:3]
    return np.stack([rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c,
                     rel[:, 2]], 1)


def _from_box(local: np.ndarray, box: np.ndarray) -> np.ndarray:
    c, s = np.cos(box[6]), np.sin(box[6])
    return np.stack([local[:, 0] * c - local[:, 1] * s, local[:, 0] * s + local[:, 1] * c,
                     local[:, 2]], 1) + box[:3]


class _ObjectCorruption(Corruption):
    source = SOURCE

    def corrupt(self, sample, rng):
        members = box_members(sample)  # raises without boxes
        boxes = np.asarray(sample["gt_boxes"], dtype=np.float64)[:, :7]
        keep = np.ones(len(sample["points"]), dtype=bool)
        points = sample["points"].copy()
        for box, rows in zip(boxes, members):
            if len(rows):
                self.per_box(points, keep, rows, box, rng)
        sample["points"] = points
        return select_points(sample, keep)

    def per_box(self, points, keep, rows, box, rng):  # pragma: no cover - abstract
        raise NotImplementedError


@register_corruption
class LocalDensityDecrease(_ObjectCorruption):
    """Drop a fraction of each box's points at random."""

    name = "local_density_decrease"
    parameter_name = "drop_fraction"
    parameters = (0.1, 0.2, 0.3, 0.4, 0.5)

    def per_box(self, points, keep, rows, box, rng):
        keep[rng.choice(rows, int(self.parameter * len(rows)), replace=False)] = False


@register_corruption
class LocalCutout(_ObjectCorruption):
    """Remove the fraction of each box's points nearest to one of them, drawn at random (a
    hole in the object)."""

    name = "local_cutout"
    parameter_name = "cut_fraction"
    parameters = (0.3, 0.4, 0.5, 0.6, 0.7)

    def per_box(self, points, keep, rows, box, rng):
        count = int(self.parameter * len(rows))
        if count == 0:
            return
        xyz = points[rows, :3].astype(np.float64)
        centre = xyz[rng.integers(len(rows))]
        order = np.argsort(np.linalg.norm(xyz - centre, axis=1), kind="stable")
        keep[rows[order[:count]]] = False


@register_corruption
class LocalGaussianNoise(_ObjectCorruption):
    """Gaussian noise of ``sigma`` metres on the x, y, z of each box's points."""

    name = "local_gaussian_noise"
    parameter_name = "sigma"
    parameters = (0.02, 0.04, 0.06, 0.08, 0.10)

    def per_box(self, points, keep, rows, box, rng):
        points[rows, :3] += rng.normal(0.0, self.parameter, (len(rows), 3)).astype(np.float32)


def _signed(rng, centre: float, half_width: float, size=None):
    """``U(centre - half_width, centre + half_width)`` with a random sign."""
    value = rng.uniform(centre - half_width, centre + half_width, size)
    return value * rng.choice(np.array([-1.0, 1.0]), size)


@register_corruption
class LocalShear(_ObjectCorruption):
    """Shear each box's points in the box frame scaled by half its largest side:
    ``x' = x + d y + f z, y' = y, z' = b x + e y + z`` with ``b, d, e, f ~ +-U(c - 0.05,
    c + 0.05)``, clamped to the box."""

    name = "local_shear"
    parameter_name = "shear"
    parameters = (0.05, 0.10, 0.15, 0.20, 0.25)

    def per_box(self, points, keep, rows, box, rng):
        b, d, e, f = _signed(rng, self.parameter, 0.05, 4)
        half = box[3:6].max() / 2
        local = _to_box(points[rows, :3].astype(np.float64), box) / half
        x, y, z = local.T
        sheared = np.stack([x + d * y + f * z, y, b * x + e * y + z], 1)
        limit = box[3:6] / 2 / half
        sheared = np.clip(sheared, -limit, limit)
        points[rows, :3] = _from_box(sheared * half, box).astype(np.float32)


@register_corruption
class LocalScale(_ObjectCorruption):
    """Scale each box's points by ``1 +- c`` along one of the box's axes drawn at random
    (along z about the box's bottom, so the object stays on the ground)."""

    name = "local_scale"
    parameter_name = "scale"
    parameters = (0.04, 0.08, 0.12, 0.16, 0.20)

    def per_box(self, points, keep, rows, box, rng):
        axis = int(rng.integers(3))
        factor = 1.0 + self.parameter * rng.choice(np.array([-1.0, 1.0]))
        local = _to_box(points[rows, :3].astype(np.float64), box)
        local[:, axis] *= factor
        if axis == 2:
            local[:, 2] += (factor - 1.0) * box[5] / 2
        points[rows, :3] = _from_box(local, box).astype(np.float32)


@register_corruption
class LocalRotation(_ObjectCorruption):
    """Rotate each box's points about the box's vertical axis by ``+-U(c - 1, c + 1)``
    degrees (the box stays: its heading no longer matches the points)."""

    name = "local_rotation"
    parameter_name = "degrees"
    parameters = (1.0, 3.0, 5.0, 7.0, 9.0)

    def per_box(self, points, keep, rows, box, rng):
        turned = box.copy()
        turned[6] += np.radians(_signed(rng, self.parameter, 1.0))
        local = _to_box(points[rows, :3].astype(np.float64), box)
        points[rows, :3] = _from_box(local, turned).astype(np.float32)
