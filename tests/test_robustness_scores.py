"""Robo3D's mCE / mRR (lidarcl/robustness/scores.py) against published rows: every number
below is copied from the SuperFlow, Seal and Robo3D READMEs (nuScenes-C segmentation), and
the scores must come out as those READMEs print them."""
from __future__ import annotations

import pytest

from lidarcl.robustness.scores import (NUSCENES_C_SEG_BASELINE, ROBO3D_CORRUPTIONS,
                                       corruption_error, resilience_rate, robustness_summary)

ORDER = ("fog", "wet_ground", "snow", "motion_blur", "beam_missing", "crosstalk",
         "incomplete_echo", "cross_sensor")
# name: (clean mIoU, the eight per-corruption mIoU in ORDER, published mCE, published mRR)
PUBLISHED = {
    "SuperFlow MinkU-34": (76.57, (70.32, 75.77, 65.41, 61.05, 68.09, 60.02, 58.36, 50.41),
                           91.67, 83.17),
    "random MinkU-34": (None, (62.96, 70.65, 55.48, 51.71, 62.01, 31.56, 59.64, 39.41),
                        112.20, 72.57),
    "Seal MinkUNet": (75.60, (72.66, 74.31, 66.22, 66.14, 65.96, 57.44, 59.87, 39.85),
                      92.63, 83.08),
    "MinkUNet-34 (Robo3D)": (None, (56.91, 74.93, 37.50, 75.24, 70.10, 29.32, 64.96, 52.96),
                             96.37, 75.08),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_mce_reproduces_published_rows(name):
    clean, scores, mce, mrr = PUBLISHED[name]
    model = dict(zip(ORDER, scores))
    ces = [corruption_error(model[c], NUSCENES_C_SEG_BASELINE[c]) for c in ORDER]
    assert sum(ces) / 8 == pytest.approx(mce, abs=0.006)
    if clean is not None:
        summary = robustness_summary({"clean": clean, **model}, NUSCENES_C_SEG_BASELINE)
        assert summary["mCE"] == pytest.approx(mce, abs=0.006)
        assert summary["mRR"] == pytest.approx(mrr, abs=0.01)
    else:  # the README gives no clean mIoU: the one its mRR implies
        implied = sum(model.values()) / 8 / mrr * 100
        assert 60 < implied < 80


def test_the_baseline_scores_100_and_levels_average():
    baseline = dict(NUSCENES_C_SEG_BASELINE)
    summary = robustness_summary(baseline, baseline)
    assert summary["mCE"] == pytest.approx(100.0)
    # Robo3D's baseline row: mRR 74.44
    assert summary["mRR"] == pytest.approx(74.44, abs=0.01)
    # per-level values enter through their mean (hand case)
    assert corruption_error([60.0, 50.0, 40.0], [70.0, 60.0, 50.0]) == pytest.approx(125.0)
    assert resilience_rate([60.0, 50.0, 40.0], 80.0) == pytest.approx(62.5)
    assert set(ROBO3D_CORRUPTIONS) == set(ORDER)
    with pytest.raises(ValueError, match="lacks \\['snow'\\]"):
        robustness_summary({k: v for k, v in baseline.items() if k != "snow"}, baseline)
