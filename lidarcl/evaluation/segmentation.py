"""Semantic segmentation metrics: plain functions over label arrays.

``IoU_c = TP_c / (TP_c + FP_c + FN_c)`` from the confusion matrix of the points whose target
is not ``ignore_index``; ``mIoU`` is the mean over the classes whose union is not empty (a
class absent from both targets and predictions is undefined and left out, as the
nuScenes-lidarseg and SemanticKITTI evaluations do).
"""
from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou"]


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None
                     ) -> np.ndarray:
    """``cm[t, p]``: points of target class ``t`` predicted ``p`` (int64). Targets equal to
    ``ignore_index`` are skipped; other targets and predictions must lie in
    ``[0, num_classes)``."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in length: {pred.shape} vs {target.shape}")
    keep = np.ones(len(target), dtype=bool) if ignore_index is None else target != ignore_index
    pred, target = pred[keep], target[keep]
    for name, values in (("target", target), ("pred", pred)):
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in [0, {num_classes}) (or be "
                             f"ignore_index={ignore_index}); found {values.min()}.."
                             f"{values.max()}")
    return np.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(
        num_classes, num_classes).astype(np.int64)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of every class (NaN where the union is empty)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes with a non-empty union (NaN when there is none)."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
