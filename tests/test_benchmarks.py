"""The benchmark scripts run end to end (their figures are measurements, not asserted; what
is asserted is that every row is measured and complete)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_pretrain_benchmark_measures_a_momentum_method_in_both_modes(real_data):
    """FAC has momentum key encoders, which refuse to train without their hook: the
    benchmark steps them itself (it failed on FAC before), and --deterministic-cost times
    the step in the deterministic mode beside the default one."""
    root = real_data.require_nuscenes()
    if not (root / "v1.0-mini" / "sample.json").is_file():
        pytest.skip(f"the pretrain benchmark reads v1.0-mini tables; {root} has none")
    proc = subprocess.run(
        [sys.executable, "tools/benchmark.py", "pretrain", "--methods", "fac", "--backbones",
         "voxelbackbone8x", "--iters", "1", "--deterministic-cost", "--data-root", str(root)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| fac |")]
    assert len(rows) == 1 and "failed" not in rows[0], proc.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 14  # 12 columns and the two of the deterministic mode
    model, deterministic, ratio = float(cells[6]), float(cells[12]), cells[13]
    ops, share = cells[10].split()  # seconds in lidarcl.ops (FAC pools its regions there)
    assert 0 <= float(ops) <= model and share.startswith("(") and share.endswith("%)")
    assert model > 0 and deterministic > 0
    # the cells are rounded to 0.01: the printed ratio lies within what they allow
    assert ratio.endswith("x")
    low = (deterministic - 0.005) / (model + 0.005) - 0.005
    high = (deterministic + 0.005) / max(model - 0.005, 1e-9) + 0.005
    assert low <= float(ratio[:-1]) <= high


def test_corruption_benchmark_times_every_corruption_and_severity(real_data, tmp_path):
    import json

    from lidarcl.robustness.corruptions import CORRUPTIONS

    root = real_data.require_nuscenes()
    if not (root / "v1.0-mini" / "sample.json").is_file():
        pytest.skip(f"the corruption benchmark reads v1.0-mini tables; {root} has none")
    out = tmp_path / "corruptions.json"
    proc = subprocess.run([sys.executable, "tools/benchmark.py", "corruptions", "--threads",
                           "1", "--repeats", "1", "--data-root", str(root), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = json.loads(out.read_text())
    measured = {(r["corruption"], r["severity"]) for r in result["rows"]}
    assert measured == {(name, s) for name, cls in CORRUPTIONS.items()
                        for s in range(1, len(cls.parameters) + 1)}
    for row in result["rows"]:
        assert row["points_in"] == 34688
        assert f"| {row['corruption']} | {row['severity']} |" in proc.stdout
        if row["corruption"] == "temporal_misalignment":  # the real frame has no sweeps
            assert row["seconds"] is None and "unlabelled sweep" in row["not_measured"]
        else:
            assert row["seconds"] > 0
    beams = {r["severity"]: r["points_out"] for r in result["rows"]
             if r["corruption"] == "beam_missing"}
    assert beams == {1: 34688 * 3 // 4, 2: 34688 // 2, 3: 34688 // 4}  # 1084 points a ring
