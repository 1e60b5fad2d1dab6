"""Pretraining methods: one file each, registered in ``MODELS``; ``forward(mode="loss")``
returns a dict of named losses for mmengine's Runner (``base.py``)."""
from lidarcl.models.pretrainers.base import (NonFiniteLossError, Pretrainer, ViewFeatures,
                                             match_rows)
from lidarcl.models.pretrainers.cmae import MaskedContrast, cell_targets, chamfer_distance
from lidarcl.models.pretrainers.fac import (ForegroundAwareContrast, foreground_segments,
                                            multi_positive_info_nce)
from lidarcl.models.pretrainers.pointcontrast import PointContrast
from lidarcl.models.pretrainers.prc import PointRegionContrast, sample_region_points
from lidarcl.models.pretrainers.scalr import ScaLR
from lidarcl.models.pretrainers.slidr import SLidR
from lidarcl.models.pretrainers.superflow import SuperFlow

__all__ = ["Pretrainer", "ViewFeatures", "match_rows", "NonFiniteLossError", "PointContrast",
           "PointRegionContrast", "sample_region_points", "MaskedContrast",
           "chamfer_distance", "cell_targets", "ForegroundAwareContrast",
           "foreground_segments", "multi_positive_info_nce", "SLidR", "ScaLR", "SuperFlow"]
