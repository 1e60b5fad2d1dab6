"""PointContrast (Xie et al., ECCV 2020): point-level InfoNCE between matched points of two
views of a scan (Sec. 3, Eq. 1, the PointInfoNCE loss).

Two augmented views of the scan go through the shared backbone; the points that both views
kept are exact matches (``MultiViewAugment`` records each view point's source row). Up to
``max_pairs = 4096`` matched pairs are drawn per batch, their features are L2-normalised,
and each point's match in the other view is its positive against the other sampled points
as negatives, temperature 0.07 (the paper's and Pointcept's values).

Departures: the paper matches two *partial* ScanNet scans through their registration;
driving datasets have one scan per frame, so the views are two augmentations of it (as in
Pointcept's PointContrast recipe for single scans and in SLidR's 3D branch). The loss is any
pairwise loss of ``lidarcl.models.losses`` (``loss=dict(type=...)``), InfoNCE by default.
"""
from __future__ import annotations

from lidarcl.models.pretrainers.base import Pretrainer, projection_head
from lidarcl.registry import MODELS


@MODELS.register_module()
class PointContrast(Pretrainer):
    """Point-level contrast of two views (module doc).

    Args:
        backbone: backbone config (any registered backbone).
        loss: pairwise loss config; its ``max_pairs`` caps the sampled matches.
        head_channels: a Linear head to this width before the loss (``None``: the
            backbone features, as in the paper).
    """

    def __init__(self, backbone: dict, loss: dict | None = None,
                 head_channels: int | None = None, **kwargs):
        super().__init__(backbone, **kwargs)
        self.head = projection_head(self.feature_channels, head_channels)
        self.loss_point = MODELS.build(loss or dict(type="InfoNCELoss", temperature=0.07,
                                                    max_pairs=4096))

    def loss(self, batch: dict) -> dict:
        first, second, rows_a, rows_b = self.matched_views(batch)
        query = self.head(first.features[rows_a])
        key = self.head(second.features[rows_b])
        return {"loss_point": self.loss_point(query, key, generator=self.step_generator())}
