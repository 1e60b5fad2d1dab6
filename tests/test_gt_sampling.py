"""Ground-truth sampling: the database (lidarcl/datasets/gt_database*.py, built through
tools/create_data.py gt-database from the tiny generated dataset) and ``ObjectSample``.

Independent checks: scans re-read here with numpy (keyframe + sweeps mapped by
sweep2lidar), points in boxes by the numpy rule of ``lidarcl.structures.boxes`` (the
database is built with the compiled op), collisions by shapely polygon intersection (the
transform uses ``lidarcl.ops.box_iou_bev``), and hand-made databases whose outcome is
known in advance.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon

from lidarcl.datasets.gt_database import GTDatabase
from lidarcl.datasets.gt_database_converter import create_gt_database
from lidarcl.datasets.nuscenes_converter import DETECTION_CLASSES
from lidarcl.datasets.nuscenes_dataset import NUSCENES_NAME_MAPPING, NuScenesDataset
from lidarcl.datasets.transforms import LoadPoints, LoadSweeps, ObjectSample
from lidarcl.datasets.transforms.object_sample import (KITTI_REMOVE_DIFFICULTY,
                                                       KITTI_SAMPLE_GROUPS,
                                                       NUSCENES_SAMPLE_GROUPS)
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.ops._extension import compiled
from lidarcl.structures.boxes import points_in_boxes
from conftest import REAL_DATA

REPO = Path(__file__).resolve().parents[1]
NUM_SWEEPS = 9
BOX_KEYS = ("gt_boxes", "gt_names", "gt_labels", "gt_velocity", "num_lidar_pts",
            "gt_attributes", "instance_tokens")
# caps well above what the tiny scenes hold, so that many candidates collide
BIG_GROUPS = {"car": 30, "pedestrian": 40, "bus": 4, "bicycle": 6}

pytestmark = pytest.mark.skipif(compiled() is None, reason="lidarcl._C not built")


def _create_data():
    spec = importlib.util.spec_from_file_location("lidarcl_create_data_gts",
                                                  REPO / "tools" / "create_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def db_index(tiny_dataset, tmp_path_factory) -> str:
    """The database of the tiny dataset's train split, built by the command line."""
    out = tmp_path_factory.mktemp("gt_db")
    index = os.path.join(tiny_dataset, "nuscenes_infos_train.json")
    assert _create_data().main(["gt-database", "--index", index, "--root", tiny_dataset,
                                "--out", str(out)]) == 0
    return str(out / "nuscenes_dbinfos_train.json")


@pytest.fixture(scope="module")
def samples(tiny_dataset) -> list[dict]:
    """Every keyframe of the tiny dataset (train and val) as the training pipeline loads
    it before ObjectSample."""
    out = []
    for split in ("train", "val"):
        ds = NuScenesDataset(os.path.join(tiny_dataset, f"nuscenes_infos_{split}.json"),
                             data_root=tiny_dataset,
                             pipeline=[LoadPoints(use_dims=[0, 1, 2, 3]),
                                       LoadSweeps(num_sweeps=NUM_SWEEPS)])
        out += [ds[i] for i in range(len(ds))]
    assert len(out) == 4 and all(len(s["gt_boxes"]) for s in out)
    return out


def _numpy_scan(info: dict, root: str) -> np.ndarray:
    """Keyframe + sweeps in the keyframe's LiDAR frame, x y z intensity time, re-read
    with numpy (LoadSweeps' rule: points within 1 m of the sweep's sensor dropped)."""
    def read(rel):
        return np.fromfile(os.path.join(root, rel), dtype=np.float32).reshape(-1, 5)[:, :4]

    key = read(info["lidar_path"])
    parts = [np.concatenate([key, np.zeros((len(key), 1), np.float32)], 1)]
    for sweep in info["sweeps"][:NUM_SWEEPS]:
        pts = read(sweep["path"])
        pts = pts[~((np.abs(pts[:, 0]) < 1) & (np.abs(pts[:, 1]) < 1))].copy()
        mat = np.asarray(sweep["sweep2lidar"], dtype=np.float64)
        pts[:, :3] = (pts[:, :3].astype(np.float64) @ mat[:3, :3].T + mat[:3, 3]).astype(
            np.float32)
        parts.append(np.concatenate(
            [pts, np.full((len(pts), 1), sweep["time_lag"], np.float32)], 1))
    return np.concatenate(parts, 0)


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def _polygon(box) -> Polygon:
    x, y, _, l, w, _, yaw = (float(v) for v in box[:7])
    c, s = np.cos(yaw), np.sin(yaw)
    local = [(l / 2, w / 2), (-l / 2, w / 2), (-l / 2, -w / 2), (l / 2, -w / 2)]
    return Polygon([(x + c * u - s * v, y + s * u + c * v) for u, v in local])


def _grown(boxes, margin=1e-3) -> np.ndarray:
    """Boxes a millimetre larger: float32 rounding of centre-relative points."""
    out = np.asarray(boxes, dtype=np.float64)[:, :7].copy()
    out[:, 3:6] += 2 * margin
    return out


def _inside_any(points, boxes) -> np.ndarray:
    """(N,) bool: the point lies in one of ``boxes`` (the numpy rule of
    ``structures.boxes.points_in_boxes``, run on the points near each box only)."""
    points = np.asarray(points)
    inside = np.zeros(len(points), dtype=bool)
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 7):
        near = np.flatnonzero(np.hypot(points[:, 0] - box[0], points[:, 1] - box[1])
                              <= np.hypot(box[3], box[4]) / 2 + 0.1)
        inside[near[points_in_boxes(points[near], box[None])[:, 0]]] = True
    return inside


def _record_of(db: GTDatabase, name: str, box) -> int:
    """Index of the database record of class ``name`` whose box is ``box``."""
    diff = np.abs(db[name].boxes - np.asarray(box, dtype=np.float64)[:7]).max(1)
    i = int(np.argmin(diff))
    assert diff[i] < 1e-4, f"sampled box {box} is no {name} record of the database"
    return i


# ------------------------------------------------------------------ the database
def test_database_has_one_record_per_box_with_its_points(tiny_dataset, db_index):
    infos = json.load(open(os.path.join(tiny_dataset, "nuscenes_infos_train.json")))["infos"]
    data = json.load(open(db_index))
    meta = data["metadata"]
    assert (meta["format"], meta["num_point_features"], meta["num_sweeps"],
            meta["time_column"], meta["use_dims"]) == ("lidarcl-gt-database", 5, 9, True,
                                                       [0, 1, 2, 3])
    records = {(r["token"], r["gt_index"]): r for recs in data["objects"].values()
               for r in recs}
    expected = 0
    for info in infos:
        scan = _numpy_scan(info, tiny_dataset)
        boxes = np.asarray(info["gt_boxes"], dtype=np.float64)
        inside = points_in_boxes(scan, boxes)
        for k, name in enumerate(info["gt_names"]):
            det = NUSCENES_NAME_MAPPING.get(name)
            rec = records.get((info["token"], k))
            if det is None or inside[:, k].sum() < meta["min_points"]:
                assert rec is None, (info["token"], k, name)
                continue
            expected += 1
            assert rec is not None, f"box {k} ({name}) of {info['token']} has no record"
            assert (rec["name"], rec["category"]) == (det, name)
            assert rec in data["objects"][det]
            np.testing.assert_allclose(rec["box"], boxes[k], rtol=0, atol=1e-9)
            np.testing.assert_allclose(np.asarray(rec["velocity"], dtype=np.float64),
                                       np.asarray(info["gt_velocity"][k], dtype=np.float64),
                                       atol=1e-9)
            assert rec["num_lidar_pts"] == info["num_lidar_pts"][k]
            assert rec["path"] == f"gt_database/{info['token']}_{det}_{k}.bin"
            stored = np.fromfile(os.path.join(os.path.dirname(db_index), rec["path"]),
                                 dtype=np.float32).reshape(-1, 5)
            # the count equals the points of the box in the scan, read independently
            assert len(stored) == rec["num_points"] == int(inside[:, k].sum())
            absolute = stored.astype(np.float64)
            absolute[:, :3] += boxes[k, :3]
            assert points_in_boxes(absolute, _grown(boxes[k:k + 1])).all()
            np.testing.assert_allclose(_sorted_rows(absolute), _sorted_rows(
                scan[inside[:, k]].astype(np.float64)), rtol=0, atol=1e-4)
    assert expected == len(records) > 20
    assert meta["counts"] == {c: len(v) for c, v in data["objects"].items()}
    # sweeps are in: objects carry points of earlier sweeps (time column > 0)
    times = np.concatenate([np.fromfile(os.path.join(os.path.dirname(db_index), r["path"]),
                                        dtype=np.float32).reshape(-1, 5)[:, 4]
                            for r in records.values()])
    assert (times > 0).any() and (times == 0).any()


def test_rebuild_overwrites_cleanly_and_failure_keeps_the_old(tiny_dataset, tmp_path,
                                                              monkeypatch):
    index = os.path.join(tiny_dataset, "nuscenes_infos_train.json")
    first = create_gt_database(index, tiny_dataset, tmp_path, num_sweeps=None)
    files_first = set(os.listdir(tmp_path / "gt_database"))
    second = create_gt_database(index, tiny_dataset, tmp_path, num_sweeps=None,
                                min_points=20)
    assert first == second == str(tmp_path / "nuscenes_dbinfos_train.json")
    data = json.load(open(second))
    listed = {os.path.basename(r["path"]) for v in data["objects"].values() for r in v}
    assert set(os.listdir(tmp_path / "gt_database")) == listed  # nothing of the first
    assert len(listed) < len(files_first)
    assert data["metadata"]["num_point_features"] == 4 and not data["metadata"]["time_column"]
    assert sorted(os.listdir(tmp_path)) == ["gt_database", "nuscenes_dbinfos_train.json"]

    import lidarcl.datasets.gt_database_converter as conv
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    real = conv.points_in_boxes_all
    monkeypatch.setattr(conv, "points_in_boxes_all", failing)
    with pytest.raises(KeyboardInterrupt):
        create_gt_database(index, tiny_dataset, tmp_path, num_sweeps=None)
    assert json.load(open(second)) == data
    assert set(os.listdir(tmp_path / "gt_database")) == listed
    assert sorted(os.listdir(tmp_path)) == ["gt_database", "nuscenes_dbinfos_train.json"]


# ------------------------------------------------------------------ sampling
def _check_sampled(sample: dict, out: dict, db: GTDatabase, groups: dict) -> int:
    """Every property of one ObjectSample output; returns the number sampled."""
    m0 = len(sample["gt_boxes"])
    k = out["num_sampled_objects"]
    lengths = {key: len(out[key]) for key in BOX_KEYS}
    assert set(lengths.values()) == {m0 + k}, lengths
    for key in BOX_KEYS:  # the sample's own boxes are untouched
        np.testing.assert_array_equal(np.asarray(out[key][:m0]), np.asarray(sample[key]))
    new = out["gt_boxes"][m0:].astype(np.float64)
    labels = out["gt_labels"][m0:]
    names = [NUSCENES_NAME_MAPPING[n] for n in out["gt_names"][m0:]]
    assert [DETECTION_CLASSES[i] for i in labels] == names
    assert all(t == "" for t in out["instance_tokens"][m0:])

    # caps: never more than the cap of a class, counting the sample's own boxes
    for cls, cap in groups.items():
        before = int((sample["gt_labels"] == DETECTION_CLASSES.index(cls)).sum())
        after = int((out["gt_labels"] == DETECTION_CLASSES.index(cls)).sum())
        assert after <= max(cap, before)
        assert after == before or after <= cap

    # no collision: each sampled box has zero BEV overlap (shapely) with every other box
    polys = [_polygon(b) for b in out["gt_boxes"]]
    for i in range(m0, m0 + k):
        for j in range(m0 + k):
            if j != i:
                assert polys[i].intersection(polys[j]).area < 1e-9, (i, j)

    # points: the scene's points outside the sampled boxes, then each object's points
    records = [_record_of(db, n, b) for n, b in zip(names, new)]
    boxes64 = np.stack([db[n].boxes[r] for n, r in zip(names, records)]) if k else \
        np.zeros((0, 7))
    inside_old = _inside_any(sample["points"], boxes64)
    kept = sample["points"][~inside_old]
    np.testing.assert_array_equal(out["points"][:len(kept)], kept)
    start = len(kept)
    for j, (n, r, box) in enumerate(zip(names, records, boxes64)):
        count = int(db[n].num_points[r])
        obj = out["points"][start:start + count].astype(np.float64)
        expected = db.load_points(n, r).astype(np.float64)
        expected[:, :3] += box[:3]
        np.testing.assert_allclose(obj, expected, rtol=0, atol=1e-4)
        assert points_in_boxes(obj, _grown(box[None])).all()
        np.testing.assert_allclose(out["gt_velocity"][m0 + j], db[n].velocity[r],
                                   rtol=1e-6, atol=1e-6)
        assert out["num_lidar_pts"][m0 + j] == db[n].num_lidar_pts[r]
        assert out["gt_attributes"][m0 + j] == db[n].attributes[r]
        start += count
    assert start == len(out["points"])
    # no point of the scene is left inside a sampled box
    assert not _inside_any(out["points"][:len(kept)], boxes64).any()
    return k


def test_sampling_many_seeds_no_collision_points_and_caps(db_index, samples):
    db = None
    total = 0
    for seed in range(6):
        sampler = ObjectSample(db_index, BIG_GROUPS, DETECTION_CLASSES, min_points=1,
                               seed=seed)
        db = sampler.database
        for sample in samples:
            out = sampler(copy.deepcopy(sample))
            total += _check_sampled(sample, out, db, BIG_GROUPS)
    assert total > 40  # the checks above saw many pasted objects


def test_published_nuscenes_settings_and_caps(db_index, samples):
    sampler = ObjectSample(db_index, NUSCENES_SAMPLE_GROUPS, DETECTION_CLASSES, seed=0)
    # filter_by_min_points 5 applied to the database
    assert all((o.num_points >= 5).all() for o in sampler.database.objects.values())
    for sample in samples:
        out = sampler(copy.deepcopy(sample))
        _check_sampled(sample, out, sampler.database, NUSCENES_SAMPLE_GROUPS)
    # a sample holding 10 boxes of every class (more than every cap) gets nothing
    full = copy.deepcopy(samples[0])
    for key in BOX_KEYS:
        value = np.asarray(full[key])
        full[key] = value[np.arange(100) % len(value)]
    full["gt_labels"] = np.arange(100) % 10
    out = sampler(copy.deepcopy(full))
    assert out["num_sampled_objects"] == 0 and len(out["gt_boxes"]) == 100
    np.testing.assert_array_equal(out["points"], full["points"])


def test_same_seed_same_result_other_seeds_differ(db_index, samples):
    groups = {"car": 12, "pedestrian": 18}

    def run(seed, sample):
        return ObjectSample(db_index, groups, DETECTION_CLASSES, min_points=1,
                            seed=seed)(copy.deepcopy(sample))

    for sample in samples[2:]:
        a, b = run(7, sample), run(7, sample)
        for key in ("points",) + BOX_KEYS:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
        others = [run(s, sample) for s in (1, 2, 3)]
        assert any(len(o["gt_boxes"]) != len(a["gt_boxes"])
                   or not np.array_equal(o["gt_boxes"], a["gt_boxes"]) for o in others)
    # seed=None: numpy's global RNG, which mmengine seeds
    sampler = ObjectSample(db_index, groups, DETECTION_CLASSES, min_points=1)
    np.random.seed(11)
    a = sampler(copy.deepcopy(samples[2]))
    np.random.seed(11)
    b = sampler(copy.deepcopy(samples[2]))
    np.testing.assert_array_equal(a["points"], b["points"])
    np.testing.assert_array_equal(a["gt_boxes"], b["gt_boxes"])


# ------------------------------------------------------------------ hand-made databases
def _write_db(folder: Path, objects: dict, num_point_features: int = 4,
              time_column: bool = False) -> str:
    """A database index written by hand: ``objects[class] = [(box, points_rel,
    extra-record-fields), ...]``."""
    (folder / "gt_database").mkdir(parents=True, exist_ok=True)
    out = {}
    for cls, items in objects.items():
        out[cls] = []
        for k, (box, pts, extra) in enumerate(items):
            rel = f"gt_database/s_{cls}_{k}.bin"
            np.asarray(pts, dtype=np.float32).tofile(folder / rel)
            out[cls].append({"path": rel, "name": cls, "category": cls, "box": list(box),
                             "num_points": len(pts), "difficulty": 0, "token": "s",
                             "gt_index": k, **extra})
    meta = {"format": "lidarcl-gt-database", "format_version": 1, "dataset": "kitti",
            "num_point_features": num_point_features, "time_column": time_column}
    path = folder / "kitti_dbinfos_train.json"
    path.write_text(json.dumps({"metadata": meta, "objects": out}))
    return str(path)


def _cube_points(l, w, h, n=20, seed=0, columns=4):
    """``n`` object points relative to the box centre (x, y, z within 45 % of ``l, w, h``
    along the LiDAR axes, then ``columns - 3`` features)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-0.45, 0.45, (n, 3)) * [l, w, h],
                           rng.uniform(0, 1, (n, columns - 3))], 1)


def _scene(boxes=(), n=3000, seed=0, columns=4):
    rng = np.random.default_rng(seed)
    pts = np.concatenate([rng.uniform(-30, 30, (n, 2)), rng.uniform(-2, 1, (n, 1)),
                          rng.uniform(0, 1, (n, columns - 3))], 1).astype(np.float32)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 7)
    m = len(boxes)
    return {"points": pts, "gt_boxes": boxes, "gt_names": np.array(["Car"] * m, object),
            "gt_labels": np.zeros(m, np.int64), "gt_velocity": np.full((m, 2), np.nan,
                                                                        np.float32),
            "num_lidar_pts": np.zeros(m, np.int64), "pts_semantic_mask": np.zeros(n, np.int64)}


KITTI = ("Car", "Pedestrian", "Cyclist")


def test_collision_rule_exactly(tmp_path):
    """One box over an existing box, two over each other (OpenPCDet: both rejected), one
    in free space: only the free one is pasted, whatever the draw order."""
    car = (4.0, 1.8, 1.5)
    objects = {"Car": [
        ((0.5, 0.3, -1.0, *car, 0.4), _cube_points(*car, seed=1), {}),   # on the gt box
        ((10.0, 10.0, -1.0, *car, 0.0), _cube_points(*car, seed=2), {}),  # pair, overlapping
        ((11.0, 10.5, -1.0, *car, 0.9), _cube_points(*car, seed=3), {}),
        ((-15.0, 5.0, -1.0, *car, -1.2), _cube_points(*car, seed=4), {}),  # free
    ]}
    db_file = _write_db(tmp_path, objects)
    scene = _scene([(0.0, 0.0, -1.0, *car, 0.0)])
    for seed in range(8):
        out = ObjectSample(db_file, {"Car": 10}, KITTI, min_points=1, seed=seed)(
            copy.deepcopy(scene))
        assert out["num_sampled_objects"] == 1
        np.testing.assert_allclose(out["gt_boxes"][1], objects["Car"][3][0], atol=1e-6)
        assert list(out["gt_names"]) == ["Car", "Car"] and list(out["gt_labels"]) == [0, 0]
        assert len(out["points"]) == len(out["pts_semantic_mask"])
        assert (out["pts_semantic_mask"][-20:] == -1).all()
        assert len(out["gt_velocity"]) == 2 and np.isnan(out["gt_velocity"][1]).all()
    # touching edges: zero-area overlap is no collision
    objects = {"Car": [((4.0, 0.0, -1.0, *car, 0.0), _cube_points(*car), {})]}
    out = ObjectSample(_write_db(tmp_path / "touch", objects), {"Car": 2}, KITTI,
                       min_points=1, seed=0)(copy.deepcopy(scene))
    assert out["num_sampled_objects"] == 1


def test_caps_min_points_and_difficulty(tmp_path):
    ped = (0.8, 0.6, 1.7)
    items = []
    for i in range(40):
        n = 3 if i % 4 == 0 else 12
        items.append(((-20.0 + 2.0 * (i % 20), 10.0 + 3.0 * (i // 20), -1.0, *ped, 0.0),
                      _cube_points(*ped, n=n, seed=i), {"difficulty": -1 if i % 5 == 0 else 1}))
    db_file = _write_db(tmp_path, {"Pedestrian": items})
    scene = _scene()
    scene.update(gt_boxes=np.array([[0, -20, -1, *ped, 0]], np.float32),
                 gt_labels=np.array([1]), gt_names=np.array(["Pedestrian"], object),
                 gt_velocity=np.zeros((1, 2), np.float32), num_lidar_pts=np.array([9]))
    sampler = ObjectSample(db_file, {"Pedestrian": 15, "Car": 20}, KITTI, min_points=5,
                           remove_difficulty=[-1], seed=3)
    allowed = [i for i in range(40) if i % 4 and i % 5]
    assert len(sampler.database["Pedestrian"]) == len(allowed)
    seen = set()
    for seed in range(5):
        sampler = ObjectSample(db_file, {"Pedestrian": 15}, KITTI, min_points=5,
                               remove_difficulty=[-1], seed=seed)
        out = sampler(copy.deepcopy(scene))
        assert out["num_sampled_objects"] == 14  # cap 15 minus the one already there
        for box in out["gt_boxes"][1:]:
            i = next(j for j, it in enumerate(items) if np.allclose(it[0], box, atol=1e-5))
            assert i in allowed
            seen.add(i)
    assert len(seen) > 14  # the draws differ from seed to seed
    # cap already reached: nothing drawn
    scene_full = copy.deepcopy(scene)
    out = ObjectSample(db_file, {"Pedestrian": 1}, KITTI, min_points=5, seed=0)(scene_full)
    assert out["num_sampled_objects"] == 0


def test_draws_are_distinct_and_uniform(tmp_path):
    db_file = _write_db(tmp_path, {"Car": [((0, 0, 0, 1, 1, 1, 0), _cube_points(1, 1, 1),
                                            {})]})
    sampler = ObjectSample(db_file, {"Car": 1}, KITTI, min_points=1, seed=0)
    for n, k in ((10, 3), (10, 10), (200, 5)):  # one permutation / draws with rejection
        counts = np.zeros(n)
        runs = 3000
        for _ in range(runs):
            idx = sampler._draw(n, k)
            assert len(set(idx.tolist())) == k and idx.min() >= 0 and idx.max() < n
            counts[idx] += 1
        expected = runs * k / n
        assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_database_with_sweeps_into_keyframe_pipeline(tmp_path):
    """A database with a time column pasted into 4-column points keeps the keyframe
    points only (time 0; OpenPCDet's rule)."""
    car = (4.0, 1.8, 1.5)
    pts = _cube_points(*car, n=30, columns=5)
    pts[:, 4] = np.repeat([0.0, 0.05, 0.1], 10)
    db_file = _write_db(tmp_path, {"Car": [((8.0, 8.0, -1.0, *car, 0.2), pts, {})]},
                        num_point_features=5, time_column=True)
    out = ObjectSample(db_file, {"Car": 1}, KITTI, min_points=1, seed=0)(_scene())
    assert out["points"].shape[1] == 4
    expected = pts[:10, :4].copy()
    expected[:, :3] += (8.0, 8.0, -1.0)
    np.testing.assert_allclose(out["points"][-10:], expected, atol=1e-5)
    # 5-column database into 3-column points: refused, naming the database
    with pytest.raises(DataError, match="kitti_dbinfos_train.json.*columns"):
        ObjectSample(db_file, {"Car": 1}, KITTI, min_points=1, seed=0)(_scene(columns=3))


def test_missing_or_wrong_size_file_names_it(tmp_path, db_index):
    folder = tmp_path / "db"
    shutil.copytree(os.path.dirname(db_index), folder)
    index = folder / os.path.basename(db_index)
    cars = json.load(open(index))["objects"]["car"]
    scene = _scene(columns=5)  # empty of boxes: any drawn car is pasted and read
    for rec in cars:
        os.remove(folder / rec["path"])
    sampler = ObjectSample(str(index), {"car": 1}, DETECTION_CLASSES, min_points=1, seed=0)
    with pytest.raises(DataFileNotFound) as err:
        sampler(copy.deepcopy(scene))
    assert "gt_database/" in str(err.value) and "not found" in str(err.value)
    assert any(str(folder / r["path"]) in str(err.value) for r in cars)
    for rec in cars:
        np.zeros(7, np.float32).tofile(folder / rec["path"])
    with pytest.raises(DataError, match=r"_car_\d+\.bin: 28 bytes, but .* lists \d+ points"):
        sampler(copy.deepcopy(scene))


def test_bad_database_index_names_the_file(tmp_path, db_index):
    with pytest.raises(DataFileNotFound, match="nope.json"):
        ObjectSample(str(tmp_path / "nope.json"), {"car": 1}, DETECTION_CLASSES)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json.*not a JSON"):
        ObjectSample(str(bad), {"car": 1}, DETECTION_CLASSES)
    data = json.load(open(db_index))
    data["objects"]["car"][0]["box"] = [1, 2, 3]
    broken = tmp_path / "broken_dbinfos_train.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(DataError, match="broken_dbinfos_train.json.*'car'.* record 0: box"):
        ObjectSample(str(broken), {"car": 1}, DETECTION_CLASSES)
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"metadata": {"format": "lidarcl-info"}, "infos": []}))
    with pytest.raises(DataError, match="not a lidarcl ground-truth database"):
        ObjectSample(str(info), {"car": 1}, DETECTION_CLASSES)
    with pytest.raises(ValueError, match="not in classes"):
        ObjectSample(db_index, {"Car": 1}, DETECTION_CLASSES)


def test_after_augmentation_is_refused(db_index, samples):
    sample = copy.deepcopy(samples[0])
    sample["lidar_aug_matrix"] = np.diag([1.0, -1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="before the global augmentations"):
        ObjectSample(db_index, {"car": 5}, DETECTION_CLASSES)(sample)


# ------------------------------------------------------------------ create_data flags
def test_create_data_nuscenes_flag_builds_the_same_database(tiny_dataset, db_index,
                                                            tmp_path, capsys):
    assert _create_data().main(["nuscenes", "--root", tiny_dataset, "--version",
                                "v1.0-synthetic", "--out", str(tmp_path), "--superpixels",
                                "none", "--gt-database"]) == 0
    written = capsys.readouterr().out.split()
    assert str(tmp_path / "nuscenes_dbinfos_train.json") in written
    ours = json.load(open(tmp_path / "nuscenes_dbinfos_train.json"))
    ref = json.load(open(db_index))
    assert ours["objects"] == ref["objects"]
    assert ours["metadata"]["num_sweeps"] == 9


@REAL_DATA.needs_kitti(shipped=True)
def test_create_data_kitti_flag_on_the_real_frame(tmp_path, capsys):
    """KITTI: keyframe only, 4 columns; each record's count equals the info's
    num_lidar_pts (counted by the converter with the numpy rule) and carries the frame's
    difficulty; the published KITTI settings then sample from it."""
    root = str(REAL_DATA.kitti_root)
    assert _create_data().main(["kitti", "--root", root, "--out", str(tmp_path),
                                "--superpixels", "none", "--gt-database"]) == 0
    info = json.load(open(tmp_path / "kitti_infos_train.json"))["infos"][0]
    data = json.load(open(tmp_path / "kitti_dbinfos_train.json"))
    assert (data["metadata"]["num_point_features"], data["metadata"]["time_column"]) == (4,
                                                                                       False)
    records = [r for v in data["objects"].values() for r in v]
    assert len(records) == sum(n >= 1 for n in info["num_lidar_pts"]) > 0
    for rec in records:
        k = rec["gt_index"]
        assert (rec["name"], rec["num_points"], rec["difficulty"]) == (
            info["gt_names"][k], info["num_lidar_pts"][k], info["kitti"]["difficulty"][k])
        assert os.path.getsize(tmp_path / rec["path"]) == 16 * rec["num_points"]
    sampler = ObjectSample(str(tmp_path / "kitti_dbinfos_train.json"), KITTI_SAMPLE_GROUPS,
                           KITTI, remove_difficulty=KITTI_REMOVE_DIFFICULTY, seed=0)
    kept = sum(1 for r in data["objects"].get("Car", [])
               if r["num_points"] >= 5 and r["difficulty"] != -1)
    assert len(sampler.database["Car"]) == kept



def test_database_of_a_label_split_holds_only_its_samples(tiny_dataset, tmp_path):
    """create_data gt-database --split-file: the objects of the split's samples only, in
    their own files (a fraction's database pastes no object of an unlabelled scan)."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.datasets.splits import make_label_splits, read_split

    index = tmp_path / "nuscenes_infos_train.json"  # a copy: the splits go beside it
    shutil.copy(Path(tiny_dataset) / "nuscenes_infos_train.json", index)
    split = make_label_splits(str(index), [50], seed=0, level="frame")[50]
    tokens = set(read_split(split)["tokens"])
    infos, _ = read_info_index(index)
    assert 0 < len(tokens) < len(infos)
    out = tmp_path / "db"
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(repo / "tools" / "create_data.py"), "gt-database",
                    "--index", str(index), "--root", tiny_dataset, "--out", str(out),
                    "--split-file", str(split), "--sweeps", "none"], check=True)
    db_files = list(out.glob("*_dbinfos_train.json"))
    assert [f.name for f in db_files] == ["nuscenes_50pct_seed0_dbinfos_train.json"]
    records = [r for recs in json.loads(db_files[0].read_text())["objects"].values()
               for r in recs]
    assert records and {r["token"] for r in records} <= tokens
    assert all(r["path"].startswith("gt_database_50pct_seed0/") for r in records)
    assert not (out / "gt_database").exists()
