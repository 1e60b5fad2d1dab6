"""Bad input to the loading transforms: every error names the offending file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lidarcl.datasets.transforms import (LoadImages, LoadLidarsegLabels, LoadPoints,
                                         LoadSweeps)
from lidarcl.errors import DataError, DataFileNotFound


def _sample(tmp_path, points=None, name="key.bin") -> dict:
    points = np.arange(40, dtype=np.float32).reshape(10, 4) + 2 if points is None else points
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, points)
    else:
        points.astype(np.float32).tofile(path)
    return {"token": "tok123", "lidar_path": str(path), "num_point_features": 4, "sweeps": [],
            "cams": {}, "lidarseg_path": None}


def _camera(tmp_path, name="cam.png", hw=(20, 30), write=True, **overrides) -> dict:
    path = tmp_path / name
    if write:
        Image.fromarray(np.zeros((*hw, 3), np.uint8)).save(path)
    cam2img = np.array([[10.0, 0, 15], [0, 10, 10], [0, 0, 1]])
    cam = {"path": str(path), "height": 20, "width": 30, "cam2img": cam2img,
           "lidar2cam": np.eye(4)}
    cam.update(overrides)
    return cam


def test_truncated_point_file(tmp_path):
    sample = _sample(tmp_path)
    with open(sample["lidar_path"], "ab") as f:
        f.write(b"\x00" * 6)  # 166 bytes: not a multiple of 16
    with pytest.raises(DataError, match="not a multiple") as err:
        LoadPoints()(sample)
    assert sample["lidar_path"] in str(err.value)


def test_wrong_column_count_for_use_dims(tmp_path):
    sample = _sample(tmp_path)
    with pytest.raises(DataError, match="use_dims") as err:
        LoadPoints(use_dims=(0, 1, 2, 3, 4))(sample)
    assert sample["lidar_path"] in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_coordinates_dropped_with_count_or_raised(tmp_path, bad):
    pts = np.arange(40, dtype=np.float32).reshape(10, 4) + 2
    pts[3, 0] = bad
    pts[7, 2] = np.nan
    pts[5, 3] = np.nan  # NaN intensity is not a coordinate: kept
    sample = LoadPoints()(_sample(tmp_path, pts))
    assert sample["num_dropped_points"] == 2
    assert len(sample["points"]) == 8
    assert np.isfinite(sample["points"][:, :3]).all()
    np.testing.assert_array_equal(np.flatnonzero(~sample["valid_point_mask"]), [3, 7])
    with pytest.raises(DataError, match="NaN or infinite") as err:
        LoadPoints(strict=True)(_sample(tmp_path, pts))
    assert str(tmp_path / "key.bin") in str(err.value)


def test_missing_point_file(tmp_path):
    sample = _sample(tmp_path)
    sample["lidar_path"] = str(tmp_path / "nope.bin")
    with pytest.raises(DataFileNotFound, match="nope.bin"):
        LoadPoints()(sample)


def test_npy_wrong_shape(tmp_path):
    sample = _sample(tmp_path, np.zeros(12, np.float32), name="flat.npy")
    sample["num_point_features"] = None
    with pytest.raises(DataError, match="shape") as err:
        LoadPoints()(sample)
    assert "flat.npy" in str(err.value)
    sample = _sample(tmp_path, np.zeros((4, 3), np.float32), name="three.npy")
    with pytest.raises(DataError, match="columns") as err:  # info says 4 columns
        LoadPoints()(sample)
    assert "three.npy" in str(err.value)


def test_missing_sweep_file(tmp_path):
    sample = LoadPoints()(_sample(tmp_path))
    sample["sweeps"] = [{"path": str(tmp_path / "sweeps" / "gone.bin"),
                         "sweep2lidar": np.eye(4), "time_lag": 0.05}]
    with pytest.raises(DataFileNotFound) as err:
        LoadSweeps()(sample)
    assert "gone.bin" in str(err.value) and "tok123" in str(err.value)


def test_sweep_transform_wrong_shape_and_truncated_sweep(tmp_path):
    np.zeros((3, 4), np.float32).tofile(tmp_path / "sw.bin")
    sample = LoadPoints()(_sample(tmp_path))
    sample["sweeps"] = [{"path": str(tmp_path / "sw.bin"), "sweep2lidar": np.eye(3),
                         "time_lag": 0.05}]
    with pytest.raises(DataError, match="4x4") as err:
        LoadSweeps()(dict(sample))
    assert "sw.bin" in str(err.value)
    np.zeros(7, np.float32).tofile(tmp_path / "sw.bin")
    sample["sweeps"][0]["sweep2lidar"] = np.eye(4)
    with pytest.raises(DataError, match="not a multiple") as err:
        LoadSweeps()(dict(sample))
    assert "sw.bin" in str(err.value)


def test_missing_image_file(tmp_path):
    sample = _sample(tmp_path)
    sample["cams"] = {"CAM_FRONT": _camera(tmp_path, "missing.jpg", write=False)}
    with pytest.raises(DataFileNotFound) as err:
        LoadImages()(sample)
    assert "missing.jpg" in str(err.value)


def test_image_size_differs_from_info(tmp_path):
    sample = _sample(tmp_path)
    sample["cams"] = {"CAM_FRONT": _camera(tmp_path, "small.png", hw=(10, 30))}
    with pytest.raises(DataError, match="10x30") as err:
        LoadImages()(sample)
    assert "small.png" in str(err.value)


def test_unreadable_image(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    sample = _sample(tmp_path)
    sample["cams"] = {"CAM_FRONT": _camera(tmp_path, "junk.jpg", write=False)}
    with pytest.raises(DataError, match="junk.jpg"):
        LoadImages()(sample)


@pytest.mark.parametrize("key,value,match", [
    ("lidar2cam", np.eye(3), "lidar2cam must be 4x4"),
    ("cam2img", np.eye(2), "cam2img must be 3x3, 3x4 or 4x4"),
    ("lidar2img", np.eye(3), "lidar2img must be 4x4"),
    ("lidar2img", np.eye(4) * 2, "differs"),
    ("lidar2cam", np.full((4, 4), np.nan), "NaN"),
])
def test_calibration_of_wrong_shape(tmp_path, key, value, match):
    sample = _sample(tmp_path)
    sample["cams"] = {"CAM_FRONT": _camera(tmp_path, "cam.png", **{key: value})}
    with pytest.raises(DataError, match=match) as err:
        LoadImages()(sample)
    msg = str(err.value)
    assert "cam.png" in msg and "tok123" in msg and "CAM_FRONT" in msg


def test_requested_camera_missing(tmp_path):
    sample = _sample(tmp_path)
    sample["cams"] = {"CAM_FRONT": _camera(tmp_path)}
    with pytest.raises(DataError, match="CAM_BACK") as err:
        LoadImages(channels=["CAM_BACK"])(sample)
    assert "tok123" in str(err.value)


def test_lidarseg_length_mismatch(tmp_path):
    sample = _sample(tmp_path)
    np.zeros(9, np.uint8).tofile(tmp_path / "seg.bin")  # 10 points
    sample["lidarseg_path"] = str(tmp_path / "seg.bin")
    with pytest.raises(DataError, match="9 labels") as err:
        LoadLidarsegLabels()(LoadPoints()(sample))
    assert "seg.bin" in str(err.value) and "key.bin" in str(err.value)


def test_lidarseg_missing_file_or_path(tmp_path):
    sample = _sample(tmp_path)
    sample["lidarseg_path"] = str(tmp_path / "noseg.bin")
    with pytest.raises(DataFileNotFound, match="noseg.bin"):
        LoadLidarsegLabels()(LoadPoints()(sample))
    sample = _sample(tmp_path)
    with pytest.raises(DataError, match="no lidarseg_path"):
        LoadLidarsegLabels()(LoadPoints()(sample))


def test_lidarseg_after_filtering_is_refused(tmp_path):
    sample = LoadPoints()(_sample(tmp_path))
    np.zeros(10, np.uint8).tofile(tmp_path / "seg.bin")
    sample["lidarseg_path"] = str(tmp_path / "seg.bin")
    sample["points"] = sample["points"][:5]
    with pytest.raises(ValueError, match="right after LoadPoints"):
        LoadLidarsegLabels()(sample)


def test_info_index_boxes_of_wrong_width_name_the_index(tmp_path):
    from lidarcl.datasets.info_format import write_info_index
    from lidarcl.datasets.kitti_dataset import KittiDataset

    eye = np.eye(4).tolist()
    info = {"token": "000001", "lidar_path": "velodyne/000001.bin", "num_point_features": 4,
            "lidar2ego": eye, "ego2global": eye, "sweeps": [], "cams": {},
            # 9 columns (velocity appended): was a bare numpy reshape error naming no file
            "gt_boxes": [[float(v) for v in range(9)]], "gt_names": ["Car"]}
    path = tmp_path / "kitti_infos_train.json"
    write_info_index(path, [info], {"dataset": "kitti"})
    with pytest.raises(DataError, match=r"gt_boxes must be \(M, 7\)") as err:
        KittiDataset(ann_file=str(path), data_root=str(tmp_path), test_mode=True)
    assert str(path) in str(err.value)


def test_load_points_requires_xyz_first():
    from lidarcl.datasets.transforms import LoadPoints

    with pytest.raises(ValueError, match="x, y, z"):
        LoadPoints(use_dims=(3, 0, 1, 2))
