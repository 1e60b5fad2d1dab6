"""The detection benchmark's stand-in for 10 sweeps (benchmarks/detection.py): the sweep
records against a hand computation, and what the config's ``LoadSweeps`` makes of them."""
from __future__ import annotations

import json

import numpy as np

from benchmarks.detection import stand_in_sweeps, turn_database
from lidarcl.datasets.transforms.loading import LoadPoints, LoadSweeps


def _nuscenes_like_lidar2ego():
    """LiDAR x = ego -y, LiDAR y = ego x (nuScenes' LIDAR_TOP), 1.84 m up, 0.94 m ahead."""
    m = np.eye(4)
    m[:3, :3] = [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    m[:3, 3] = [0.94, 0.0, 1.84]
    return m


def test_stand_in_sweeps_by_hand():
    sweeps = stand_in_sweeps(_nuscenes_like_lidar2ego())
    assert len(sweeps) == 9
    assert np.allclose([s["time_lag"] for s in sweeps], [0.05 * k for k in range(1, 10)])
    # ego 0.5 k m back along ego x = LiDAR y: a point of sweep k sits 0.5 k m further
    # back along the keyframe's LiDAR y, nothing else changes
    for k, sweep in enumerate(sweeps, start=1):
        expected = np.eye(4)
        expected[1, 3] = -0.5 * k
        np.testing.assert_allclose(sweep["sweep2lidar"], expected, atol=1e-12)
    # identity mounting: the displacement is along the LiDAR's own x
    np.testing.assert_allclose(stand_in_sweeps(np.eye(4), num_sweeps=2, step_m=1.0)[1]
                               ["sweep2lidar"], [[1, 0, 0, -2], [0, 1, 0, 0], [0, 0, 1, 0],
                                                 [0, 0, 0, 1]])


def test_load_sweeps_merges_the_stand_in(tmp_path):
    """The keyframe file as its own 9 sweeps: 10 copies, copy k moved by -0.5 k m along
    LiDAR y with time 0.05 k; the sweeps lose their points within 1 m of the sensor."""
    points = np.array([[10.0, 2.0, -1.0, 5.0, 0.0], [-3.0, 20.0, 0.5, 7.0, 1.0],
                       [0.5, -0.5, 0.0, 1.0, 2.0]], dtype=np.float32)   # last: close
    path = tmp_path / "key.bin"
    points.tofile(path)
    sweeps = [{**s, "path": str(path)} for s in stand_in_sweeps(_nuscenes_like_lidar2ego())]
    sample = {"lidar_path": str(path), "num_point_features": 5, "sweeps": sweeps}
    sample = LoadSweeps(num_sweeps=9)(LoadPoints(use_dims=[0, 1, 2, 3])(sample))
    merged = sample["points"]
    assert merged.shape == (3 + 9 * 2, 5)
    np.testing.assert_allclose(merged[:3], np.c_[points[:, :4], np.zeros(3)])
    for k in range(1, 10):
        copy = merged[3 + 2 * (k - 1): 3 + 2 * k]
        expected = np.c_[points[:2, :4], np.full(2, 0.05 * k)]
        expected[:, 1] -= 0.5 * k
        np.testing.assert_allclose(copy, expected, atol=1e-5)


def test_turn_database(tmp_path):
    """180 degrees about z: box centre and stored points negated in x and y, yaw + pi
    wrapped to [-pi, pi), velocity negated (unknown stays unknown)."""
    (tmp_path / "db").mkdir()
    rel = np.array([[1.0, -2.0, 0.5, 9.0, 0.0]], dtype=np.float32)
    rel.tofile(tmp_path / "db" / "a.bin")
    rel.tofile(tmp_path / "db" / "b.bin")
    index = {"metadata": {"num_point_features": 5}, "objects": {
        "car": [{"path": "db/a.bin", "box": [4.0, -3.0, 1.0, 4.5, 2.0, 1.6, 0.5],
                 "velocity": [1.0, -2.0]}],
        "truck": [{"path": "db/b.bin", "box": [1.0, 2.0, 0.0, 9.0, 3.0, 3.5, 3.0],
                   "velocity": [None, None]}]}}
    db_file = tmp_path / "dbinfos.json"
    db_file.write_text(json.dumps(index))
    assert turn_database(db_file) == {"car": 1, "truck": 1}
    turned = json.loads(db_file.read_text())["objects"]
    np.testing.assert_allclose(turned["car"][0]["box"],
                               [-4.0, 3.0, 1.0, 4.5, 2.0, 1.6, 0.5 - np.pi])
    np.testing.assert_allclose(turned["truck"][0]["box"],
                               [-1.0, -2.0, 0.0, 9.0, 3.0, 3.5, 3.0 - np.pi])
    assert turned["car"][0]["velocity"] == [-1.0, 2.0]
    assert turned["truck"][0]["velocity"] == [None, None]
    np.testing.assert_array_equal(np.fromfile(tmp_path / "db" / "a.bin", np.float32),
                                  [-1.0, 2.0, 0.5, 9.0, 0.0])
