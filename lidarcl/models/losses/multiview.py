"""Multi-view contrastive losses (Koromilas et al., "Principled multi-view contrastive
learning", arXiv 2507.06979; formulas as in the authors' code, pakoromilas/Multi-View-CL).

Input: ``V >= 2`` views of the same ``N`` instances, ``views[v][n]`` (e.g. a point seen in
several augmentations, or a region seen by the LiDAR at t-1, t, t+1 and by a camera), each
L2-normalised, computed in float32. ``e(a, b) = exp(<a, b> / tau)``.

* :class:`MVInfoNCELoss`: one term per instance ``n``,
  ``-log [ sum_{a != b} e(z_an, z_bn) ] / [ sum_v sum_{(w, m) != (v, n)} e(z_vn, z_wm) ]``:
  the numerator aggregates every ordered pair of the instance's views; the denominator
  every other row of every view (the other views of ``n`` included, as in the authors' code).
* :class:`MVDHELLoss` (decoupled hyperspherical energy loss): alignment and uniformity are
  decoupled, the uniformity term being computed inside each view,
  ``-log [ sum_{a < b} e(z_an, z_bn) ] + sum_v log sum_{m != n} e(z_vn, z_vm)``.

Both are computed with ``logsumexp``. ``max_pairs`` keeps that many instances, drawn
uniformly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lidarcl.models.losses.contrastive import sample_pairs
from lidarcl.registry import MODELS

__all__ = ["MVInfoNCELoss", "MVDHELLoss", "stack_views"]


def stack_views(views) -> torch.Tensor:
    """``(V, N, C)`` from a tensor or a sequence of ``(N, C)`` tensors, checked."""
    if isinstance(views, torch.Tensor):
        stacked = views
    else:
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) != 1:
            raise ValueError(f"all views must have the same (N, C) shape, got {sorted(shapes)}")
        stacked = torch.stack(list(views))
    if stacked.dim() != 3 or stacked.shape[0] < 2:
        raise ValueError(f"need (V >= 2, N, C) views, got {tuple(stacked.shape)}")
    return stacked


class _MultiViewLoss(nn.Module):
    accepts_views = True  # a pretrainer feeds it the (V, N, C) stack of all its views

    def __init__(self, temperature: float = 0.2, max_pairs: int | None = None,
                 loss_weight: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.max_pairs = max_pairs
        self.loss_weight = loss_weight

    def forward(self, *views, groups=None, generator=None) -> torch.Tensor:
        """``forward(query, key, ...)`` with ``(N, C)`` views, or ``forward(views)`` with a
        ``(V, N, C)`` tensor. ``groups`` is accepted for a common interface and unused."""
        z = stack_views(views[0] if len(views) == 1 else views)
        rows = sample_pairs(z.shape[1], self.max_pairs, z.device, generator)
        if rows is not None:
            z = z[:, rows]
        if z.shape[1] == 0:
            return z.sum() * 0.0
        z = F.normalize(z.float(), dim=-1)
        return self.loss_weight * self.compute(z)

    def _alignment(self, z, ordered: bool) -> torch.Tensor:
        """log sum over view pairs of instance n of e(z_an, z_bn): (N,)"""
        num_views = z.shape[0]
        a, b = torch.triu_indices(num_views, num_views, offset=1)
        pair_logits = (z[a] * z[b]).sum(-1) / self.temperature          # (pairs, N)
        out = torch.logsumexp(pair_logits, dim=0)
        return out + math.log(2.0) if ordered else out


@MODELS.register_module()
class MVInfoNCELoss(_MultiViewLoss):
    """Multi-view InfoNCE (module doc)."""

    def compute(self, z):
        num_views, n, c = z.shape
        flat = z.reshape(num_views * n, c)
        logits = flat @ flat.t() / self.temperature
        logits = logits.masked_fill(torch.eye(len(flat), dtype=torch.bool,
                                              device=z.device), float("-inf"))
        per_row = torch.logsumexp(logits, dim=1).view(num_views, n)      # rows (v, n)
        denominator = torch.logsumexp(per_row, dim=0)                    # sum over v
        return (denominator - self._alignment(z, ordered=True)).mean()


@MODELS.register_module()
class MVDHELLoss(_MultiViewLoss):
    """Multi-view decoupled hyperspherical energy loss (module doc)."""

    def compute(self, z):
        num_views, n, _ = z.shape
        logits = torch.einsum("vnc,vmc->vnm", z, z) / self.temperature
        logits = logits.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device),
                                    float("-inf"))
        uniformity = torch.logsumexp(logits, dim=2).sum(0)              # sum_v log sum_m
        if n == 1:
            uniformity = torch.zeros_like(uniformity)
        return (uniformity - self._alignment(z, ordered=False)).mean()
