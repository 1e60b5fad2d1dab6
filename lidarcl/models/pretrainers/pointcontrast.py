"""PointContrast (Xie et al., ECCV 2020): point-level InfoNCE between matched points of two
views of a scan (Sec. 3, Eq. 1, the PointInfoNCE loss).

Two augmented views of the scan go through the shared backbone; the points that both views
kept are exact matches (``MultiViewAugment`` records each view point's source row). Up to
``max_pairs = 4096`` matched pairs are drawn per batch, their features are L2-normalised,
and each point's match in the other view is its positive against the other sampled points
as negatives, **temperature 0.4**: the value of the authors' launch script
(``facebookresearch/PointContrast``, ``scripts/ddp_local.sh``: ``misc.nceT=0.4``,
``npos=4096``) and of Pointcept's MSC; only the repository's ``config/defaults.yaml`` says
0.07. No projection head (the paper contrasts the backbone's features).

Options beyond the paper:

* ``loss``: any pairwise loss of ``lidarcl.models.losses``. A loss that needs a momentum
  key encoder (MoCHi, ``needs_key_encoder``) gets one: EMA copies of the backbone and head
  (``backbone_key``, ``head_key``) compute the second view's keys under ``no_grad``, stepped
  by ``MomentumUpdateHook`` with the ``momentum`` schedule (MoCo's 0.999 by default).
* multi-view losses (MV-InfoNCE, MV-DHEL, ``accepts_views``): with ``MultiViewAugment(
  num_views=V)``, every view goes through the backbone, the anchor points that all ``V``
  views kept are matched, and the loss gets the ``(V, N, C)`` stack.

Departures: the paper matches two *partial* ScanNet scans through their registration;
driving datasets have one scan per frame, so the views are two augmentations of it (as in
Pointcept's PointContrast recipe for single scans and in SLidR's 3D branch).
"""
from __future__ import annotations

import torch

from lidarcl.models.pretrainers.base import Pretrainer, match_views, projection_head
from lidarcl.registry import MODELS

__all__ = ["PointContrast"]

POINTCONTRAST_TEMPERATURE = 0.4


@MODELS.register_module()
class PointContrast(Pretrainer):
    """Point-level contrast of two (or more) views (module doc).

    Args:
        backbone: backbone config (any registered backbone).
        loss: pairwise or multi-view loss config; its ``max_pairs`` caps the sampled
            matches. Default: InfoNCE, tau 0.4, 4096 pairs.
        head_channels: a Linear head to this width before the loss (``None``: the
            backbone features, as in the paper).
        momentum: EMA schedule of the key encoder, used when the loss needs one.
    """

    def __init__(self, backbone: dict, loss: dict | None = None,
                 head_channels: int | None = None, **kwargs):
        kwargs.setdefault("momentum", dict(base=0.999, final=0.999))
        super().__init__(backbone, **kwargs)
        self.head = projection_head(self.feature_channels, head_channels)
        self.loss_point = MODELS.build(loss or dict(
            type="InfoNCELoss", temperature=POINTCONTRAST_TEMPERATURE, max_pairs=4096))
        self.multi_view = bool(getattr(self.loss_point, "accepts_views", False))
        if getattr(self.loss_point, "needs_key_encoder", False):
            self.add_momentum_copy("backbone")
            self.add_momentum_copy("head")

    def loss(self, batch: dict) -> dict:
        if self.multi_view:
            views = self.encode_views(batch)
            rows = match_views(views, len(batch["points"]))
            stacked = torch.stack([self.head(v.features[r]) for v, r in zip(views, rows)])
            return {"loss_point": self.loss_point(stacked,
                                                  generator=self.step_generator())}
        first, second, rows_a, rows_b = self.matched_views(batch)
        query = self.head(first.features[rows_a])
        if self.momentum_pairs:
            (key_view,) = self.encode_views(batch, backbone=self.backbone_key,
                                            view_slice=slice(1, 2))
            with torch.no_grad():
                key = self.head_key(key_view.features[rows_b])
        else:
            key = self.head(second.features[rows_b])
        return {"loss_point": self.loss_point(query, key, generator=self.step_generator())}
