"""CenterPoint's pieces against hand computations and brute-force references: the Gaussian
radius and heatmap target of a hand case, the regression target, the focal and L1 losses,
decoding of an encoded box set, circle NMS, and the whole detector's training step and
prediction on the generated data's boxes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lidarcl.models.detectors.center_head import (CenterHead, circle_nms, draw_gaussian,
                                                  gaussian_radius)

RANGE = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
VOXEL = [0.1, 0.1, 0.2]
CLASSES = ["car", "truck", "pedestrian"]
TASKS = [["car"], ["truck", "pedestrian"]]


def make_head(**kw):
    cfg = dict(in_channels=16, class_names=CLASSES, tasks=TASKS, voxel_size=VOXEL,
               point_range=RANGE, feature_map_stride=8)
    cfg.update(kw)
    return CenterHead(**cfg)


def test_gaussian_radius_hand_values():
    # 10 x 10 cells, overlap 0.1 (module doc's three quadratics, "/ 2" as published):
    # r1 = (20 + sqrt(400 - 4 * 81.818...)) / 2 = 14.264, r2 = (40 + sqrt(160)) / 2 = 26.325,
    # r3 = (-4 + sqrt(16 + 1.6 * 90)) / 2 = (-4 + sqrt(160)) / 2 = 4.3246
    assert gaussian_radius(10.0, 10.0, 0.1) == pytest.approx((-4 + math.sqrt(160)) / 2)
    # 5 x 2.5 cells: r3 = (-1.5 + sqrt(2.25 + 0.4 * 4 * 11.25)) / 2 = (-1.5 + 4.5) / 2 = 1.5
    assert gaussian_radius(5.0, 2.5, 0.1) == pytest.approx(1.5)
    t = gaussian_radius(torch.tensor([10.0, 5.0]), torch.tensor([10.0, 2.5]), 0.1)
    assert t.tolist() == pytest.approx([4.3246, 1.5], abs=1e-4)


def test_draw_gaussian_cut_at_the_border():
    heat = torch.zeros(5, 6)
    draw_gaussian(heat, 0, 4, 2)  # bottom-left corner
    sigma = 5 / 6
    assert float(heat[4, 0]) == 1.0
    assert float(heat[4, 1]) == pytest.approx(math.exp(-1 / (2 * sigma ** 2)), abs=1e-6)
    assert float(heat[3, 1]) == pytest.approx(math.exp(-2 / (2 * sigma ** 2)), abs=1e-6)
    assert float(heat[4, 3]) == 0.0 and float(heat[1, 0]) == 0.0
    # element-wise max: a weaker overlapping peak does not lower the first
    draw_gaussian(heat, 1, 4, 2)
    assert float(heat[4, 0]) == 1.0 and float(heat[4, 1]) == 1.0


def test_targets_hand_case():
    """One car centred at cell (col 10.5, row 20.25) of the 128 x 128 map (0.8 m cells),
    4 x 2 m: 5 x 2.5 cells, radius max(2, int(1.5)) = 2, sigma 5/6."""
    head = make_head()
    x = RANGE[0] + 0.8 * 10.5
    y = RANGE[1] + 0.8 * 20.25
    box = np.array([[x, y, -1.0, 4.0, 2.0, 1.5, 0.3]], dtype=np.float32)
    truck = np.array([[0.0, 0.0, -1.0, 8.0, 3.0, 3.0, -1.0]], dtype=np.float32)
    targets = head.targets([np.concatenate([box, truck])], [np.array([0, 1])],
                           [np.array([[1.0, -2.0], [np.nan, np.nan]])], 128, 128)
    car, second = targets
    heat = car["heatmap"][0, 0]
    assert heat.shape == (128, 128)
    assert float(heat[20, 10]) == 1.0
    sigma2 = 2 * (5 / 6) ** 2
    assert float(heat[20, 11]) == pytest.approx(math.exp(-1 / sigma2), abs=1e-6)
    assert float(heat[22, 12]) == pytest.approx(math.exp(-8 / sigma2), abs=1e-6)
    assert float(heat[20, 13]) == 0.0 and float(heat[23, 10]) == 0.0
    assert int(car["mask"][0].sum()) == 1 and int(car["index"][0, 0]) == 20 * 128 + 10
    expect = [0.5, 0.25, -1.0, math.log(4), math.log(2), math.log(1.5), math.cos(0.3),
              math.sin(0.3), 1.0, -2.0]
    assert car["boxes"][0, 0].tolist() == pytest.approx(expect, abs=1e-5)
    # the truck lands on channel 0 of the second task, at the map centre (64, 64); its
    # unknown velocity stays NaN (masked by the loss)
    assert float(second["heatmap"][0, 0, 64, 64]) == 1.0
    assert float(second["heatmap"][0, 1].sum()) == 0.0
    assert torch.isnan(second["boxes"][0, 0, 8:]).all()


def test_targets_skip_boxes_outside_the_map_and_degenerate():
    head = make_head()
    boxes = np.array([[60.0, 0, 0, 4, 2, 1.5, 0], [0, 0, 0, 0, 2, 1.5, 0]], dtype=np.float32)
    targets = head.targets([boxes], [np.array([0, 0])], [np.zeros((2, 2))], 128, 128)
    assert not targets[0]["mask"].any() and float(targets[0]["heatmap"].sum()) == 0


def test_focal_loss_hand_case():
    pred = torch.tensor([0.8, 0.3, 0.1])
    gt = torch.tensor([1.0, 0.5, 0.0])
    pos = math.log(0.8) * 0.2 ** 2
    neg = math.log(0.7) * 0.3 ** 2 * 0.5 ** 4 + math.log(0.9) * 0.1 ** 2 * 1.0
    assert float(CenterHead.focal_loss(pred, gt)) == pytest.approx(-(pos + neg), rel=1e-6)
    # no peak: the negative part, not normalised
    assert float(CenterHead.focal_loss(pred[1:], gt[1:])) == pytest.approx(-neg, rel=1e-6)


def test_regression_loss_masks_nan_and_averages_per_target():
    head = make_head()
    pred = torch.zeros(1, 10, 2, 2)
    pred[0, :, 0, 1] = 1.0  # cell index 1
    target = torch.zeros(1, 3, 10)
    target[0, 0] = 3.0
    target[0, 0, 8:] = float("nan")
    index = torch.tensor([[1, 0, 0]])
    mask = torch.tensor([[True, False, False]])
    loss = head.regression_loss(pred, target, index, mask)
    expect = [2.0 / (1 + 1e-4)] * 8 + [0.0, 0.0]
    assert loss.tolist() == pytest.approx(expect, rel=1e-6)


def _encode(head, boxes, labels, velocity, height, width):
    """Head outputs that put the targets back: logit +-20 heatmaps, regression maps holding
    the targets at their cells."""
    targets = head.targets([boxes], [labels], [velocity], height, width)
    preds = []
    for tgt in targets:
        hm = torch.where(tgt["heatmap"] >= 1.0, 20.0, -20.0)
        maps = torch.zeros(1, head.code_size, height * width)
        for k in range(int(tgt["mask"].sum())):
            maps[0, :, tgt["index"][0, k]] = tgt["boxes"][0, k]
        maps = maps.view(1, head.code_size, height, width)
        preds.append({"hm": hm, "center": maps[:, 0:2], "center_z": maps[:, 2:3],
                      "dim": maps[:, 3:6], "rot": maps[:, 6:8], "vel": maps[:, 8:10]})
    return preds


@pytest.mark.parametrize("nms", ["circle", "rotated"])
def test_decode_recovers_an_encoded_box_set(nms):
    rng = np.random.default_rng(0)
    n = 12
    # centres on a 6 m lattice (no two boxes in one cell, none suppressed)
    cells = np.stack(np.meshgrid(np.arange(-6, 6, 2), np.arange(-3, 3, 3)), -1).reshape(-1, 2)
    xy = cells * 6.0 + rng.uniform(-1, 1, size=(n, 2))
    dims = rng.uniform([3, 1.5, 1.2], [6, 2.5, 2.5], size=(n, 3))
    boxes = np.concatenate([xy, rng.uniform(-2, 0, size=(n, 1)), dims,
                            rng.uniform(-math.pi, math.pi, size=(n, 1))], 1).astype(np.float32)
    labels = rng.integers(0, 3, size=n)
    velocity = rng.normal(size=(n, 2)).astype(np.float32)
    test_cfg = dict(nms=dict(type="circle", min_radius=[1.0, 1.0], post_max_size=83)
                    if nms == "circle" else
                    dict(type="rotated", iou_threshold=0.2, pre_max_size=1000,
                         post_max_size=83))
    head = make_head(test_cfg=test_cfg)
    preds = _encode(head, boxes, labels, velocity, 128, 128)
    out = head.decode(preds)[0]
    assert len(out["boxes"]) == n
    order = np.lexsort((out["boxes"][:, 1].numpy(), out["boxes"][:, 0].numpy()))
    expect = np.lexsort((boxes[:, 1], boxes[:, 0]))
    got = out["boxes"].numpy()[order]
    want = np.concatenate([boxes, velocity], 1)[expect]
    np.testing.assert_allclose(got[:, :6], want[:, :6], atol=1e-4)
    dyaw = (got[:, 6] - want[:, 6] + math.pi) % (2 * math.pi) - math.pi
    np.testing.assert_allclose(dyaw, 0, atol=1e-4)
    np.testing.assert_allclose(got[:, 7:], want[:, 7:], atol=1e-5)
    assert out["labels"].numpy()[order].tolist() == labels[expect].tolist()
    assert float(out["scores"].min()) > 0.99


def test_decode_score_threshold_and_centre_range():
    head = make_head(test_cfg=dict(score_threshold=0.5,
                                   post_center_range=[-10, -10, -10, 10, 10, 10]))
    boxes = np.array([[0, 0, 0, 4, 2, 1.5, 0], [20, 0, 0, 4, 2, 1.5, 0]], dtype=np.float32)
    preds = _encode(head, boxes, np.array([0, 0]), np.zeros((2, 2)), 128, 128)
    out = head.decode(preds)[0]
    assert out["boxes"][:, 0].tolist() == pytest.approx([0.0], abs=1e-4)
    preds[0]["hm"][:] = -20.0
    preds[0]["hm"][0, 0, 64, 64] = 0.0  # sigmoid 0.5, not above the threshold
    assert len(head.decode(preds)[0]["boxes"]) == 0


def brute_circle_nms(xy, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all((xy[i][0] - xy[k][0]) ** 2 + (xy[i][1] - xy[k][1]) ** 2 > threshold
               for k in keep):
            keep.append(i)
    return keep


def test_circle_nms_against_brute_force():
    rng = np.random.default_rng(1)
    xy = rng.uniform(-10, 10, size=(300, 2))
    scores = rng.uniform(size=300)
    scores[5] = scores[7]  # a tie: the lower index first
    for threshold in (0.175, 1.0, 4.0, 12.0):
        got = circle_nms(torch.from_numpy(xy), torch.from_numpy(scores), threshold)
        assert got.tolist() == brute_circle_nms(xy.tolist(), scores.tolist(), threshold)
    got = circle_nms(torch.from_numpy(xy), torch.from_numpy(scores), 4.0, post_max_size=10)
    assert got.tolist() == brute_circle_nms(xy.tolist(), scores.tolist(), 4.0)[:10]
    # the squared distance against the threshold: 1.9 m apart, radius value 4 -> suppressed
    pair = torch.tensor([[0.0, 0.0], [1.9, 0.0]])
    assert circle_nms(pair, torch.tensor([0.9, 0.8]), 4.0).tolist() == [0]
    assert circle_nms(pair, torch.tensor([0.9, 0.8]), 3.0).tolist() == [0, 1]


def test_head_rejects_bad_tasks():
    with pytest.raises(ValueError, match="missing"):
        make_head(tasks=[["car"], ["truck"]])
    with pytest.raises(ValueError, match="min_radius"):
        make_head(test_cfg=dict(nms=dict(type="circle", min_radius=[1.0])))


# ------------------------------------------------------------------ the whole detector
def small_centerpoint(**head_kw):
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    return MODELS.build(dict(
        type="CenterPoint",
        backbone=dict(type="VoxelBackBone8x", in_channels=4, voxel_size=[0.4, 0.4, 0.2],
                      point_range=[-25.6, -25.6, -5.0, 25.6, 25.6, 3.0]),
        bev_backbone=dict(type="SECONDBEVBackbone", layer_nums=[1, 1], layer_strides=[1, 2],
                          num_filters=[32, 64], upsample_strides=[1, 2],
                          num_upsample_filters=[32, 32]),
        head=dict(type="CenterHead", class_names=CLASSES, tasks=TASKS, **head_kw)))


def test_centerpoint_training_step_and_prediction():
    torch.manual_seed(0)
    model = small_centerpoint()
    rng = np.random.default_rng(2)
    points = [torch.from_numpy(rng.uniform([-25, -25, -3, 0], [25, 25, 1, 1],
                                           size=(n, 4)).astype(np.float32)) for n in (3000, 2000)]
    boxes = [np.array([[5.0, 3.0, -1.0, 4.0, 2.0, 1.5, 0.2]], dtype=np.float32),
             np.array([[-8.0, 1.0, -1.0, 8.0, 3.0, 3.0, 1.0],
                       [2.0, -9.0, -1.0, 0.8, 0.8, 1.8, 0.0]], dtype=np.float32)]
    batch = dict(points=torch.cat(points), offsets=torch.tensor([3000, 5000]),
                 gt_boxes=boxes, gt_labels=[np.array([0]), np.array([1, 2])],
                 gt_velocity=[np.zeros((1, 2)), np.array([[1.0, 0.0], [np.nan, np.nan]])],
                 meta=[{"token": "a"}, {"token": "b"}])
    model.train()
    losses = model(mode="loss", **batch)
    assert set(losses) == {"loss_heatmap", "loss_bbox"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:5])
    assert float(model.backbone.conv_input[0].weight.grad.abs().sum()) > 0
    model.eval()
    preds = model(mode="predict", **batch)
    assert len(preds) == 2 and preds[1].meta["token"] == "b"
    for p in preds:
        assert p.boxes.shape[1] == 9 and len(p.boxes) == len(p.scores) == len(p.labels)
        assert p.labels.max() < 3 if len(p.labels) else True


def test_centerpoint_loads_a_pretrained_encoder(tmp_path):
    """backbone_checkpoint (tools/train.py --load-backbone) puts an exported backbone.pth
    into the 3D encoder when the Runner initialises the model; a backbone.pth of another
    encoder is refused with the key list."""
    from lidarcl.engine.checkpoint import export_backbone
    from lidarcl.errors import DataError
    from lidarcl.registry import MODELS

    torch.manual_seed(1)
    pretrained = small_centerpoint()
    source = pretrained.backbone
    path = tmp_path / "backbone.pth"
    export_backbone(pretrained, str(path))
    model = small_centerpoint()
    model.backbone_checkpoint = str(path)
    model.init_weights()
    for (name, a), b in zip(source.state_dict().items(), model.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    other = tmp_path / "other.pth"
    holder = torch.nn.Module()
    holder.backbone = MODELS.build(dict(type="VoxelResBackBone8x", in_channels=4,
                                        voxel_size=[0.4, 0.4, 0.2],
                                        point_range=[-25.6, -25.6, -5.0, 25.6, 25.6, 3.0]))
    export_backbone(holder, str(other))
    model.backbone_checkpoint = str(other)
    with pytest.raises(DataError, match="do not fit the VoxelBackBone8x"):
        model.init_weights()
