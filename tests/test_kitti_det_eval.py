"""KITTI 3D detection evaluator (lidarcl/evaluation/kitti_det_eval.py) against hand
computations: overlaps of hand-placed boxes, and AP of hand-built precision-recall curves
under the official evaluator's rules (KITTI devkit evaluate_object.cpp and its Python port
kitti_object_eval_python/eval.py).

How the official evaluator samples a curve (worked out by hand in the tests below): the TP
scores, sorted, are thinned to at most 41 thresholds so that recall steps by about 1/40;
with n valid ground truth objects and all of them found, threshold k keeps score index 0
for k = 0 and about index k * n / 40 after that. ``precision[k]`` is TP / (TP + FP) at
threshold k (0 beyond the last threshold), made monotone by a max over k' >= k; R40 is the
mean of precision[1..40], R11 of precision[0, 4, ..., 40], in percent.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REAL_DATA
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.evaluation.kitti_det_eval import (bev_box_overlap, d3_box_overlap,
                                               evaluate_kitti_det, image_box_overlap,
                                               kitti_eval, parse_kitti_lines, read_kitti_label,
                                               read_kitti_results)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIFFS = ("easy", "moderate", "hard")

# an easy Car (2D height 50 px > 40, not occluded nor truncated) and a place far from it
CAR_BBOX = (100.0, 100.0, 200.0, 150.0)
CAR_LOC = (0.0, 1.6, 20.0)
FAR_BBOX = (800.0, 100.0, 900.0, 160.0)
FAR_LOC = (10.0, 1.6, 45.0)


def line(name="Car", bbox=CAR_BBOX, hwl=(1.5, 1.6, 3.9), loc=CAR_LOC, ry=0.2, alpha=-0.3,
         trunc=0.0, occ=0, score=None) -> str:
    """One KITTI label line: type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]."""
    fields = [name, trunc, occ, alpha, *bbox, *hwl, *loc, ry] + ([] if score is None
                                                                  else [score])
    return " ".join(str(f) for f in fields)


def frames(rows):
    """Annotation dicts of a list of frames, each a list of label lines."""
    return [parse_kitti_lines(lines) for lines in rows]


def values(metrics, cls="Car", kinds=("image", "bev", "3d"), diffs=DIFFS, label="R40"):
    return {f"{cls}_{k}/{d}_{label}": metrics[f"{cls}_{k}/{d}_{label}"]
            for k in kinds for d in diffs}


# ------------------------------------------------------------------------------ files
def test_label_file_columns_and_errors(tmp_path):
    path = tmp_path / "000001.txt"
    path.write_text("Car 0.50 1 -1.57 10 20 110 70 1.5 1.6 3.9 1.0 1.7 20.0 0.3 0.75\n\n"
                    "Pedestrian 0 0 0.1 300 100 330 180 1.8 0.6 0.8 -2 1.8 12 -1.2 0.5\n")
    anno = read_kitti_label(path)
    assert list(anno["name"]) == ["Car", "Pedestrian"]
    # the file's "h w l" = 1.5 1.6 3.9 is stored as the port's l, h, w
    np.testing.assert_array_equal(anno["dimensions"][0], [3.9, 1.5, 1.6])
    np.testing.assert_array_equal(anno["location"][1], [-2, 1.8, 12])
    np.testing.assert_array_equal(anno["bbox"][0], [10, 20, 110, 70])
    np.testing.assert_array_equal(anno["score"], [0.75, 0.5])
    assert anno["occluded"].dtype == np.int64 and list(anno["occluded"]) == [1, 0]
    assert anno["truncated"][0] == 0.5 and anno["rotation_y"][1] == -1.2
    # ground truth has no score: 0 (the port's get_label_anno)
    path.write_text(line() + "\n")
    assert read_kitti_label(path)["score"].tolist() == [0.0]

    for text, problem in ((line() + "\nCar 0 0 0 1 2 3\n", "line 2: 7 fields"),
                          (line(score=0.5) + "\n" + line() + "\n", "line 2: 15 fields where"),
                          (line(alpha="x") + "\n", "line 1: non-numeric"),
                          (line(score="nan") + "\n", "line 1: non-finite"),
                          (line(occ=0.5) + "\n", "line 1: occlusion")):
        path.write_text(text)
        with pytest.raises(DataError, match=f"000001.txt: {problem}"):
            read_kitti_label(path)

    # a results folder: a missing file means no detections, a malformed one names itself
    results = tmp_path / "results"
    results.mkdir()
    (results / "000002.txt").write_text(line(score=0.9) + "\n")
    got = read_kitti_results(results, ["000001", "000002"])
    assert len(got[0]["name"]) == 0 and got[1]["score"].tolist() == [0.9]
    (results / "000001.txt").write_text("Car 1 2\n")
    with pytest.raises(DataError, match="results/000001.txt: line 1: 3 fields"):
        read_kitti_results(results, ["000001", "000002"])
    with pytest.raises(DataFileNotFound, match="nowhere.*not found"):
        read_kitti_results(tmp_path / "nowhere", ["000001"])


# --------------------------------------------------------------------------- overlaps
def test_bev_iou_hand_cases():
    box = [0.0, 0.0, 4.0, 2.0, 0.0]  # x z l w ry: x in [-2, 2], z in [-1, 1], area 8
    assert bev_box_overlap([box], [box])[0, 0] == pytest.approx(1.0)
    assert bev_box_overlap([box], [[10.0, 0.0, 4.0, 2.0, 0.7]])[0, 0] == 0.0
    # shifted by (1, 0.5): overlap x in [-1, 2] (3) x z in [-0.5, 1] (1.5) = 4.5
    assert bev_box_overlap([box], [[1.0, 0.5, 4.0, 2.0, 0.0]])[0, 0] == pytest.approx(
        4.5 / (8 + 8 - 4.5))
    # touching edges (x = 2) and touching corners only: no area
    assert bev_box_overlap([box], [[4.0, 0.0, 4.0, 2.0, 0.0]])[0, 0] == 0.0
    assert bev_box_overlap([box], [[4.0, 2.0, 4.0, 2.0, 0.0]])[0, 0] == 0.0
    # square of side 2 against itself turned by 45 degrees: the square [-1, 1]^2 cut by the
    # diamond |x| + |z| <= sqrt(2) loses 4 corner triangles with legs 2 - sqrt(2):
    # inter = 4 - 2 (2 - sqrt(2))^2 = 8 sqrt(2) - 8, IoU = inter / (8 - inter) = 1 / sqrt(2)
    square = [0.0, 0.0, 2.0, 2.0, 0.0]
    inter = 4 - 2 * (2 - math.sqrt(2)) ** 2
    assert bev_box_overlap([square], [[0.0, 0.0, 2.0, 2.0, math.pi / 4]])[0, 0] == \
        pytest.approx(inter / (8 - inter))
    assert inter / (8 - inter) == pytest.approx(1 / math.sqrt(2))
    # a yaw of +pi and of -pi give the same footprint (a rectangle turned half a turn)
    other = [[0.7, -0.4, 3.0, 1.2, 0.35]]
    a = bev_box_overlap([[0.2, 0.1, 4.0, 1.5, 0.3 + math.pi]], other)[0, 0]
    b = bev_box_overlap([[0.2, 0.1, 4.0, 1.5, 0.3 - math.pi]], other)[0, 0]
    c = bev_box_overlap([[0.2, 0.1, 4.0, 1.5, 0.3]], other)[0, 0]
    assert 0 < a < 1 and a == pytest.approx(b) and a == pytest.approx(c)
    assert bev_box_overlap([[0.2, 0.1, 4.0, 1.5, math.pi]],
                           [[0.2, 0.1, 4.0, 1.5, -math.pi]])[0, 0] == pytest.approx(1.0)
    # IoU is symmetric
    assert bev_box_overlap(other, [[0.2, 0.1, 4.0, 1.5, 0.3]])[0, 0] == pytest.approx(c)


def test_bev_heading_follows_the_camera_rotation():
    """KITTI's R_y(ry) takes the box's length axis to (cos ry, -sin ry) in the camera's
    (x, z) plane: a 4 x 0.5 box at ry = pi/4 runs from the origin towards (+x, -z)."""
    thin = [[0.0, 0.0, 4.0, 0.5, math.pi / 4]]
    # a 0.2 x 0.2 square centred on the axis at (1, -1) lies inside: IoU = 0.04 / 2
    assert bev_box_overlap(thin, [[1.0, -1.0, 0.2, 0.2, 0.0]])[0, 0] == pytest.approx(0.02)
    assert bev_box_overlap(thin, [[1.0, 1.0, 0.2, 0.2, 0.0]])[0, 0] == 0.0


def test_3d_iou_hand_case():
    # camera boxes x y z l h w ry; y is the bottom, the box spans [y - h, y]
    a = [0.0, 2.0, 0.0, 4.0, 2.0, 2.0, 0.0]  # BEV x [-2, 2] z [-1, 1]; y [0, 2]; volume 16
    b = [1.0, 2.5, 0.5, 4.0, 1.0, 2.0, 0.0]  # BEV x [-1, 3] z [-0.5, 1.5]; y [1.5, 2.5]; 8
    # BEV intersection 3 x 1.5 = 4.5, height overlap [1.5, 2] = 0.5 -> 2.25
    # (a centre-based y would give [1, 3] and [2, 3]: overlap 1, not 0.5)
    assert d3_box_overlap([a], [b])[0, 0] == pytest.approx(2.25 / (16 + 8 - 2.25))
    assert d3_box_overlap([a], [a])[0, 0] == pytest.approx(1.0)
    above = [1.0, -0.5, 0.5, 4.0, 1.0, 2.0, 0.0]  # y [-1.5, -0.5]: no vertical overlap
    assert d3_box_overlap([a], [above])[0, 0] == 0.0
    # the 2D image box IoU: [0, 10]^2 and [5, 15] x [0, 10] share 50 of 150
    assert image_box_overlap([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(1 / 3)


# ------------------------------------------------------------------------ AP by hand
def _cars(n, **kw):
    return [[line(**kw)] for _ in range(n)]


def test_perfect_and_missing_detections():
    # 45 frames, each an easy Car, Pedestrian and Cyclist: 45 >= 41 valid objects per class
    # and difficulty, so all 41 thresholds are reached with precision 1 -> 100 everywhere
    objects = [line(), line("Pedestrian", bbox=(300, 100, 330, 170), hwl=(1.8, 0.6, 0.8),
                            loc=(-3.0, 1.7, 15.0)),
               line("Cyclist", bbox=(500, 100, 540, 170), hwl=(1.7, 0.6, 1.8),
                    loc=(3.0, 1.7, 15.0))]
    gt = frames([objects] * 45)
    dt = frames([[o + " 0.8" for o in objects]] * 45)
    _, metrics = kitti_eval(gt, dt)
    assert len(metrics) == 3 * 4 * 3 * 2 * 2  # classes x metrics x diffs x R40/R11 x sets
    assert all(v == pytest.approx(100.0) for v in metrics.values()), metrics
    # no detections at all: 0 everywhere (and no AOS without any alpha)
    _, metrics = kitti_eval(gt, frames([[]] * 45))
    assert len(metrics) == 3 * 3 * 3 * 2 * 2
    assert all(v == 0.0 for v in metrics.values())


def test_precision_recall_curve_by_hand():
    """80 valid cars (one per frame). Detections: 40 TPs scored 0.90..0.939, then 40 FPs
    (far from every car) scored 0.50..0.539, then the other 40 TPs scored 0.10..0.139.

    Thresholds (n = 80): score index 0, then the odd indices 1, 3, ..., 79 (index 2k - 1
    has recall 2k / 80 = k / 40): 41 thresholds. At threshold k >= 1 there are 2k TPs; the
    40 FPs score above every threshold with k >= 21 (index >= 41). Precision: 1 for
    k = 0..20, 2k / (2k + 40) for k = 21..40, rising to 80 / 120 = 2/3, so the monotone
    curve is 1 (k <= 20) and 2/3 (k >= 21):
      R40 = (20 * 1 + 20 * 2/3) / 40 = 5/6 = 83.33 %
      R11 = (6 * 1 [k = 0, 4, .., 20] + 5 * 2/3 [k = 24, .., 40]) / 11 = 28/33 = 84.85 %
    All three overlaps are 1 for a TP and 0 for a FP, and every car is easy, so the values
    hold for the 2D box, BEV and 3D at every difficulty; alpha is exact, so AOS = AP."""
    gt = frames(_cars(80))
    dt_rows = []
    for i in range(80):
        score = 0.9 + 0.001 * i if i < 40 else 0.1 + 0.001 * (i - 40)
        rows = [line(score=score)]
        if i < 40:
            rows.append(line(bbox=FAR_BBOX, loc=FAR_LOC, score=0.5 + 0.001 * i))
        dt_rows.append(rows)
    curves = {}
    _, metrics = kitti_eval(gt, frames(dt_rows), ["Car"], curves=curves)
    kinds = ("image", "bev", "3d", "aos")
    assert all(v == pytest.approx(500 / 6) for v in values(metrics, kinds=kinds).values())
    assert all(v == pytest.approx(2800 / 33)
               for v in values(metrics, kinds=kinds, label="R11").values())
    expected = np.array([1.0] * 21 + [2 / 3] * 20)
    for kind in kinds:
        np.testing.assert_allclose(curves[kind][0, 1, 0], expected)


def test_few_objects_end_the_curve_early():
    """The brief's example: 2 cars; detections TP 0.9, FP 0.8, TP 0.7. With n = 2 < 41
    every TP score is a threshold, so the curve has 2 points, then zeros: precision 1 at
    0.9 (1 TP, 0 FP) and 2/3 at 0.7 (2 TP, 1 FP):
      R40 = precision[1] / 40 = (2/3) / 40 = 1.667 %,  R11 = precision[0] / 11 = 9.09 %
    (a textbook interpolated AP of this curve would be about 83 %; the official evaluator
    gets there only with >= 41 objects, as in test_precision_recall_curve_by_hand)."""
    gt = frames([[line()], [line()]])
    dt = frames([[line(score=0.9), line(bbox=FAR_BBOX, loc=FAR_LOC, score=0.8)],
                 [line(score=0.7)]])
    _, metrics = kitti_eval(gt, dt, ["Car"])
    assert all(v == pytest.approx(100 * (2 / 3) / 40) for v in values(metrics).values())
    assert all(v == pytest.approx(100 / 11) for v in values(metrics, label="R11").values())


def test_dontcare_region_and_neighbour_class():
    """80 cars found exactly (score 0.5) plus one more Car detection scored 0.9:
    a FP at every one of the 41 thresholds gives precision 80/81 -> AP 98.77 (control)."""
    gt_rows = _cars(80)
    dt_rows = [[line(score=0.5)] for _ in range(80)]
    extra = line(bbox=(610, 110, 690, 190), loc=FAR_LOC, score=0.9)
    _, control = kitti_eval(frames(gt_rows), frames([dt_rows[0] + [extra]] + dt_rows[1:]),
                            ["Car"])
    assert all(v == pytest.approx(100 * 80 / 81) for v in values(control).values())

    # the extra detection lies inside a DontCare region (its whole 2D box, > 0.7 of it):
    # not a FP for the 2D box metric. The official code checks DontCare regions with the
    # 2D box only (the port: metric 0; the C++: their 3D boxes are -1000 placeholders), so
    # in BEV and 3D it stays a FP.
    dontcare = ("DontCare -1 -1 -10 600 100 700 200 -1 -1 -1 -1000 -1000 -1000 -10")
    gt_dc = [gt_rows[0] + [dontcare]] + gt_rows[1:]
    _, metrics = kitti_eval(frames(gt_dc), frames([dt_rows[0] + [extra]] + dt_rows[1:]),
                            ["Car"])
    assert all(v == pytest.approx(100.0) for v in values(metrics, kinds=("image",)).values())
    assert all(v == pytest.approx(100 * 80 / 81)
               for v in values(metrics, kinds=("bev", "3d")).values())

    # a Van: its own Van detection is not a Car detection, and a Car detection on a Van is
    # absorbed by the neighbour class (neither TP nor FP): 100 everywhere
    van = dict(bbox=FAR_BBOX, loc=FAR_LOC, hwl=(2.0, 1.8, 4.5))
    gt_van = [gt_rows[0] + [line("Van", **van), line("Van", bbox=(600, 100, 700, 200),
                                                    loc=(-10.0, 1.6, 45.0))]] + gt_rows[1:]
    dt_van = [dt_rows[0] + [line("Van", score=0.9, **van),
                            line(bbox=(600, 100, 700, 200), loc=(-10.0, 1.6, 45.0),
                                 score=0.9)]] + dt_rows[1:]
    _, metrics = kitti_eval(frames(gt_van), frames(dt_van), ["Car"])
    assert all(v == pytest.approx(100.0) for v in metrics.values())
    # the same Car detection on a Truck (no neighbour of Car) is a FP again
    gt_truck = [gt_rows[0] + [line("Truck", bbox=(600, 100, 700, 200),
                                   loc=(-10.0, 1.6, 45.0))]] + gt_rows[1:]
    dt_truck = [dt_rows[0] + [line(bbox=(600, 100, 700, 200), loc=(-10.0, 1.6, 45.0),
                                   score=0.9)]] + dt_rows[1:]
    _, metrics = kitti_eval(frames(gt_truck), frames(dt_truck), ["Car"])
    assert all(v == pytest.approx(100 * 80 / 81) for v in values(metrics).values())


def test_difficulty_filter():
    """80 easy cars found exactly, and 80 cars with occlusion 2 (else easy) never found.
    Easy / moderate (max occlusion 0 / 1) ignore the occluded ones: 100. Hard (max 2)
    counts 160 cars of which 80 are found: thresholds at recall k/40 for k = 0..20
    (score index 0, 3, 7, ..., 79), all with precision 1, and none beyond recall 0.5:
      R40 = 20 / 40 = 50 %,  R11 = 6 / 11 [k = 0, 4, .., 20] = 54.55 %"""
    gt = frames(_cars(80) + _cars(80, occ=2))
    dt = frames([[line(score=0.5 + 0.001 * i)] for i in range(80)] + [[]] * 80)
    _, metrics = kitti_eval(gt, dt, ["Car"])
    assert all(v == pytest.approx(100.0)
               for v in values(metrics, diffs=("easy", "moderate")).values())
    assert all(v == pytest.approx(50.0) for v in values(metrics, diffs=("hard",)).values())
    assert all(v == pytest.approx(600 / 11)
               for v in values(metrics, diffs=("hard",), label="R11").values())
    # found, the occluded cars are TPs in hard and absorbed (not FPs) in easy / moderate
    dt = frames([[line(score=0.5)]] * 160)
    _, metrics = kitti_eval(gt, dt, ["Car"])
    assert all(v == pytest.approx(100.0) for v in metrics.values())


def test_aos_with_flipped_orientation():
    """80 cars found exactly at one score (so all 41 thresholds count the same 80 TPs), 40 of
    them with alpha turned by pi: orientation similarity (1 + cos(pi)) / 2 = 0 for those, 1
    for the others, so AOS = (40 * 1 + 40 * 0) / 80 = 0.5 at every threshold -> 50 %, while
    the 2D AP is 100 %: AOS is half of AP."""
    gt = frames(_cars(80, alpha=0.4))
    dt = frames([[line(alpha=0.4 + (math.pi if i % 2 else 0.0), score=0.6)]
                 for i in range(80)])
    _, metrics = kitti_eval(gt, dt, ["Car"])
    for label in ("R40", "R11"):
        assert all(v == pytest.approx(100.0) for v in values(metrics, label=label).values())
        assert all(v == pytest.approx(50.0)
                   for v in values(metrics, kinds=("aos",), label=label).values())
    # alpha -10 (no orientation) in the results: no AOS (the port's rule)
    dt = frames([[line(alpha=-10, score=0.6)]] * 80)
    _, metrics = kitti_eval(gt, dt, ["Car"])
    assert not any("_aos" in k for k in metrics)


# -------------------------------------------------------------------------- real frame
@REAL_DATA.needs_kitti(shipped=True)
def test_real_frame_labels_as_results(tmp_path):
    """Frame 000008's own labels, written as results with score 1. Its cars by the rules
    (2D height, occlusion, truncation):
      1: occluded 3 -> none;  2: occluded 1, 193 px -> moderate;  3: occluded 3 -> none;
      4: occluded 1, 85 px -> moderate;  5: 39.6 px (<= 40) -> moderate;
      6: 61.9 px, occluded 0 -> easy.
    So easy has 1 valid car, moderate and hard 4. All are found exactly, but with fewer
    than 41 objects the curve has 1 (easy) or 4 points of precision 1, then zeros:
      easy R40 = 0 (precision[1..40] all 0), R11 = 1/11;
      moderate / hard R40 = 3/40 = 7.5 % (precision[1..3]), R11 = 1/11 (precision[0]).
    The same frame listed 41 times (41 easy, 164 moderate cars) gives 100 everywhere."""
    root = REAL_DATA.kitti_root
    labels = (root / "training" / "label_2" / "000008.txt").read_text().splitlines()
    rows = [np.array(r.split()[4:8], float) for r in labels if r.startswith("Car")]
    assert [round(b[3] - b[1], 1) for b in rows] == [181.6, 193.1, 176.6, 85.0, 39.6, 61.9]
    results = tmp_path / "results"
    results.mkdir()
    (results / "000008.txt").write_text("".join(f"{r} 1\n" for r in labels))
    out = evaluate_kitti_det(results, root, "ImageSets/train.txt", ["Car"])
    assert out["frames"] == 1 and out["frames_with_results"] == 1
    m = out["metrics"]
    kinds = ("image", "bev", "3d", "aos")
    for kind in kinds:
        assert m[f"Car_{kind}/easy_R40"] == 0.0
        assert m[f"Car_{kind}/easy_R11"] == pytest.approx(100 / 11)
        for diff in ("moderate", "hard"):
            assert m[f"Car_{kind}/{diff}_R40"] == pytest.approx(7.5)
            assert m[f"Car_{kind}/{diff}_R11"] == pytest.approx(100 / 11)

    gt = read_kitti_label(root / "training" / "label_2" / "000008.txt")
    dt = read_kitti_label(results / "000008.txt")
    _, m = kitti_eval([gt] * 41, [dt] * 41, ["Car"])
    assert all(v == pytest.approx(100.0) for v in values(m, kinds=kinds).values())
    assert all(v == pytest.approx(100.0) for v in values(m, kinds=kinds, label="R11").values())


# ---------------------------------------------------------------------------- the tool
def test_evaluate_tool_kitti_det(tmp_path, capsys):
    """tools/evaluate.py kitti-det on the 80-frame case of test_precision_recall_curve_by_hand
    (R40 83.33 %, R11 84.85 %), then with a malformed result file and a missing label."""
    root = tmp_path / "kitti"
    (root / "training" / "label_2").mkdir(parents=True)
    (root / "ImageSets").mkdir()
    results = tmp_path / "results" / "data"  # the devkit's / OpenPCDet's layout
    results.mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(80)]
    (root / "ImageSets" / "val.txt").write_text("\n".join(ids) + "\n")
    for i, frame in enumerate(ids):
        (root / "training" / "label_2" / f"{frame}.txt").write_text(
            line() + "\n" + "DontCare -1 -1 -10 1000 100 1100 200 -1 -1 -1 -1000 -1000 -1000 "
            "-10\n")
        score = 0.9 + 0.001 * i if i < 40 else 0.1 + 0.001 * (i - 40)
        rows = [line(score=score)]
        if i < 40:
            rows.append(line(bbox=FAR_BBOX, loc=FAR_LOC, score=0.5 + 0.001 * i))
        if i != 7:  # frame 7 has no result file: its car is missed
            (results / f"{frame}.txt").write_text("\n".join(rows) + "\n")
    out = tmp_path / "metrics.json"
    cmd = [sys.executable, "tools/evaluate.py", "kitti-det", "--results",
           str(tmp_path / "results"), "--root", str(root), "--split", "ImageSets/val.txt",
           "--classes", "Car", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "Car AP_R40@0.70, 0.70, 0.70:" in run.stdout
    assert "80 frames (79 with a result file)" in run.stdout
    saved = json.loads(out.read_text())
    assert saved["task"] == "kitti-det" and saved["classes"] == ["Car"]
    # frame 7 has no result file: its car (a high-scoring TP) and its FP are missing, so
    # 39 high TPs, 39 FPs, 40 low TPs for 80 cars. By hand, thresholds (n = 80, 79 TP
    # scores): index 0, the odd indices 1..77 (k = 1..39) and the last, index 78 (k = 40).
    # k <= 19: 2k TPs (index 2k - 1 <= 37, high), no FP -> 1; k = 20: index 39 is the first
    # low TP, the 39 FPs count -> 40 / 79; k = 21..39: 2k / (2k + 39); k = 40: 79 / 118.
    # Monotone: 1 for k <= 19, 79/118 (the largest of the rest) for k = 20..40:
    #   R40 = (19 + 21 * 79/118) / 40,  R11 = (5 [k = 0..16] + 6 * 79/118 [k = 20..40]) / 11
    for kind in ("image", "bev", "3d", "aos"):
        for diff in DIFFS:
            assert saved["metrics"][f"Car_{kind}/{diff}_R40"] == pytest.approx(
                100 * (19 + 21 * 79 / 118) / 40)
            assert saved["metrics"][f"Car_{kind}/{diff}_R11"] == pytest.approx(
                100 * (5 + 6 * 79 / 118) / 11)

    # bad input, through the tool's main() in this process (no second interpreter start)
    evaluate = _load_tool()
    args = cmd[2:]
    (results / "000003.txt").write_text(line(score=0.9) + "\nCar 0 0 0.5 1 2 3 4 x\n")
    assert evaluate.main(args) == 1
    err = capsys.readouterr().err
    assert f"{results / '000003.txt'}: line 2: 9 fields" in err
    os.remove(results / "000003.txt")
    os.remove(root / "training" / "label_2" / "000005.txt")
    assert evaluate.main(args) == 1
    assert "label_2/000005.txt: KITTI label file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(args[:-4] + ["--classes", "Bus"])
    assert exit_info.value.code == 2 and "unknown class 'Bus'" in capsys.readouterr().err


def _load_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lidarcl_tool_evaluate",
                                                  os.path.join(REPO, "tools", "evaluate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
