"""Corruption transforms (registered in ``TRANSFORMS``): a corruption is a pipeline
transform ``sample -> sample`` at a given severity, seeded per sample
(:class:`~lidarcl.robustness.corruptions.base.Corruption`)."""
from lidarcl.robustness.corruptions.alignment import SpatialMisalignment, TemporalMisalignment
from lidarcl.robustness.corruptions.base import (CORRUPTIONS, IGNORE_LABEL, SEVERITY_NAMES,
                                                 Corruption, build_corruption, ring_index)
from lidarcl.robustness.corruptions.fog import Fog
from lidarcl.robustness.corruptions.object_level import (LocalCutout, LocalDensityDecrease,
                                                         LocalGaussianNoise, LocalRotation,
                                                         LocalScale, LocalShear)
from lidarcl.robustness.corruptions.sensor import (BeamMissing, CrossSensor, Crosstalk,
                                                   IncompleteEcho, MotionBlur)
from lidarcl.robustness.corruptions.snow import Snow
from lidarcl.robustness.corruptions.wet_ground import WetGround

__all__ = ["CORRUPTIONS", "IGNORE_LABEL", "SEVERITY_NAMES", "Corruption", "build_corruption",
           "ring_index", "Fog", "BeamMissing", "CrossSensor", "Crosstalk", "IncompleteEcho",
           "MotionBlur", "Snow", "WetGround", "LocalCutout", "LocalDensityDecrease",
           "LocalGaussianNoise", "LocalRotation", "LocalScale", "LocalShear", "SpatialMisalignment",
           "TemporalMisalignment"]
