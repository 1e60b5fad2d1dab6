"""Evaluation: metrics as plain functions over arrays, and the linear-probe protocol."""
from lidarcl.evaluation.segmentation import confusion_matrix, iou_per_class, mean_iou
from lidarcl.evaluation.seg_metric import SegMetric
from lidarcl.evaluation.bev_map_metric import BEVMapMetric  # noqa: F401  (registers it)
from lidarcl.evaluation.det_metric import KittiDetMetric, NuScenesDetMetric  # noqa: F401

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou"]
