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

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


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
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

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


# --- points outside the voxel grid, SLidR's protocol (issue 12) ---------------------------

SYNTH_PROBE_BASE = "configs/pretrain/pointcontrast_minkunet34_synth.py"


def _numpy_cm(pred, target, k, inside, ignore=255):
    """Independent reference: (K, K + 1) counts, outside points in the last column."""
    cm = np.zeros((k, k + 1), dtype=np.int64)
    for p, t, i in zip(pred, target, inside):
        if t == ignore:
            continue
        cm[t, p if i else k] += 1
    return cm


def _numpy_miou(cm):
    k = cm.shape[0]
    ious = []
    for c in range(k):
        tp = cm[c, c]
        fn = cm[c].sum() - tp           # includes the points without a prediction
        fp = cm[:k, c].sum() - tp       # predictions of c for other classes
        if tp + fn + fp:
            ious.append(tp / (tp + fn + fp))
    return float(np.mean(ious))


def test_confusion_matrix_with_unpredicted_points():
    # target 0 twice predicted nothing (-1), once 0; target 1 predicted 0
    cm = confusion_matrix([0, -1, -1, 0, 1], [0, 0, 0, 1, 255], 2, ignore_index=255,
                          no_prediction=-1)
    assert cm.tolist() == [[1, 0, 2], [1, 0, 0]]
    # class 0: TP 1, FP 1, FN 2 -> 1/4; class 1: TP 0, FN 1 -> 0
    np.testing.assert_allclose(iou_per_class(cm), [1 / 4, 0.0])
    assert mean_iou(cm) == pytest.approx(1 / 8)
    with pytest.raises(ValueError, match="class index"):
        confusion_matrix([0], [0], 2, no_prediction=1)
    with pytest.raises(ValueError, match="pred labels"):
        confusion_matrix([-2], [0], 2, no_prediction=-1)


class _StubOutput:
    def __init__(self, features, point_to_voxel):
        from types import SimpleNamespace
        self.point_features = features
        self.voxels = SimpleNamespace(point_to_voxel=point_to_voxel)


class _RangeStub(torch.nn.Module):
    """Grid x in [0, 10): features one-hot of the class in column 3, zeros outside."""

    def forward(self, points, offsets):
        inside = (points[:, 0] >= 0) & (points[:, 0] < 10)
        feats = torch.nn.functional.one_hot(points[:, 3].long(), 3).float() * inside[:, None]
        ptv = torch.where(inside, torch.arange(len(points)), torch.full_like(inside, -1,
                                                                              dtype=torch.int64))
        return _StubOutput(feats, ptv)


def test_points_outside_the_grid_are_false_negatives_by_hand():
    from lidarcl.evaluation.linear_probe import evaluate_probe

    # x, predicted class (column 3), raw label; x outside [0, 10) = outside the grid
    rows = [(1, 0, 0), (2, 1, 0), (3, 1, 1), (20, 0, 0), (-5, 0, 2), (4, 2, 2), (5, 0, 255),
            (30, 1, 255)]
    points = torch.tensor([[x, 0.0, 0.0, p] for x, p, _ in rows])
    batch = {"points": points, "offsets": torch.tensor([len(rows)]),
             "pts_semantic_mask": torch.tensor([t for _, _, t in rows])}
    head = torch.nn.Linear(3, 3)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3))
        head.bias.zero_()
    stats = {}
    cm = evaluate_probe(_RangeStub(), head, [batch], torch.arange(3), 3, stats=stats)
    # rows: target 0, 1, 2; columns: predicted 0, 1, 2, outside the grid
    assert cm.tolist() == [[1, 1, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1]]
    # IoU 0 = 1 / (1 + 0 FP + 2 FN); IoU 1 = 1 / (1 + 1 FP); IoU 2 = 1 / (1 + 1 FN)
    np.testing.assert_allclose(iou_per_class(cm), [1 / 3, 1 / 2, 1 / 2])
    assert mean_iou(cm) == pytest.approx(4 / 9)
    inside = [0 <= x < 10 for x, _, _ in rows]
    reference = _numpy_cm([p for _, p, _ in rows], [t for _, _, t in rows], 3, inside)
    assert cm.tolist() == reference.tolist()
    assert mean_iou(cm) == pytest.approx(_numpy_miou(reference))
    # the two ignored points (one of them outside) are not counted
    assert stats == {"val_labelled_points": 6, "val_outside_points": 2}


@pytest.fixture(scope="module")
def probe_loaders(tiny_dataset):
    from mmengine.config import Config

    from lidarcl.evaluation.linear_probe import build_probe_loader

    cfg = Config.fromfile(str(REPO / SYNTH_PROBE_BASE)).train_dataloader.dataset.to_dict()
    train, lut, names = build_probe_loader(cfg, "nuscenes_infos_train.json", tiny_dataset)
    val, _, _ = build_probe_loader(cfg, "nuscenes_infos_val.json", tiny_dataset)
    return train, val, lut, names


def _mink(**kwargs):
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    torch.manual_seed(3)
    return MODELS.build(dict(type="MinkUNet18", in_channels=4, voxel_size=0.5,
                             out_channels=8, **kwargs))


def test_out_of_grid_accounting_with_a_real_backbone(probe_loaders):
    """A MinkUNet whose grid covers |x|, |y| < 20 m: the farther labelled points have no
    prediction; the confusion matrix and mIoU match an independent numpy computation."""
    from lidarcl.evaluation.linear_probe import (evaluate_probe, extract_features,
                                                 train_linear_head)

    train, val, lut, names = probe_loaders
    k = len(names)
    box = [-20.0, -20.0, -5.0, 20.0, 20.0, 3.0]
    backbone = _mink(point_range=box)
    stats = {}
    features, labels = extract_features(backbone, train, lut, 3000, seed=0, stats=stats)
    head = train_linear_head(features, labels, k, epochs=2, seed=0)
    cm = evaluate_probe(backbone, head, val, lut, k, stats=stats)
    reference = np.zeros((k, k + 1), dtype=np.int64)
    outside_total = labelled_total = 0
    with torch.no_grad():
        for batch in val:
            pts = batch["points"].numpy()
            inside = ((pts[:, :3] >= np.float32(box[:3])) & (pts[:, :3] < np.float32(box[3:]))
                      ).all(1)
            pred = head(backbone(batch["points"], batch["offsets"]).point_features).argmax(1)
            raw = batch["pts_semantic_mask"].numpy().astype(np.int64)
            target = np.where(raw < len(lut), lut.numpy()[np.minimum(raw, len(lut) - 1)], 255)
            reference += _numpy_cm(pred.numpy(), target, k, inside)
            labelled_total += int((target != 255).sum())
            outside_total += int(((target != 255) & ~inside).sum())
    assert 0 < outside_total < labelled_total
    assert cm.tolist() == reference.tolist()
    assert mean_iou(cm) == pytest.approx(_numpy_miou(reference))
    # the old accounting (outside = class 0, "barrier") would differ
    old = reference[:, :k].copy()
    old[:, 0] += reference[:, k]
    assert mean_iou(old) != pytest.approx(mean_iou(cm))

    # the counts reported per split
    assert stats["val_labelled_points"] == labelled_total
    assert stats["val_outside_points"] == outside_total
    assert 0 < stats["train_outside_points"] < stats["train_labelled_points"]


def test_slidr_augmentation_rotates_and_flips_each_scan():
    from lidarcl.evaluation.linear_probe import augment_slidr

    gen = torch.Generator().manual_seed(0)
    points = torch.randn(300, 4, generator=gen, dtype=torch.float64) * 10
    offsets = torch.tensor([100, 300])
    out = augment_slidr(points, offsets, torch.Generator().manual_seed(1))
    again = augment_slidr(points, offsets, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # seeded
    torch.testing.assert_close(out[:, 2:], points[:, 2:])  # z and intensity kept
    torch.testing.assert_close(out[:, :2].norm(dim=1), points[:, :2].norm(dim=1))
    assert not torch.allclose(out[:, :2], points[:, :2])
    # one rigid map (rotation, possibly a reflection) per scan: distances kept within a
    # scan; the two scans get different maps
    for a, b in ((0, 100), (100, 300)):
        torch.testing.assert_close(torch.cdist(out[a:b, :2], out[a:b, :2]),
                                   torch.cdist(points[a:b, :2], points[a:b, :2]),
                                   atol=1e-5, rtol=1e-7)
    maps = [torch.linalg.lstsq(points[a:b, :2], out[a:b, :2]).solution
            for a, b in ((0, 100), (100, 300))]
    assert not torch.allclose(maps[0], maps[1])


class _Recorder(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.seen = []

    def forward(self, points, offsets):
        self.seen.append(points.clone())
        return self.inner(points, offsets)


def test_slidr_protocol_trains_only_the_head(probe_loaders):
    import math

    from lidarcl.evaluation.linear_probe import SLIDR_PROTOCOL, train_linear_head_slidr

    assert SLIDR_PROTOCOL["lr"] == 0.05 and SLIDR_PROTOCOL["epochs"] == 100
    assert SLIDR_PROTOCOL["batch_size"] == 16
    train, _, lut, names = probe_loaders
    backbone = _mink()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    recorder = _Recorder(backbone)
    log = {}
    epochs = 3
    head = train_linear_head_slidr(recorder, train, lut, len(names), epochs=epochs,
                                   batch_size=len(train.dataset), seed=0, log=log)
    # frozen backbone: weights and BatchNorm statistics untouched, no gradient kept
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in backbone.parameters())
    assert not any(torch.equal(head.state_dict()[k], v) for k, v in log["initial_head"].items())
    # SGD over the head's parameters only, SLidR's momentum / dampening / weight decay
    optimizer = log["optimizer"]
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert len(optimizer.param_groups) == 1 and len(group["params"]) == 2
    assert {tuple(p.shape) for p in group["params"]} == {tuple(head.weight.shape),
                                                          tuple(head.bias.shape)}
    assert (group["momentum"], group["dampening"], group["weight_decay"]) == (0.9, 0.1, 1e-4)
    assert isinstance(log["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    # one batch (all scans) per epoch; cosine over the epochs from lr 0.05
    assert log["epoch"] == list(range(epochs))
    expected = [0.05 * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    np.testing.assert_allclose(log["lr"], expected)
    np.testing.assert_allclose(log["lr"], [0.05, 0.0375, 0.0125])
    # augmentation: every epoch feeds the backbone differently rotated / flipped points
    raw = torch.cat([train.dataset[i]["points"] for i in range(len(train.dataset))])
    assert len(recorder.seen) == epochs
    radius = np.sort(raw[:, :2].norm(dim=1).numpy())
    xs = []
    for seen in recorder.seen:
        np.testing.assert_allclose(np.sort(seen[:, :2].norm(dim=1).numpy()), radius,
                                   rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(np.sort(seen[:, 2].numpy()), np.sort(raw[:, 2].numpy()))
        xs.append(np.sort(seen[:, 0].numpy()))
    assert not np.allclose(xs[0], xs[1], atol=1e-3)
    assert not np.allclose(xs[0], np.sort(raw[:, 0].numpy()), atol=1e-3)


def test_linear_probe_tool_slidr_protocol(tiny_dataset, tmp_path, capsys):
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    import linear_probe as tool

    config = tmp_path / "probe_cfg.py"
    config.write_text(
        "_base_ = ['%s']\n" % (REPO / SYNTH_PROBE_BASE)
        + "model = dict(backbone=dict(type='MinkUNet18', voxel_size=0.5, out_channels=8, "
          "point_range=[-30, -30, -5, 30, 30, 3]))\n")
    out = tmp_path / "probe.json"
    assert tool.main([str(config), "none", "--data-root", tiny_dataset, "--protocol", "slidr",
                      "--epochs", "2", "--batch-size", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "protocol slidr: 2 epochs, lr 0.05, batch 2 scans" in printed
    assert "val outside grid" in printed
    result = json.loads(out.read_text())
    assert result["protocol"] == "slidr" and set(result["results"]) == {"random"}
    entry = result["results"]["random"]
    assert (entry["protocol"], entry["epochs"], entry["lr"], entry["batch_size"]) == (
        "slidr", 2, 0.05, 2)
    assert 0.0 <= entry["miou"] <= 1.0 and entry["train_points"] > 0
    assert entry["val_outside_points"] > 0 and 0 < entry["val_outside_share"] < 1
    assert f"{entry['val_outside_points']:,} ({100 * entry['val_outside_share']:.2f}%)" \
        in printed
