"""Lovász-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018), SLidR's fine-tuning loss.

For class ``c`` let ``m_i = |1[y_i = c] - p_i,c|`` be the error of point ``i`` and
``Delta_c(M) = |M| / |{y = c} U M|`` the Jaccard loss of a set ``M`` of mispredicted points
(Eq. 5). The loss of class ``c`` is the Lovász extension of ``Delta_c`` at ``m`` (Eq. 8-9):
with ``pi`` the order of decreasing errors,

    loss_c(m) = sum_i m_pi(i) * (Delta_c({pi(1..i)}) - Delta_c({pi(1..i-1)})),

equivalently ``integral_0^1 Delta_c({i : m_i >= t}) dt`` (the form the tests check it
against). Alg. 1 of the paper computes the increments with cumulative sums. The loss is the
mean over the classes: ``classes="present"`` (SLidR's and the paper's default) keeps the
classes present in the labels, ``"all"`` every class. Points whose label is
``ignore_index`` are dropped first. At one-hot probabilities it equals the mean of
``1 - IoU_c``.
"""
from __future__ import annotations

import torch
from torch import nn

from lidarcl.registry import MODELS

__all__ = ["lovasz_softmax", "LovaszSoftmaxLoss"]


def _lovasz_class_loss(errors: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Lovász extension of the Jaccard loss of one class at ``errors (P,)``; ``foreground``
    is ``1[y = c]`` as a float vector (Alg. 1 of the paper)."""
    errors_sorted, order = torch.sort(errors, descending=True)
    foreground_sorted = foreground[order]
    total = foreground_sorted.sum()
    intersection = total - torch.cumsum(foreground_sorted, 0)
    union = total + torch.cumsum(1 - foreground_sorted, 0)
    jaccard = 1 - intersection / union
    increments = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return torch.dot(errors_sorted, increments)


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor, classes: str = "present",
                   ignore_index: int | None = None) -> torch.Tensor:
    """Lovász-softmax of ``probs (P, K)`` (softmax probabilities) against ``labels (P,)``:
    the mean over the classes (``"present"`` in the labels, or ``"all"``) of the Lovász
    extension of the Jaccard loss (module doc). Zero (with a gradient path) when no point
    is left."""
    if classes not in ("present", "all"):
        raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"probs must be (P, K) and labels (P,); got {tuple(probs.shape)} "
                         f"and {tuple(labels.shape)}")
    if ignore_index is not None:
        keep = labels != ignore_index
        probs, labels = probs[keep], labels[keep]
    if len(labels) == 0:
        return probs.sum() * 0
    class_ids = (torch.unique(labels).tolist() if classes == "present"
                 else range(probs.shape[1]))
    losses = []
    for c in class_ids:
        foreground = (labels == c).to(probs.dtype)
        losses.append(_lovasz_class_loss((foreground - probs[:, c]).abs(), foreground))
    return torch.stack(losses).mean()


@MODELS.register_module()
class LovaszSoftmaxLoss(nn.Module):
    """:func:`lovasz_softmax` on logits ``(P, K)`` (softmax applied here), times
    ``loss_weight``."""

    def __init__(self, classes: str = "present", ignore_index: int | None = 255,
                 loss_weight: float = 1.0):
        super().__init__()
        self.classes = classes
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * lovasz_softmax(logits.softmax(1), labels, self.classes,
                                                 self.ignore_index)
