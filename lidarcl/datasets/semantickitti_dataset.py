"""SemanticKITTI scans over a lidarcl info index (written by
:func:`lidarcl.datasets.semantickitti_converter.create_semantickitti_infos`).

The sample dict is :class:`~lidarcl.datasets.base.InfoDataset`'s, without boxes or cameras;
``ego2global`` is the scan's velodyne pose in the first scan of its sequence, and
``lidarseg_path`` the ``.label`` file that ``LoadSemanticKITTILabels`` reads.
"""
from __future__ import annotations

import numpy as np

from lidarcl.datasets.base import InfoDataset
from lidarcl.datasets.semantickitti_converter import (IGNORE_INDEX, SEMANTICKITTI_CLASSES,
                                                      learning_map_lut)
from lidarcl.registry import DATASETS


@DATASETS.register_module()
class SemanticKITTIDataset(InfoDataset):
    """SemanticKITTI: 19 segmentation classes (``SEG_CLASSES``), no detection classes."""

    DATASET_NAME = "semantickitti"
    DEFAULT_CLASSES = ()
    SEG_CLASSES = SEMANTICKITTI_CLASSES
    IGNORE_INDEX = IGNORE_INDEX

    @property
    def lidarseg_learning_map(self) -> np.ndarray:
        """Raw semantic id -> training label (65536 entries; ignored ids -> 255)."""
        return learning_map_lut()
