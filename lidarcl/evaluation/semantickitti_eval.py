"""SemanticKITTI results: the benchmark's submission layout and its metric.

Layout (semantic-kitti-api ``evaluate_semantics.py``)::

    <results>/sequences/NN/predictions/XXXXXX.label   uint32 per point of the scan, the raw
                                                      SemanticKITTI id (learning_map_inv)

Metric (semantic-kitti-api ``auxiliary/np_ioueval.py``, ``iouEval`` with ``ignore=[0]``):
ground truth and predictions both go through the learning map (0 unlabeled, 1..19); points
whose ground truth is unlabeled are dropped; a labelled point predicted unlabeled counts as a
false negative of its class and a false positive of none;
``IoU_c = TP / (TP + FP + FN + 1e-15)`` and the mIoU is the mean over the 19 classes,
**including classes absent from both** (IoU 0 there, unlike nuScenes-lidarseg, which leaves
them out). On the official val sequence every class is present and the two rules agree.

lidarcl's training labels are 0..18 with 255 ignored (``semantickitti_converter``); the
confusion matrix here is lidarcl's ``(19, 20)`` one whose last column counts the points
predicted unlabeled.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from lidarcl.datasets.semantickitti_converter import (IGNORE_INDEX, LEARNING_MAP_INV,
                                                      SEMANTICKITTI_CLASSES, learning_map_lut,
                                                      read_label_file)
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.evaluation.segmentation import check_class_labels, confusion_matrix
from lidarcl.utils.fileio import atomic_write

__all__ = ["semantickitti_prediction_path", "write_semantickitti_predictions",
           "semantickitti_iou", "evaluate_semantickitti"]

NUM_CLASSES = len(SEMANTICKITTI_CLASSES)
UNLABELED = -1  # a prediction of the unlabeled class (the no_prediction column)


def semantickitti_prediction_path(results_dir: str, token: str) -> str:
    """``<results>/sequences/NN/predictions/XXXXXX.label`` of the sample token ``NN_XXXXXX``."""
    sequence, frame = token.split("_")
    return os.path.join(results_dir, "sequences", sequence, "predictions", f"{frame}.label")


def write_semantickitti_predictions(results_dir: str,
                                    predictions: Iterable[tuple[str, np.ndarray]]) -> int:
    """Write ``(token, training labels 0..18 per point)`` pairs as raw ids (module doc)."""
    inverse = np.array([LEARNING_MAP_INV[i] for i in range(NUM_CLASSES)], dtype="<u4")
    count = 0
    for token, labels in predictions:
        labels = check_class_labels(labels, NUM_CLASSES, f"prediction of {token}")
        path = semantickitti_prediction_path(results_dir, token)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_write(path) as f:
            f.write(inverse[labels].tobytes())
        count += 1
    return count


def semantickitti_iou(cm: np.ndarray) -> tuple[float, np.ndarray]:
    """``(mIoU, IoU per class)`` by the benchmark's rule (module doc) from a ``(19, 19)`` or
    ``(19, 20)`` confusion matrix ``cm[target, prediction]`` (last column: unlabeled)."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    tp = np.diag(cm[:, :k])
    fp = cm[:, :k].sum(0) - tp
    fn = cm.sum(1) - tp
    iou = tp / (tp + fp + fn + 1e-15)
    return float(iou.mean()), iou


def evaluate_semantickitti(results_dir: str, data_root: str, index_path: str) -> dict:
    """Score the predictions of every scan of an info index (``tools/create_data.py
    semantickitti``) against its labels. Returns ``{"miou", "iou_per_class", "scans",
    "confusion_matrix"}``; a missing or wrongly sized prediction is a DataError naming it."""
    from lidarcl.datasets.info_format import read_info_index

    infos, _ = read_info_index(index_path, dataset="semantickitti")
    lut = learning_map_lut(IGNORE_INDEX)
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), dtype=np.int64)
    for info in infos:
        if not info.get("lidarseg_path"):
            raise DataError(index_path, f"sample {info['token']} has no labels (test split?)")
        truth_path = os.path.join(data_root, info["lidarseg_path"])
        truth, _ = read_label_file(truth_path)
        pred_path = semantickitti_prediction_path(results_dir, info["token"])
        if not os.path.isfile(pred_path):
            raise DataFileNotFound(pred_path, f"prediction of scan {info['token']}")
        pred_raw, _ = read_label_file(pred_path)
        if len(pred_raw) != len(truth):
            raise DataError(pred_path, f"{len(pred_raw)} predictions for {len(truth)} labels "
                                       f"of {truth_path}")
        pred = lut[pred_raw]
        pred[pred == IGNORE_INDEX] = UNLABELED
        cm += confusion_matrix(pred, lut[truth], NUM_CLASSES, ignore_index=IGNORE_INDEX,
                               no_prediction=UNLABELED)
    miou, iou = semantickitti_iou(cm)
    return {"miou": miou, "iou_per_class": dict(zip(SEMANTICKITTI_CLASSES, iou.tolist())),
            "scans": len(infos), "confusion_matrix": cm.tolist()}
