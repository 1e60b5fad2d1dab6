"""The image-teacher probe (lidarcl/evaluation/teacher_probe.py, tools/teacher_probe.py):
its point features against a naive loop over points and cameras (the devkit's projection
rule, the first camera that sees a point, a hand-written bilinear read), its mIoU against
a hand-computed case, and the tool on generated data."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_scalr import STRIDE, H, K, W, YAWS, _camera, bilinear, teacher_map

REPO = Path(__file__).resolve().parents[1]
IGNORED_RAW = 99  # outside the lut: ignored


class StandIn:
    """``ImageTeacher``'s interface over test_scalr's stand-in encoder."""
    stride = STRIDE

    def __init__(self, encode=None):
        self.encode = encode or (lambda flat: teacher_map(flat).float())


def _scans(seed: int, per_scan: int = 200):
    """Two scans of one sample each, with their own cameras, images and labels."""
    rng = np.random.default_rng(seed)
    scans = []
    for b in range(2):
        angle = rng.uniform(-1.6, 1.6, per_scan)
        reach = rng.uniform(2.0, 15.0, per_scan)
        xyz = np.stack([reach * np.cos(angle), reach * np.sin(angle),
                        rng.uniform(-1.5, 1.5, per_scan)], 1)
        xyz[:15, 0] = -np.abs(xyz[:15, 0])  # behind both cameras
        points = torch.tensor(np.concatenate([xyz, rng.uniform(0, 1, (per_scan, 1))], 1),
                              dtype=torch.float32)
        raw = rng.choice([1, 3, 3, 3, 3, 3, 5, 7, IGNORED_RAW], per_scan)
        scans.append({
            "points": points, "offsets": torch.tensor([per_scan]),
            "pts_semantic_mask": torch.tensor(raw),
            "images": [torch.tensor(rng.uniform(0, 255, (K, 3, H, W)), dtype=torch.float32)],
            "lidar2img": [torch.tensor(np.stack([_camera(y) for y in YAWS[b]]),
                                       dtype=torch.float32)],
            "img_shape": [torch.tensor([[H, W]] * K)]})
    return scans


LUT = torch.arange(16)


def _naive(scans, encode):
    """Per labelled point in scan order: the first camera with depth > 1 and
    1 < u < W - 1, 1 < v < H - 1, the map read by hand there, unit length."""
    feats, labels = [], []
    for scan in scans:
        maps = encode(scan["images"][0] / 255.0).double().numpy()
        for i, point in enumerate(scan["points"].double().numpy()):
            raw = int(scan["pts_semantic_mask"][i])
            if raw == IGNORED_RAW:
                continue
            for k in range(K):
                q = scan["lidar2img"][0][k].double().numpy() @ np.append(point[:3], 1)
                if q[2] <= 1.0:
                    continue
                u, v = q[0] / q[2], q[1] / q[2]
                if 1.0 < u < W - 1.0 and 1.0 < v < H - 1.0:
                    f = bilinear(maps[k], u, v)
                    feats.append(f / np.linalg.norm(f))
                    labels.append(raw)
                    break
    return np.array(feats), np.array(labels)


def test_teacher_point_features_equal_a_naive_loop():
    from lidarcl.evaluation.teacher_probe import teacher_point_features

    scans = _scans(0)
    features, labels = teacher_point_features(StandIn(), scans, LUT)
    expected_f, expected_l = _naive(scans, lambda flat: teacher_map(flat).float())
    assert len(expected_l) > 150
    assert labels.tolist() == expected_l.tolist()
    np.testing.assert_allclose(features.numpy(), expected_f, rtol=1e-4, atol=1e-5)
    # both scans contribute, and a point seen by both cameras of a scan counts once
    assert len(labels) < sum(len(s["points"]) for s in scans)


def test_teacher_probe_of_a_constant_teacher_predicts_the_majority_class():
    """Features that are the same at every pixel carry no class: the head learns the
    training prior and predicts its majority class (3) everywhere. mIoU by hand: IoU(3) =
    n_3 / n over the visible validation points, 0 for every other class present."""
    from lidarcl.evaluation.teacher_probe import run_teacher_probe

    constant = StandIn(lambda flat: torch.ones(len(flat), 6, H // STRIDE, W // STRIDE))
    train, val = _scans(1), _scans(2)
    result = run_teacher_probe(constant, train, val, LUT, 16, seed=0, epochs=300)
    _, labels = _naive(val, constant.encode)
    present = np.unique(labels)
    expected = (labels == 3).mean() / len(present)
    assert result["val_points"] == len(labels)
    assert result["miou"] == pytest.approx(expected, rel=1e-9)
    iou = np.array(result["iou"])
    assert np.isnan(iou[[c for c in range(16) if c not in present]]).all()


def test_teacher_probe_tool_on_generated_data(tiny_dataset, tmp_path, capsys):
    from lidarcl.engine.checkpoint import atomic_torch_save, weights_digest
    from lidarcl.models.image import ImageTeacher

    sys.path.insert(0, str(REPO / "tools"))
    import teacher_probe as tool

    config = REPO / "configs" / "pretrain" / "slidr_minkunet34_synth.py"
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        state = ImageTeacher(encoder=dict(type="resnet", depth=18, dilate=[False, True, True]),
                             head=None).encoder.state_dict()
        files.append(tmp_path / f"teacher{seed}.pth")
        atomic_torch_save({"state_dict": state, "meta": {"weights_sha256":
                                                         weights_digest(state)}}, files[-1])
    out = tmp_path / "probe.json"
    assert tool.main([str(config), "--teacher", f"a={files[0]}", "--teacher", f"b={files[1]}",
                      "--data-root", tiny_dataset, "--points-per-scan", "500",
                      "--out", str(out)]) == 0
    assert "| teacher | mIoU |" in capsys.readouterr().out
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"a", "b"}
    # the same points for both teachers; different weights give different heads
    assert results["a"]["train_points"] == results["b"]["train_points"] > 0
    assert results["a"]["val_points"] == results["b"]["val_points"] > 0
    assert results["a"]["confusion"] != results["b"]["confusion"]
    assert all(0.0 <= r["miou"] <= 1.0 for r in results.values())

    with pytest.raises(SystemExit):
        tool.main([str(config), "--teacher", f"a={tmp_path / 'missing.pth'}"])
    assert "teacher a: file not found" in capsys.readouterr().err
