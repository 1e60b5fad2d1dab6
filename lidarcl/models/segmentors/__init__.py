"""Downstream segmentation models (registered in ``MODELS``)."""
from lidarcl.models.segmentors.segmentor import DEFAULT_TTA, SegPrediction, Segmentor, tta_matrices

__all__ = ["Segmentor", "SegPrediction", "tta_matrices", "DEFAULT_TTA"]
