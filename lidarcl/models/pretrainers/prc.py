"""PRC, point-region contrast: stage 1 of CALICO (Sun et al., ICLR 2024, arXiv 2306.00349),
pretraining of the LiDAR backbone.

PRC balances scene-level and object-level representation learning with two terms on two
augmented views of a scan (``MultiViewAugment``):

* **point term** (scene level): InfoNCE between the features of the points that both views
  kept (exact correspondences), at most ``point_pairs`` pairs per batch, temperature tau;
* **region term** (object level): the scan's *semantic-less regions*, ground removed by a
  RANSAC plane fit and the rest clustered by DBSCAN (``SegmentRegions``,
  ``lidarcl/datasets/regions.py``), are mean-pooled in each view
  (``lidarcl.ops.region_pool``); a region's pooled feature in one view is the positive of
  its pooled feature in the other view, and every other region of the batch (other regions
  of the same scan included) is a negative; only regions with at least
  ``min_region_points`` matched points in both views take part.

``loss = loss_point + region_weight * loss_region`` (both InfoNCE, symmetric, tau = 0.07),
each on its own projection head (Linear-BN-ReLU-Linear to ``head_channels``).

Where this departs from, or cannot be checked against, the paper: the method section of
arXiv 2306.00349 was not retrievable from this workplace (``docs/METHODS.md`` lists the
structure above as recalled, tag [M]), and no official code exists. The ground-removal and
DBSCAN parameters (``REGION_DEFAULTS``), the region pooling (mean of the points' features),
the use of all other regions of the batch as negatives and ``region_weight = 1`` are this
toolkit's choices. Any pairwise loss of ``lidarcl.models.losses`` can replace either InfoNCE
(``point_loss`` / ``region_loss``).
"""
from __future__ import annotations

import torch

from lidarcl.models.pretrainers.base import Pretrainer, projection_head
from lidarcl.registry import MODELS

__all__ = ["PointRegionContrast", "pool_matched_regions"]


def pool_matched_regions(features_a, features_b, regions, batch_idx, min_points: int = 1):
    """Mean-pool two views' features of the same matched points by region.

    ``features_a``, ``features_b``: ``(P, C)`` features of ``P`` matched points in view a and
    view b (row ``i`` is the same anchor point); ``regions (P,)``: its region id (``-1`` =
    none); ``batch_idx (P,)``: its sample. Returns ``(pooled_a (R, C), pooled_b (R, C),
    keys (R, 2) [sample, region])`` for the regions with at least ``min_points`` matched
    points, ordered by (sample, region).
    """
    from lidarcl.ops import region_pool

    keep = regions >= 0
    empty = features_a.new_zeros((0, features_a.shape[1]))
    if not bool(keep.any()):
        return empty, empty, regions.new_zeros((0, 2))
    span = int(regions.max()) + 1
    key = batch_idx[keep] * span + regions[keep]
    unique, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    pooled_a = region_pool(features_a[keep], inverse, len(unique), "mean").features
    pooled_b = region_pool(features_b[keep], inverse, len(unique), "mean").features
    enough = counts >= min_points
    keys = torch.stack([unique // span, unique % span], 1)
    return pooled_a[enough], pooled_b[enough], keys[enough]


@MODELS.register_module()
class PointRegionContrast(Pretrainer):
    """CALICO's PRC (module doc).

    Args:
        backbone: any registered backbone config.
        head_channels, head_hidden: projection heads (point and region, one each).
        point_loss, region_loss: pairwise loss configs (InfoNCE, tau 0.07, by default).
        region_weight: lambda of the region term.
        min_region_points: matched points a region needs in both views.
    """

    def __init__(self, backbone: dict, head_channels: int = 128, head_hidden: int = 256,
                 point_loss: dict | None = None, region_loss: dict | None = None,
                 region_weight: float = 1.0, min_region_points: int = 5, **kwargs):
        super().__init__(backbone, **kwargs)
        self.point_head = projection_head(self.feature_channels, head_channels, head_hidden)
        self.region_head = projection_head(self.feature_channels, head_channels, head_hidden)
        self.point_loss = MODELS.build(point_loss or dict(
            type="InfoNCELoss", temperature=0.07, max_pairs=4096, symmetric=True))
        self.region_loss = MODELS.build(region_loss or dict(
            type="InfoNCELoss", temperature=0.07, symmetric=True))
        self.region_weight = float(region_weight)
        self.min_region_points = int(min_region_points)

    def loss(self, batch: dict) -> dict:
        all_regions = self.batch_regions(batch)
        first, second, rows_a, rows_b = self.matched_views(batch)
        feats_a, feats_b = first.features[rows_a], second.features[rows_b]
        loss_point = self.point_loss(self.point_head(feats_a), self.point_head(feats_b),
                                     generator=self.step_generator(0))
        regions = all_regions.to(rows_a.device)[first.index[rows_a]]
        pooled_a, pooled_b, _ = pool_matched_regions(feats_a, feats_b, regions,
                                                     first.batch_idx[rows_a],
                                                     self.min_region_points)
        if len(pooled_a) >= 2:
            loss_region = self.region_loss(self.region_head(pooled_a),
                                           self.region_head(pooled_b),
                                           generator=self.step_generator(1))
        else:  # fewer than two regions: nothing to contrast in this batch
            loss_region = sum(p.sum() for p in self.region_head.parameters()) * 0.0
        return {"loss_point": loss_point, "loss_region": self.region_weight * loss_region}
