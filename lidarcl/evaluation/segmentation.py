"""Semantic segmentation metrics: plain functions over label arrays.

``IoU_c = TP_c / (TP_c + FP_c + FN_c)`` from the confusion matrix of the points whose target
is not ``ignore_index``; ``mIoU`` is the mean over the classes whose union is not empty (a
class absent from both targets and predictions is undefined and left out, as the
nuScenes-lidarseg and SemanticKITTI evaluations do).

Points without a prediction (e.g. outside a backbone's voxel grid) are counted as errors of
their target class and as a prediction of no class: ``confusion_matrix(..., no_prediction=v)``
returns a ``(K, K + 1)`` matrix whose last column counts the points predicted ``v``; they
add to the class's false negatives (``cm.sum(1)``) but to no class's false positives.
``iou_per_class`` and ``mean_iou`` take either shape.
"""
from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou", "iou_text", "check_class_labels"]


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None,
                     no_prediction: int | None = None) -> np.ndarray:
    """``cm[t, p]``: points of target class ``t`` predicted ``p`` (int64). Targets equal to
    ``ignore_index`` are skipped; other targets and predictions must lie in
    ``[0, num_classes)``. With ``no_prediction`` (a value outside ``[0, num_classes)``), the
    matrix is ``(K, K + 1)`` and ``cm[t, K]`` counts the points of class ``t`` predicted
    ``no_prediction`` (false negatives of ``t``, a false positive of no class)."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in length: {pred.shape} vs {target.shape}")
    keep = np.ones(len(target), dtype=bool) if ignore_index is None else target != ignore_index
    pred, target = pred[keep], target[keep]
    columns = num_classes
    if no_prediction is not None:
        if 0 <= no_prediction < num_classes:
            raise ValueError(f"no_prediction={no_prediction} is a class index; use a value "
                             f"outside [0, {num_classes})")
        pred = np.where(pred == no_prediction, num_classes, pred)
        columns = num_classes + 1
    for name, values, high in (("target", target, num_classes), ("pred", pred, columns)):
        if len(values) and (values.min() < 0 or values.max() >= high):
            allowed = (f"ignore_index={ignore_index}" if name == "target" else
                       f"no_prediction={no_prediction}")
            raise ValueError(f"{name} labels must lie in [0, {num_classes}) (or be "
                             f"{allowed}); found {values.min()}..{values.max()}")
    return np.bincount(target * columns + pred, minlength=num_classes * columns).reshape(
        num_classes, columns).astype(np.int64)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of every class (NaN where the union is empty) from a ``(K, K)`` matrix or a
    ``(K, K + 1)`` one whose last column counts unpredicted points (false negatives)."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    if cm.ndim != 2 or cm.shape[1] not in (k, k + 1):
        raise ValueError(f"confusion matrix must be (K, K) or (K, K + 1), got {cm.shape}")
    tp = np.diag(cm[:, :k])
    union = cm[:, :k].sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes with a non-empty union (NaN when there is none)."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def iou_text(names, iou) -> str:
    """``"car 19.6, truck 12.4, ..."``: IoU per class in percent, classes without a union
    (NaN) left out."""
    return ", ".join(f"{name} {100 * value:.1f}" for name, value in zip(names, iou)
                     if not np.isnan(value))


def check_class_labels(labels, num_classes: int, what: str) -> np.ndarray:
    """``labels`` as an array, every value a class in ``[0, num_classes)`` (a prediction to
    be written in a dataset's submission format needs one per point); ValueError naming
    ``what`` otherwise."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what}: labels must lie in 0..{num_classes - 1} (every point "
                         f"needs a class), found {labels.min()}..{labels.max()}")
    return labels
