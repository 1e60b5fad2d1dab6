"""Procedural nuScenes-layout generator, checked against nuscenes-devkit and hand-made cases."""
from __future__ import annotations

import filecmp
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

nuscenes = pytest.importorskip("nuscenes")
from nuscenes.nuscenes import NuScenes  # noqa: E402
from nuscenes.utils.data_classes import LidarPointCloud  # noqa: E402
from nuscenes.utils.geometry_utils import points_in_box  # noqa: E402
from pyquaternion import Quaternion  # noqa: E402

from lidarcl.datasets.synthetic import generate_dataset  # noqa: E402

CHANNELS = ("LIDAR_TOP", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK",
            "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
OFFICIAL_LIDARSEG = {0: "noise", 2: "human.pedestrian.adult", 9: "movable_object.barrier",
                     12: "movable_object.trafficcone", 14: "vehicle.bicycle", 17: "vehicle.car",
                     23: "vehicle.truck", 24: "flat.driveable_surface", 26: "flat.sidewalk",
                     28: "static.manmade", 30: "static.vegetation", 31: "vehicle.ego"}


@pytest.fixture(scope="module")
def nusc(synthetic_root):
    return NuScenes(version=synthetic_root.version, dataroot=synthetic_root.dataroot,
                    verbose=False)


def _points(nusc, sd_token):
    return LidarPointCloud.from_file(nusc.get_sample_data_path(sd_token)).points


# ------------------------------------------------------------------ devkit loading
def test_devkit_loads_tables_and_files(nusc, synthetic_root):
    assert len(nusc.scene) == 2 and len(nusc.sample) == 20
    for scene in nusc.scene:
        tokens, tok = [], scene["first_sample_token"]
        while tok:
            tokens.append(tok)
            tok = nusc.get("sample", tok)["next"]
        assert len(tokens) == scene["nbr_samples"] == 10
        assert tokens[-1] == scene["last_sample_token"]
    for sample in nusc.sample:
        assert set(sample["data"]) == set(CHANNELS)
        for ch, sd_tok in sample["data"].items():
            sd = nusc.get("sample_data", sd_tok)
            assert osp.isfile(osp.join(synthetic_root.dataroot, sd["filename"]))
            if ch.startswith("CAM"):
                with Image.open(nusc.get_sample_data_path(sd_tok)) as im:
                    assert im.size == (sd["width"], sd["height"]) == (320, 180)
                # camera timestamps precede the lidar keyframe by a few tens of ms
                dt = sample["timestamp"] - sd["timestamp"]
                assert 0 <= dt < 50_000
                assert sd["ego_pose_token"] != nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"]
        assert len(sample["anns"]) > 0
    # sweeps: a non-key lidar frame between consecutive keyframes, 4 Hz here
    lidar = [sd for sd in nusc.sample_data if sd["channel"] == "LIDAR_TOP"]
    assert sum(not sd["is_key_frame"] for sd in lidar) == 20
    assert all(sd["filename"].startswith("sweeps/") for sd in lidar if not sd["is_key_frame"])
    # lidarseg through the devkit
    assert len(nusc.lidarseg) == 20
    names = {c["index"]: c["name"] for c in nusc.category}
    assert len(names) == 32
    for idx, name in OFFICIAL_LIDARSEG.items():
        assert names[idx] == name
    assert nusc.lidarseg_name2idx_mapping["vehicle.car"] == 17
    splits = json.load(open(osp.join(synthetic_root.dataroot, synthetic_root.version, "splits.json")))
    assert splits["train"] and splits["val"]
    assert set(splits["train"] + splits["val"]) == {s["name"] for s in nusc.scene}


def test_sample_data_chain_and_box_transform(nusc):
    sd = nusc.get("sample_data", nusc.sample[3]["data"]["LIDAR_TOP"])
    prev = nusc.get("sample_data", sd["prev"])
    assert not prev["is_key_frame"] and prev["timestamp"] < sd["timestamp"]
    assert nusc.get("sample_data", prev["prev"])["is_key_frame"]
    # devkit's get_sample_data puts boxes into the lidar frame
    _, boxes, _ = nusc.get_sample_data(sd["token"])
    assert len(boxes) > 0
    assert all(np.isfinite(b.center).all() for b in boxes)


def test_lidar_and_point_files(nusc):
    sd = nusc.get("sample_data", nusc.sample[0]["data"]["LIDAR_TOP"])
    pts = np.fromfile(nusc.get_sample_data_path(sd["token"]), dtype=np.float32).reshape(-1, 5)
    assert np.isfinite(pts).all()
    rings = pts[:, 4]
    assert set(np.unique(rings)) <= set(range(32))
    # ring 0 is the lowest beam: its elevation is about -30.67 deg (hand-computed HDL-32E)
    r = np.hypot(pts[:, 0], pts[:, 1])
    far = r > 3.0
    el = np.degrees(np.arctan2(pts[:, 2], r))
    for ring, expected in ((0, -30.67), (31, 10.67), (16, -30.67 + 16 * 41.34 / 31)):
        sel = (rings == ring) & far
        if sel.sum() > 20:
            assert abs(np.median(el[sel]) - expected) < 1.2
    assert np.percentile(r, 99.9) <= 70.5
    assert 0 <= pts[:, 3].min() and pts[:, 3].max() <= 255


# ------------------------------------------------------------------ annotations vs devkit
def test_num_lidar_pts_matches_devkit_points_in_box(nusc):
    checked = 0
    for sample in nusc.sample:
        sd_tok = sample["data"]["LIDAR_TOP"]
        pts = _points(nusc, sd_tok)[:3]
        _, boxes, _ = nusc.get_sample_data(sd_tok)
        for box in boxes:
            ann = nusc.get("sample_annotation", box.token)
            assert int(points_in_box(box, pts).sum()) == ann["num_lidar_pts"], ann["token"]
            checked += 1
    assert checked == len(nusc.sample_annotation)
    assert sum(a["num_lidar_pts"] > 0 for a in nusc.sample_annotation) > 0.7 * checked


def test_lidarseg_labels_inside_boxes(nusc):
    cat_index = {c["token"]: c["index"] for c in nusc.category}
    rng = np.random.default_rng(0)
    boxes_checked = 0
    for sample in nusc.sample[::3]:
        sd_tok = sample["data"]["LIDAR_TOP"]
        pts = _points(nusc, sd_tok)[:3]
        seg = nusc.get("lidarseg", sd_tok)
        labels = np.fromfile(osp.join(nusc.dataroot, seg["filename"]), dtype=np.uint8)
        assert len(labels) == pts.shape[1]
        _, boxes, _ = nusc.get_sample_data(sd_tok)
        for box in rng.permutation(boxes)[:15]:
            ann = nusc.get("sample_annotation", box.token)
            inst = nusc.get("instance", ann["instance_token"])
            inside = points_in_box(box, pts)
            if inside.any():
                assert np.all(labels[inside] == cat_index[inst["category_token"]]), ann["token"]
                boxes_checked += 1
        # background classes are present too
        assert {24, 26, 28}.issubset(set(np.unique(labels)))
    assert boxes_checked > 10


def test_lidarseg_class_mapper(nusc):
    from nuscenes.eval.lidarseg.utils import LidarsegClassMapper
    mapper = LidarsegClassMapper(nusc)
    fine2coarse = mapper.get_fine_idx_2_coarse_idx()
    coarse = mapper.get_coarse2idx()
    sd_tok = nusc.sample[5]["data"]["LIDAR_TOP"]
    labels = np.fromfile(osp.join(nusc.dataroot, nusc.get("lidarseg", sd_tok)["filename"]), np.uint8)
    mapped = np.vectorize(fine2coarse.get)(labels)
    assert coarse["car"] in mapped and coarse["driveable_surface"] in mapped
    assert coarse["vegetation"] in mapped and coarse["manmade"] in mapped


def test_annotation_tracks_and_velocity(nusc):
    moving = 0
    for inst in nusc.instance:
        anns, tok = [], inst["first_annotation_token"]
        while tok:
            anns.append(nusc.get("sample_annotation", tok))
            tok = anns[-1]["next"]
        assert len(anns) == inst["nbr_annotations"]
        assert anns[-1]["token"] == inst["last_annotation_token"]
        assert len({a["instance_token"] for a in anns}) == 1
        ts = [nusc.get("sample", a["sample_token"])["timestamp"] for a in anns]
        assert ts == sorted(ts)
        cat = nusc.get("category", inst["category_token"])["name"]
        attrs = {nusc.get("attribute", t)["name"] for a in anns for t in a["attribute_tokens"]}
        if len(anns) >= 3 and "vehicle.moving" in attrs and cat == "vehicle.car":
            for a in anns[1:-1]:
                v = nusc.box_velocity(a["token"])
                speed = np.hypot(v[0], v[1])
                assert 1.0 < speed < 20.0
                # velocity is along the heading (cars do not drift sideways)
                yaw = Quaternion(a["rotation"]).yaw_pitch_roll[0]
                assert abs(np.cos(yaw) * v[0] + np.sin(yaw) * v[1]) > 0.95 * speed
            moving += 1
        if "vehicle.parked" in attrs:
            v = nusc.box_velocity(anns[0]["token"])
            assert not np.isfinite(v).all() or np.hypot(v[0], v[1]) < 1e-6
        if cat.startswith("human.pedestrian") and "pedestrian.moving" in attrs:
            v = nusc.box_velocity(anns[len(anns) // 2]["token"])
            if np.isfinite(v).all():
                assert np.hypot(v[0], v[1]) < 3.0
    assert moving > 0


# ------------------------------------------------------------------ point-pixel correspondences
def _lidar_to_cam(nusc, lidar_sd, cam_sd):
    """4x4 lidar -> camera composed through both ego poses, as the devkit does."""
    def mat(rec):
        m = np.eye(4)
        m[:3, :3] = Quaternion(rec["rotation"]).rotation_matrix
        m[:3, 3] = rec["translation"]
        return m
    l2e = mat(nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"]))
    e2g = mat(nusc.get("ego_pose", lidar_sd["ego_pose_token"]))
    c2e = mat(nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"]))
    ce2g = mat(nusc.get("ego_pose", cam_sd["ego_pose_token"]))
    return np.linalg.inv(ce2g @ c2e) @ e2g @ l2e


def test_points_project_onto_their_surface(nusc, synthetic_root):
    agree_all, total = 0, 0
    for sample in nusc.sample[::4]:
        lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pts = _points(nusc, lidar_sd["token"])[:3]
        for ch in CHANNELS[1:]:
            cam_sd = nusc.get("sample_data", sample["data"][ch])
            m = _lidar_to_cam(nusc, lidar_sd, cam_sd)
            cam = m[:3, :3] @ pts + m[:3, 3:4]
            K = np.array(nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"])["camera_intrinsic"])
            z = cam[2]
            with np.errstate(divide="ignore", invalid="ignore"):
                u = K[0, 0] * cam[0] / z + K[0, 2]
                v = K[1, 1] * cam[1] / z + K[1, 2]
            w, h = cam_sd["width"], cam_sd["height"]
            ok = (z > 2.0) & (z < 60) & (u > 1) & (u < w - 1) & (v > 1) & (v < h - 1)
            depth_file = osp.join(synthetic_root.dataroot, "depth", ch,
                                  osp.basename(cam_sd["filename"])[:-4] + ".png")
            depth = np.asarray(Image.open(depth_file), dtype=np.float64) / 100.0
            d = depth[v[ok].astype(int), u[ok].astype(int)]
            zz = z[ok]
            tol = 0.15 + 0.03 * zz
            # the camera never sees *through* a surface the lidar hit (depth <= point depth)
            behind = d > zz + tol
            assert behind.mean() < 0.05, (ch, behind.mean())
            # and most points land on the surface that produced them
            agree_all += int((np.abs(d - zz) < tol).sum())
            total += int(ok.sum())
    assert total > 1000
    assert agree_all / total > 0.85, agree_all / total


# ------------------------------------------------------------------ direct sensor checks
def test_sweep_point_count_and_geometry():
    from lidarcl.datasets.synthetic import scene as S
    from lidarcl.datasets.synthetic import sensors as SE
    rng = np.random.default_rng(11)
    city = S.make_city(rng, 250.0)
    scn = S.make_scene(rng, city, 3.0)
    counts = []
    for t in (0.5, 1.0, 2.0):
        sw = SE.simulate_sweep(scn, t, np.random.default_rng(0))
        counts.append(len(sw.points))
        assert sw.points.dtype == np.float32 and sw.points.shape[1] == 5
    assert all(29_000 <= c <= 35_000 for c in counts), counts
    assert max(counts) <= 32 * 1084


def test_raycaster_hand_computed_cases():
    from lidarcl.datasets.synthetic import lidar as L
    from lidarcl.datasets.synthetic import objects as O
    from lidarcl.datasets.synthetic.constants import LABEL
    # axis-aligned box 2 x 2 x 2 centred at (10, 0, 1): a ray along +x from (0, 0, 1) hits x = 9
    b = O.box(9, 11, -1, 1, 0, 2, LABEL["vehicle.car"], 20, 0, (1, 1, 1))
    assert L.hit_prim(b, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0) == pytest.approx(9.0)
    # rotated by 45 deg: the nearest corner is at x = 10 - sqrt(2)
    rb = O.transform_prims(b[None] - np.array([0, 10, 0, 1] + [0] * 13), 10, 0, 1, np.pi / 4)[0]
    assert L.hit_prim(rb, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0) == pytest.approx(10 - np.sqrt(2))
    # cylinder radius 0.5 at (5, 0): hit at 4.5; from above onto its top cap
    c = O.cyl(5, 0, 0.5, 0, 3, 28, 30, 0, (1, 1, 1))
    assert L.hit_prim(c, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0) == pytest.approx(4.5)
    assert L.hit_prim(c, 5.0, 0.0, 10.0, 0.0, 0.0, -1.0) == pytest.approx(7.0)
    # ellipsoid rxy = 2, rz = 1 centred at (0, 0, 5): a downward ray from z = 10 hits z = 6
    e = O.ell(0, 0, 5, 2, 1, 30, 5, 0, (1, 1, 1))
    assert L.hit_prim(e, 0.0, 0.0, 10.0, 0.0, 0.0, -1.0) == pytest.approx(4.0)
    assert L.hit_prim(e, 3.0, 0.0, 10.0, 0.0, 0.0, -1.0) == np.inf


def test_determinism(tmp_path):
    args = dict(scenes=1, keyframes=2, image_size=(96, 54), sweeps_per_keyframe=0)
    generate_dataset(str(tmp_path / "a"), seed=3, **args)
    generate_dataset(str(tmp_path / "b"), seed=3, **args)
    generate_dataset(str(tmp_path / "c"), seed=4, **args)

    def files(root):
        return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    fa, fb = files(tmp_path / "a"), files(tmp_path / "b")
    assert fa == fb and len(fa) > 20
    for f in fa:
        assert filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False), f
    lidar_a = [f for f in fa if f.endswith(".pcd.bin")]
    lidar_c = [f for f in files(tmp_path / "c") if f.endswith(".pcd.bin")]
    pa = np.fromfile(tmp_path / "a" / lidar_a[0], np.float32)
    pc = np.fromfile(tmp_path / "c" / lidar_c[0], np.float32)
    assert pa.shape != pc.shape or not np.array_equal(pa, pc)
    ann_a = json.load(open(tmp_path / "a" / "v1.0-synthetic" / "sample_annotation.json"))
    ann_c = json.load(open(tmp_path / "c" / "v1.0-synthetic" / "sample_annotation.json"))
    assert [a["translation"] for a in ann_a] != [a["translation"] for a in ann_c]


def test_map_layers(synthetic_root, nusc):
    bev = osp.join(synthetic_root.dataroot, "maps", "bev")
    meta = json.load(open(osp.join(bev, "meta.json")))
    for layer in ("drivable_area", "lane", "ped_crossing", "walkway", "road_divider",
                  "lane_divider", "building"):
        assert osp.isfile(osp.join(bev, f"{layer}.png")), layer
    drv = np.asarray(Image.open(osp.join(bev, "drivable_area.png"))) > 0
    res = meta["resolution"]
    x0, y0 = meta["origin"]
    h = drv.shape[0]
    # every keyframe ego pose lies on the drivable area
    for sample in nusc.sample:
        pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
        col = int((pose["translation"][0] - x0) / res)
        row = h - 1 - int((pose["translation"][1] - y0) / res)
        assert drv[row, col]
    # the devkit's semantic prior map agrees
    mask = nusc.map[0]["mask"]
    pose = nusc.ego_pose[0]
    assert mask.is_on_mask(np.array([pose["translation"][0]]), np.array([pose["translation"][1]]))[0]
