"""The README's main job (tools/demo.py) runs end to end on a tiny generated set."""
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
    assert "nuscenes-devkit: 2 scenes, 4 samples" in out
    # the train split (one scene of two) holds 2 keyframes
    assert "samples 2 in 1 batches" in out
    bev = np.asarray(Image.open(tmp_path / "vis" / "nuscenes_0000_bev.png"))
    cam = np.asarray(Image.open(tmp_path / "vis" / "nuscenes_0000_CAM_FRONT.png"))
    assert bev.shape == (1000, 1000, 3)
    assert (bev != 16).any(2).mean() > 0.005      # points drawn over the (16, 16, 16) ground
    assert cam.shape == (180, 320, 3)
    # pretraining through the Runner, then the linear-probe table
    assert "pretrained PointContrast for 2 iterations" in out
    assert (tmp_path / "pretrain" / "backbone.pth").is_file()
    rows = [line for line in out.splitlines() if line.startswith(("| random", "| pretrained"))]
    assert len(rows) == 2
    for row in rows:
        assert 0.0 <= float(row.split("|")[2]) <= 100.0
