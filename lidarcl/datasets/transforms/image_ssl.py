"""Two augmented crops of one camera image for self-supervised image pretraining
(``tools/pretrain_image.py``): MoCo v2's augmentation (Chen et al., "Improved Baselines
with Momentum Contrastive Learning", arXiv 2003.04297, Sec. 3 and the released
``main_moco.py --aug-plus``), on float images in [0, 1]:

1. random resized crop: area ``scale`` (0.2-1) of the image, aspect ``ratio`` (3/4-4/3),
   resized to ``size`` (bilinear, antialiased);
2. colour jitter with probability 0.8: brightness, contrast, saturation 0.4, hue 0.1, in
   a random order, each as torchvision defines it (brightness scales the image, contrast
   blends with the mean grey level, saturation with the grey image, hue rotates the HSV
   hue by up to 0.1 of a turn);
3. grey scale with probability 0.2 (ITU-R 601 luma);
4. Gaussian blur with probability 0.5, sigma uniform in [0.1, 2.0] (pixels of the
   ``size`` crop; MoCo v2 blurs 224-pixel crops with PIL's radius = sigma);
5. horizontal flip with probability 0.5.

The crops of one image are drawn independently; the sample's ``views`` is
``(num_views, 3, size[0], size[1])`` float32. Random numbers come from numpy's global RNG
(seeded per worker by mmengine) or from a private one with ``seed``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lidarcl.datasets.transforms.base import RandomSource, Transform
from lidarcl.registry import TRANSFORMS

__all__ = ["MoCoV2Crops", "adjust_hue", "rgb_to_grey", "gaussian_blur"]

_LUMA = (0.299, 0.587, 0.114)


def rgb_to_grey(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` -> ``(1, H, W)`` ITU-R 601 luma (torchvision's ``rgb_to_grayscale``)."""
    return (_LUMA[0] * image[0] + _LUMA[1] * image[1] + _LUMA[2] * image[2]).unsqueeze(0)


def adjust_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the HSV hue of an RGB ``(3, H, W)`` image in [0, 1] by ``shift`` turns."""
    r, g, b = image
    maxc, _ = image.max(0)
    minc, _ = image.min(0)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, (g - b) / safe,
                      torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = torch.where(delta > 0, hue / 6.0, torch.zeros_like(hue))
    hue = torch.remainder(hue + shift, 1.0)
    saturation = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                             torch.zeros_like(maxc))
    value = maxc
    sector = hue * 6.0
    index = torch.floor(sector).remainder(6)
    frac = sector - torch.floor(sector)
    p = value * (1.0 - saturation)
    q = value * (1.0 - saturation * frac)
    t = value * (1.0 - saturation * (1.0 - frac))
    choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value),
               (value, p, q)]
    out = torch.zeros_like(image)
    for k, (cr, cg, cb) in enumerate(choices):
        mask = index == k
        out[0] = torch.where(mask, cr, out[0])
        out[1] = torch.where(mask, cg, out[1])
        out[2] = torch.where(mask, cb, out[2])
    return out


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(C, H, W)`` with a kernel of radius ``ceil(3 sigma)``,
    edges reflected."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    radius = min(radius, (min(image.shape[-2:]) - 1))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    out = F.pad(image.unsqueeze(0), (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out[0]


@TRANSFORMS.register_module()
class MoCoV2Crops(Transform):
    """``num_views`` MoCo v2 crops of ``sample["image"]`` (uint8 (H, W, 3)) as
    ``sample["views"]`` (module doc)."""

    def __init__(self, size: Sequence[int] = (224, 224), num_views: int = 2,
                 scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
                 jitter_prob: float = 0.8,
                 jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
                 grey_prob: float = 0.2, blur_prob: float = 0.5,
                 blur_sigma: Sequence[float] = (0.1, 2.0), flip_prob: float = 0.5,
                 seed: int | None = None):
        size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"size must be (height, width) of at least 8 pixels, got {size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (low, high) in (0, 1], got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {ratio}")
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.size = size
        self.num_views = int(num_views)
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        self.jitter_prob = float(jitter_prob)
        self.jitter = tuple(float(j) for j in jitter)
        self.grey_prob = float(grey_prob)
        self.blur_prob = float(blur_prob)
        self.blur_sigma = tuple(float(s) for s in blur_sigma)
        self.flip_prob = float(flip_prob)
        self._rng = RandomSource(seed)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` as torchvision's ``RandomResizedCrop.get_params``: ten
        tries at a random area and log-uniform aspect, else the central crop of the
        clamped aspect."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self._rng.uniform(*self.scale)
            aspect = math.exp(self._rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(self._rng.uniform(0, height - h + 1)) if height > h else 0
                left = int(self._rng.uniform(0, width - w + 1)) if width > w else 0
                return min(top, height - h), min(left, width - w), h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def _jitter(self, view: torch.Tensor) -> torch.Tensor:
        brightness, contrast, saturation, hue = self.jitter
        for op in self._rng.permutation(4):
            if op == 0 and brightness > 0:
                view = (view * self._rng.uniform(1 - brightness, 1 + brightness)).clamp(0, 1)
            elif op == 1 and contrast > 0:
                factor = self._rng.uniform(1 - contrast, 1 + contrast)
                view = (view * factor + rgb_to_grey(view).mean() * (1 - factor)).clamp(0, 1)
            elif op == 2 and saturation > 0:
                factor = self._rng.uniform(1 - saturation, 1 + saturation)
                view = (view * factor + rgb_to_grey(view) * (1 - factor)).clamp(0, 1)
            elif op == 3 and hue > 0:
                view = adjust_hue(view, self._rng.uniform(-hue, hue))
        return view

    def view(self, image: torch.Tensor) -> torch.Tensor:
        """One augmented crop of a float ``(3, H, W)`` image."""
        top, left, h, w = self.crop_box(*image.shape[-2:])
        view = F.interpolate(image[None, :, top:top + h, left:left + w], size=self.size,
                             mode="bilinear", align_corners=False, antialias=True)[0]
        view = view.clamp(0, 1)
        if self._rng.rand() < self.jitter_prob:
            view = self._jitter(view)
        if self._rng.rand() < self.grey_prob:
            view = rgb_to_grey(view).expand(3, -1, -1).contiguous()
        if self._rng.rand() < self.blur_prob:
            view = gaussian_blur(view, self._rng.uniform(*self.blur_sigma))
        if self._rng.rand() < self.flip_prob:
            view = view.flip(-1)
        return view

    def transform(self, sample: dict) -> dict:
        image = sample.get("image")
        if image is None:
            raise KeyError("MoCoV2Crops needs sample['image'] (CameraImageDataset)")
        image = torch.tensor(np.asarray(image)).permute(2, 0, 1).float() / 255.0
        sample["views"] = torch.stack([self.view(image) for _ in range(self.num_views)])
        return sample
