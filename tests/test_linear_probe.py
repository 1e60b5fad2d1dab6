"""Segmentation metrics against hand-computed cases, the linear head on separable features,
and the linear-probe study end to end on a tiny generated dataset (tools/linear_probe.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lidarcl.evaluation import confusion_matrix, iou_per_class, mean_iou
from lidarcl.evaluation.linear_probe import train_linear_head


def test_confusion_matrix_and_iou_by_hand():
    target = [0, 0, 1, 1, 2, 255, 2]
    pred = [0, 1, 1, 1, 0, 2, 2]
    cm = confusion_matrix(pred, target, 4, ignore_index=255)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    iou = iou_per_class(cm)
    # class 0: TP 1, FP 1 (a 2 predicted 0), FN 1 -> 1/3; class 1: 2/3; class 2: 1/2;
    # class 3: never seen nor predicted -> undefined, left out of the mean
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    with pytest.raises(ValueError, match="target labels"):
        confusion_matrix([0], [7], 4)
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0], 4)


def test_linear_head_learns_separable_classes():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 8, generator=gen) * 4
    labels = torch.randint(0, 5, (3000,), generator=gen)
    features = centres[labels] + torch.randn(3000, 8, generator=gen)
    head = train_linear_head(features, labels, 5, epochs=20, lr=1e-2, batch_size=256, seed=0)
    accuracy = (head(features).argmax(1) == labels).float().mean()
    assert accuracy > 0.95
    again = train_linear_head(features, labels, 5, epochs=20, lr=1e-2, batch_size=256,
                              seed=0)
    assert torch.equal(head.weight, again.weight)  # seeded: the same head


def test_linear_probe_tool_end_to_end(tmp_path):
    import sys
    from pathlib import Path

    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.engine.checkpoint import export_backbone
    from lidarcl.registry import MODELS, register_all_modules

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tools"))
    import linear_probe as tool

    register_all_modules()
    summary = generate_dataset(str(tmp_path / "data"), scenes=2, keyframes=2, seed=1,
                               image_size=(160, 90), version="v1.0-synthetic", overwrite=True)
    root = summary["dataroot"]
    create_nuscenes_infos(root, "v1.0-synthetic", root)
    config = tmp_path / "probe_cfg.py"
    config.write_text(
        "_base_ = ['%s']\n" % (repo / "configs/pretrain/pointcontrast_minkunet34_synth.py")
        + "model = dict(backbone=dict(type='MinkUNet18', voxel_size=0.5, out_channels=16))\n")
    torch.manual_seed(5)
    model = MODELS.build(dict(type="PointContrast", backbone=dict(
        type="MinkUNet18", in_channels=4, voxel_size=0.5, out_channels=16)))
    export_backbone(model, tmp_path / "backbone.pth")
    out = tmp_path / "probe.json"
    args = [str(config), str(tmp_path / "backbone.pth"), "--data-root", root, "--epochs", "3",
            "--points-per-scan", "2000", "--out", str(out)]
    assert tool.main(args) == 0
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"pretrained", "random"}
    assert len(result["classes"]) == 16
    for entry in result["results"].values():
        assert 0.0 <= entry["miou"] <= 1.0 and entry["train_points"] > 0
        assert entry["val_points"] > 0
    # the "pretrained" weights here are a different random draw: a different result
    assert result["results"]["pretrained"]["miou"] != result["results"]["random"]["miou"]
    assert tool.main(args) == 0  # seeded: the same numbers again
    again = json.loads(out.read_text())["results"]
    for name, entry in result["results"].items():
        assert again[name]["miou"] == entry["miou"] and again[name]["iou"] == entry["iou"]


def test_study_runs_a_method_and_a_second_backbone(tmp_path):
    """tools/study.py at toy scale: stage 1 (one method) and stage 2 (one more backbone)."""
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tools"))
    import study as tool

    assert tool.main(["--out", str(tmp_path), "--scenes", "2", "--val-scenes", "1",
                      "--keyframes", "2", "--iters", "1", "--voxel-size", "0.6",
                      "--probe-epochs", "1", "--methods", "pointcontrast",
                      "--backbones", "voxelbackbone8x"]) == 0
    rows = json.loads((tmp_path / "study.json").read_text())
    assert [(r["method"], r["backbone"]) for r in rows] == [
        ("pointcontrast", "minkunet34"), ("pointcontrast", "voxelbackbone8x")]
    for row in rows:
        assert 0.0 <= row["miou"] <= 1.0 and 0.0 <= row["random_miou"] <= 1.0
        assert row["gain"] == pytest.approx(row["miou"] - row["random_miou"])
