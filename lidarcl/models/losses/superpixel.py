"""Losses of the camera-LiDAR pretrainers on pooled regions and on point-pixel pairs.

Superpixel contrast (SLidR, Sautier et al. CVPR 2022, Sec. 3.2, Eq. 2; SuperFlow, Xu et al.
ECCV 2024): point features and pixel features, each of unit length, are averaged per
superpixel (``lidarcl.ops.project_pool`` / ``region_pool``); a superpixel that no point
reaches is dropped; row ``i`` of the 3D side and row ``i`` of the 2D side are the positive
pair and every other kept superpixel of the batch is a negative:

    L = -1/|S| sum_i log exp(<f_i, g_i> / tau) / sum_j exp(<f_i, g_j> / tau)

with ``f`` the 3D means as queries (rows of the logits) and ``g`` the 2D means as keys,
tau = 0.07, and the means used as they are, not normalised again (the authors' code). The
same form compares two 3D poolings in SuperFlow (dense-to-sparse, and frame t against
t +- 1), over the ids present in both: :class:`RegionContrastLoss` takes any pairwise loss of
``lidarcl.models.losses`` from its config, so InfoNCE can be swapped for DCL.

Point-pixel distillation (ScaLR, Puy et al. CVPR 2024, Sec. 3): no negatives,
``L = mean over pairs || f_p / |f_p| - g_p / |g_p| ||_2`` between the projected point
features and the frozen teacher's features at the pixel the point lands on
(:class:`PointPixelDistillLoss`; the distance, not its square, as in valeoai/ScaLR).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lidarcl.ops.pooling import RegionPoolResult
from lidarcl.registry import MODELS

__all__ = ["matched_regions", "RegionContrastLoss", "PointPixelDistillLoss"]


def matched_regions(a: RegionPoolResult, b: RegionPoolResult
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features_a, features_b, ids)``: the rows of the regions that both poolings reach
    (``counts > 0`` on both sides), in ascending region id."""
    if a.features.shape[0] != b.features.shape[0]:
        raise ValueError(f"the two poolings cover {a.features.shape[0]} and "
                         f"{b.features.shape[0]} regions; they must share the region ids")
    ids = torch.nonzero((a.counts > 0) & (b.counts > 0).to(a.counts.device)).squeeze(1)
    return a.features[ids], b.features[ids.to(b.features.device)], ids


@MODELS.register_module()
class RegionContrastLoss(nn.Module):
    """Contrast of two poolings over the same region ids (module doc); ``loss`` is the
    config of a pairwise loss (default: InfoNCE, tau 0.07, means not re-normalised)."""

    def __init__(self, loss: dict | None = None, min_regions: int = 2):
        super().__init__()
        cfg = dict(type="InfoNCELoss", temperature=0.07, normalize=False)
        cfg.update(loss or {})
        self.loss = MODELS.build(cfg)
        self.min_regions = min_regions

    def forward(self, query: RegionPoolResult, key: RegionPoolResult) -> torch.Tensor:
        """``query`` rows are the anchors (3D side), ``key`` rows their positives. With
        fewer than ``min_regions`` common regions there is no negative: the loss is zero
        (with a gradient path, so that every parameter still gets one)."""
        q, k, _ = matched_regions(query, key)
        if q.shape[0] < self.min_regions:
            return query.features.sum() * 0.0 + key.features.sum() * 0.0
        return self.loss(q, k)


@MODELS.register_module()
class PointPixelDistillLoss(nn.Module):
    """ScaLR's distillation (module doc): mean L2 distance of the unit-length features of
    each point-pixel pair; ``squared=True`` gives the mean squared distance instead."""

    def __init__(self, squared: bool = False, loss_weight: float = 1.0):
        super().__init__()
        self.squared = squared
        self.loss_weight = loss_weight

    def forward(self, point_features: torch.Tensor, pixel_features: torch.Tensor
                ) -> torch.Tensor:
        if point_features.shape != pixel_features.shape or point_features.dim() != 2:
            raise ValueError("point and pixel features must be (P, C) of one shape, got "
                             f"{tuple(point_features.shape)} and {tuple(pixel_features.shape)}")
        if point_features.shape[0] == 0:
            return point_features.sum() * 0.0
        diff = F.normalize(point_features.float(), dim=1) \
            - F.normalize(pixel_features.float(), dim=1)
        distance = diff.pow(2).sum(1)
        if not self.squared:
            distance = distance.clamp(min=1e-12).sqrt()
        return self.loss_weight * distance.mean()
