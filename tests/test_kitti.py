"""KITTI converter and dataset, checked on the shipped real frame 000008 (located by
tests/conftest.py's ``REAL_DATA``; the tests skip on another KITTI copy).

References computed here, independently of lidarcl.datasets.kitti_converter: the calibration
and label text are re-read with a few lines of numpy, camera-frame boxes are built with the
KITTI devkit's own construction (corners (+-l/2, -h..0, +-w/2) rotated by R_y(ry)).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from lidarcl.datasets.io import load_points
from lidarcl.datasets.kitti_converter import (
    KittiCalib,
    camera_boxes_to_lidar,
    create_kitti_infos,
    kitti_difficulty,
    lidar_boxes_to_camera,
    parse_calib,
    parse_label,
    png_size,
)
from lidarcl.datasets.kitti_dataset import KittiDataset
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.registry import DATASETS
from lidarcl.structures.boxes import box_corners, points_in_boxes

KITTI_ROOT = REAL_DATA.kitti_root
FRAME = "000008"
# the frame's own values, and copies / conversions of the whole root: the shipped frame only
pytestmark = REAL_DATA.needs_kitti(shipped=True)

IMAGE_W, IMAGE_H = 1242, 375


# ------------------------------------------------------------------ independent readers
def _ref_calib():
    mats = {}
    for line in (KITTI_ROOT / f"training/calib/{FRAME}.txt").read_text().splitlines():
        if ":" in line:
            key, vals = line.split(":", 1)
            mats[key] = np.array(vals.split(), dtype=np.float64)
    pad = np.eye(4)
    r0, tr, p2 = pad.copy(), pad.copy(), pad.copy()
    r0[:3, :3] = mats["R0_rect"].reshape(3, 3)
    tr[:3, :4] = mats["Tr_velo_to_cam"].reshape(3, 4)
    p2[:3, :4] = mats["P2"].reshape(3, 4)
    return p2, r0 @ tr  # cam2img, lidar2cam


def _ref_labels():
    rows = [line.split() for line in
            (KITTI_ROOT / f"training/label_2/{FRAME}.txt").read_text().splitlines() if line]
    cars = [r for r in rows if r[0] != "DontCare"]
    dontcare = [r for r in rows if r[0] == "DontCare"]
    v = np.array([r[1:15] for r in cars], dtype=np.float64)
    return {"names": [r[0] for r in cars], "truncated": v[:, 0], "occluded": v[:, 1],
            "bbox": v[:, 3:7], "hwl": v[:, 7:10], "loc": v[:, 10:13], "ry": v[:, 13],
            "dontcare_bbox": np.array([r[4:8] for r in dontcare], dtype=np.float64)}


def _rot_y(ry):
    c, s = np.cos(ry), np.sin(ry)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


@pytest.fixture(scope="module")
def converted():
    calib = parse_calib(KITTI_ROOT / f"training/calib/{FRAME}.txt")
    labels = parse_label(KITTI_ROOT / f"training/label_2/{FRAME}.txt")
    cars = labels.select([n != "DontCare" for n in labels.names])
    boxes = camera_boxes_to_lidar(cars.location, cars.dimensions, cars.rotation_y, calib)
    points, _ = load_points(KITTI_ROOT / f"training/velodyne/{FRAME}.bin", 4)
    return calib, labels, boxes, points


def _copy_tree(dst: Path) -> Path:
    """A writable copy of the real frame (the shipped files are read-only)."""
    for src in KITTI_ROOT.rglob("*"):
        if src.is_file():
            out = dst / src.relative_to(KITTI_ROOT)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dst


# --------------------------------------------------------------------------------- parsing
def test_parse_calib_and_labels(converted):
    calib, labels, boxes, _ = converted
    cam2img, lidar2cam = _ref_calib()
    np.testing.assert_allclose(calib.cam2img, cam2img)
    np.testing.assert_allclose(calib.lidar2cam, lidar2cam)
    np.testing.assert_allclose(calib.lidar2img, cam2img @ lidar2cam)
    assert calib.Tr_imu_to_velo.shape == (3, 4)
    assert labels.names.count("Car") == 6 and labels.names.count("DontCare") == 4
    assert boxes.shape == (6, 7)
    assert png_size(KITTI_ROOT / f"training/image_2/{FRAME}.png") == (IMAGE_H, IMAGE_W)


# ------------------------------------------------------------------------ box conversion
def test_boxes_project_onto_labelled_2d_boxes(converted):
    """Box corners -> P2 @ R0 @ Tr -> min/max clipped to the image vs label_2's 2D box."""
    _, _, boxes, _ = converted
    cam2img, lidar2cam = _ref_calib()
    ref = _ref_labels()
    lidar2img = cam2img @ lidar2cam
    ious = []
    for box, bbox in zip(boxes, ref["bbox"]):
        corners = box_corners(box[None])[0]
        cam = corners @ lidar2img[:3, :3].T + lidar2img[:3, 3]
        assert (cam[:, 2] > 0).all()
        uv = cam[:, :2] / cam[:, 2:3]
        lo = np.clip(uv.min(0), 0, [IMAGE_W - 1, IMAGE_H - 1])
        hi = np.clip(uv.max(0), 0, [IMAGE_W - 1, IMAGE_H - 1])
        ious.append(_iou(np.r_[lo, hi], bbox))
    ious = np.array(ious)
    print("projected-box IoU per car:", np.round(ious, 4), "occluded:", ref["occluded"])
    unoccluded = ref["occluded"] == 0
    assert unoccluded.sum() == 2
    assert (ious[unoccluded] > 0.7).all()
    # in fact every car of this frame lands on its box, occluded or not
    assert (ious > 0.9).all()


def test_box_round_trips_to_camera_label(converted):
    """LiDAR box -> camera label, computed here from the raw calibration."""
    _, _, boxes, _ = converted
    _, lidar2cam = _ref_calib()
    ref = _ref_labels()
    centre = boxes[:, :3] @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
    bottom = centre + np.c_[np.zeros(6), boxes[:, 5] / 2, np.zeros(6)]
    np.testing.assert_allclose(bottom, ref["loc"], atol=1e-9)
    np.testing.assert_allclose(boxes[:, [5, 4, 3]], ref["hwl"])  # h w l
    heading = np.c_[np.cos(boxes[:, 6]), np.sin(boxes[:, 6]), np.zeros(6)] @ lidar2cam[:3, :3].T
    # the devkit's heading (object +x) in the camera frame is (cos ry, 0, -sin ry)
    ry = np.arctan2(-heading[:, 2], heading[:, 0])
    np.testing.assert_allclose(_wrap(ry - ref["ry"]), 0, atol=1e-3)
    # the library's inverse agrees too
    calib = parse_calib(KITTI_ROOT / f"training/calib/{FRAME}.txt")
    loc, hwl, ry2 = lidar_boxes_to_camera(boxes, calib)
    np.testing.assert_allclose(loc, ref["loc"], atol=1e-9)
    np.testing.assert_allclose(hwl, ref["hwl"])
    np.testing.assert_allclose(_wrap(ry2 - ref["ry"]), 0, atol=1e-3)


def test_yaw_convention_on_axis_aligned_calibration():
    """With an exact axis permutation (cam x = -lidar y, cam y = -lidar z, cam z = lidar x),
    ry = 0 (object facing camera +x, i.e. to the right) must give yaw = -pi/2, and a car
    driving straight ahead (ry = -pi/2) yaw = 0; in general yaw = -ry - pi/2."""
    tr = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]], dtype=np.float64)
    p = np.c_[np.eye(3), np.zeros(3)]
    calib = KittiCalib(P0=p, P1=p, P2=p, P3=p, R0_rect=np.eye(3), Tr_velo_to_cam=tr)
    ry = np.array([0.0, -np.pi / 2, np.pi / 2, 1.0, -2.5])
    loc = np.array([[1.0, 2.0, 10.0]] * 5)
    boxes = camera_boxes_to_lidar(loc, np.array([[1.5, 1.6, 4.0]] * 5), ry, calib)
    np.testing.assert_allclose(_wrap(boxes[:, 6] - (-ry - np.pi / 2)), 0, atol=1e-12)
    np.testing.assert_allclose(boxes[0, 6], -np.pi / 2)
    np.testing.assert_allclose(boxes[1, 6], 0, atol=1e-12)
    # bottom centre at camera y = 2 (2 m below the camera) -> gravity centre z = -2 + h/2
    np.testing.assert_allclose(boxes[0, :3], [10.0, -1.0, -2.0 + 0.75])
    np.testing.assert_allclose(boxes[0, 3:6], [4.0, 1.6, 1.5])


def test_yaw_matches_closed_form_on_real_calibration(converted):
    _, labels, boxes, _ = converted
    ry = labels.rotation_y[[n != "DontCare" for n in labels.names]]
    np.testing.assert_allclose(_wrap(boxes[:, 6] - (-ry - np.pi / 2)), 0, atol=1e-3)


def test_points_in_lidar_box_match_camera_frame_box(converted):
    """Points inside each car, LiDAR frame vs the camera-frame box (devkit construction).

    A 7-DOF LiDAR box keeps only the yaw: the camera's small tilt against the LiDAR's z
    axis (~0.85 deg here) moves box faces by at most tilt x half-diagonal. So: every point
    well inside the camera box (by that margin) is in the LiDAR box, every LiDAR-box point
    is inside the camera box grown by it, and the two sets differ by under 5 % (measured on
    this frame: 12, 23, 3, 4, 1, 7 points of 1424, 1940, 878, 668, 53, 164)."""
    calib, labels, boxes, points = converted
    _, lidar2cam = _ref_calib()
    ref = _ref_labels()
    up_in_lidar = np.linalg.inv(lidar2cam)[:3, :3] @ np.array([0.0, -1.0, 0.0])
    tilt = np.arccos(up_in_lidar[2] / np.linalg.norm(up_in_lidar))
    assert tilt < 0.02
    inside_lidar = points_in_boxes(points, boxes)
    pts_cam = points[:, :3].astype(np.float64) @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
    for i in range(6):
        h, w, l = ref["hwl"][i]
        local = (pts_cam - ref["loc"][i]) @ _rot_y(ref["ry"][i])  # = R_y^T (p - loc)
        margin = tilt * 0.5 * np.sqrt(h * h + w * w + l * l) + 1e-6

        def in_cam_box(e, local=local, h=h, w=w, l=l):
            return ((np.abs(local[:, 0]) <= l / 2 + e) & (local[:, 1] <= e)
                    & (local[:, 1] >= -h - e) & (np.abs(local[:, 2]) <= w / 2 + e))

        ref_inside = in_cam_box(0.0)
        assert ref_inside.sum() > 40
        assert not (in_cam_box(-margin) & ~inside_lidar[:, i]).any()
        assert not (inside_lidar[:, i] & ~in_cam_box(margin)).any()
        assert (ref_inside != inside_lidar[:, i]).sum() <= 0.05 * ref_inside.sum()


def test_difficulty_rules():
    # easy, moderate (occluded 1), hard (truncated 0.4), none (too small), none (occluded 3)
    bbox = np.array([[0, 0, 10, 50], [0, 0, 10, 50], [0, 0, 10, 30], [0, 0, 10, 20],
                     [0, 0, 10, 50]], dtype=np.float64)
    occ = np.array([0, 1, 0, 0, 3])
    trunc = np.array([0.0, 0.0, 0.4, 0.0, 0.0])
    assert kitti_difficulty(bbox, occ, trunc).tolist() == [0, 1, 2, -1, -1]


# ------------------------------------------------------------------- info index, dataset
def test_create_infos_and_dataset_round_trip(tmp_path, converted):
    calib, labels, boxes, points = converted
    paths = create_kitti_infos(KITTI_ROOT, tmp_path, prefix="kitti")
    assert paths == [str(tmp_path / "kitti_infos_train.json")]
    data = json.loads(Path(paths[0]).read_text())
    assert data["metadata"]["dataset"] == "kitti"
    info = data["infos"][0]
    assert info["token"] == FRAME and info["lidar_path"] == f"training/velodyne/{FRAME}.bin"
    assert info["num_point_features"] == 4 and info["sweeps"] == []
    assert info["lidar2ego"] == np.eye(4).tolist() == info["ego2global"]
    cam = info["cams"]["CAM2"]
    assert cam["path"] == f"training/image_2/{FRAME}.png"
    assert (cam["height"], cam["width"]) == (IMAGE_H, IMAGE_W)
    cam2img, lidar2cam = _ref_calib()
    np.testing.assert_allclose(cam["cam2img"], cam2img)
    np.testing.assert_allclose(cam["lidar2cam"], lidar2cam)
    np.testing.assert_allclose(cam["lidar2img"], cam2img @ lidar2cam)
    assert info["gt_names"] == ["Car"] * 6
    assert np.isnan(np.array(info["gt_velocity"], dtype=float)).all()  # null in strict JSON
    assert info["num_lidar_pts"] == points_in_boxes(points, boxes).sum(0).tolist()
    # DontCare kept apart from the boxes
    assert info["ignored"]["names"] == ["DontCare"] * 4
    np.testing.assert_allclose(info["ignored"]["bboxes_2d"], _ref_labels()["dontcare_bbox"])
    kitti = info["kitti"]
    np.testing.assert_allclose(kitti["bboxes_2d"], _ref_labels()["bbox"])
    assert kitti["occluded"] == [3, 1, 3, 1, 0, 0]
    # car 0: truncated 0.88 and car 2: occluded 3 -> no difficulty; the 2 cars unoccluded
    # with >= 40 px: car 5 (62 px) easy, car 4 (39.6 px) moderate
    assert kitti["difficulty"] == [-1, 1, -1, 1, 1, 0]

    ds = DATASETS.build(dict(type="KittiDataset", ann_file=paths[0],
                             data_root=str(KITTI_ROOT)))
    assert isinstance(ds, KittiDataset) and len(ds) == 1
    assert ds.classes == ("Pedestrian", "Cyclist", "Car")
    sample = ds[0]
    np.testing.assert_allclose(sample["gt_boxes"], boxes, atol=1e-5)
    assert sample["gt_labels"].tolist() == [2] * 6
    assert Path(sample["lidar_path"]).is_file()
    assert Path(sample["cams"]["CAM2"]["path"]).is_file()
    np.testing.assert_allclose(sample["cams"]["CAM2"]["lidar2img"], cam2img @ lidar2cam)
    assert sample["kitti"]["bboxes_2d"].shape == (6, 4)
    assert sample["ignored"]["bboxes_2d"].shape == (4, 4)

    # classes without a Car: boxes filtered out, extras too; filter_empty_gt drops the frame
    ds_ped = KittiDataset(ann_file=paths[0], data_root=str(KITTI_ROOT),
                          classes=("Pedestrian",))
    s = ds_ped[0]
    assert len(s["gt_boxes"]) == 0 and len(s["kitti"]["difficulty"]) == 0
    # (serialize_data=False: mmengine's serialisation cannot hold an empty list)
    assert len(KittiDataset(ann_file=paths[0], data_root=str(KITTI_ROOT),
                            classes=("Pedestrian",), filter_empty_gt=True,
                            serialize_data=False)) == 0
    with pytest.raises(ValueError, match="DontCare"):
        KittiDataset(ann_file=paths[0], data_root=str(KITTI_ROOT), classes=("DontCare",))


def test_test_split_without_labels(tmp_path):
    root = _copy_tree(tmp_path / "kitti")
    for sub, ext in (("velodyne", "bin"), ("image_2", "png"), ("calib", "txt")):
        (root / "testing" / sub).mkdir(parents=True)
        shutil.copyfile(root / "training" / sub / f"{FRAME}.{ext}",
                        root / "testing" / sub / f"{FRAME}.{ext}")
    (root / "ImageSets/test.txt").write_text(f"{FRAME}\n")
    paths = create_kitti_infos(root, tmp_path / "out", prefix="k")
    assert [Path(p).name for p in paths] == ["k_infos_train.json", "k_infos_test.json"]
    info = json.loads(Path(paths[1]).read_text())["infos"][0]
    assert info["lidar_path"] == f"testing/velodyne/{FRAME}.bin"
    assert info["gt_boxes"] == [] and info["gt_names"] == [] and info["ignored"]["names"] == []
    ds = KittiDataset(ann_file=paths[1], data_root=str(root), test_mode=True)
    assert ds[0]["gt_boxes"].shape == (0, 7)


# ------------------------------------------------------------------------------ bad input
def _expect_error(root, out, path, *words, cls=DataError):
    with pytest.raises(cls) as exc:
        create_kitti_infos(root, out)
    msg = str(exc.value)
    assert msg.startswith(str(path)), msg
    assert os.fspath(exc.value.path) == str(path)
    for w in words:
        assert w in msg, msg
    return msg


def test_calibration_wrong_shape(tmp_path):
    root = _copy_tree(tmp_path / "kitti")
    calib = root / f"training/calib/{FRAME}.txt"
    lines = calib.read_text().splitlines()
    lines = [" ".join(l.split()[:-1]) if l.startswith("P2:") else l for l in lines]
    calib.write_text("\n".join(lines) + "\n")
    _expect_error(root, tmp_path / "out", calib, "P2", "11 values", "3x4")


def test_calibration_missing_key(tmp_path):
    root = _copy_tree(tmp_path / "kitti")
    calib = root / f"training/calib/{FRAME}.txt"
    calib.write_text("\n".join(l for l in calib.read_text().splitlines()
                               if not l.startswith("R0_rect")) + "\n")
    _expect_error(root, tmp_path / "out", calib, "R0_rect")


def test_truncated_velodyne(tmp_path):
    root = _copy_tree(tmp_path / "kitti")
    lidar = root / f"training/velodyne/{FRAME}.bin"
    lidar.write_bytes(lidar.read_bytes()[:-6])
    _expect_error(root, tmp_path / "out", lidar, "truncated")


def test_unknown_class(tmp_path):
    root = _copy_tree(tmp_path / "kitti")
    label = root / f"training/label_2/{FRAME}.txt"
    lines = label.read_text().splitlines()
    lines[1] = lines[1].replace("Car", "Bus", 1)
    label.write_text("\n".join(lines) + "\n")
    _expect_error(root, tmp_path / "out", label, "line 2", "'Bus'")


def test_malformed_label_line(tmp_path):
    root = _copy_tree(tmp_path / "kitti")
    label = root / f"training/label_2/{FRAME}.txt"
    lines = label.read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:12])
    label.write_text("\n".join(lines) + "\n")
    _expect_error(root, tmp_path / "out", label, "line 3", "12 fields")
    lines = label.read_text().splitlines()
    lines[2] = lines[0].replace("0.88", "x.88", 1)
    label.write_text("\n".join(lines) + "\n")
    _expect_error(root, tmp_path / "out", label, "line 3", "non-numeric")


def test_missing_image(tmp_path):
    root = _copy_tree(tmp_path / "kitti")
    image = root / f"training/image_2/{FRAME}.png"
    image.unlink()
    _expect_error(root, tmp_path / "out", image, "image", "not found", cls=DataFileNotFound)
    image.write_bytes(b"GIF89a not a png at all.")
    _expect_error(root, tmp_path / "out", image, "not a PNG")


def test_no_split_files(tmp_path):
    root = _copy_tree(tmp_path / "kitti")
    (root / "ImageSets/train.txt").unlink()
    with pytest.raises(DataError, match="split files"):
        create_kitti_infos(root, tmp_path / "out")
