"""BEV map segmentation on LiDAR BEV features: BEVFusion's map head (Liu et al., ICRA 2023;
mit-han-lab/bevfusion ``mmdet3d/models/heads/segm/vanilla.py``) on the same 3D encoder and
BEV neck as CenterPoint.

Head: the neck's map (covering the encoder's ``point_range`` in x and y) is resampled by
``grid_sample`` (bilinear, ``align_corners=False``) at the centres of the output grid
(``xbound``, ``ybound``: ``-50 .. 50`` m at 0.5 m, 200 x 200; BEVFusion's
``BEVGridTransform`` samples at ``min + step / 2 + k * step``), then conv3x3-BN-ReLU twice
(no bias) and a 1x1 conv to one logit per class. The output is indexed ``[class, i, j]``
with ``i`` along the LiDAR frame's x and ``j`` along its y, the layout of
:func:`lidarcl.evaluation.bev_map_seg.bev_map_gt`. (That ground truth puts cell ``(i, j)``
at ``(x0 + i step, y0 + j step)``, the devkit's raster, half a cell from where the head
samples; BEVFusion trains and scores with the same half-cell offset, and so do we.)

Loss: per class, the sigmoid focal loss (gamma 2, no alpha, mean over the cells), summed over
the classes (BEVFusion's ``sigmoid_focal_loss`` per class). Prediction: per-class
probabilities ``(6, 200, 200)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lidarcl.models.detectors.base import BEVModel
from lidarcl.models.pretrainers.base import Pretrainer
from lidarcl.registry import MODELS

__all__ = ["BEVMapHead", "BEVMapSegmentor", "MapPrediction", "sigmoid_focal_loss",
           "bev_sampling_grid"]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0,
                       alpha: float = -1.0) -> torch.Tensor:
    """Mean of ``BCE(logit, t) * (1 - p_t)^gamma`` (``p_t = p t + (1 - p)(1 - t)``), times
    ``alpha t + (1 - alpha)(1 - t)`` when ``alpha >= 0`` (RetinaNet's focal loss as
    torchvision and BEVFusion write it)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean()


def bev_sampling_grid(point_range: Sequence[float], xbound: Sequence[float],
                      ybound: Sequence[float]) -> torch.Tensor:
    """``(NX, NY, 2)`` ``grid_sample`` coordinates: output cell ``(i, j)`` reads the input
    map (rows along y, columns along x, covering ``point_range``) at
    ``x = xbound[0] + (i + 0.5) * step``, ``y = ybound[0] + (j + 0.5) * step``."""
    x0, y0, _, x1, y1, _ = (float(v) for v in point_range)
    xs = torch.arange(xbound[0] + xbound[2] / 2, xbound[1], xbound[2], dtype=torch.float64)
    ys = torch.arange(ybound[0] + ybound[2] / 2, ybound[1], ybound[2], dtype=torch.float64)
    u = (xs - x0) / (x1 - x0) * 2 - 1   # grid_sample's x: the input's columns
    v = (ys - y0) / (y1 - y0) * 2 - 1   # grid_sample's y: the input's rows
    gu, gv = torch.meshgrid(u, v, indexing="ij")
    return torch.stack([gu, gv], -1).float()


@MODELS.register_module()
class BEVMapHead(nn.Module):
    """BEVFusion's map segmentation head (module doc)."""

    def __init__(self, in_channels: int, classes: Sequence[str], point_range: Sequence[float],
                 xbound: Sequence[float] = (-50.0, 50.0, 0.5),
                 ybound: Sequence[float] = (-50.0, 50.0, 0.5), gamma: float = 2.0,
                 alpha: float = -1.0):
        super().__init__()
        self.classes = list(classes)
        self.gamma, self.alpha = float(gamma), float(alpha)
        self.register_buffer("grid", bev_sampling_grid(point_range, xbound, ybound),
                             persistent=False)
        self.classifier = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(True),
            nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(True),
            nn.Conv2d(in_channels, len(self.classes), 1))

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        grid = self.grid.to(bev.dtype)[None].expand(bev.shape[0], -1, -1, -1)
        return self.classifier(F.grid_sample(bev, grid, mode="bilinear",
                                             align_corners=False))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        target = target.to(logits.dtype)
        return {f"loss_{name}": sigmoid_focal_loss(logits[:, k], target[:, k], self.gamma,
                                                   self.alpha)
                for k, name in enumerate(self.classes)}


@dataclass
class MapPrediction:
    """Per-class probabilities ``(C, NX, NY)`` of one sample and its ground truth."""

    probs: torch.Tensor
    target: torch.Tensor | None
    meta: dict = field(default_factory=dict)


@MODELS.register_module()
class BEVMapSegmentor(BEVModel):
    """3D encoder + BEV neck + :class:`BEVMapHead`. Batch: ``points``, ``offsets`` and
    ``gt_masks_bev`` (a list of ``(C, NX, NY)`` bool arrays, ``LoadBEVMapMask``)."""

    def logits(self, points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.head(self.bev_features(points, offsets))

    @staticmethod
    def _target(batch: dict, device) -> torch.Tensor:
        masks = batch.get("gt_masks_bev")
        if masks is None:
            raise ValueError("the batch has no gt_masks_bev: the pipeline needs "
                             "LoadBEVMapMask before PackSample (keys=[..., 'gt_masks_bev'])")
        return torch.stack([torch.as_tensor(np.asarray(m)) for m in masks]).to(device)

    def loss(self, batch: dict) -> dict:
        logits = self.logits(batch["points"], batch["offsets"])
        losses = self.head.loss(logits, self._target(batch, logits.device))
        Pretrainer.check_finite(losses, batch)
        return losses

    @torch.no_grad()
    def predict(self, batch: dict) -> list[MapPrediction]:
        probs = torch.sigmoid(self.logits(batch["points"], batch["offsets"])).float().cpu()
        target = self._target(batch, "cpu") if batch.get("gt_masks_bev") is not None else None
        metas = batch.get("meta") or [{}] * len(probs)
        return [MapPrediction(p, None if target is None else target[i], metas[i])
                for i, p in enumerate(probs)]

