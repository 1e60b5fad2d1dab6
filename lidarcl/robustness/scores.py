"""Robustness scores of Robo3D (Kong et al., ICCV 2023): corruption error and resilience
rate per corruption, and their means.

For a model's accuracy ``A_{i,l}`` (mIoU for segmentation, NDS or mAP for detection, in %)
on corruption ``i`` at level ``l`` and a baseline model's ``B_{i,l}``:

    CE_i = sum_l (100 - A_{i,l}) / sum_l (100 - B_{i,l})        mCE = mean_i CE_i
    RR_i = sum_l A_{i,l} / (L x A_clean)                         mRR = mean_i RR_i

reported in % (Robo3D ``docs/GET_STARTED.md``). Only each corruption's mean over its levels
enters, so published per-corruption averages suffice for the baseline.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["ROBO3D_CORRUPTIONS", "NUSCENES_C_SEG_BASELINE", "corruption_error",
           "resilience_rate", "robustness_summary"]

ROBO3D_CORRUPTIONS = ("fog", "wet_ground", "snow", "motion_blur", "beam_missing", "crosstalk",
                      "incomplete_echo", "cross_sensor")

# Robo3D's baseline for nuScenes-C segmentation, MinkUNet-18 (cr 1.0): clean mIoU and the mean
# mIoU over the three levels of each corruption (Robo3D README, nuScenes-C table)
NUSCENES_C_SEG_BASELINE = {
    "clean": 75.76, "fog": 53.64, "wet_ground": 73.91, "snow": 40.35, "motion_blur": 73.39,
    "beam_missing": 68.54, "crosstalk": 26.58, "incomplete_echo": 63.83, "cross_sensor": 50.95,
}


def _mean(values) -> float:
    values = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if values.size == 0:
        raise ValueError("no accuracy given for a corruption")
    return float(values.mean())


def corruption_error(model: float | Sequence[float], baseline: float | Sequence[float]) -> float:
    """``CE`` in % from the model's and the baseline's accuracies (%) at each level (or their
    means over the levels)."""
    return 100.0 * (100.0 - _mean(model)) / (100.0 - _mean(baseline))


def resilience_rate(model: float | Sequence[float], clean: float) -> float:
    """``RR`` in % from the model's accuracies (%) at each level and its clean accuracy."""
    return 100.0 * _mean(model) / float(clean)


def robustness_summary(model: Mapping[str, float | Sequence[float]],
                       baseline: Mapping[str, float | Sequence[float]],
                       corruptions: Sequence[str] = ROBO3D_CORRUPTIONS) -> dict:
    """Per corruption CE and RR and their means (mCE, mRR), in %; ``model`` and ``baseline``
    map ``"clean"`` and each corruption to the accuracy (%) per level or its mean."""
    missing = [c for c in ("clean", *corruptions) if c not in model]
    missing_base = [c for c in corruptions if c not in baseline]
    if missing or missing_base:
        raise ValueError(f"robustness scores need every corruption: the model lacks "
                         f"{missing}, the baseline {missing_base}")
    clean = _mean(model["clean"])
    rows = {c: {"accuracy": _mean(model[c]), "CE": corruption_error(model[c], baseline[c]),
                "RR": resilience_rate(model[c], clean)} for c in corruptions}
    return {"clean": clean, "corruptions": rows,
            "mCE": float(np.mean([r["CE"] for r in rows.values()])),
            "mRR": float(np.mean([r["RR"] for r in rows.values()]))}
