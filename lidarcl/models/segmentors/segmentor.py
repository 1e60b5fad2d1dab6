"""LiDAR semantic segmentation: a backbone and a per-point linear classifier, the chain SLidR,
SuperFlow and Pointcept fine-tune (SLidR's classifier is the U-Net's last 1x1 layer, i.e. a
linear map of the per-point features).

Batch (``collate_samples`` of samples packed with ``pts_semantic_mask``)::

    points, offsets, pts_semantic_mask (N,) training labels (``ignore_index`` ignored), meta

Loss (``mode="loss"``), per point, over the points inside the backbone's grid:
``w_ce * CE(logits, y; class_weight) + w_lovasz * Lovasz-softmax(softmax(logits), y)`` with
``loss_weights=dict(ce=1.0, lovasz=1.0)`` (SLidR's fine-tuning loss is this sum, its
``downstream/criterion.py``; SLidR computes it per voxel, this per point). Class weights
are optional. The head has its own learning rate through the optimiser's
``paramwise_cfg=dict(custom_keys={"head": dict(lr_mult=...)})`` (SLidR at 1 %: lr 0.02,
head 2.0, i.e. ``lr_mult=100``).

Prediction (``mode="predict"``): one :class:`SegPrediction` per scan: the class scores
(softmax probabilities) of every point and the predicted class (``-1`` for a point outside
the backbone's grid, which has no feature). Test-time augmentation (``tta``, or
``tools/test.py --tta``): the scan is run once per transform of the xy plane and the
probabilities are averaged over the runs (module :func:`tta_matrices`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from lidarcl.models.losses.lovasz import lovasz_softmax
from lidarcl.models.pretrainers.base import Pretrainer
from lidarcl.registry import MODELS

__all__ = ["Segmentor", "SegPrediction", "tta_matrices", "DEFAULT_TTA"]

# the 8 symmetries of the square (dihedral group D4): rotations by 0, 90, 180, 270 degrees,
# each without and with a flip of y (a flip of x, or of both, is one of these)
DEFAULT_TTA = dict(rotations_deg=(0.0, 90.0, 180.0, 270.0), flips=("none", "y"))


def tta_matrices(rotations_deg: Sequence[float] = DEFAULT_TTA["rotations_deg"],
                 flips: Sequence[str] = DEFAULT_TTA["flips"]) -> list[torch.Tensor]:
    """``(3, 3)`` xyz transforms ``R_z(angle) @ F`` for every flip ``F`` in ``flips``
    (``"none"``, ``"x"``: x -> -x, ``"y"``: y -> -y, ``"xy"``) and rotation angle."""
    flip_diag = {"none": (1.0, 1.0), "x": (-1.0, 1.0), "y": (1.0, -1.0), "xy": (-1.0, -1.0)}
    out = []
    for flip in flips:
        if flip not in flip_diag:
            raise ValueError(f"tta flip must be one of {sorted(flip_diag)}, got {flip!r}")
        f = torch.diag(torch.tensor([*flip_diag[flip], 1.0], dtype=torch.float64))
        for angle in rotations_deg:
            c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
                               dtype=torch.float64)
            out.append(rot @ f)
    return out


@dataclass
class SegPrediction:
    """The prediction of one scan (its points in the order the pipeline delivered)."""

    scores: torch.Tensor            # (N, K) float32 class probabilities (zeros outside)
    labels: torch.Tensor            # (N,) int64 predicted class, -1 outside the grid
    target: torch.Tensor | None     # (N,) int64 training labels when the batch had them
    meta: dict = field(default_factory=dict)


@MODELS.register_module()
class Segmentor(BaseModel):
    """Backbone + per-point linear head (module doc).

    Args:
        backbone: config of a registered backbone (``MinkUNet18/34``,
            ``PointTransformerV3``, ...).
        num_classes: training classes (16 nuScenes-lidarseg, 19 SemanticKITTI).
        ignore_index: label of points without a class.
        loss_weights: ``dict(ce=..., lovasz=...)``; a weight of 0 drops the term.
        class_weight: optional per-class weights of the cross-entropy.
        tta: ``None`` or ``dict(rotations_deg=..., flips=...)`` (:func:`tta_matrices`).
        dropout: dropout before the head (0: none).
        backbone_checkpoint: a ``backbone.pth`` of ``tools/pretrain.py`` (or a full
            checkpoint's ``backbone.*`` weights) loaded by :meth:`init_weights`, which the
            Runner calls when training starts (before ``--resume`` restores a fine-tuning
            checkpoint). It must fit the backbone exactly: otherwise a DataError lists the
            missing and unexpected keys and shape mismatches, unless ``allow_partial``
            (then what fits is loaded and the report is logged).
    """

    progress_verb = "fine-tuning"  # the first line of the terminal progress

    def __init__(self, backbone: dict, num_classes: int, ignore_index: int = 255,
                 loss_weights: dict | None = None, class_weight: Sequence[float] | None = None,
                 tta: dict | None = None, dropout: float = 0.0,
                 backbone_checkpoint: str | None = None, allow_partial: bool = False,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.loss_weights = {"ce": 1.0, "lovasz": 1.0, **(loss_weights or {})}
        unknown = set(self.loss_weights) - {"ce", "lovasz"}
        if unknown:
            raise ValueError(f"loss_weights has unknown terms {sorted(unknown)}; known: ce, "
                             "lovasz")
        if class_weight is not None and len(class_weight) != self.num_classes:
            raise ValueError(f"class_weight has {len(class_weight)} entries for "
                             f"{self.num_classes} classes")
        self.register_buffer("class_weight", None if class_weight is None else
                             torch.as_tensor(class_weight, dtype=torch.float32),
                             persistent=False)
        self.tta = tta
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(int(self.backbone.out_channels), self.num_classes)
        self.backbone_checkpoint = backbone_checkpoint
        self.allow_partial = allow_partial

    def init_weights(self) -> None:
        """mmengine's initialisation, then the pretrained backbone (class doc)."""
        from lidarcl.engine.checkpoint import load_pretrained_backbone

        super().init_weights()
        load_pretrained_backbone(self)

    # ------------------------------------------------------------------ forward passes
    def logits(self, points: torch.Tensor, offsets: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (N, K), inside (N,) bool)``: the head on every point's feature."""
        out = self.backbone(points, offsets)
        inside = out.voxels.point_to_voxel >= 0
        return self.head(self.dropout(out.point_features)), inside

    def loss(self, batch: dict) -> dict:
        logits, inside = self.logits(batch["points"], batch["offsets"])
        target = batch["pts_semantic_mask"].to(logits.device).long()
        keep = inside & (target != self.ignore_index)
        logits, target = logits[keep], target[keep]
        losses = {}
        if self.loss_weights["ce"]:
            ce = F.cross_entropy(logits, target, weight=self.class_weight) if len(target) \
                else logits.sum() * 0
            losses["loss_ce"] = self.loss_weights["ce"] * ce
        if self.loss_weights["lovasz"]:
            losses["loss_lovasz"] = self.loss_weights["lovasz"] * lovasz_softmax(
                logits.softmax(1), target)
        Pretrainer.check_finite(losses, batch)  # names the iteration and the samples
        return losses

    @torch.no_grad()
    def scores(self, points: torch.Tensor, offsets: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities (N, K), inside (N,))``, averaged over the TTA transforms when
        ``self.tta`` is set (a point counts as inside when any run saw it)."""
        if not self.tta:
            logits, inside = self.logits(points, offsets)
            return logits.softmax(1) * inside[:, None], inside
        total = points.new_zeros((len(points), self.num_classes))
        runs = points.new_zeros(len(points))
        for matrix in tta_matrices(**self.tta):
            moved = points.clone()
            moved[:, :3] = (points[:, :3].double() @ matrix.to(points.device).T).to(
                points.dtype)
            logits, inside = self.logits(moved, offsets)
            total += logits.softmax(1) * inside[:, None]
            runs += inside
        inside = runs > 0
        return total / runs.clamp(min=1)[:, None], inside

    def predict(self, batch: dict) -> list[SegPrediction]:
        scores, inside = self.scores(batch["points"], batch["offsets"])
        labels = torch.where(inside, scores.argmax(1), torch.full_like(inside, -1,
                                                                        dtype=torch.int64))
        target = batch.get("pts_semantic_mask")
        metas = batch.get("meta") or [{}] * len(batch["offsets"])
        out, start = [], 0
        for i, end in enumerate(batch["offsets"].tolist()):
            out.append(SegPrediction(
                scores=scores[start:end].float().cpu(), labels=labels[start:end].cpu(),
                target=None if target is None else target[start:end].long().cpu(),
                meta=metas[i]))
            start = end
        return out

    def forward(self, mode: str = "loss", **batch):
        if mode == "loss":
            return self.loss(batch)
        if mode == "predict":
            return self.predict(batch)
        if mode == "tensor":
            return self.logits(batch["points"], batch["offsets"])
        raise ValueError(f"Segmentor supports mode 'loss', 'predict' and 'tensor', got {mode!r}")
