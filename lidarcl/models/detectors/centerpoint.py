"""CenterPoint (Yin, Zhou, Krähenbühl, CVPR 2021) on lidarcl's sparse encoders: the voxel
encoder (``VoxelBackBone8x`` / ``VoxelResBackBone8x``, mean voxel features, height
compression), SECOND's 2D BEV backbone and neck (:class:`SECONDBEVBackbone`) and the
center head (:class:`CenterHead`), the plan of OpenPCDet's ``CenterPoint`` and mmdet3d's
``CenterPoint``.

Batch (``collate_samples`` of samples packed with the detection keys)::

    points, offsets, gt_boxes [(M_i, 7)], gt_labels [(M_i,)], gt_velocity [(M_i, 2)], meta

``mode="loss"``: ``loss_heatmap`` and ``loss_bbox`` summed over the tasks (see
:mod:`lidarcl.models.detectors.center_head`). ``mode="predict"``: one
:class:`DetPrediction` per sample, boxes in the sample's (possibly augmented) LiDAR frame.
``backbone_checkpoint`` loads a ``backbone.pth`` of ``tools/pretrain.py`` into the 3D
encoder as :class:`lidarcl.models.segmentors.Segmentor` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lidarcl.models.detectors.base import BEVModel
from lidarcl.models.pretrainers.base import Pretrainer
from lidarcl.registry import MODELS

__all__ = ["CenterPoint", "DetPrediction"]


@dataclass
class DetPrediction:
    """The detections of one sample: boxes ``(K, 7)`` or ``(K, 9)`` with velocity, in the
    sample's LiDAR frame, scores ``(K,)``, labels ``(K,)`` (index into the classes)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    meta: dict = field(default_factory=dict)


@MODELS.register_module()
class CenterPoint(BEVModel):
    """3D encoder + BEV backbone/neck + center head (module doc).

    Args:
        backbone: a BEV encoder config (``VoxelBackBone8x``, ``VoxelResBackBone8x``).
        bev_backbone: a :class:`SECONDBEVBackbone` config without ``in_channels`` (taken
            from the encoder: 128 x its BEV height).
        head: a :class:`CenterHead` config without ``in_channels``, ``voxel_size`` and
            ``point_range`` (taken from the encoder and the neck).
        backbone_checkpoint, allow_partial: pretrained encoder weights (Segmentor's rule).
    """

    head_grid = ("voxel_size", "point_range")

    @property
    def class_names(self) -> list[str]:
        return self.head.class_names

    def head_outputs(self, points: torch.Tensor, offsets: torch.Tensor) -> list[dict]:
        return self.head(self.bev_features(points, offsets))

    def loss(self, batch: dict) -> dict:
        preds = self.head_outputs(batch["points"], batch["offsets"])
        height, width = preds[0]["hm"].shape[-2:]
        targets = self.head.targets(batch["gt_boxes"], batch["gt_labels"],
                                    batch.get("gt_velocity"), height, width)
        losses = self.head.loss(preds, targets)
        Pretrainer.check_finite(losses, batch)
        return losses

    @torch.no_grad()
    def predict(self, batch: dict) -> list[DetPrediction]:
        preds = self.head_outputs(batch["points"], batch["offsets"])
        decoded = self.head.decode(preds)
        metas = batch.get("meta") or [{}] * len(decoded)
        return [DetPrediction(d["boxes"].float().cpu(), d["scores"].float().cpu(),
                              d["labels"].cpu(), meta) for d, meta in zip(decoded, metas)]

