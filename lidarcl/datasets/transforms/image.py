"""Image augmentations of the camera-LiDAR pipelines that keep every projection exact.

Pixel convention: continuous coordinates, pixel ``(row i, column j)`` covers ``[j, j + 1) x
[i, i + 1)``; a point projecting to ``(u, v)`` lies in pixel ``(floor(v), floor(u))``
(``lidarcl.ops``). An image operation is then an axis-aligned affine map of pixel
coordinates, ``u' = a_u u + b_u``, ``v' = a_v v + b_v``:

* resize ``H x W -> H' x W'``: ``a_u = W'/W``, ``a_v = H'/H``, ``b = 0`` (resampling with
  ``align_corners=False`` uses the same convention);
* crop at ``(top, left)``: ``a = 1``, ``b_u = -left``, ``b_v = -top``;
* horizontal flip: ``a_u = -1``, ``b_u = W``.

``lidar2img`` maps ``[x, y, z, 1]`` to ``[u d, v d, d, 1]``, so the map enters on the left as
``T = [[a_u, 0, b_u, 0], [0, a_v, b_v, 0], [0, 0, 1, 0], [0, 0, 0, 1]]`` (the offset
multiplies the depth row): ``lidar2img' = T @ lidar2img``, ``cam2img' = T @ cam2img``, and a
point's new pixel is exactly the old pixel mapped by the affine map (tests check this with the
devkit's projection on the real frame). Superpixel maps (``LoadSuperpixels``) follow their
image with nearest-neighbour resampling, so an id is never blended.

Each transform acts on ``images``, ``superpixels``, ``lidar2img``, ``cam2img``, ``img_shape``
(from ``LoadImages``) and the per-camera matrices in ``cams``, and accumulates its maps in
``img_aug_matrix`` ``(K, 4, 4)`` (identity at load): new pixel = ``img_aug_matrix @`` loaded
pixel, as ``lidar_aug_matrix`` does for the LiDAR frame. Randomness: ``seed=None`` draws
from numpy's global RNG (seeded by mmengine), an int gives the transform its own generator.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lidarcl.datasets.transforms.base import RandomSource, Transform, select_points
from lidarcl.registry import TRANSFORMS
from lidarcl.structures.camera import project_points, visible_in_image

__all__ = ["image_affine", "apply_image_affine", "ResizeImages", "RandomResizedCropImages",
           "RandomFlipImages", "SelectCameras"]


def image_affine(scale_u: float, scale_v: float, shift_u: float, shift_v: float
                 ) -> np.ndarray:
    """The 4x4 ``T`` of the module doc for ``u' = scale_u u + shift_u``, ``v' = ...``."""
    mat = np.eye(4)
    mat[0, 0], mat[0, 2] = scale_u, shift_u
    mat[1, 1], mat[1, 2] = scale_v, shift_v
    return mat


def _resample(image: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int],
              nearest: bool) -> np.ndarray:
    """Crop ``box = (top, left, height, width)`` of an ``(H, W[, C])`` array and resize it
    to ``size = (H', W')``: bilinear with antialiasing for images, nearest for id maps."""
    top, left, height, width = box
    crop = image[top:top + height, left:left + width]
    if crop.shape[:2] == tuple(size):
        return np.ascontiguousarray(crop)
    crop = np.ascontiguousarray(crop)
    if not crop.flags.writeable:  # images from PIL are read-only
        crop = crop.copy()
    tensor = torch.from_numpy(crop)
    if nearest:
        # "nearest-exact": source pixel floor((i + 0.5) * in / out), the pixel-centre rule
        out = F.interpolate(tensor[None, None].to(torch.float64), size=size,
                            mode="nearest-exact")[0, 0]
        return out.to(tensor.dtype).numpy()
    chw = tensor.permute(2, 0, 1)[None].to(torch.float32)
    out = F.interpolate(chw, size=size, mode="bilinear", align_corners=False,
                        antialias=True)[0].permute(1, 2, 0)
    if image.dtype == np.uint8:
        out = out.round().clamp(0, 255).to(torch.uint8)
    return out.numpy().astype(image.dtype, copy=False)


def apply_image_affine(sample: dict, camera: int, mat: np.ndarray) -> None:
    """``lidar2img`` / ``cam2img`` / ``img_aug_matrix`` of camera ``camera`` (position in
    ``cam_names``), in the packed arrays and in ``sample["cams"]``, become ``mat @``
    themselves."""
    if sample.get("img_aug_matrix") is None:
        sample["img_aug_matrix"] = np.tile(np.eye(4), (len(sample["lidar2img"]), 1, 1))
    sample["img_aug_matrix"] = np.asarray(sample["img_aug_matrix"], dtype=np.float64)
    sample["img_aug_matrix"][camera] = mat @ sample["img_aug_matrix"][camera]
    for key in ("lidar2img", "cam2img"):
        if sample.get(key) is not None:
            sample[key] = np.asarray(sample[key], dtype=np.float64).copy()
            sample[key][camera] = mat @ sample[key][camera]
    names = sample.get("cam_names")
    cams = sample.get("cams") or {}
    if names is not None and names[camera] in cams:
        cam = cams[names[camera]]
        for key in ("lidar2img", "cam2img"):
            if cam.get(key) is not None:
                value = np.asarray(cam[key], dtype=np.float64)
                padded = np.eye(4)
                padded[:value.shape[0], :value.shape[1]] = value
                cam[key] = mat @ padded


def _set_camera(sample: dict, camera: int, box, size) -> None:
    """Crop ``box`` of camera ``camera`` and resize it to ``size``, with its matrices."""
    top, left, height, width = box
    sample["images"][camera] = _resample(sample["images"][camera], box, size, nearest=False)
    maps = sample.get("superpixels")
    if maps is not None and len(maps):
        if isinstance(maps, np.ndarray):
            maps = list(maps)
        maps[camera] = _resample(maps[camera], box, size, nearest=True)
        sample["superpixels"] = maps
    mat = image_affine(size[1] / width, size[0] / height, -left * size[1] / width,
                       -top * size[0] / height)
    apply_image_affine(sample, camera, mat)
    shapes = np.asarray(sample["img_shape"]).copy()
    shapes[camera] = size
    sample["img_shape"] = shapes


def _restack(sample: dict) -> dict:
    maps = sample.get("superpixels")
    if isinstance(maps, list) and maps and len({m.shape for m in maps}) == 1:
        sample["superpixels"] = np.stack(maps)
    return sample


def _check_loaded(sample: dict, name: str) -> None:
    if sample.get("images") is None or sample.get("img_shape") is None:
        raise ValueError(f"{name} needs LoadImages before it in the pipeline "
                         f"(sample {sample.get('token', '?')} has no images)")


@TRANSFORMS.register_module()
class ResizeImages(Transform):
    """Resize every camera image (and its superpixel map) to ``size = (H, W)``."""

    def __init__(self, size: Sequence[int]):
        self.size = (int(size[0]), int(size[1]))

    def transform(self, sample: dict) -> dict:
        _check_loaded(sample, "ResizeImages")
        for camera, (height, width) in enumerate(np.asarray(sample["img_shape"])):
            _set_camera(sample, camera, (0, 0, int(height), int(width)), self.size)
        return _restack(sample)


@TRANSFORMS.register_module()
class RandomResizedCropImages(Transform):
    """SLidR's image crop (Sautier et al., CVPR 2022; valeoai/SLidR ``ResizedCrop``): per
    camera, a box of area share ``U(scale)`` and aspect ratio (width / height) drawn
    log-uniformly in ``ratio``, resized to ``size``. A box is redrawn (at most ``attempts``
    times, then the whole image is resized) until it keeps at least ``min_points`` of the
    points that project into the camera, or ``min_share`` of them. SLidR: size (224, 416),
    scale (0.3, 1), ratio (14/9, 17/9), 1024 points or 75%.
    """

    def __init__(self, size: Sequence[int] = (224, 416), scale=(0.3, 1.0),
                 ratio=(14 / 9, 17 / 9), min_points: int = 1024, min_share: float = 0.75,
                 attempts: int = 10, min_depth: float = 1.0, seed: int | None = None):
        self.size = (int(size[0]), int(size[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= "
                             f"ratio[1], got scale={scale}, ratio={ratio}")
        self.min_points, self.min_share = int(min_points), float(min_share)
        self.attempts, self.min_depth = int(attempts), float(min_depth)
        self._random = RandomSource(seed)

    def _draw(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        area = self._random.uniform(*self.scale) * height * width
        log_ratio = self._random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = math.exp(log_ratio)
        crop_w = int(round(math.sqrt(area * aspect)))
        crop_h = int(round(math.sqrt(area / aspect)))
        if not (0 < crop_w <= width and 0 < crop_h <= height):
            return None
        top = int(self._random.uniform(0, height - crop_h + 1)) if height > crop_h else 0
        left = int(self._random.uniform(0, width - crop_w + 1)) if width > crop_w else 0
        return min(top, height - crop_h), min(left, width - crop_w), crop_h, crop_w

    def transform(self, sample: dict) -> dict:
        _check_loaded(sample, "RandomResizedCropImages")
        points = sample.get("points")
        for camera, (height, width) in enumerate(np.asarray(sample["img_shape"])):
            height, width = int(height), int(width)
            uv = None
            if points is not None and len(points):
                uv, depth = project_points(points, sample["lidar2img"][camera])
                inside = (depth > self.min_depth) & (uv[:, 0] >= 0) & (uv[:, 0] < width) \
                    & (uv[:, 1] >= 0) & (uv[:, 1] < height)
                uv = uv[inside]
            chosen = (0, 0, height, width)
            for _ in range(self.attempts):
                box = self._draw(height, width)
                if box is None:
                    continue
                if uv is None or not len(uv):
                    chosen = box
                    break
                top, left, crop_h, crop_w = box
                kept = int(((uv[:, 0] >= left) & (uv[:, 0] < left + crop_w)
                            & (uv[:, 1] >= top) & (uv[:, 1] < top + crop_h)).sum())
                if kept >= self.min_points or kept >= self.min_share * len(uv):
                    chosen = box
                    break
            _set_camera(sample, camera, chosen, self.size)
        return _restack(sample)


@TRANSFORMS.register_module()
class RandomFlipImages(Transform):
    """Flip each camera image (and its superpixel map) left-right with probability
    ``prob``, independently per camera (SLidR's ``FlipHorizontal``, SuperFlow's flip)."""

    def __init__(self, prob: float = 0.5, seed: int | None = None):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = float(prob)
        self._random = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        _check_loaded(sample, "RandomFlipImages")
        maps = sample.get("superpixels")
        for camera, (_, width) in enumerate(np.asarray(sample["img_shape"])):
            if self._random.rand() >= self.prob:
                continue
            sample["images"][camera] = np.ascontiguousarray(sample["images"][camera][:, ::-1])
            if maps is not None and len(maps):
                maps[camera] = np.ascontiguousarray(maps[camera][:, ::-1])
            apply_image_affine(sample, camera, image_affine(-1.0, 1.0, float(width), 0.0))
        return sample


_PER_CAMERA = ("images", "img_paths", "cam_names", "lidar2img", "cam2img", "lidar2cam",
               "img_shape", "superpixels", "superpixel_paths", "img_aug_matrix")


@TRANSFORMS.register_module()
class DropCuboids(Transform):
    """SLidR's 3D augmentation (valeoai/SLidR ``DropCuboids``): the points strictly inside
    one axis-aligned cuboid are dropped; its centre is a random point of the scan and its
    edges are ``U(0, max_fraction)`` (one draw for the three axes) times the scan's extent
    along each axis. When a camera would keep fewer than ``min_pairs`` point-pixel pairs
    (depth > ``min_depth``, inside the image; 1024 in SLidR) the scan is left whole. SLidR
    runs it before the image crop, on the whole images (the camera pipeline does too)."""

    def __init__(self, max_fraction: float = 0.2, min_pairs: int = 1024,
                 min_depth: float = 1.0, seed: int | None = None):
        if not 0 <= max_fraction <= 1:
            raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
        self.max_fraction = float(max_fraction)
        self.min_pairs = int(min_pairs)
        self.min_depth = float(min_depth)
        self._random = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        points = np.asarray(sample["points"])
        if not len(points):
            return sample
        xyz = points[:, :3].astype(np.float64)
        extent = xyz.max(0) - xyz.min(0)
        half = extent * self._random.rand() * self.max_fraction / 2.0
        centre = xyz[min(int(self._random.uniform(0, len(xyz))), len(xyz) - 1)]
        keep = ~((xyz < centre + half) & (xyz > centre - half)).all(1)
        for camera, hw in enumerate(np.asarray(sample.get("img_shape", []))):
            uv, depth = project_points(points[keep], sample["lidar2img"][camera])
            pairs = visible_in_image(uv, depth, hw, self.min_depth)
            if int(np.count_nonzero(pairs)) < self.min_pairs:
                return sample
        return select_points(sample, keep)


@TRANSFORMS.register_module()
class SelectCameras(Transform):
    """Keep ``num`` cameras of the sample, drawn at random without replacement (SuperFlow
    trains on 3 of the 6 nuScenes cameras, ScaLR on 1), in their loaded order."""

    def __init__(self, num: int, seed: int | None = None):
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        self.num = int(num)
        self._random = RandomSource(seed)

    def transform(self, sample: dict) -> dict:
        _check_loaded(sample, "SelectCameras")
        total = len(sample["images"])
        if total <= self.num:
            return sample
        keep = np.sort(self._random.choice(total, self.num, replace=False))
        for key in _PER_CAMERA:
            value = sample.get(key)
            if value is None:
                continue
            sample[key] = value[keep] if isinstance(value, np.ndarray) else \
                [value[i] for i in keep]
        return sample
