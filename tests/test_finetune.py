"""Segmentation fine-tuning: the Segmentor's loss and TTA, --load-backbone's key checks, and
tools/train.py -> tools/test.py (metrics, TTA, temporal voting, submission files) ->
tools/evaluate.py end to end on a tiny generated set."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import load_tool
from lidarcl.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def segmentor(backbone="MinkUNet18", **kwargs):
    from lidarcl.models.segmentors import Segmentor

    torch.manual_seed(0)
    return Segmentor(backbone=dict(type=backbone, in_channels=4, out_channels=32,
                                   voxel_size=0.5), num_classes=5, **kwargs)


def batch(points_per_scan=(300, 200), seed=0):
    gen = torch.Generator().manual_seed(seed)
    points = torch.cat([torch.cat([torch.rand(n, 3, generator=gen) * 20 - 10,
                                   torch.rand(n, 1, generator=gen)], 1)
                        for n in points_per_scan])
    labels = torch.randint(0, 5, (len(points),), generator=gen)
    labels[::7] = 255
    offsets = torch.cumsum(torch.tensor(points_per_scan), 0)
    return dict(points=points, offsets=offsets, pts_semantic_mask=labels,
                meta=[{"token": f"s{i}"} for i in range(len(points_per_scan))])


def test_loss_is_ce_plus_lovasz_over_labelled_points():
    from lidarcl.models.losses.lovasz import lovasz_softmax

    model = segmentor(loss_weights=dict(ce=1.0, lovasz=0.5))
    data = batch()
    losses = model(mode="loss", **data)
    logits, inside = model(mode="tensor", **data)
    keep = inside & (data["pts_semantic_mask"] != 255)
    assert keep.sum() < len(keep)
    target = data["pts_semantic_mask"][keep]
    assert float(losses["loss_ce"]) == pytest.approx(
        float(F.cross_entropy(logits[keep], target)), rel=1e-5)
    assert float(losses["loss_lovasz"]) == pytest.approx(
        0.5 * float(lovasz_softmax(logits[keep].softmax(1), target)), rel=1e-5)
    sum(losses.values()).backward()
    assert model.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown terms"):
        segmentor(loss_weights=dict(focal=1.0))


@pytest.mark.parametrize("backbone", ["MinkUNet18", "MinkUNet34", "PointTransformerV3"])
def test_two_training_steps_on_each_segmentation_backbone(backbone):
    from mmengine.optim import OptimWrapper

    model = segmentor(backbone)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    head_before = model.head.weight.detach().clone()
    for seed in (0, 1):
        losses = model.train_step(batch(seed=seed), optim)
        assert set(losses) == {"loss", "loss_ce", "loss_lovasz"}  # mmengine adds the sum
        assert all(torch.isfinite(v) for v in losses.values())
    assert not torch.equal(model.head.weight, head_before)
    predictions = model.eval()(mode="predict", **batch())
    assert [len(p.labels) for p in predictions] == [300, 200]
    assert all((p.labels >= 0).all() for p in predictions)  # unbounded grids: all predicted


def test_tta_matrices_are_the_symmetries_of_the_square_and_average_the_runs():
    from lidarcl.models.segmentors import tta_matrices

    mats = tta_matrices()
    assert len(mats) == 8
    keys = {tuple(np.round(m.numpy(), 6).ravel()) for m in mats}
    assert len(keys) == 8
    for a in mats:  # orthogonal, z kept, and the set is closed under composition (D4)
        np.testing.assert_allclose((a @ a.T).numpy(), np.eye(3), atol=1e-12)
        assert a[2, 2] == 1
        for b in mats:
            assert tuple(np.round((a @ b).numpy(), 6).ravel()) in keys
    model = segmentor().eval()
    data = batch()
    manual = 0
    for m in mats:
        moved = data["points"].clone()
        moved[:, :3] = (data["points"][:, :3].double() @ m.T).float()
        logits, _ = model.logits(moved, data["offsets"])
        manual = manual + logits.softmax(1)
    model.tta = dict(rotations_deg=(0, 90, 180, 270), flips=("none", "y"))
    predictions = model(mode="predict", **data)
    scores = torch.cat([p.scores for p in predictions])
    np.testing.assert_allclose(scores.numpy(), (manual / 8).detach().numpy(), atol=1e-5)
    assert [len(p.labels) for p in predictions] == [300, 200]
    assert torch.equal(predictions[0].labels, scores[:300].argmax(1))


def test_init_weights_loads_the_pretrained_backbone_or_lists_the_keys(tmp_path):
    from lidarcl.engine.checkpoint import export_backbone

    source = segmentor()
    export_backbone(source, tmp_path / "m18.pth")
    other = segmentor("MinkUNet34")
    export_backbone(other, tmp_path / "m34.pth")

    torch.manual_seed(5)
    model = segmentor(backbone_checkpoint=str(tmp_path / "m18.pth"))
    model.init_weights()
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key

    with pytest.raises(DataError, match=r"(?s)m34.pth.*unexpected keys") as info:
        segmentor(backbone_checkpoint=str(tmp_path / "m34.pth")).init_weights()
    assert "down_blocks.1.2.conv1.weight" in str(info.value)
    partial = segmentor(backbone_checkpoint=str(tmp_path / "m34.pth"), allow_partial=True)
    partial.init_weights()
    m34 = other.backbone.state_dict()
    shared = [k for k, v in partial.backbone.state_dict().items()
              if k in m34 and m34[k].shape == v.shape]
    assert shared and all(torch.equal(partial.backbone.state_dict()[k], m34[k])
                          for k in shared)


@pytest.fixture(scope="module")
def finetuned(tiny_dataset, tmp_path_factory):
    """A 2-iteration fine-tuning on the tiny set from an exported MinkUNet34."""
    from lidarcl.engine.checkpoint import export_backbone

    work = tmp_path_factory.mktemp("finetune")
    model = segmentor("MinkUNet34")
    model.backbone.voxel_size = 0.2
    torch.manual_seed(3)
    from lidarcl.models.backbones.minkunet import MinkUNet18, MinkUNet34

    holder = torch.nn.Module()
    holder.backbone = MinkUNet34(in_channels=4, out_channels=64, voxel_size=0.2)
    export_backbone(holder, work / "backbone.pth")
    holder.backbone = MinkUNet18(in_channels=4, out_channels=64, voxel_size=0.2)
    export_backbone(holder, work / "wrong.pth")
    options = [f"train_dataloader.dataset.data_root={tiny_dataset}",
               f"val_dataloader.dataset.data_root={tiny_dataset}",
               "train_dataloader.dataset.split_file=None", "train_cfg.max_iters=2",
               "train_cfg.val_interval=2", "train_dataloader.batch_size=1",
               "train_dataloader.num_workers=0", "val_dataloader.num_workers=0",
               "train_dataloader.persistent_workers=False",
               "val_dataloader.persistent_workers=False"]
    config = "configs/seg/minkunet34_synth_1pct.py"
    run = subprocess.run([sys.executable, "tools/train.py", config, "--work-dir",
                          str(work / "run"), "--load-backbone", str(work / "backbone.pth"),
                          "--cfg-options", *options], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    return work, config, options, run


def test_train_tool_keeps_the_best_checkpoint(finetuned):
    work, _, _, run = finetuned
    assert "fine-tuning Segmentor x MinkUNet34 for 2 iterations" in run.stdout
    best = [f for f in os.listdir(work / "run") if f.startswith("best_mIoU_")]
    assert best == ["best_mIoU_iter_2.pth"]
    state = torch.load(work / "run" / best[0], map_location="cpu", weights_only=True)
    assert {"backbone", "head"} == {k.split(".")[0] for k in state["state_dict"]}


def test_train_tool_rejects_a_mismatched_backbone(finetuned):
    work, config, options, _ = finetuned
    run = subprocess.run([sys.executable, "tools/train.py", config, "--work-dir",
                          str(work / "wrong_run"), "--load-backbone", str(work / "wrong.pth"),
                          "--cfg-options", *options], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1
    assert "wrong.pth" in run.stderr and "missing keys" in run.stderr
    assert "down_blocks.1.2.conv1.weight" in run.stderr  # MinkUNet34's, absent from 18's
    assert not os.path.exists(work / "wrong_run")  # stopped before anything was built


def test_test_tool_metrics_voting_tta_and_submission(finetuned, tiny_dataset, capsys):
    work, config, options, _ = finetuned
    checkpoint = str(work / "run" / "best_mIoU_iter_2.pth")
    val = [o for o in options if o.startswith("val_") or "dataset.data_root" in o]

    tool = load_tool("test")  # in-process: one import of torch, spconv and mmengine

    def test_tool(*extra):
        capsys.readouterr()
        assert tool.main([os.path.join(REPO, config), checkpoint, *extra, "--cfg-options", *val]) == 0
        return capsys.readouterr().out

    plain = test_tool("--metrics-out", str(work / "m.json"))
    metrics = json.loads((work / "m.json").read_text())
    assert metrics["scans"] == 2 and f"mIoU {metrics['metrics']['mIoU']:.2f}" in plain
    assert "with TTA with temporal voting" in test_tool("--tta", "--temporal-voting")
    test_tool("--format-only", "--out", str(work / "results"))
    files = os.listdir(work / "results" / "lidarseg" / "val")
    assert len(files) == 2 and all(f.endswith("_lidarseg.bin") for f in files)
    scored = subprocess.run([sys.executable, "tools/evaluate.py", "nuscenes-lidarseg",
                             "--results", str(work / "results"), "--root", tiny_dataset,
                             "--version", "v1.0-synthetic", "--eval-set", "val",
                             "--out", str(work / "devkit.json")],
                            capture_output=True, text=True, cwd=REPO)
    assert scored.returncode == 0, scored.stderr
    devkit = json.loads((work / "devkit.json").read_text())
    # every point has a prediction (MinkUNet's grid is unbounded): the devkit's mIoU on the
    # files equals lidarcl's on the model's output
    assert 100 * devkit["miou"] == pytest.approx(metrics["metrics"]["mIoU"], abs=1e-9)
