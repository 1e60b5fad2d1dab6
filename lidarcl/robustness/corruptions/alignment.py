"""Alignment corruptions of Dong et al. (CVPR 2023), five severities: spatial LiDAR-camera
misalignment (calibration noise) and temporal misalignment (a stale LiDAR frame).

- **Spatial**: every camera's extrinsics get an independent error, a rotation of
  ``N(0, sigma_r^2)`` radians about each axis and a translation of ``N(0, sigma_t^2)`` metres
  per axis (in the camera frame), with ``sigma_t`` = 0.04 / 0.08 / 0.12 / 0.16 / 0.20 m and
  ``sigma_r`` = 0.004 / 0.008 / 0.012 / 0.016 / 0.020 rad (``3D_Corruptions_AD``: 2 x [0.02 ..
  0.10] and 2 x [0.002 .. 0.010]); ``lidar2img`` is recomposed from the noisy ``lidar2cam``.
  The released code adds the noise to the entries of the projection matrix without
  re-orthonormalising; here the error is a rotation (the same first-order effect on the
  off-diagonal entries, no scaling).
- **Temporal**: the keyframe's points are replaced by an older sweep, 1 / 3 / 5 / 7 / 9
  sweeps back (the code's frame 2 / 4 / 6 / 8 / 10), mapped into the keyframe's LiDAR frame
  as ``LoadSweeps`` maps sweeps (the older sweep at hand when there are fewer). Static
  objects stay aligned with the boxes, moving ones lag. Sweeps carry no point labels: the
  corruption is for detection and refuses a sample with ``pts_semantic_mask``. The camera
  images stay (the released code also swaps in older camera frames, which the info index
  does not list).
"""
from __future__ import annotations

import numpy as np

from lidarcl.robustness.corruptions.base import Corruption, register_corruption
from lidarcl.structures.camera import pad_to_4x4

__all__ = ["SpatialMisalignment", "TemporalMisalignment", "rotation_from_vector"]

SOURCE = "3D_Corruptions_AD (Dong et al., CVPR 2023) test_time_aug.py alignment noise"


def rotation_from_vector(vector: np.ndarray) -> np.ndarray:
    """Rodrigues: the rotation of ``|vector|`` radians about ``vector``."""
    vector = np.asarray(vector, dtype=np.float64)
    angle = float(np.linalg.norm(vector))
    if angle < 1e-15:
        return np.eye(3)
    k = vector / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


@register_corruption
class SpatialMisalignment(Corruption):
    """Calibration noise on every camera's ``lidar2cam`` (module doc). Acts on
    ``sample["cams"]`` (before the images are loaded) and on the loaded ``lidar2cam`` /
    ``lidar2img`` arrays when present (after)."""

    name = "spatial_misalignment"
    parameter_name = "translation_std"
    parameters = (0.04, 0.08, 0.12, 0.16, 0.20)
    rotation_stds = (0.004, 0.008, 0.012, 0.016, 0.020)
    source = SOURCE

    def errors(self, rng, count: int) -> list[np.ndarray]:
        sigma_r = self.rotation_stds[self.severity - 1]
        out = []
        for _ in range(count):
            error = np.eye(4)
            error[:3, :3] = rotation_from_vector(rng.normal(0.0, sigma_r, 3))
            error[:3, 3] = rng.normal(0.0, self.parameter, 3)
            out.append(error)
        return out

    def corrupt(self, sample, rng):
        cams = sample.get("cams") or {}
        loaded = sample.get("lidar2cam")
        if not cams and loaded is None:
            raise ValueError(f"sample {sample.get('token', '?')}: spatial misalignment needs "
                             "camera calibration (cams or lidar2cam)")
        names = sorted(cams)
        errors = dict(zip(names, self.errors(rng, len(names))))
        new_cams = {}
        for name in names:
            cam = dict(cams[name])
            lidar2cam = errors[name] @ np.asarray(cam["lidar2cam"], dtype=np.float64)
            cam["lidar2cam"] = lidar2cam
            if cam.get("cam2img") is not None:
                cam["lidar2img"] = pad_to_4x4(np.asarray(cam["cam2img"], np.float64)) @ lidar2cam
            new_cams[name] = cam
        if cams:
            sample["cams"] = new_cams
        if loaded is not None:
            loaded = np.asarray(loaded, dtype=np.float64)
            order = sample.get("cam_names") or names
            extra = self.errors(rng, len(loaded)) if not names else [errors[n] for n in order]
            noisy = np.stack([e @ m for e, m in zip(extra, loaded)])
            if sample.get("lidar2img") is not None:
                # lidar2img = A cam2img lidar2cam (A: image augmentation): swap the extrinsics
                sample["lidar2img"] = np.stack([
                    l2i @ np.linalg.inv(old) @ new
                    for l2i, old, new in zip(np.asarray(sample["lidar2img"]), loaded, noisy)])
            sample["lidar2cam"] = noisy
        return sample


@register_corruption
class TemporalMisalignment(Corruption):
    """The keyframe's points replaced by an older sweep (module doc)."""

    name = "temporal_misalignment"
    parameter_name = "sweeps_back"
    parameters = (1, 3, 5, 7, 9)
    source = SOURCE

    def corrupt(self, sample, rng):
        from lidarcl.datasets.transforms.loading import load_sweep

        if sample.get("pts_semantic_mask") is not None:
            raise ValueError(f"sample {sample.get('token', '?')}: temporal misalignment "
                             "replaces the scan by an unlabelled sweep; it is a detection "
                             "corruption (the sample has point labels)")
        sweeps = list(sample.get("sweeps") or [])
        if not sweeps:
            raise ValueError(f"sample {sample.get('token', '?')}: temporal misalignment needs "
                             "the sample's sweeps (the info index lists none)")
        sweep = sweeps[min(self.parameter, len(sweeps)) - 1]
        dims = sample.get("points_use_dims")
        points, _ = load_sweep(sample, sweep, dims, sample["points"].shape[1])
        sample["points"] = points
        sample["stale_sweep"] = sweep["path"]
        for key in list(sample.get("point_keys", [])) + ["pts_instance_mask"]:
            sample.pop(key, None)
        sample["point_keys"] = []
        return sample
