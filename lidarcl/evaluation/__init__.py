"""Evaluation: metrics as plain functions over arrays, and the linear-probe protocol."""
from lidarcl.evaluation.segmentation import confusion_matrix, iou_per_class, mean_iou

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou"]
