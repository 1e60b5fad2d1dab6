"""mmengine metric of BEV map segmentation (:class:`lidarcl.models.detectors.BEVMapSegmentor`):
the predictions of every validation sample accumulate into one
:class:`lidarcl.evaluation.bev_map_seg.BEVMapSegIoU` (BEVFusion's counts over the whole set);
reported in percent as ``mIoU@max`` (the best-checkpoint key), ``<class>@max`` and
``<class>@<threshold>``."""
from __future__ import annotations

from typing import Sequence

from mmengine.evaluator import BaseMetric

from lidarcl.evaluation.bev_map_seg import BEV_MAP_CLASSES, THRESHOLDS, BEVMapSegIoU
from lidarcl.registry import METRICS

__all__ = ["BEVMapMetric"]


@METRICS.register_module()
class BEVMapMetric(BaseMetric):
    default_prefix = ""

    def __init__(self, classes: Sequence[str] = BEV_MAP_CLASSES,
                 thresholds: Sequence[float] = THRESHOLDS, collect_device: str = "cpu",
                 prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.classes = tuple(classes)
        self.thresholds = tuple(thresholds)

    def process(self, data_batch, data_samples: Sequence) -> None:
        for prediction in data_samples:
            if prediction.target is None:
                raise ValueError(f"sample {prediction.meta.get('token')} has no BEV map "
                                 "ground truth: the validation pipeline needs LoadBEVMapMask")
            counts = BEVMapSegIoU(self.classes, self.thresholds)
            counts.update(prediction.probs[None], prediction.target[None])
            self.results.append((counts.tp, counts.fp, counts.fn))

    def compute_metrics(self, results: list) -> dict:
        total = BEVMapSegIoU(self.classes, self.thresholds)
        for tp, fp, fn in results:
            total.tp += tp
            total.fp += fp
            total.fn += fn
        return {key: 100 * value for key, value in total.compute().items()}
