"""Transforms: loading (points, sweeps, images, lidarseg), filters, augmentations (checked
on the real nuScenes keyframe: pixels and box contents unchanged), packing and collate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from conftest import REAL_DATA
from lidarcl.datasets.collate import collate_samples
from lidarcl.datasets.transforms import (GlobalRotScaleTrans, LoadImages, LoadLidarsegLabels,
                                         LoadPoints, LoadSweeps, ObjectMinPointsFilter,
                                         ObjectNameFilter, ObjectRangeFilter, PackSample,
                                         PointDropout, PointJitter, PointSample,
                                         PointShuffle, PointsInCameraFOV, PointsRangeFilter,
                                         RandomFlip3D, apply_lidar_transform)
from lidarcl.structures.boxes import points_in_boxes
from lidarcl.structures.camera import points_to_image, project_points, visible_in_image

NUSC = REAL_DATA.nuscenes_root


# ---------------------------------------------------------------- helpers
def real_sample() -> dict:
    """A sample dict built by hand from the real nuScenes keyframe's frame.json."""
    REAL_DATA.require_nuscenes(shipped=True)  # frame.json: the shipped frame only
    frame = json.loads((NUSC / "frame.json").read_text())
    cams = {}
    for name, cam in frame["cameras"].items():
        cam2img = np.eye(4)
        cam2img[:3, :3] = np.asarray(cam["cam2img"])
        lidar2cam = np.asarray(cam["lidar2cam"], dtype=np.float64)
        cams[name] = {"path": str(NUSC / cam["file"]), "height": cam["height"],
                      "width": cam["width"], "cam2img": cam2img, "lidar2cam": lidar2cam,
                      "lidar2img": cam2img @ lidar2cam}
    boxes = np.array([b["box_lidar"] for b in frame["boxes"]], dtype=np.float32)
    vel = np.array([b["velocity_lidar"] for b in frame["boxes"]], dtype=np.float32)
    names = np.array([b["name"] for b in frame["boxes"]], dtype=object)
    return {
        "sample_idx": 0, "token": frame["sample_token"],
        "lidar_path": str(NUSC / frame["lidar_file"]),
        "num_point_features": len(frame["lidar_point_fields"]),
        "lidar2ego": np.asarray(frame["lidar2ego"]), "ego2global": np.asarray(frame["ego2global"]),
        "sweeps": [], "cams": cams, "gt_boxes": boxes, "gt_velocity": vel, "gt_names": names,
        "gt_labels": np.arange(len(boxes), dtype=np.int64),
        "num_lidar_pts": np.array([b["num_lidar_pts"] for b in frame["boxes"]], np.int64),
        "lidarseg_path": None,
    }


def synthetic_sample(tmp_path: Path, points: np.ndarray, name: str = "key.bin") -> dict:
    path = tmp_path / name
    points.astype(np.float32).tofile(path)
    return {"token": "tok", "lidar_path": str(path), "num_point_features": points.shape[1],
            "sweeps": [], "cams": {}, "gt_boxes": np.zeros((0, 7), np.float32),
            "gt_velocity": np.zeros((0, 2), np.float32),
            "gt_names": np.zeros(0, dtype=object), "gt_labels": np.zeros(0, np.int64),
            "num_lidar_pts": np.zeros(0, np.int64), "lidarseg_path": None}


def pixels(sample: dict) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for mat, hw in zip(sample["lidar2img"], sample["img_shape"]):
        uv, depth = project_points(sample["points"], mat)
        out.append((uv, depth, visible_in_image(uv, depth, tuple(hw))))
    return out


# ---------------------------------------------------------------- loading
def test_load_points_real_frame():
    sample = LoadPoints(use_dims=(0, 1, 2, 3))(real_sample())
    raw = np.fromfile(sample["lidar_path"], dtype=np.float32).reshape(-1, 5)
    assert sample["points"].dtype == np.float32
    np.testing.assert_array_equal(sample["points"], raw[:, :4])
    assert sample["num_dropped_points"] == 0
    assert sample["valid_point_mask"].all() and len(sample["valid_point_mask"]) == len(raw)


def test_load_sweeps_hand_made_transform(tmp_path):
    key = np.array([[1.0, 2.0, 3.0, 0.5], [10.0, 0.0, 0.0, 0.1]], np.float32)
    sample = synthetic_sample(tmp_path, key)
    # sweep: one point near the sensor (removed by remove_close), two far away
    sweep_pts = np.array([[0.5, 0.2, 0.0, 0.9], [5.0, 0.0, 1.0, 0.3], [0.0, 4.0, -1.0, 0.7]],
                         np.float32)
    sweep_pts.tofile(tmp_path / "sweep0.bin")
    # sweep frame -> keyframe LiDAR: rotate +90 deg about z, then translate (1, -2, 0.5)
    sweep2lidar = np.array([[0, -1, 0, 1], [1, 0, 0, -2], [0, 0, 1, 0.5], [0, 0, 0, 1]], float)
    sample["sweeps"] = [{"path": str(tmp_path / "sweep0.bin"), "sweep2lidar": sweep2lidar,
                         "time_lag": 0.05, "timestamp": 0}]
    sample = LoadPoints(use_dims=(0, 1, 2, 3))(sample)
    sample = LoadSweeps(num_sweeps=9, remove_close=1.0)(sample)
    # by hand: (x, y, z) -> (-y + 1, x - 2, z + 0.5)
    expected = np.array([
        [1.0, 2.0, 3.0, 0.5, 0.0],
        [10.0, 0.0, 0.0, 0.1, 0.0],
        [1.0, 3.0, 1.5, 0.3, 0.05],
        [-3.0, -2.0, -0.5, 0.7, 0.05],
    ], np.float32)
    np.testing.assert_allclose(sample["points"], expected, atol=1e-6)
    assert sample["num_sweeps_loaded"] == 1
    # remove_close=0 keeps the close point; num_sweeps=0 keeps only the keyframe (+ time 0)
    s2 = LoadSweeps(num_sweeps=9, remove_close=0.0)(LoadPoints()(synthetic_sample(tmp_path, key)
                                                                 | {"sweeps": sample["sweeps"]}))
    assert len(s2["points"]) == 5
    s3 = LoadSweeps(num_sweeps=0)(LoadPoints()(synthetic_sample(tmp_path, key)
                                               | {"sweeps": sample["sweeps"]}))
    np.testing.assert_array_equal(s3["points"][:, 4], 0)
    assert len(s3["points"]) == 2
    # pad_empty: missing sweeps become copies of the keyframe with time 0
    s4 = LoadSweeps(num_sweeps=3, pad_empty=True)(LoadPoints()(synthetic_sample(tmp_path, key)))
    assert len(s4["points"]) == 2 * 4


def test_load_sweeps_newest_first_and_limit(tmp_path):
    key = np.array([[20.0, 0, 0, 0]], np.float32)
    sample = synthetic_sample(tmp_path, key)
    sweeps = []
    for i in range(3):
        np.array([[5.0 + i, 5.0, 0, 0]], np.float32).tofile(tmp_path / f"s{i}.bin")
        sweeps.append({"path": str(tmp_path / f"s{i}.bin"), "sweep2lidar": np.eye(4),
                       "time_lag": 0.05 * (i + 1)})
    sample["sweeps"] = sweeps
    out = LoadSweeps(num_sweeps=2)(LoadPoints()(sample))
    np.testing.assert_allclose(out["points"][:, 4], [0.0, 0.05, 0.1], atol=1e-7)
    np.testing.assert_allclose(out["points"][1:, 0], [5.0, 6.0])


def test_load_images_real_frame():
    sample = LoadImages()(real_sample())
    assert sample["cam_names"] == ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT",
                                   "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
    assert len(sample["images"]) == 6
    assert all(img.shape == (900, 1600, 3) and img.dtype == np.uint8 for img in sample["images"])
    assert sample["lidar2img"].shape == (6, 4, 4)
    np.testing.assert_array_equal(sample["img_shape"], [[900, 1600]] * 6)
    np.testing.assert_allclose(sample["lidar2img"], sample["cam2img"] @ sample["lidar2cam"])
    # a chosen order, and float images
    s2 = LoadImages(channels=["CAM_BACK", "CAM_FRONT"], to_float=True)(real_sample())
    assert s2["cam_names"] == ["CAM_BACK", "CAM_FRONT"] and s2["images"][0].dtype == np.float32


def test_load_lidarseg_drops_labels_of_nan_points(tmp_path):
    pts = np.arange(20, dtype=np.float32).reshape(5, 4) + 2
    pts[2, 1] = np.nan
    sample = synthetic_sample(tmp_path, pts)
    labels = np.array([3, 7, 9, 11, 30], np.uint8)
    labels.tofile(tmp_path / "seg.bin")
    sample["lidarseg_path"] = str(tmp_path / "seg.bin")
    sample = LoadPoints()(sample)
    assert sample["num_dropped_points"] == 1
    np.testing.assert_array_equal(sample["valid_point_mask"], [1, 1, 0, 1, 1])
    sample = LoadLidarsegLabels()(sample)
    assert sample["pts_semantic_mask"].dtype == np.int64
    np.testing.assert_array_equal(sample["pts_semantic_mask"], [3, 7, 11, 30])
    # mapping (dict: unknown raw labels -> ignore_index)
    s2 = LoadPoints()(synthetic_sample(tmp_path, pts) | {"lidarseg_path": sample["lidarseg_path"]})
    s2 = LoadLidarsegLabels(label_mapping={3: 0, 7: 1}, ignore_index=255)(s2)
    np.testing.assert_array_equal(s2["pts_semantic_mask"], [0, 1, 255, 255])
    # sweeps after labels: sweep points get the ignore label
    np.array([[5.0, 5, 5, 1]], np.float32).tofile(tmp_path / "sw.bin")
    sample["sweeps"] = [{"path": str(tmp_path / "sw.bin"), "sweep2lidar": np.eye(4),
                         "time_lag": 0.1}]
    sample = LoadSweeps(seg_ignore_index=-1)(sample)
    np.testing.assert_array_equal(sample["pts_semantic_mask"], [3, 7, 11, 30, -1])


# ---------------------------------------------------------------- filters
def test_points_range_filter_half_open_and_labels_follow(tmp_path):
    pts = np.array([[0, 0, 0, 1], [-1, 0, 0, 2], [1, 0, 0, 3], [0.5, 0.5, 0.5, 4],
                    [0, 0, 2, 5]], np.float32)
    sample = {"points": pts, "pts_semantic_mask": np.arange(5, dtype=np.int64)}
    out = PointsRangeFilter([-1, -1, -1, 1, 1, 1])(sample)
    np.testing.assert_array_equal(out["pts_semantic_mask"], [0, 1, 3])
    np.testing.assert_array_equal(out["points"][:, 3], [1, 2, 4])


def test_object_filters():
    boxes = np.array([[0, 0, 0, 1, 1, 1, 0], [60, 0, 0, 1, 1, 1, 0], [5, 5, 0, 1, 1, 1, 0],
                      [-5, 5, 0, 2, 2, 2, 0]], np.float32)
    sample = {"gt_boxes": boxes, "gt_velocity": np.zeros((4, 2), np.float32),
              "gt_names": np.array(["car", "car", "pedestrian", "car"], dtype=object),
              "gt_labels": np.array([0, 0, 1, 0]), "num_lidar_pts": np.array([3, 4, 0, -1]),
              "points": np.array([[-5, 5, 0, 0], [-5.5, 5.5, 0.5, 0]], np.float32)}
    out = ObjectRangeFilter([-50, -50, -5, 50, 50, 3])(dict(sample))
    np.testing.assert_array_equal(out["gt_labels"], [0, 1, 0])
    out = ObjectNameFilter(["car"])(dict(sample))
    assert list(out["gt_names"]) == ["car", "car", "car"] and len(out["gt_velocity"]) == 3
    # box 3 has unknown num_lidar_pts (-1): counted from points -> 2
    out = ObjectMinPointsFilter(min_points=2)(dict(sample))
    np.testing.assert_array_equal(out["num_lidar_pts"], [3, 4, -1])
    out = ObjectMinPointsFilter(min_points=3)(dict(sample))
    np.testing.assert_array_equal(out["num_lidar_pts"], [3, 4])


def test_points_in_camera_fov_hand_computed():
    # one camera looking along +x: camera z = lidar x, camera x = -lidar y, camera y = -lidar z
    lidar2cam = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    cam2img = np.array([[100, 0, 50, 0], [0, 100, 40, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    pts = np.array([[10, 0, 0, 0],      # centre pixel (50, 40): kept
                    [-10, 0, 0, 0],     # behind: dropped
                    [10, -4, 0, 0],     # u = 50 + 100*0.4 = 90 < 99: kept
                    [10, -6, 0, 0],     # u = 110 > 99: dropped
                    [0.5, 0, 0, 0]],    # depth 0.5 < 1: dropped
                   np.float32)
    sample = {"points": pts, "cams": {"CAM": {"cam2img": cam2img, "lidar2cam": lidar2cam,
                                              "height": 80, "width": 100}}}
    out = PointsInCameraFOV()(sample)
    np.testing.assert_array_equal(out["points"][:, :2], [[10, 0], [10, -4]])
    # no camera: nothing kept unless asked
    assert len(PointsInCameraFOV()({"points": pts, "cams": {}})["points"]) == 0
    assert len(PointsInCameraFOV(keep_if_no_camera=True)({"points": pts, "cams": {}})
               ["points"]) == 5


def test_points_in_camera_fov_real_frame_matches_devkit_rule():
    sample = LoadImages()(LoadPoints()(real_sample()))
    seen = np.zeros(len(sample["points"]), bool)
    for _, _, vis in pixels(sample):
        seen |= vis
    out = PointsInCameraFOV()(dict(sample))
    assert 0 < len(out["points"]) < len(sample["points"])
    np.testing.assert_array_equal(out["points"], sample["points"][seen])


def test_point_sample_and_shuffle_keep_rows_aligned():
    pts = np.arange(40, dtype=np.float32).reshape(10, 4)
    sample = {"points": pts, "pts_semantic_mask": np.arange(10)}
    out = PointShuffle(seed=0)(dict(sample))
    np.testing.assert_array_equal(out["points"][:, 0] / 4, out["pts_semantic_mask"])
    assert sorted(out["pts_semantic_mask"]) == list(range(10))
    out = PointSample(6, seed=0)(dict(sample))
    assert len(out["points"]) == 6 and len(set(out["pts_semantic_mask"])) == 6
    out = PointSample(15, seed=0)(dict(sample))
    assert len(out["points"]) == 15 and set(out["pts_semantic_mask"]) == set(range(10))
    np.testing.assert_array_equal(out["points"][:, 0] / 4, out["pts_semantic_mask"])


# ---------------------------------------------------------------- augmentation
def test_augmentation_keeps_pixels_and_box_contents_real_frame():
    sample = LoadImages()(LoadPoints(use_dims=(0, 1, 2, 3, 4))(real_sample()))
    before_pix = pixels(sample)
    before_in = points_in_boxes(sample["points"], sample["gt_boxes"])
    assert before_in.sum() > 500  # the real frame has many annotated points
    pts0 = sample["points"].copy()
    np.random.seed(3)
    for t in (GlobalRotScaleTrans(rot_range=(-np.pi, np.pi), scale_range=(0.8, 1.2),
                                  translation_std=(0.5, 0.5, 0.2)),
              RandomFlip3D(flip_ratio_bev_horizontal=1.0, flip_ratio_bev_vertical=1.0)):
        sample = t(sample)
    assert sample["pcd_horizontal_flip"] and sample["pcd_vertical_flip"]
    assert abs(sample["pcd_scale_factor"] - 1) > 1e-3
    # points really moved
    assert np.abs(sample["points"][:, :3] - pts0[:, :3]).max() > 1.0
    np.testing.assert_array_equal(sample["points"][:, 3:], pts0[:, 3:])
    # augmented = lidar_aug_matrix @ original
    mat = sample["lidar_aug_matrix"]
    np.testing.assert_allclose(sample["points"][:, :3], pts0[:, :3] @ mat[:3, :3].T + mat[:3, 3],
                               atol=1e-3)
    after_pix = pixels(sample)
    for (uv0, d0, v0), (uv1, d1, v1) in zip(before_pix, after_pix):
        # pixels inside the image: within 0.05 px (float32 points); off-image ones relative
        np.testing.assert_allclose(uv1[v0], uv0[v0], atol=0.05)
        front = d0 > 1.0
        np.testing.assert_allclose(uv1[front], uv0[front], rtol=1e-4, atol=0.05)
        np.testing.assert_allclose(d1, d0, atol=1e-3)
        np.testing.assert_array_equal(v1, v0)
    # cams dict kept in step
    for k, name in enumerate(sample["cam_names"]):
        np.testing.assert_allclose(sample["cams"][name]["lidar2img"], sample["lidar2img"][k])
    after_in = points_in_boxes(sample["points"], sample["gt_boxes"])
    np.testing.assert_array_equal(after_in, before_in)


def test_rotation_scale_translation_by_hand():
    box = np.array([[10, 0, 1, 4, 2, 1.5, 0.3]], np.float32)
    sample = {"points": np.array([[1, 0, 0, 7]], np.float32), "gt_boxes": box,
              "gt_velocity": np.array([[2, 0]], np.float32)}
    mat = np.eye(4)
    mat[:3, :3] = 2.0 * np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 deg, scale 2
    mat[:3, 3] = [1, 2, 3]
    out = apply_lidar_transform(sample, mat)
    np.testing.assert_allclose(out["points"], [[1, 4, 3, 7]])
    np.testing.assert_allclose(out["gt_boxes"], [[1, 22, 5, 8, 4, 3, 0.3 + np.pi / 2]], atol=1e-5)
    # velocity rotated AND scaled (documented convention)
    np.testing.assert_allclose(out["gt_velocity"], [[0, 4]], atol=1e-6)
    np.testing.assert_allclose(out["lidar_aug_matrix"], mat)


def test_flips_by_hand():
    box = np.array([[3, 2, 0, 4, 2, 1.5, 0.5]], np.float32)
    vel = np.array([[1, 2]], np.float32)
    s = RandomFlip3D(1.0, 0.0)({"points": np.array([[3, 2, 1, 0]], np.float32),
                                "gt_boxes": box.copy(), "gt_velocity": vel.copy()})
    np.testing.assert_allclose(s["points"], [[3, -2, 1, 0]])
    np.testing.assert_allclose(s["gt_boxes"], [[3, -2, 0, 4, 2, 1.5, -0.5]], atol=1e-6)
    np.testing.assert_allclose(s["gt_velocity"], [[1, -2]])
    s = RandomFlip3D(0.0, 1.0)({"points": np.array([[3, 2, 1, 0]], np.float32),
                                "gt_boxes": box.copy(), "gt_velocity": vel.copy()})
    np.testing.assert_allclose(s["points"], [[-3, 2, 1, 0]])
    np.testing.assert_allclose(s["gt_boxes"], [[-3, 2, 0, 4, 2, 1.5, np.pi - 0.5]], atol=1e-6)
    np.testing.assert_allclose(s["gt_velocity"], [[-1, 2]])
    s = RandomFlip3D(0.0, 0.0)({"points": np.array([[3, 2, 1, 0]], np.float32)})
    assert "lidar_aug_matrix" not in s and not s["pcd_horizontal_flip"]


def test_yaw_wrapped():
    sample = {"gt_boxes": np.array([[0, 0, 0, 1, 1, 1, 3.0]], np.float32)}
    mat = np.eye(4)
    mat[:3, :3] = [[np.cos(1), -np.sin(1), 0], [np.sin(1), np.cos(1), 0], [0, 0, 1]]
    out = apply_lidar_transform(sample, mat)
    np.testing.assert_allclose(out["gt_boxes"][0, 6], 4.0 - 2 * np.pi, atol=1e-6)


def test_augmentation_repeats_under_seed():
    pts = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)

    def run(seed_global=None, seed=None):
        if seed_global is not None:
            np.random.seed(seed_global)
        s = {"points": pts.copy()}
        for t in (GlobalRotScaleTrans(translation_std=0.5, seed=seed),
                  RandomFlip3D(0.5, 0.5, seed=seed), PointJitter(seed=seed),
                  PointDropout(0.2, seed=seed)):
            s = t(s)
        return s["points"]

    np.testing.assert_array_equal(run(seed_global=7), run(seed_global=7))
    assert not np.array_equal(run(seed_global=7), run(seed_global=8))
    np.testing.assert_array_equal(run(seed=5), run(seed=5))


def test_jitter_clip_and_dropout_count():
    pts = np.zeros((1000, 4), np.float32)
    sample = {"points": pts.copy(), "pts_semantic_mask": np.arange(1000)}
    out = PointJitter(std=1.0, clip=0.05, seed=0)(dict(sample))
    assert np.abs(out["points"][:, :3]).max() <= 0.05 + 1e-7
    assert np.abs(out["points"][:, :3]).max() > 0.04
    np.testing.assert_array_equal(out["points"][:, 3], 0)
    out = PointDropout(0.25, seed=0)(dict(sample))
    assert len(out["points"]) == 750 and len(out["pts_semantic_mask"]) == 750
    assert np.all(np.diff(out["pts_semantic_mask"]) > 0)


# ---------------------------------------------------------------- packing and collate
def test_pack_and_collate_offsets():
    rng = np.random.default_rng(0)
    samples = []
    for n, m in ((5, 2), (0, 0), (7, 1)):
        s = {"points": rng.normal(size=(n, 4)).astype(np.float32),
             "pts_semantic_mask": np.arange(n, dtype=np.int64),
             "gt_boxes": np.zeros((m, 7), np.float32), "gt_labels": np.arange(m),
             "lidar2img": np.tile(np.eye(4), (2, 1, 1)), "img_shape": np.array([[4, 6]] * 2),
             "images": [np.zeros((4, 6, 3), np.uint8)] * 2, "token": f"t{n}"}
        if n == 0:  # skipped by default (an empty scan would reach the backbone)
            assert PackSample()(dict(s)) is None
        samples.append(PackSample(skip_empty=False)(s))
    p = samples[0]
    assert p["points"].dtype == torch.float32 and p["lidar2img"].dtype == torch.float32
    assert p["images"].shape == (2, 3, 4, 6) and p["images"].dtype == torch.uint8
    assert p["point_keys"] == ("pts_semantic_mask",) and p["meta"]["token"] == "t5"
    torch.testing.assert_close(p["lidar_aug_matrix"], torch.eye(4))
    batch = collate_samples(samples)
    assert batch["offsets"].tolist() == [5, 5, 12]
    assert batch["points"].shape == (12, 4)
    assert batch["batch_idx"].tolist() == [0] * 5 + [2] * 7
    assert batch["pts_semantic_mask"].tolist() == list(range(5)) + list(range(7))
    torch.testing.assert_close(batch["points"][5:12], samples[2]["points"])
    assert [len(b) for b in batch["gt_boxes"]] == [2, 0, 1]
    assert len(batch["lidar2img"]) == 3 and batch["lidar2img"][0].shape == (2, 4, 4)
    assert [m["token"] for m in batch["meta"]] == ["t5", "t0", "t7"]
    # usable as a DataLoader collate_fn, and from mmengine's FUNCTIONS registry
    from mmengine.registry import FUNCTIONS
    assert FUNCTIONS.get("collate_samples") is collate_samples
    loader = torch.utils.data.DataLoader(samples, batch_size=2, collate_fn=collate_samples)
    first = next(iter(loader))
    assert first["offsets"].tolist() == [5, 5]


def test_full_pipeline_from_config_real_frame():
    from mmengine.dataset import Compose

    pipeline = Compose([
        dict(type="lidarcl.LoadPoints", use_dims=(0, 1, 2, 3)),
        dict(type="lidarcl.LoadImages"),
        dict(type="lidarcl.PointsRangeFilter", point_cloud_range=[-54, -54, -5, 54, 54, 3]),
        dict(type="lidarcl.ObjectRangeFilter", point_cloud_range=[-54, -54, -5, 54, 54, 3]),
        dict(type="lidarcl.GlobalRotScaleTrans", seed=1),
        dict(type="lidarcl.RandomFlip3D", seed=1),
        dict(type="lidarcl.PointsInCameraFOV"),
        dict(type="lidarcl.PackSample"),
    ])
    sample = real_sample()
    out = pipeline(real_sample())   # the pipeline updates the dict's matrices in place
    assert out["points"].shape[1] == 4
    assert out["images"].shape == (6, 3, 900, 1600)
    # independent reference on the raw file: in range, and seen by at least one camera
    # (the devkit's rule, with the unaugmented calibration: augmentation moves no pixel)
    raw = np.fromfile(sample["lidar_path"], np.float32).reshape(-1, 5)
    lo, hi = np.array([-54, -54, -5]), np.array([54, 54, 3])
    raw = raw[((raw[:, :3] >= lo) & (raw[:, :3] < hi)).all(1)]
    seen = np.zeros(len(raw), bool)
    for cam in sample["cams"].values():
        index, _, _ = points_to_image(raw, cam["lidar2img"], (cam["height"], cam["width"]))
        seen[index] = True
    assert len(out["points"]) == seen.sum() > 10000
    # the augmented points are the reference points moved by the recorded matrix
    aug = out["lidar_aug_matrix"].double().numpy()
    expected = raw[seen, :3] @ aug[:3, :3].T + aug[:3, 3]
    got = out["points"][:, :3].double().numpy()
    np.testing.assert_allclose(np.sort(got, 0), np.sort(expected, 0), atol=1e-3)
    boxes = np.array([b for b in sample["gt_boxes"]])
    in_range = ((boxes[:, :2] >= lo[:2]) & (boxes[:, :2] < hi[:2])).all(1)
    assert len(out["gt_boxes"]) == in_range.sum()
