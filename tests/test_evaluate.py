"""Official result formats and their evaluators: nuScenes-lidarseg files scored by the devkit's
LidarSegEval equal lidarcl's confusion matrix; SemanticKITTI predictions scored by the
benchmark's rule (semantic-kitti-api's iouEval, re-done here step by step in numpy)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lidarcl.errors import DataError
from lidarcl.evaluation.segmentation import confusion_matrix, iou_per_class, mean_iou

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _val_keyframes(nusc, root):
    with open(os.path.join(root.dataroot, root.version, "splits.json")) as f:
        names = json.load(f)["val"]
    out = []
    for scene in nusc.scene:
        if scene["name"] in names:
            token = scene["first_sample_token"]
            while token:
                sample = nusc.get("sample", token)
                out.append(sample["data"]["LIDAR_TOP"])
                token = sample["next"]
    return out


def _noisy_predictions(nusc, root, tokens, rng):
    """Ground truth (0..15, 255 ignored) and a prediction per point: the truth, with 30 %
    of the points (and every ignored one) given a random class."""
    from lidarcl.datasets.nuscenes_dataset import lidarseg_learning_map

    lut = lidarseg_learning_map({c["name"]: c["index"] for c in nusc.category})
    for token in tokens:
        fine = np.fromfile(os.path.join(root.dataroot, nusc.get("lidarseg", token)["filename"]),
                           np.uint8)
        truth = lut[fine]
        pred = truth.copy()
        flip = (rng.random(len(pred)) < 0.3) | (truth == 255)
        pred[flip] = rng.integers(0, 16, flip.sum())
        yield token, truth, pred


def test_lidarseg_submission_scored_by_the_devkit_equals_lidarcl(synthetic_root, tmp_path):
    from nuscenes.nuscenes import NuScenes

    from lidarcl.evaluation.nuscenes_lidarseg import (evaluate_lidarseg,
                                                      lidarseg_prediction_path,
                                                      write_lidarseg_submission)

    nusc = NuScenes(version=synthetic_root.version, dataroot=synthetic_root.dataroot,
                    verbose=False)
    tokens = _val_keyframes(nusc, synthetic_root)
    assert len(tokens) == 10
    rows = list(_noisy_predictions(nusc, synthetic_root, tokens, np.random.default_rng(0)))
    results = str(tmp_path / "results")
    assert write_lidarseg_submission(results, "val", [(t, p) for t, _, p in rows]) == 10
    meta = json.loads(open(os.path.join(results, "val", "submission.json")).read())["meta"]
    assert meta["use_lidar"] is True and set(meta) == {"use_camera", "use_lidar", "use_radar",
                                                       "use_map", "use_external"}
    written = np.fromfile(lidarseg_prediction_path(results, "val", tokens[0]), np.uint8)
    np.testing.assert_array_equal(written, rows[0][2] + 1)

    devkit = evaluate_lidarseg(results, synthetic_root.dataroot, synthetic_root.version, "val",
                               nusc=nusc)
    cm = sum(confusion_matrix(p, t, 16, ignore_index=255) for _, t, p in rows)
    ours = iou_per_class(cm)
    from lidarcl.datasets.nuscenes_dataset import LIDARSEG_CLASSES

    theirs = np.array([devkit["iou_per_class"][name] for name in LIDARSEG_CLASSES])
    np.testing.assert_allclose(theirs, ours, rtol=1e-12, equal_nan=True)
    assert devkit["miou"] == pytest.approx(mean_iou(cm), rel=1e-12)
    assert devkit["samples"] == 10 and 0.1 < devkit["miou"] < 0.9  # neither 0 nor perfect

    # a short prediction file, then a missing one: errors naming the file
    path = lidarseg_prediction_path(results, "val", tokens[3])
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-1])
    with pytest.raises(DataError, match=f"{tokens[3]}_lidarseg.bin.*predictions for"):
        evaluate_lidarseg(results, synthetic_root.dataroot, synthetic_root.version, "val",
                          nusc=nusc)
    os.remove(path)
    with pytest.raises(DataError, match=f"{tokens[3]}_lidarseg.bin.*not found"):
        evaluate_lidarseg(results, synthetic_root.dataroot, synthetic_root.version, "val",
                          nusc=nusc)
    with pytest.raises(ValueError, match="0..15"):
        write_lidarseg_submission(results, "val", [(tokens[0], np.array([0, 16]))])

    # the command-line tool on a complete folder
    open(path, "wb").write(data)
    out = tmp_path / "metrics.json"
    run = subprocess.run([sys.executable, "tools/evaluate.py", "nuscenes-lidarseg",
                          "--results", results, "--root", synthetic_root.dataroot,
                          "--version", synthetic_root.version, "--eval-set", "val",
                          "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert f"mIoU {100 * devkit['miou']:.2f} over 10 scans" in run.stdout
    assert json.loads(out.read_text())["miou"] == pytest.approx(devkit["miou"])


def test_semantickitti_iou_by_hand():
    from lidarcl.evaluation.semantickitti_eval import semantickitti_iou

    # targets 0,0,0,1,1 ; predictions 0,1,unlabeled,1,1 ; class 2 absent
    cm = np.array([[1, 1, 0, 1], [0, 2, 0, 0], [0, 0, 0, 0]])
    miou, iou = semantickitti_iou(cm)
    # class 0: TP 1, FP 0, FN 2 -> 1/3; class 1: TP 2, FP 1, FN 0 -> 2/3; class 2: 0
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 0.0])
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)


def _iou_eval_reference(preds_raw, truths_raw):
    """semantic-kitti-api's procedure: both through the 20-entry learning map (0 unlabeled),
    conf[pred, gt], the unlabeled gt column zeroed, IoU with eps, mean over classes 1..19."""
    from lidarcl.datasets.semantickitti_converter import _YAML_LEARNING_MAP

    remap = np.zeros(1 << 16, dtype=np.int64)
    for raw, value in _YAML_LEARNING_MAP.items():
        remap[raw] = value
    conf = np.zeros((20, 20), dtype=np.int64)
    for pred, gt in zip(preds_raw, truths_raw):
        np.add.at(conf, (remap[pred], remap[gt]), 1)
    conf[:, 0] = 0
    tp = np.diag(conf)
    fp = conf.sum(1) - tp
    fn = conf.sum(0) - tp
    iou = tp / (tp + fp + fn + 1e-15)
    return iou[1:].mean(), iou[1:]


def test_semantickitti_predictions_scored_as_the_benchmark(tmp_path):
    from lidarcl.datasets.semantickitti_converter import (LEARNING_MAP, SEMANTICKITTI_RAW_LABELS,
                                                          create_semantickitti_infos)
    from lidarcl.evaluation.semantickitti_eval import (evaluate_semantickitti,
                                                       semantickitti_prediction_path,
                                                       write_semantickitti_predictions)

    rng = np.random.default_rng(1)
    raw_ids = np.array(sorted(SEMANTICKITTI_RAW_LABELS))
    seq = tmp_path / "data" / "sequences" / "08"
    (seq / "velodyne").mkdir(parents=True)
    (seq / "labels").mkdir()
    eye = " ".join(map(str, np.eye(4)[:3].reshape(-1)))
    (seq / "poses.txt").write_text(f"{eye}\n{eye}\n{eye}\n")
    (seq / "calib.txt").write_text(f"P0: {eye}\nTr: {eye}\n")
    truths, preds_raw, preds = [], [], []
    for frame, n in enumerate((300, 250, 400)):
        (rng.random((n, 4)) * 10).astype(np.float32).tofile(seq / "velodyne" / f"{frame:06d}.bin")
        truth = rng.choice(raw_ids, n)
        instance = rng.integers(0, 5, n).astype(np.uint32)
        ((instance << 16) | truth).astype("<u4").tofile(seq / "labels" / f"{frame:06d}.label")
        # predictions: classes 0..18 except 4 (so other-vehicle is never predicted)
        pred = rng.choice([c for c in range(19) if c != 4], n)
        truths.append(truth)
        preds.append(pred)
    [index] = create_semantickitti_infos(tmp_path / "data", tmp_path / "data",
                                         splits={"val": ("08",)})
    results = str(tmp_path / "results")
    assert write_semantickitti_predictions(
        results, [(f"08_{k:06d}", p) for k, p in enumerate(preds)]) == 3
    written = np.fromfile(semantickitti_prediction_path(results, "08_000001"), "<u4")
    assert [LEARNING_MAP[int(r)] for r in written] == preds[1].tolist()
    preds_raw = [np.fromfile(semantickitti_prediction_path(results, f"08_{k:06d}"), "<u4")
                 for k in range(3)]
    # one scan predicts "unlabeled" (raw 0) for some points: false negatives of the truth
    preds_raw[2][:50] = 0
    preds_raw[2].tofile(semantickitti_prediction_path(results, "08_000002"))
    metrics = evaluate_semantickitti(results, str(tmp_path / "data"), index)
    reference_miou, reference_iou = _iou_eval_reference(preds_raw, truths)
    np.testing.assert_allclose(list(metrics["iou_per_class"].values()), reference_iou,
                               rtol=1e-12)
    assert metrics["miou"] == pytest.approx(reference_miou, rel=1e-12)
    assert metrics["scans"] == 3
    short = semantickitti_prediction_path(results, "08_000000")
    open(short, "wb").write(open(short, "rb").read()[:-4])
    with pytest.raises(DataError, match="000000.label.*predictions for"):
        evaluate_semantickitti(results, str(tmp_path / "data"), index)
