"""The README's main job (tools/demo.py) runs end to end on a tiny generated set."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def test_demo_generates_indexes_loads_and_draws(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/demo.py"), "--out", str(tmp_path), "--scenes", "2",
         "--keyframes", "2", "--image-size", "320", "180", "--pretrain-iters", "2",
         "--probe-epochs", "2", "--voxel-size", "0.5"],
        check=True, capture_output=True, text=True)
    out = result.stdout
    # compact terminal: a line per stage, the progress, the table (issue 12); the rest in files
    lines = (out + result.stderr).strip().splitlines()
    assert len(lines) <= 20, out + result.stderr
    assert "System environment" not in out and "Config:" not in out
    assert "nuscenes-devkit: 2 scenes, 4 samples" in out
    # the train split (one scene of two) holds 2 keyframes
    assert "samples 2 in 1 batches" in out
    assert "boxes:" in (tmp_path / "summary.txt").read_text()
    bev = np.asarray(Image.open(tmp_path / "vis" / "nuscenes_0000_bev.png"))
    cam = np.asarray(Image.open(tmp_path / "vis" / "nuscenes_0000_CAM_FRONT.png"))
    assert bev.shape == (1000, 1000, 3)
    assert (bev != 16).any(2).mean() > 0.005      # points drawn over the (16, 16, 16) ground
    assert cam.shape == (180, 320, 3)
    # pretraining through the Runner, then the linear-probe table
    assert re.search(r"^  iter 2/2  loss \d+\.\d+ .*ETA 0:00$", out, re.M)
    assert "pretrained PointContrast to iteration 2 in " in out
    assert f"-> {tmp_path / 'pretrain' / 'backbone.pth'}" in out
    assert (tmp_path / "pretrain" / "backbone.pth").is_file()
    log = Path(re.search(r"; full log: (.*)$", out, re.M).group(1))
    assert log.is_relative_to(tmp_path / "pretrain")
    assert "System environment:" in log.read_text() and "Config:" in log.read_text()
    rows = [line for line in out.splitlines() if line.startswith(("| random", "| pretrained"))]
    assert len(rows) == 2
    for row in rows:
        assert 0.0 <= float(row.split("|")[2]) <= 100.0
