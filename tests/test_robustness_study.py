"""The robustness study's summary (lidarcl.robustness.study.summarise) against a hand
computation on made-up runs: means and sample standard deviations over seeds, per-seed
gains, CE against the baseline row's run of the same seed."""
from __future__ import annotations

import numpy as np
import pytest


def _run(clean, fog, snow, attack=None):
    out = {"clean": {"score": clean}, "metric": "mIoU", "checkpoint": "x.pth",
           "corruptions": {"fog": {str(i + 1): {"score": v} for i, v in enumerate(fog)},
                           "snow": {str(i + 1): {"score": v} for i, v in enumerate(snow)}},
           "attacks": {}}
    if attack:
        out["attacks"]["pgd"] = {"score_clean": attack[0], "score": attack[1],
                                 "success_rate": attack[2]}
    return out


def test_summary_hand_case(tmp_path):
    from lidarcl.robustness.study import format_study, plot_study, summarise

    runs = {("random", 0): _run(10.0, [8, 6, 4], [9, 9, 9], (11, 5, 40)),
            ("random", 1): _run(12.0, [9, 9, 6], [10, 8, 6], (12, 6, 50)),
            ("prc", 0): _run(20.0, [18, 16, 14], [19, 17, 15], (21, 15, 20)),
            ("prc", 1): _run(18.0, [15, 15, 12], [16, 16, 16], (17, 14, 30))}
    summary = summarise({"runs": runs, "detector": None}, "random")
    assert summary["rows"] == ["random", "prc"]
    prc = summary["table"]["prc"]
    assert prc["clean"]["mean_std"] == pytest.approx((19.0, np.std([20, 18], ddof=1)))
    assert prc["clean"]["gain"] == pytest.approx((8.0, np.std([10, 6], ddof=1)))
    assert prc["fog"]["per_seed"] == pytest.approx([16.0, 14.0])
    # CE of prc against random of the same seed, mean over fog and snow
    ce0 = np.mean([100 * (100 - 16) / (100 - 6), 100 * (100 - 17) / (100 - 9)])
    ce1 = np.mean([100 * (100 - 14) / (100 - 8), 100 * (100 - 16) / (100 - 8)])
    assert prc["mCE"]["per_seed"] == pytest.approx([ce0, ce1])
    rr0 = np.mean([100 * 16 / 20, 100 * 17 / 20])
    assert prc["mRR"]["per_seed"][0] == pytest.approx(rr0)
    assert "mCE" not in summary["table"]["random"]
    assert prc["pgd: success %"]["gain"][0] == pytest.approx(-20.0)
    text = format_study(summary)
    assert "| fog | 7.00 +- 1.41 | 15.00 +- 1.41 | 8.00 +- 2.83 |" in text  # gains 10, 6
    plot_study({"runs": runs}, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000
