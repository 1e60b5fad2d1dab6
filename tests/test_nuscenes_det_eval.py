"""nuScenes detection results JSON and its evaluation (lidarcl/evaluation/nuscenes_det.py),
each against an independent reference: the devkit's own tables and loaders for the writer,
AP / TP errors / NDS worked out by hand from the devkit's definitions, and the devkit's
``DetectionEval`` itself run on the generated data (its split table patched to know our
scenes) for the generated-data path."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")

from nuscenes.eval.common import loaders  # noqa: E402
from nuscenes.eval.common.config import config_factory  # noqa: E402
from nuscenes.eval.common.data_classes import EvalBoxes  # noqa: E402
from nuscenes.eval.detection.data_classes import DetectionBox  # noqa: E402
from nuscenes.eval.detection.evaluate import DetectionEval  # noqa: E402
from nuscenes.eval.detection.utils import category_to_detection_name  # noqa: E402
from nuscenes.nuscenes import NuScenes  # noqa: E402
from nuscenes.utils.data_classes import Box  # noqa: E402
from nuscenes.utils.geometry_utils import points_in_box  # noqa: E402
from pyquaternion import Quaternion  # noqa: E402

from conftest import REAL_DATA  # noqa: E402
from lidarcl.errors import DataError  # noqa: E402
from lidarcl.evaluation.nuscenes_det import (_load_gt_of_samples,  # noqa: E402
                                             boxes_to_nuscenes_results, default_attribute,
                                             detection_metrics, evaluate_nuscenes_det,
                                             load_eval_ground_truth, metrics_summary,
                                             write_nuscenes_results)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "v1.0-synthetic"  # tests/conftest.py tiny_dataset
CLASSES = ("car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian",
           "motorcycle", "bicycle", "traffic_cone", "barrier")
CLASS_RANGE = {"car": 50, "truck": 50, "bus": 50, "trailer": 50, "construction_vehicle": 50,
               "pedestrian": 40, "motorcycle": 40, "bicycle": 40, "traffic_cone": 30,
               "barrier": 30}  # detection_cvpr_2019.json
TP = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
NAN_BY_RULE = {("traffic_cone", "attr_err"), ("traffic_cone", "vel_err"),
               ("traffic_cone", "orient_err"), ("barrier", "attr_err"), ("barrier", "vel_err")}


def _val_infos(root):
    with open(os.path.join(root, "nuscenes_infos_val.json")) as f:
        return json.load(f)["infos"]


def _gt_records(info, only_scored=False, **kwargs):
    """Our index's ground truth of one sample as result records (score 1, its own
    attributes and velocities), with the sample_annotation token of each record."""
    names = [category_to_detection_name(n) for n in info["gt_names"]]
    keep = [i for i, n in enumerate(names) if n is not None
            and (not only_scored or info["num_lidar_pts"][i] > 0)]
    boxes = np.asarray(info["gt_boxes"], dtype=np.float64).reshape(-1, 7)[keep]
    velocity = np.asarray(info["gt_velocity"], dtype=np.float64).reshape(-1, 2)[keep]
    records = boxes_to_nuscenes_results(
        info["token"], boxes, np.ones(len(keep)), [names[i] for i in keep], info["lidar2ego"],
        info["ego2global"], velocity, attributes=[info["gt_attributes"][i] for i in keep],
        **kwargs)
    return records, [info["nuscenes"]["ann_tokens"][i] for i in keep]


def _fields(boxes) -> str:
    """EvalBoxes as comparable text (DetectionBox.__eq__ cannot compare numpy velocities)."""
    return json.dumps([(b.sample_token, list(b.translation), list(b.size), list(b.rotation),
                        [float(v) for v in b.velocity], b.num_pts, b.detection_name,
                        b.attribute_name) for b in boxes.all])


def _same(a, b) -> bool:
    """Equal to every digit, NaN equal to NaN (the summaries' JSON text)."""
    a, b = dict(a), dict(b)
    a.pop("eval_time"), b.pop("eval_time")
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.fixture(scope="module")
def generated(tiny_dataset):
    nusc = NuScenes(version=VERSION, dataroot=tiny_dataset, verbose=False)
    return tiny_dataset, nusc, _val_infos(tiny_dataset)


# --------------------------------------------------------------------------- the writer
def test_ground_truth_round_trips_to_the_devkit_annotations(generated, tmp_path):
    root, nusc, infos = generated
    results, compared = {}, 0
    for info in infos:
        records, anns = _gt_records(info, drop_out_of_range=False)
        assert len(records) == len(anns) > 0
        for rec, ann_token in zip(records, anns):  # all scores 1: the order is kept
            ann = nusc.get("sample_annotation", ann_token)
            np.testing.assert_allclose(rec["translation"], ann["translation"], atol=1e-6)
            np.testing.assert_allclose(rec["size"], ann["size"], atol=1e-6)
            q, q_ann = np.array(rec["rotation"]), np.array(ann["rotation"])
            assert min(np.abs(q - q_ann).max(), np.abs(q + q_ann).max()) < 1e-6  # q ~ -q
            velocity = nusc.box_velocity(ann_token)[:2]
            np.testing.assert_allclose(rec["velocity"], velocity, atol=1e-6, equal_nan=True)
            assert rec["detection_name"] == category_to_detection_name(ann["category_name"])
            assert rec["detection_score"] == 1.0 and rec["sample_token"] == info["token"]
            compared += 1
        results[info["token"]] = records
    assert compared > 20
    path = tmp_path / "results.json"
    assert write_nuscenes_results(path, results) == compared
    boxes, meta = loaders.load_prediction(str(path), 500, DetectionBox)
    assert meta == {"use_camera": False, "use_lidar": True, "use_radar": False,
                    "use_map": False, "use_external": False}
    assert set(boxes.sample_tokens) == {i["token"] for i in infos}
    assert len(boxes.all) == compared


def test_writer_keeps_the_500_best_boxes_in_range_and_the_default_attributes():
    rng = np.random.default_rng(0)
    k = 620
    boxes = np.column_stack([rng.uniform(-30, 30, (k, 2)), np.zeros(k),
                             np.full((k, 3), 2.0), rng.uniform(-3, 3, k)])
    boxes[0, :2] = [60.0, 0.0]  # beyond the car range (50 m) but the best score
    scores = rng.uniform(0, 1, k)
    scores[0] = 2.0
    eye = np.eye(4)
    records = boxes_to_nuscenes_results("s", boxes, scores, ["car"] * k, eye, eye)
    assert len(records) == 500
    kept = sorted(np.argsort(-scores)[1:501])  # the range filter drops box 0 first
    assert sorted(r["detection_score"] for r in records) == sorted(scores[kept].tolist())
    assert [r["detection_score"] for r in records] == sorted(scores[kept], reverse=True)
    everything = boxes_to_nuscenes_results("s", boxes, scores, ["car"] * k, eye, eye,
                                           drop_out_of_range=False)
    assert everything[0]["translation"] == [60.0, 0.0, 0.0]
    # identity frames: the record is the box itself, size as [w, l, h]
    one = boxes_to_nuscenes_results("s", [[1, 2, 3, 4.0, 2.0, 1.5, 0.5]], [0.7], ["bus"],
                                    eye, eye, velocities=[[0.0, 0.1]])[0]
    assert one["size"] == [2.0, 4.0, 1.5]
    np.testing.assert_allclose(one["rotation"], [math.cos(0.25), 0, 0, math.sin(0.25)])
    assert one["attribute_name"] == "vehicle.stopped"
    # mmdetection3d's rule (module doc)
    fast, still = [0.3, 0.0], [0.1, 0.1]
    assert [default_attribute(n, fast) for n in CLASSES] == [
        "vehicle.moving"] * 5 + ["pedestrian.moving", "cycle.with_rider", "cycle.with_rider",
                                 "", ""]
    assert [default_attribute(n, still) for n in CLASSES] == [
        "vehicle.parked", "vehicle.parked", "vehicle.stopped", "vehicle.parked",
        "vehicle.parked", "pedestrian.standing", "cycle.without_rider",
        "cycle.without_rider", "", ""]
    with pytest.raises(ValueError, match="sample s: unknown detection class 'van'"):
        boxes_to_nuscenes_results("s", boxes[:1], [1.0], ["van"], eye, eye)
    with pytest.raises(ValueError, match="sample s: boxes holds NaN"):
        boxes_to_nuscenes_results("s", [[np.nan] * 7], [1.0], ["car"], eye, eye)


# ------------------------------------------------------------------ metrics by hand
def _box(token, x, name="car", score=-1.0, attribute="vehicle.parked"):
    return DetectionBox(sample_token=token, translation=(x, 0.0, 1.0), size=(2.0, 4.0, 1.5),
                        rotation=(1.0, 0.0, 0.0, 0.0), velocity=(1.0, 0.0), num_pts=10,
                        detection_name=name, detection_score=score, attribute_name=attribute)


def test_hand_case_shifted_detections():
    """Three cars 32 m apart; detections with scores 0.9 and 0.8 shifted 1.25 m (matched at
    2 and 4 m) and one with 0.7 shifted 3 m (matched at 4 m only)."""
    gt, pred = EvalBoxes(), EvalBoxes()
    gt.add_boxes("s", [_box("s", x) for x in (0.0, 32.0, 64.0)])
    pred.add_boxes("s", [_box("s", 0.0 + 1.25, score=0.9), _box("s", 32.0 + 1.25, score=0.8),
                         _box("s", 64.0 + 3.0, score=0.7)])
    summary = metrics_summary(detection_metrics(gt, pred)[0], {})

    # AP: precision on the recall grid 0, 0.01, ..., 1 (np.interp, 0 beyond the largest
    # recall), kept above recall 0.1 (indices 11..100: 90 points), minus 0.1, clipped at 0,
    # averaged and divided by 0.9.
    # 0.5 m and 1 m: no match -> AP 0.
    # 2 m: TP, TP, FP -> recall 1/3, 2/3, 2/3, precision 1, 1, 2/3: precision 1 up to recall
    #      0.66 (56 grid points of 90), 0 beyond -> AP = 56 * 0.9 / 90 / 0.9 = 56 / 90.
    # 4 m: three TPs -> precision 1 everywhere -> AP 1.
    aps = summary["label_aps"]["car"]
    assert aps["0.5"] == 0.0 and aps["1.0"] == 0.0
    assert aps["2.0"] == pytest.approx(56 / 90, abs=1e-12)
    assert aps["4.0"] == pytest.approx(1.0, abs=1e-12)
    car_ap = (56 / 90 + 1.0) / 4
    assert summary["mean_dist_aps"]["car"] == pytest.approx(car_ap, abs=1e-12)
    # the devkit averages over all 10 classes of the config: the 9 without ground truth
    # score AP 0 and still count
    assert all(summary["mean_dist_aps"][c] == 0.0 for c in CLASSES if c != "car")
    m_ap = car_ap / 10
    assert summary["mean_ap"] == pytest.approx(m_ap, abs=1e-12)

    # TP errors at 2 m: the two matches are 1.25 m off with exact size, yaw, velocity and
    # attribute -> car ATE 1.25, the others 0. A class without ground truth has no match up
    # to recall 0.1 -> error 1; NaN by rule: cone AOE / AVE / AAE, barrier AVE / AAE.
    car = summary["label_tp_errors"]["car"]
    assert car["trans_err"] == pytest.approx(1.25, abs=1e-12)
    assert car["scale_err"] == car["orient_err"] == car["vel_err"] == car["attr_err"] == 0.0
    for name in CLASSES[1:]:
        for metric in TP:
            value = summary["label_tp_errors"][name][metric]
            assert (math.isnan(value) if (name, metric) in NAN_BY_RULE else value == 1.0)
    # class means ignore NaN: trans / scale over 10 classes, orient over 9, vel / attr over 8
    expected = {"trans_err": (1.25 + 9) / 10, "scale_err": 9 / 10, "orient_err": 8 / 9,
                "vel_err": 7 / 8, "attr_err": 7 / 8}
    for metric, value in expected.items():
        assert summary["tp_errors"][metric] == pytest.approx(value, abs=1e-12)
    nds = (5 * m_ap + sum(max(0.0, 1 - v) for v in expected.values())) / 10
    assert summary["nd_score"] == pytest.approx(nds, abs=1e-12)


def test_perfect_predictions_score_ap_1_on_every_class_present(generated, tmp_path):
    root, nusc, infos = generated
    results, present = {}, set()
    for info in infos:
        # every box the devkit scores: a detection class, with points (the generator writes
        # no radar points), inside its class range
        records, _ = _gt_records(info, only_scored=True)
        results[info["token"]] = records
        ego = np.asarray(info["ego2global"])[:2, 3]
        present |= {r["detection_name"] for r in records
                    if np.hypot(*(np.array(r["translation"][:2]) - ego))
                    < CLASS_RANGE[r["detection_name"]]}
    path = tmp_path / "perfect.json"
    write_nuscenes_results(path, results)
    summary = evaluate_nuscenes_det(path, root, VERSION, "val", nusc=nusc)
    assert len(present) >= 3
    for name in CLASSES:
        ap, tp = summary["mean_dist_aps"][name], summary["label_tp_errors"][name]
        if name in present:
            assert ap == pytest.approx(1.0, abs=1e-9)
            for metric in ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err"):
                assert math.isnan(tp[metric]) if (name, metric) in NAN_BY_RULE \
                    else tp[metric] == pytest.approx(0.0, abs=1e-9)
        else:
            assert ap == 0.0
            assert all(math.isnan(tp[m]) if (name, m) in NAN_BY_RULE else tp[m] == 1.0
                       for m in TP)
    assert summary["mean_ap"] == pytest.approx(len(present) / 10, abs=1e-9)
    # NDS by hand: each mean TP error is (number of absent classes where defined) / (number
    # of classes where defined), present classes contributing 0
    nds = 5 * len(present) / 10
    for metric in TP:
        defined = [c for c in CLASSES if (c, metric) not in NAN_BY_RULE]
        error = sum(c not in present for c in defined) / len(defined)
        assert summary["tp_errors"][metric] == pytest.approx(error, abs=1e-9)
        nds += max(0.0, 1 - error)
    assert summary["nd_score"] == pytest.approx(nds / 10, abs=1e-9)


# ------------------------------------------------- the generated path vs DetectionEval
def _noisy_results(infos, rng):
    """The ground truth disturbed (80 % kept, centre / size / yaw / velocity noise, random
    scores, default attributes), false positives of random classes, and far boxes that the
    devkit must filter (written with the range filter off)."""
    results = {}
    for info in infos:
        names = [category_to_detection_name(n) for n in info["gt_names"]]
        keep = [i for i, n in enumerate(names) if n is not None and rng.random() < 0.8]
        boxes = np.asarray(info["gt_boxes"], dtype=np.float64)[keep]
        boxes[:, :2] += rng.normal(0, 0.6, (len(keep), 2))
        boxes[:, 3:6] *= rng.uniform(0.8, 1.2, (len(keep), 3))
        boxes[:, 6] += rng.normal(0, 0.3, len(keep))
        velocity = np.nan_to_num(np.asarray(info["gt_velocity"], dtype=np.float64)[keep])
        velocity += rng.normal(0, 0.5, velocity.shape)
        labels = [names[i] for i in keep]
        n_fp = 12
        fp = np.column_stack([rng.uniform(-70, 70, (n_fp, 2)), rng.uniform(-1, 1, n_fp),
                              rng.uniform(0.5, 5, (n_fp, 3)), rng.uniform(-3, 3, n_fp)])
        boxes = np.concatenate([boxes, fp])
        velocity = np.concatenate([velocity, rng.normal(0, 2, (n_fp, 2))])
        labels += [CLASSES[i] for i in rng.integers(0, 10, n_fp)]
        results[info["token"]] = boxes_to_nuscenes_results(
            info["token"], boxes, rng.uniform(0.05, 1, len(boxes)), labels, info["lidar2ego"],
            info["ego2global"], velocity, drop_out_of_range=False)
    return results


def test_generated_path_equals_the_devkits_detection_eval(generated, tmp_path, monkeypatch):
    root, nusc, infos = generated
    path = str(tmp_path / "noisy.json")
    write_nuscenes_results(path, _noisy_results(infos, np.random.default_rng(1)))
    ours = evaluate_nuscenes_det(path, root, VERSION, "val", nusc=nusc)
    assert 0.05 < ours["mean_ap"] < 0.6 and 0.05 < ours["nd_score"] < 0.8

    # DetectionEval itself on the generated data: its split table (load_gt's
    # create_splits_scenes) learns our val scenes, and the NuScenes object calls itself
    # trainval for load_gt's version check; loading (load_gt, load_prediction), filtering
    # and evaluate() are the devkit's own, independent of lidarcl's code.
    with open(os.path.join(root, VERSION, "splits.json")) as f:
        val_scenes = json.load(f)["val"]
    devkit_nusc = NuScenes(version=VERSION, dataroot=root, verbose=False)
    devkit_nusc.version = "v1.0-trainval"
    monkeypatch.setattr(loaders, "create_splits_scenes", lambda verbose=False: {"val": val_scenes})
    evaluator = DetectionEval(devkit_nusc, config_factory("detection_cvpr_2019"), path, "val",
                              output_dir=str(tmp_path / "devkit"), verbose=False)
    assert set(evaluator.sample_tokens) == {i["token"] for i in infos}
    metrics, _ = evaluator.evaluate()
    devkit = metrics_summary(metrics, evaluator.meta)
    assert _same(ours, devkit)
    # the devkit's main() writes the same content as its metrics_summary.json
    written = evaluator.main(plot_examples=0, render_curves=False)
    with open(tmp_path / "devkit" / "metrics_summary.json") as f:
        assert _same(ours, json.load(f)) and _same(ours, json.loads(json.dumps(written)))


def test_ground_truth_filtering_follows_the_devkit(generated, tmp_path):
    """Class range, boxes without points and bicycles in a bicycle rack leave the ground
    truth; checked against the rule re-done here on the tables, and the fallback loader
    (devkits < 1.2) against the devkit's load_gt_of_sample_tokens."""
    root, nusc, infos = generated
    # a copy of the tables (not the lidarseg table: its label files stay behind) with a
    # bicycle rack put around the first val bicycle
    copy = tmp_path / "root"
    shutil.copytree(os.path.join(root, VERSION), copy / VERSION,
                    ignore=shutil.ignore_patterns("lidarseg.json"))
    os.symlink(os.path.join(root, "maps"), copy / "maps")  # NuScenes() opens the map mask
    tables = {n: json.loads((copy / VERSION / f"{n}.json").read_text())
              for n in ("sample_annotation", "instance", "category")}
    tokens = [i["token"] for i in infos]
    bike = next(a for a in tables["sample_annotation"] if a["sample_token"] in tokens
                and nusc.get("sample_annotation", a["token"])["category_name"]
                == "vehicle.bicycle")
    rack_category = next(c["token"] for c in tables["category"]
                         if c["name"] == "static_object.bicycle_rack")
    tables["instance"].append({"token": "rack-instance", "category_token": rack_category,
                               "nbr_annotations": 1, "first_annotation_token": "rack",
                               "last_annotation_token": "rack"})
    tables["sample_annotation"].append({
        **bike, "token": "rack", "instance_token": "rack-instance", "attribute_tokens": [],
        "size": [3.0, 4.0, 2.0], "prev": "", "next": "", "num_lidar_pts": 5})
    for name, table in tables.items():
        (copy / VERSION / f"{name}.json").write_text(json.dumps(table))
    racked = NuScenes(version=VERSION, dataroot=str(copy), verbose=False)

    config = config_factory("detection_cvpr_2019")
    for tables_nusc in (nusc, racked):
        gt = load_eval_ground_truth(tables_nusc, tokens, config)
        expected = {}
        for token in tokens:
            sample = tables_nusc.get("sample", token)
            ego = tables_nusc.get("ego_pose", tables_nusc.get(
                "sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])["translation"]
            anns = [tables_nusc.get("sample_annotation", a) for a in sample["anns"]]
            racks = [Box(a["translation"], a["size"], Quaternion(a["rotation"])) for a in anns
                     if a["category_name"] == "static_object.bicycle_rack"]
            expected[token] = [
                a["translation"] for a in anns
                if (name := category_to_detection_name(a["category_name"])) is not None
                and a["num_lidar_pts"] + a["num_radar_pts"] > 0
                and math.hypot(a["translation"][0] - ego[0], a["translation"][1] - ego[1])
                < CLASS_RANGE[name]
                and not (name in ("bicycle", "motorcycle") and any(
                    points_in_box(r, np.array(a["translation"])[:, None])[0] for r in racks))]
        assert {t: [list(b.translation) for b in gt[t]] for t in tokens} == expected
        if hasattr(loaders, "load_gt_of_sample_tokens"):  # devkit >= 1.2
            assert _fields(_load_gt_of_samples(tables_nusc, tokens)) == _fields(
                loaders.load_gt_of_sample_tokens(tables_nusc, tokens, DetectionBox))
    kept = {tuple(b.translation) for b in load_eval_ground_truth(nusc, tokens, config).all}
    assert tuple(bike["translation"]) in kept
    assert tuple(bike["translation"]) not in {
        tuple(b.translation) for b in load_eval_ground_truth(racked, tokens, config).all}


# --------------------------------------------------------------- bad input and the tool
def test_bad_results_files_are_named(generated, tmp_path):
    root, nusc, infos = generated
    results = {i["token"]: _gt_records(i)[0] for i in infos}
    path = tmp_path / "results.json"

    def check(data, match):
        path.write_text(json.dumps(data))
        with pytest.raises(DataError, match=match) as err:
            evaluate_nuscenes_det(path, root, VERSION, "val", nusc=nusc)
        assert str(path) in str(err.value)

    first = infos[0]["token"]
    check({"meta": {}, "results": {first: results[first]}},
          f"no entry for 1 of the 2 samples of eval set 'val', e.g. {infos[1]['token']}")
    check({"meta": {}, "results": {**results, "elsewhere": []}},
          "1 entries for samples outside eval set 'val', e.g. elsewhere")
    bad = json.loads(json.dumps(results))
    bad[first][2]["size"] = [1.0, -2.0, 1.0]
    check({"meta": {}, "results": bad}, rf"results\['{first}'\]\[2\]: size must be 3 numbers > 0")
    bad = json.loads(json.dumps(results))
    del bad[first][0]["detection_score"]
    check({"meta": {}, "results": bad}, r"\[0\] lacks \['detection_score'\]")
    check({"results": results}, "expected {\"meta\"")
    check({"meta": {}, "results": {t: [] for t in results}}, "no detection at all")
    path.write_text("{not json")
    with pytest.raises(DataError, match="not a JSON nuScenes detection results file"):
        evaluate_nuscenes_det(path, root, VERSION, "val", nusc=nusc)
    write_nuscenes_results(path, results)
    with pytest.raises(DataError, match="no split 'test'"):
        evaluate_nuscenes_det(path, root, VERSION, "test", nusc=nusc)


def test_evaluate_tool_nuscenes_det(generated, tmp_path):
    root, nusc, infos = generated
    path = str(tmp_path / "results.json")
    write_nuscenes_results(path, _noisy_results(infos, np.random.default_rng(2)))
    expected = evaluate_nuscenes_det(path, root, VERSION, "val", nusc=nusc)
    out = tmp_path / "metrics.json"
    cmd = [sys.executable, "tools/evaluate.py", "nuscenes-det", "--results", path,
           "--root", root, "--version", VERSION, "--eval-set", "val"]
    run = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert (f"mAP {expected['mean_ap']:.4f}  NDS {expected['nd_score']:.4f}"
            in run.stdout)
    assert f"car{expected['mean_dist_aps']['car']:>26.3f}" in run.stdout
    written = json.loads(out.read_text())
    assert written.pop("task") == "nuscenes-det" and _same(written, expected)

    with open(path) as f:
        data = json.load(f)
    data["results"][infos[0]["token"]][0]["rotation"] = [0, 0, 0]
    with open(path, "w") as f:
        json.dump(data, f)
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1
    assert (f"evaluate: {path}: results['{infos[0]['token']}'][0]: rotation must be a "
            "non-zero quaternion") in run.stderr, run.stderr


# ------------------------------------------------------ the official path, real frame
def test_official_version_runs_detection_eval_on_the_real_frame(tmp_path):
    """The shipped v1.0-mini keyframe (scene-0061: mini_train): our index's boxes written
    back score AP 1 on every class present, through DetectionEval; the devkit's loaders +
    detection_metrics give the same summary."""
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    nus_root = str(REAL_DATA.require_nuscenes(shipped=True))
    version = REAL_DATA.nuscenes_version
    create_nuscenes_infos(nus_root, version, tmp_path, max_sweeps=0)
    info = json.loads((tmp_path / "nuscenes_infos_train.json").read_text())["infos"][0]
    records, anns = _gt_records(info, drop_out_of_range=False)
    nusc = NuScenes(version=version, dataroot=nus_root, verbose=False)
    for rec, ann_token in zip(records, anns):  # real boxes have a little roll and pitch
        ann = nusc.get("sample_annotation", ann_token)
        np.testing.assert_allclose(rec["translation"], ann["translation"], atol=1e-6)
        yaw = Quaternion(ann["rotation"]).yaw_pitch_roll[0]
        assert abs((Quaternion(rec["rotation"]).yaw_pitch_roll[0] - yaw + np.pi)
                   % (2 * np.pi) - np.pi) < 1e-3
    # a box without lidar and radar points is no ground truth: predicting it is a false
    # positive (our index has no radar counts, so the tables decide)
    records = [r for r, a in zip(records, anns) if nusc.get("sample_annotation", a)[
        "num_lidar_pts"] + nusc.get("sample_annotation", a)["num_radar_pts"] > 0]
    path = tmp_path / "real.json"
    write_nuscenes_results(path, {info["token"]: records})
    summary = evaluate_nuscenes_det(path, nus_root, version, "train", nusc=nusc,
                                    output_dir=str(tmp_path / "eval"))
    present = [c for c in CLASSES if summary["label_tp_errors"][c]["trans_err"] < 1]
    assert {"car", "pedestrian", "barrier"} <= set(present)
    assert all(summary["mean_dist_aps"][c] == pytest.approx(1.0) for c in present)
    assert summary["mean_ap"] == pytest.approx(len(present) / 10)
    on_disk = json.loads((tmp_path / "eval" / "metrics_summary.json").read_text())
    assert _same(on_disk, summary)

    gt = load_eval_ground_truth(nusc, [info["token"]])
    from lidarcl.evaluation.nuscenes_det import load_eval_predictions

    pred, meta = load_eval_predictions(str(path), nusc)
    assert _same(metrics_summary(detection_metrics(gt, pred)[0], meta), summary)
