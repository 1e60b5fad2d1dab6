"""Rotated-box ops (BEV / 3D IoU, rotated NMS, points in boxes): the compiled CPU kernels
against hand-computed cases, against the pure-PyTorch references (a different polygon
algorithm), against shapely's polygon intersection, and points in boxes against the numpy
rule of lidarcl.structures.boxes; degenerate cases (identical boxes, touching edges,
zero-area boxes, yaw +-pi) and argument checks."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

import lidarcl.ops as ops
from lidarcl.ops._extension import compiled
from lidarcl.structures.boxes import box_corners, points_in_boxes

pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),  # no silent fallback
              pytest.mark.skipif(compiled() is None, reason="lidarcl._C not built")]

DTYPES = [torch.float32, torch.float64]


def B(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def random_boxes(rng, n, spread=6.0, min_size=0.2):
    centre = rng.uniform(-spread, spread, size=(n, 3))
    size = rng.uniform(min_size, 5.0, size=(n, 3))
    yaw = rng.uniform(-math.pi, math.pi, size=(n, 1))
    return torch.from_numpy(np.concatenate([centre, size, yaw], 1))


def shapely_iou(a, b, mode):
    pa = Polygon(box_corners(a[None].numpy())[0, [0, 4, 5, 1], :2])
    pb = Polygon(box_corners(b[None].numpy())[0, [0, 4, 5, 1], :2])
    inter = pa.intersection(pb).area
    sa, sb = float(a[3] * a[4]), float(b[3] * b[4])
    if mode == "3d":
        top = min(a[2] + a[5] / 2, b[2] + b[5] / 2)
        bottom = max(a[2] - a[5] / 2, b[2] - b[5] / 2)
        inter *= max(float(top - bottom), 0.0)
        sa, sb = sa * float(a[5]), sb * float(b[5])
    union = sa + sb - inter
    return inter / union if union > 0 else 0.0


# ------------------------------------------------------------------ IoU hand cases
HAND_BEV = [
    # identical boxes
    (B([0, 0, 0, 4, 2, 1, 0.3]), B([0, 0, 0, 4, 2, 1, 0.3]), 1.0),
    # disjoint
    (B([0, 0, 0, 2, 2, 1, 0]), B([10, 0, 0, 2, 2, 1, 0]), 0.0),
    # axis-aligned overlap: 3 x 2 = 6 of 8 + 8 - 6
    (B([0, 0, 0, 4, 2, 1, 0]), B([1, 0, 0, 4, 2, 1, 0]), 0.6),
    # a 2 x 2 square and its 45-degree rotation: a regular octagon of area 8 (sqrt 2 - 1)
    # over 8 - 8 (sqrt 2 - 1): IoU = 1 / sqrt 2
    (B([0, 0, 0, 2, 2, 1, 0]), B([0, 0, 0, 2, 2, 1, math.pi / 4]), 1 / math.sqrt(2)),
    # touching edges (x = 1): zero intersection
    (B([0, 0, 0, 2, 2, 1, 0]), B([2, 0, 0, 2, 2, 1, 0]), 0.0),
    # touching corners only
    (B([0, 0, 0, 2, 2, 1, 0]), B([2, 2, 0, 2, 2, 1, 0]), 0.0),
    # yaw +pi and -pi are the same rectangle; yaw 0 and pi too (a rectangle is symmetric)
    (B([0, 0, 0, 4, 2, 1, math.pi]), B([0, 0, 0, 4, 2, 1, -math.pi]), 1.0),
    (B([0, 0, 0, 4, 2, 1, 0]), B([0, 0, 0, 4, 2, 1, math.pi]), 1.0),
    # a 4 x 2 box and its 90-degree rotation: a 2 x 2 square in common, 4 / (8 + 8 - 4)
    (B([0, 0, 0, 4, 2, 1, 0]), B([0, 0, 0, 4, 2, 1, math.pi / 2]), 1 / 3),
    # contained: 1 x 1 inside 4 x 4
    (B([0, 0, 0, 4, 4, 1, 0.2]), B([0.5, -0.5, 0, 1, 1, 1, 1.1]), 1 / 16),
    # zero-area box (w = 0) against a normal one, and two identical zero-area boxes
    (B([0, 0, 0, 4, 0, 1, 0]), B([0, 0, 0, 2, 2, 1, 0]), 0.0),
    (B([0, 0, 0, 4, 0, 1, 0]), B([0, 0, 0, 4, 0, 1, 0]), 0.0),
    (B([0, 0, 0, 0, 0, 1, 0]), B([0, 0, 0, 0, 0, 1, 0]), 0.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(HAND_BEV)))
def test_bev_iou_hand_cases(case, dtype):
    a, b, expect = HAND_BEV[case]
    for fn in (ops.box_iou_bev, lambda x, y: ops.box_iou_reference(x, y, "bev")):
        got = fn(a.to(dtype), b.to(dtype))
        assert got.dtype == dtype and got.shape == (1, 1)
        assert float(got) == pytest.approx(expect, abs=1e-6 if dtype == torch.float32 else 1e-12)
        # symmetric
        assert float(fn(b.to(dtype), a.to(dtype))) == pytest.approx(float(got), abs=1e-6)


def test_3d_iou_hand_cases():
    # BEV overlap 1 x 2 = 2, vertical overlap 1 (z in [-1, 1] and [0, 2]): 2 / (8 + 8 - 2)
    a, b = B([0, 0, 0, 2, 2, 2, 0]), B([1, 0, 1, 2, 2, 2, 0])
    assert float(ops.box_iou_3d(a, b)) == pytest.approx(1 / 7, abs=1e-12)
    assert float(ops.box_iou_reference(a, b, "3d")) == pytest.approx(1 / 7, abs=1e-12)
    # same BEV footprint, stacked: touching faces (z in [-1, 1] and [1, 3]) give 0
    assert float(ops.box_iou_3d(a, B([0, 0, 2, 2, 2, 2, 0]))) == 0.0
    # 45-degree case with half the height in common: octagon 8 (sqrt 2 - 1) x 1 over
    # 4 x 2 + 4 x 1 - that
    inter = 8 * (math.sqrt(2) - 1)
    got = ops.box_iou_3d(B([0, 0, 0, 2, 2, 2, 0]), B([0, 0, 0.5, 2, 2, 1, math.pi / 4]))
    assert float(got) == pytest.approx(inter * 1.0 / (8 + 4 - inter * 1.0), abs=1e-12)
    # zero height: zero volume, IoU 0
    assert float(ops.box_iou_3d(a, B([0, 0, 0, 2, 2, 0, 0]))) == 0.0


@pytest.mark.parametrize("mode", ["bev", "3d"])
def test_iou_random_kernel_reference_shapely(mode):
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 60), random_boxes(rng, 50)
    kernel = ops.box_iou(a, b, mode)
    reference = ops.box_iou_reference(a, b, mode)
    assert (kernel > 0).sum() > 100  # the sets overlap often enough to test anything
    torch.testing.assert_close(kernel, reference, rtol=0, atol=1e-9)
    for i, j in zip(*np.nonzero(kernel.numpy() > 0)[:2]):
        if (i + j) % 5:
            continue
        assert float(kernel[i, j]) == pytest.approx(shapely_iou(a[i], b[j], mode), abs=1e-9)
    # float32 input: IoU computed in float64, returned in float32
    k32 = ops.box_iou(a.float(), b.float(), mode)
    assert k32.dtype == torch.float32
    torch.testing.assert_close(k32.double(), reference, rtol=0, atol=1e-5)


def test_iou_nearly_coincident_and_many_vertices():
    """Near-degenerate pairs (tiny offsets and rotations, huge aspect ratios) against
    shapely: the clipping must not lose or invent area."""
    rng = np.random.default_rng(1)
    base = random_boxes(rng, 40)
    other = base.clone()
    other[:, :2] += torch.from_numpy(rng.normal(scale=1e-7, size=(40, 2)))
    other[:, 6] += torch.from_numpy(rng.normal(scale=1e-7, size=40))
    slim = base.clone()
    slim[:, 3] *= 50
    slim[:, 4] /= 50
    for a, b in ((base, other), (base, slim)):
        got = torch.diagonal(ops.box_iou_bev(a, b))
        for i in range(len(a)):
            assert float(got[i]) == pytest.approx(shapely_iou(a[i], b[i], "bev"), abs=1e-6)


def test_iou_empty_and_extra_columns():
    rng = np.random.default_rng(2)
    a = random_boxes(rng, 5)
    assert ops.box_iou_bev(a, a[:0]).shape == (5, 0)
    assert ops.box_iou_3d(a[:0], a).shape == (0, 5)
    with_velocity = torch.cat([a, torch.randn(5, 2, dtype=a.dtype)], 1)
    torch.testing.assert_close(ops.box_iou_bev(with_velocity, a), ops.box_iou_bev(a, a))


def test_iou_thread_count_invariant():
    rng = np.random.default_rng(3)
    a = random_boxes(rng, 300)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.box_iou_bev(a, a)
        torch.set_num_threads(2)
        two = ops.box_iou_bev(a, a)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


# ------------------------------------------------------------------ NMS
def test_nms_hand_case_chain():
    """A (0.9) overlaps B (0.8) with IoU 0.6, B overlaps C (0.7) with IoU 0.6, A and C are
    disjoint: at threshold 0.5 greedy NMS keeps A and C (B is removed by A, so it cannot
    remove C)."""
    boxes = B([0, 0, 0, 4, 2, 1, 0], [1, 0, 0, 4, 2, 1, 0], [2, 0, 0, 4, 2, 1, 0])
    iou = ops.box_iou_bev(boxes, boxes)
    assert float(iou[0, 1]) == pytest.approx(0.6) and float(iou[1, 2]) == pytest.approx(0.6)
    # A and C overlap by 2 x 2 = 4 of 12: IoU 1/3 < 0.5
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert ops.nms_bev(boxes, scores, 0.5).tolist() == [0, 2]
    # at 0.3 C is removed by A (1/3 > 0.3)
    assert ops.nms_bev(boxes, scores, 0.3).tolist() == [0]
    # scores reversed: C first, then B removed by C, then A kept
    assert ops.nms_bev(boxes, scores.flip(0), 0.5).tolist() == [2, 0]
    # "greater than": identical boxes at threshold 1.0 are both kept
    twins = B([0, 0, 0, 4, 2, 1, 0], [0, 0, 0, 4, 2, 1, 0])
    assert ops.nms_bev(twins, torch.tensor([0.5, 0.5]), 1.0).tolist() == [0, 1]
    assert ops.nms_bev(twins, torch.tensor([0.5, 0.5]), 0.99).tolist() == [0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.7])
def test_nms_random_against_reference(dtype, threshold):
    rng = np.random.default_rng(4)
    # clusters of jittered boxes, as a detector's raw output
    centres = random_boxes(rng, 30, spread=30)
    boxes = centres.repeat_interleave(8, 0)
    boxes[:, :2] += torch.from_numpy(rng.normal(scale=0.4, size=(len(boxes), 2)))
    boxes[:, 6] += torch.from_numpy(rng.normal(scale=0.2, size=len(boxes)))
    scores = torch.from_numpy(rng.uniform(size=len(boxes)))
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    keep = ops.nms_bev(boxes, scores, threshold)
    expect = ops.nms_bev_reference(boxes, scores, threshold)
    assert keep.tolist() == expect.tolist()
    assert 30 <= len(keep) < len(boxes)
    kept_iou = ops.box_iou_bev(boxes[keep], boxes[keep])
    assert float((kept_iou - torch.eye(len(keep), dtype=dtype)).max()) <= threshold
    assert bool((scores[keep][:-1] >= scores[keep][1:]).all())
    # pre / post max size
    assert ops.nms_bev(boxes, scores, threshold, post_max_size=5).tolist() == keep[:5].tolist()
    top = torch.sort(scores, descending=True, stable=True).indices[:40]
    expect_pre = top[ops.nms_bev_reference(boxes[top], scores[top], threshold)]
    assert ops.nms_bev(boxes, scores, threshold, pre_max_size=40).tolist() == expect_pre.tolist()


def test_nms_empty_and_bad_arguments():
    assert ops.nms_bev(torch.zeros(0, 7), torch.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match="scores"):
        ops.nms_bev(torch.zeros(3, 7), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        ops.nms_bev(torch.zeros(3, 7), torch.zeros(3), 1.5)


# ------------------------------------------------------------------ points in boxes
@pytest.mark.parametrize("dtype", DTYPES)
def test_points_in_boxes_against_numpy_rule(dtype):
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 25, spread=8)
    points = torch.from_numpy(rng.uniform(-10, 10, size=(4000, 4)))
    boxes, points = boxes.to(dtype), points.to(dtype)
    expect = points_in_boxes(points.double().numpy(), boxes.double().numpy())
    got = ops.points_in_boxes_all(points, boxes)
    assert got.dtype == torch.bool and got.shape == (4000, 25)
    assert expect.sum() > 100
    assert np.array_equal(got.numpy(), expect)
    assert torch.equal(ops.points_in_boxes_reference(points, boxes), got)
    first = ops.points_in_boxes_first(points, boxes)
    expect_first = np.where(expect.any(1), expect.argmax(1), -1)
    assert np.array_equal(first.numpy(), expect_first)


def test_points_on_faces_count_as_inside():
    box = B([1, 2, 0.5, 4, 2, 1, 0])
    pts = B([3, 2, 0.5], [-1, 2, 0.5], [1, 3, 0.5], [1, 1, 0.5], [1, 2, 1.0], [1, 2, 0.0],
            [3, 3, 1.0],  # a corner
            [3.0000001, 2, 0.5], [1, 2, 1.0000001])
    got = ops.points_in_boxes_all(pts, box)[:, 0].tolist()
    assert got == [True] * 7 + [False, False]
    assert ops.points_in_boxes_first(pts, torch.cat([box, box])).tolist() == [0] * 7 + [-1, -1]
    # a rotated box: the point (0, 1.5) of the frame rotated by 90 degrees
    rotated = B([0, 0, 0, 4, 2, 1, math.pi / 2])
    assert ops.points_in_boxes_all(B([0, 1.5, 0], [1.5, 0, 0]), rotated)[:, 0].tolist() == \
        [True, False]


def test_points_in_boxes_real_frame_annotations(real_nuscenes_frame):
    """On the real nuScenes keyframe: the kernel's counts of LiDAR points per annotation box
    equal the numpy rule's."""
    points, boxes = real_nuscenes_frame
    got = ops.points_in_boxes_all(torch.from_numpy(points), torch.from_numpy(boxes))
    assert np.array_equal(got.numpy(), points_in_boxes(points, boxes))
    assert int(got.any(1).sum()) > 100


@pytest.fixture(scope="module")
def real_nuscenes_frame(real_data):
    """Points (N, 5) and annotation boxes (LiDAR frame, from frame.json) of the shipped
    nuScenes keyframe."""
    root = real_data.require_nuscenes(shipped=True)
    frame = json.loads((root / "frame.json").read_text())
    points = np.fromfile(root / frame["lidar_file"], dtype=np.float32).reshape(-1, 5)
    boxes = np.array([b["box_lidar"] for b in frame["boxes"]], dtype=np.float64)[:, :7]
    return points, boxes


def test_bad_boxes_name_the_problem():
    good = B([0, 0, 0, 1, 1, 1, 0])
    with pytest.raises(ValueError, match=r"boxes_a must have shape \(N, >=7\)"):
        ops.box_iou_bev(torch.zeros(2, 6), good)
    with pytest.raises(ValueError, match="row 1 has a negative size"):
        ops.box_iou_bev(good, B([0, 0, 0, 1, 1, 1, 0], [0, 0, 0, -1, 1, 1, 0]))
    with pytest.raises(ValueError, match="row 0 has a non-finite value"):
        ops.points_in_boxes_all(torch.zeros(3, 3), B([0, 0, float("nan"), 1, 1, 1, 0]))
    with pytest.raises(TypeError, match="floating-point"):
        ops.box_iou_3d(torch.zeros(2, 7, dtype=torch.int64), good)
    with pytest.raises(ValueError, match="mode"):
        ops.box_iou(good, good, "2d")
