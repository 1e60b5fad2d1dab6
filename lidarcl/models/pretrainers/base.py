"""What every pretrainer shares: an mmengine ``BaseModel`` whose ``forward(mode="loss")``
returns a dict of named losses, the backbone run on each augmented view of the batch, the
exact point matches between views, and the non-finite-loss check.

Batch (``collate_samples`` of samples packed after ``MultiViewAugment``)::

    points, offsets          the scans as loaded (the anchor frame of every view)
    views[i][v]              sample i, view v: points (M, C), index (M,), matrix (4, 4)
    regions (optional)       (N,) region id per anchor point (``SegmentRegions``)
    meta[i]                  the sample's tokens, named when a loss is not finite

:meth:`Pretrainer.encode_views` concatenates view ``v`` of every sample into one backbone
batch and returns a :class:`ViewFeatures` per view whose ``index`` refers to rows of the
batch's concatenated ``points``; :func:`match_rows` finds the rows two views share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from torch import nn

from lidarcl.models.backbones.base import BackboneOutput
from lidarcl.models.momentum import MomentumMixin
from lidarcl.registry import MODELS

__all__ = ["Pretrainer", "ViewFeatures", "match_rows", "match_views", "projection_head",
           "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the iteration and the samples."""


@dataclass
class ViewFeatures:
    """Backbone output on view ``v`` of every sample of the batch (``M`` view points)."""

    features: torch.Tensor     # (M, C) per view point
    index: torch.Tensor        # (M,) row of the batch's concatenated anchor points
    valid: torch.Tensor        # (M,) bool: the point fell inside the voxel grid
    batch_idx: torch.Tensor    # (M,) sample of each view point
    output: BackboneOutput     # everything the backbone returned
    points: torch.Tensor       # (M, C) the view's points


def match_rows(index_a: torch.Tensor, index_b: torch.Tensor, size: int,
               valid_a: torch.Tensor | None = None, valid_b: torch.Tensor | None = None):
    """Rows ``(rows_a, rows_b)`` of two views holding the same anchor point
    (``index_a[rows_a] == index_b[rows_b]``), restricted to valid rows."""
    where_b = torch.full((size,), -1, dtype=torch.int64, device=index_a.device)
    rows = torch.arange(len(index_b), device=index_b.device)
    if valid_b is not None:
        rows, index_b = rows[valid_b], index_b[valid_b]
    where_b[index_b] = rows
    found = where_b[index_a]
    keep = found >= 0
    if valid_a is not None:
        keep &= valid_a
    rows_a = torch.nonzero(keep, as_tuple=True)[0]
    return rows_a, found[rows_a]


def match_views(views: list, size: int) -> list[torch.Tensor]:
    """Rows of every view (:class:`ViewFeatures`) holding the same anchor points, for the
    anchors that all views kept inside their voxel grid: ``rows[v]`` with
    ``views[v].index[rows[v]]`` equal for every ``v``, ordered as in view 0."""
    device = views[0].index.device
    rows = torch.arange(len(views[0].index), device=device)[views[0].valid]
    anchors = views[0].index[rows]
    matched = [rows]
    for view in views[1:]:
        where = torch.full((size,), -1, dtype=torch.int64, device=device)
        valid_rows = torch.nonzero(view.valid, as_tuple=True)[0]
        where[view.index[valid_rows]] = valid_rows
        found = where[anchors]
        keep = found >= 0
        matched = [m[keep] for m in matched] + [found[keep]]
        anchors = anchors[keep]
    return matched


def projection_head(in_channels: int, out_channels: int | None, hidden: int | None = None,
                    batch_norm: bool = True) -> nn.Module:
    """Identity (``out_channels=None``), a Linear, or Linear-BN-ReLU-Linear with ``hidden``
    (Linear-ReLU-Linear without ``batch_norm``, MoCo v2's head)."""
    if out_channels is None:
        return nn.Identity()
    if hidden is None:
        return nn.Linear(in_channels, out_channels)
    norm = [nn.BatchNorm1d(hidden)] if batch_norm else []
    return nn.Sequential(nn.Linear(in_channels, hidden), *norm, nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_channels))


class Pretrainer(MomentumMixin, BaseModel):
    """Base of the pretraining methods (module doc). Subclasses implement :meth:`loss`.

    ``momentum = dict(base, final)``: the cosine EMA schedule of the method's key encoders
    (:mod:`lidarcl.models.momentum`), for methods that declare key copies with
    :meth:`add_momentum_copy`; :class:`~lidarcl.engine.momentum.MomentumUpdateHook` steps
    them once per iteration.
    """

    def __init__(self, backbone: dict, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None, seed: int = 0, momentum: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.seed = int(seed)
        self.momentum_schedule = dict(momentum) if momentum else None
        self.momentum_hooked = False

    @property
    def feature_channels(self) -> int:
        """Width of the backbone's per-point features."""
        return int(self.backbone.out_channels)

    def step_generator(self, salt: int = 0) -> torch.Generator:
        """A CPU generator seeded by (seed, iteration, salt) for the method's own draws
        (pair sampling, masks): a resumed run draws exactly what the uninterrupted run drew
        at that iteration, whatever the global RNG state."""
        iteration = MessageHub.get_current_instance().get_info("iter") or 0
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + int(iteration)) * 97 + salt)
        return generator

    # ------------------------------------------------------------------ views
    def encode_views(self, batch: dict, num_views: int | None = None,
                     backbone: nn.Module | None = None,
                     view_slice: slice | None = None) -> list[ViewFeatures]:
        """Every view (or the first ``num_views``, or the views ``view_slice`` picks)
        through ``backbone`` (default: the online one; a key copy runs under ``no_grad``)."""
        backbone = self.backbone if backbone is None else backbone
        views = batch.get("views")
        if not views or views[0] is None:
            raise KeyError("the batch has no 'views': put MultiViewAugment (then PackSample) "
                           "at the end of the training pipeline")
        offsets = batch["offsets"]
        starts = torch.cat([offsets.new_zeros(1), offsets[:-1]])
        count = min(len(v) for v in views) if num_views is None else num_views
        out = []
        chosen = range(count) if view_slice is None else range(count)[view_slice]
        for v in chosen:
            parts = [sample_views[v] for sample_views in views]
            points = torch.cat([p["points"] for p in parts])
            sizes = torch.tensor([len(p["points"]) for p in parts], device=points.device)
            view_offsets = torch.cumsum(sizes, 0)
            index = torch.cat([p["index"].to(offsets.device) + starts[i]
                               for i, p in enumerate(parts)])
            batch_idx = torch.repeat_interleave(torch.arange(len(parts), device=points.device),
                                                sizes)
            if backbone is self.backbone:
                output = backbone(points, view_offsets)
            else:
                with torch.no_grad():
                    output = backbone(points, view_offsets)
            out.append(ViewFeatures(output.point_features, index,
                                    output.voxels.point_to_voxel >= 0, batch_idx, output,
                                    points))
        return out

    def matched_views(self, batch: dict):
        """The first two views through the backbone and the rows they share:
        ``(first, second, rows_a, rows_b)`` with ``first.index[rows_a] ==
        second.index[rows_b]``, both inside the voxel grid."""
        first, second = self.encode_views(batch, num_views=2)
        rows_a, rows_b = match_rows(first.index, second.index, len(batch["points"]),
                                    first.valid, second.valid)
        return first, second, rows_a, rows_b

    def batch_regions(self, batch: dict) -> torch.Tensor:
        """The batch's per-point ``regions``, or a KeyError naming the missing transform."""
        if batch.get("regions") is None:
            raise KeyError(f"{type(self).__name__} needs per-point 'regions': add "
                           "SegmentRegions to the pipeline before MultiViewAugment")
        return batch["regions"]

    # ----------------------------------------------------------------- forward
    def loss(self, batch: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_step(self, data, optim_wrapper):
        if self.momentum_pairs and not self.momentum_hooked:
            raise RuntimeError(
                f"{type(self).__name__} has momentum key encoders "
                f"({', '.join(k for _, k in self.momentum_pairs)}) but no hook updates them: "
                "add dict(type='MomentumUpdateHook') to the config's custom_hooks")
        return super().train_step(data, optim_wrapper)

    def forward(self, mode: str = "loss", **batch):
        if mode == "loss":
            losses = self.loss(batch)
            self.check_finite(losses, batch)
            return losses
        if mode == "tensor":
            return self.backbone(batch["points"], batch["offsets"])
        raise ValueError(f"{type(self).__name__} supports mode 'loss' and 'tensor', got "
                         f"{mode!r}")

    @staticmethod
    def check_finite(losses: dict, batch: dict) -> None:
        bad = {k: float(v.detach()) for k, v in losses.items()
               if isinstance(v, torch.Tensor) and not bool(torch.isfinite(v).all())}
        if not bad:
            return
        hub = MessageHub.get_current_instance()
        iteration = hub.get_info("iter")
        samples = [m.get("token", m.get("sample_idx")) if isinstance(m, dict) else m
                   for m in batch.get("meta", [])]
        names = ", ".join(f"{k} = {'nan' if math.isnan(v) else v}" for k, v in bad.items())
        raise NonFiniteLossError(f"non-finite loss at iteration {iteration}: {names}; "
                                 f"samples {samples}")
