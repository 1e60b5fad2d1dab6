"""mmengine metric of the segmentation validation loop: one confusion matrix over every
point of every validation scan (``lidarcl.evaluation.segmentation``), IoU per class and mIoU.

``rule="nuscenes"`` (default): mean over the classes with a non-empty union, as
nuscenes-devkit's ``LidarSegEval``; ``rule="semantickitti"``: mean over all classes, an
absent class counting 0, as semantic-kitti-api (``semantickitti_eval``). A point the model
could not predict (outside its grid, label -1) is a false negative of its class.
Reported in percent: ``mIoU`` and ``IoU.<class>``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from lidarcl.evaluation.segmentation import confusion_matrix, iou_per_class, mean_iou
from lidarcl.registry import METRICS

__all__ = ["SegMetric"]

RULES = ("nuscenes", "semantickitti")


@METRICS.register_module()
class SegMetric(BaseMetric):
    default_prefix = ""  # metric names as they are: mIoU, IoU.<class> (save_best="mIoU")

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 ignore_index: int = 255, rule: str = "nuscenes",
                 collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.num_classes = int(num_classes)
        self.class_names = list(class_names or [str(i) for i in range(self.num_classes)])
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} "
                             "classes")
        self.ignore_index = ignore_index
        self.rule = rule

    def process(self, data_batch, data_samples: Sequence) -> None:
        for prediction in data_samples:
            if prediction.target is None:
                raise ValueError(f"scan {prediction.meta.get('token')} has no labels: the "
                                 "validation pipeline must load them")
            self.results.append(confusion_matrix(
                prediction.labels.numpy(), prediction.target.numpy(), self.num_classes,
                ignore_index=self.ignore_index, no_prediction=-1))

    def compute_metrics(self, results: list) -> dict:
        cm = np.sum(results, axis=0)
        if self.rule == "semantickitti":
            from lidarcl.evaluation.semantickitti_eval import semantickitti_iou

            miou, iou = semantickitti_iou(cm)
        else:
            iou, miou = iou_per_class(cm), mean_iou(cm)
        metrics = {"mIoU": 100 * miou}
        metrics.update({f"IoU.{name}": 100 * float(v)
                        for name, v in zip(self.class_names, iou) if not np.isnan(v)})
        return metrics
