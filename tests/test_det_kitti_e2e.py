"""CenterPoint on KITTI end to end on the shipped real frame 000008, through the user-facing
tools (as tests/test_det_tools.py does for nuScenes on generated data):

1. tools/create_data.py kitti --gt-database converts the frame (train and val split, both
   000008) and builds its object database;
2. tools/train.py trains configs/det/centerpoint_voxel01_kitti.py for 1 iteration (a reduced
   BEV backbone, 0.2 x 0.2 x 0.1 m voxels) with that database in ObjectSample;
3. tools/test.py scores the val split with KittiDetMetric (``Car_3d/moderate_R40`` ...);
4. tools/test.py --format-only writes KITTI label-format result files ``<out>/data/<id>.txt``;
5. tools/evaluate.py kitti-det scores those files to the same numbers as step 3 (after
   1 iteration they are 0: the writer's checks below give the evaluator non-zero numbers).

Reference checks of the KITTI writer (write_kitti_prediction): the frame's ground-truth
boxes of the converted index (LiDAR frame), written as predictions with score 1, read back
with the evaluator's label reader, give the location, dimensions and rotation_y of the
frame's own training/label_2/000008.txt, 2D boxes on the labelled ones, and score as the
labels themselves do (tests/test_kitti_det_eval.py::test_real_frame_labels_as_results:
easy R40 0, moderate / hard R40 7.5 %).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from conftest import load_tool as _tool

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "det" / "centerpoint_voxel01_kitti.py")
FRAME = "000008"
# 0.2 x 0.2 m in x, y (a 352 x 400 grid over [0, 70.4] x [-40, 40]); z stays 0.1 m over
# [-3, 1]: 40 cells + 1 = 41, VoxelBackBone8x's depth (it needs at least 25)
SMALL = ["model.backbone.voxel_size=[0.2,0.2,0.1]", "model.bev_backbone.layer_nums=[1,1]",
         "model.bev_backbone.num_filters=[16,32]",
         "model.bev_backbone.num_upsample_filters=[16,16]",
         "train_dataloader.num_workers=0", "val_dataloader.num_workers=0",
         "train_dataloader.persistent_workers=False", "val_dataloader.persistent_workers=False",
         "train_dataloader.batch_size=1",
         # every box the barely trained head finds is written (a score threshold of 0
         # instead of 0.1), few enough for a quick rotated NMS
         "model.head.test_cfg.score_threshold=0.0", "model.head.test_cfg.nms.pre_max_size=200",
         "model.head.test_cfg.nms.post_max_size=50", "model.head.test_cfg.max_per_sample=50"]

pytestmark = REAL_DATA.needs_kitti(shipped=True)


def _wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture(scope="module")
def kitti_root(tmp_path_factory) -> Path:
    """A KITTI root with the shipped frame in a train and a val split (training/ linked)."""
    root = tmp_path_factory.mktemp("kitti")
    (root / "training").symlink_to(REAL_DATA.kitti_root / "training",
                                   target_is_directory=True)
    (root / "ImageSets").mkdir()
    for split in ("train", "val"):
        (root / "ImageSets" / f"{split}.txt").write_text(FRAME + "\n")
    assert _tool("create_data").main(["kitti", "--root", str(root), "--out", str(root),
                                      "--gt-database", "--superpixels", "none"]) == 0
    return root


def test_kitti_writer_reproduces_the_frame_labels(kitti_root, tmp_path):
    """Ground-truth LiDAR boxes of the index -> write_kitti_prediction -> the label file."""
    import torch

    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.evaluation.det_metric import write_kitti_prediction
    from lidarcl.evaluation.kitti_det_eval import evaluate_kitti_det, read_kitti_label
    from lidarcl.models.detectors.centerpoint import DetPrediction

    info = read_info_index(str(kitti_root / "kitti_infos_val.json"))[0][0]
    assert info["token"] == FRAME and info["gt_names"] == ["Car"] * 6
    boxes = torch.tensor(info["gt_boxes"], dtype=torch.float64)
    prediction = DetPrediction(boxes=boxes, scores=torch.ones(len(boxes)),
                               labels=torch.zeros(len(boxes), dtype=torch.long),
                               meta={"token": FRAME})
    out = tmp_path / "gt_as_results"
    path = write_kitti_prediction(str(out), prediction, ["Car", "Pedestrian", "Cyclist"],
                                  str(kitti_root))
    assert path == str(out / f"{FRAME}.txt")
    written = read_kitti_label(path)
    label = read_kitti_label(kitti_root / "training" / "label_2" / f"{FRAME}.txt")
    cars = label["name"] == "Car"
    assert list(written["name"]) == ["Car"] * 6 and cars.sum() == 6
    # the writer rounds to 4 decimals; the labels have 2
    np.testing.assert_allclose(written["location"], label["location"][cars], atol=1e-4)
    np.testing.assert_allclose(written["dimensions"], label["dimensions"][cars], atol=1e-4)
    np.testing.assert_allclose(_wrap(written["rotation_y"] - label["rotation_y"][cars]), 0,
                               atol=1e-3)
    np.testing.assert_array_equal(written["score"], np.ones(6))
    # alpha: the observation angle seen from the LiDAR origin (OpenPCDet's
    # -atan2(-y, x) + ry), from the camera in the labels: within 0.01 rad on this frame
    np.testing.assert_allclose(_wrap(written["alpha"] - label["alpha"][cars]), 0, atol=0.01)
    # 2D boxes of the projected corners land on the labelled ones (every car, test_kitti.py)
    bbox, ref = written["bbox"], label["bbox"][cars]
    ix = np.clip(np.minimum(bbox[:, 2], ref[:, 2]) - np.maximum(bbox[:, 0], ref[:, 0]), 0, None)
    iy = np.clip(np.minimum(bbox[:, 3], ref[:, 3]) - np.maximum(bbox[:, 1], ref[:, 1]), 0, None)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = ix * iy / (area(bbox) + area(ref) - ix * iy)
    assert (iou > 0.9).all(), iou
    # scored as the labels themselves are (test_real_frame_labels_as_results); AOS is
    # (1 + cos(alpha error)) / 2 of AP, 1 - 2e-5 at most here
    m = evaluate_kitti_det(out, kitti_root, "ImageSets/val.txt", ["Car"])["metrics"]
    for kind in ("image", "bev", "3d", "aos"):
        rel = 1e-5 if kind == "aos" else 1e-9
        assert m[f"Car_{kind}/easy_R40"] == 0.0
        assert m[f"Car_{kind}/easy_R11"] == pytest.approx(100 / 11, rel=rel)
        for diff in ("moderate", "hard"):
            assert m[f"Car_{kind}/{diff}_R40"] == pytest.approx(7.5, rel=rel)
            assert m[f"Car_{kind}/{diff}_R11"] == pytest.approx(100 / 11, rel=rel)


def test_centerpoint_kitti_train_test_format_and_evaluate(kitti_root, tmp_path):
    root = str(kitti_root)
    db = kitti_root / "kitti_dbinfos_train.json"
    assert db.is_file() and (kitti_root / "kitti_infos_val.json").is_file()
    # the frame's 6 cars (each with LiDAR points) are the database
    assert json.loads(db.read_text())["metadata"]["counts"]["Car"] == 6
    data = [f"train_dataloader.dataset.data_root={root}/",
            f"val_dataloader.dataset.data_root={root}/", f"val_evaluator.data_root={root}/"]
    # ObjectSample is the second transform of configs/_base_/datasets/kitti_det.py
    train_opts = SMALL + data + [f"train_dataloader.dataset.pipeline.1.db_file={db}",
                                 "train_cfg.max_iters=1", "train_cfg.val_interval=100",
                                 "param_scheduler.0.total_steps=1",
                                 "default_hooks.checkpoint.interval=1"]
    work = tmp_path / "work"
    assert _tool("train").main([CONFIG, "--work-dir", str(work), "--cfg-options",
                                *train_opts]) == 0
    ckpt = work / "iter_1.pth"
    assert ckpt.is_file()
    # the loop validates after the last iteration (KittiDetMetric), and the config's
    # save_best key is one the metric reports
    assert (work / "best_mAP_3d_moderate_R40_iter_1.pth").is_file()

    test = _tool("test")
    test_opts = SMALL + data
    metrics_file = tmp_path / "metrics.json"
    assert test.main([CONFIG, str(ckpt), "--metrics-out", str(metrics_file),
                      "--cfg-options", *test_opts]) == 0
    saved = json.loads(metrics_file.read_text())
    assert saved["samples"] == 1
    metrics = saved["metrics"]
    classes = ("Car", "Pedestrian", "Cyclist")
    keys = {f"{c}_{k}/{d}_{r}" for c in classes for k in ("image", "bev", "3d")
            for d in ("easy", "moderate", "hard") for r in ("R40", "R11")}
    assert keys <= set(metrics)
    assert metrics["mAP_3d_moderate_R40"] == pytest.approx(
        np.mean([metrics[f"{c}_3d/moderate_R40"] for c in classes]))
    assert all(0.0 <= v <= 100.0 and math.isfinite(v) for v in metrics.values())

    out = tmp_path / "results"
    assert test.main([CONFIG, str(ckpt), "--format-only", "--out", str(out),
                      "--cfg-options", *test_opts]) == 0
    files = sorted((out / "data").iterdir())
    assert [f.name for f in files] == [f"{FRAME}.txt"]
    lines = files[0].read_text().splitlines()
    assert lines, "the head (score threshold 0) found no box"
    for row in lines:
        fields = row.split()
        assert len(fields) == 16, row
        assert fields[0] in classes
        values = [float(v) for v in fields[1:]]
        assert all(math.isfinite(v) for v in values)
        x1, y1, x2, y2 = values[3:7]
        assert 0 <= x1 <= x2 <= 1241 and 0 <= y1 <= y2 <= 374  # clipped to the 1242 x 375 image
        h, w, l = values[7:10]
        assert h > 0 and w > 0 and l > 0
        assert -math.pi - 1e-3 <= values[13] <= math.pi + 1e-3  # rotation_y
        assert 0.0 <= values[14] <= 1.0  # score

    scored = tmp_path / "scored.json"
    assert _tool("evaluate").main(["kitti-det", "--results", str(out / "data"), "--root", root,
                                   "--split", "ImageSets/val.txt", "--out", str(scored)]) == 0
    result = json.loads(scored.read_text())
    assert result["frames"] == 1 and result["frames_with_results"] == 1
    evaluated = result["metrics"]
    # the same predictions: the same numbers, to every digit
    assert evaluated == {k: v for k, v in metrics.items() if k != "mAP_3d_moderate_R40"}
