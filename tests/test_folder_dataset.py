"""FolderDataset: .bin / .npy / .pcd / .ply scans give the same points back through the
ordinary pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lidarcl.datasets.collate import collate_samples
from lidarcl.datasets.folder_dataset import FolderDataset
from lidarcl.datasets.transforms import LoadPoints, PackSample, PointsRangeFilter
from lidarcl.errors import DataError, DataFileNotFound


def _cloud(n=50, cols=4, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-20, 20, size=(n, cols)).astype(np.float32)
    if cols > 3:
        pts[:, 3] = rng.uniform(0, 1, n)
    return pts


def _write_o3d(path, xyz):
    o3d = pytest.importorskip("open3d")
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(xyz.astype(np.float64))
    assert o3d.io.write_point_cloud(str(path), cloud)


def test_reads_every_format_and_gives_points_back(tmp_path):
    bin_pts, npy_pts, pcd_pts, ply_pts = _cloud(seed=1), _cloud(seed=2), _cloud(seed=3), \
        _cloud(seed=4)
    bin_pts.tofile(tmp_path / "a.bin")
    np.save(tmp_path / "b.npy", npy_pts)
    _write_o3d(tmp_path / "c.pcd", pcd_pts[:, :3])
    _write_o3d(tmp_path / "d.ply", ply_pts[:, :3])
    (tmp_path / "notes.txt").write_text("not a scan")
    ds = FolderDataset(str(tmp_path), pipeline=[dict(type="lidarcl.LoadPoints", use_dims=None)])
    assert len(ds) == 4
    out = [ds[i] for i in range(4)]
    assert [o["token"] for o in out] == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(out[0]["points"], bin_pts)
    np.testing.assert_array_equal(out[1]["points"], npy_pts)
    np.testing.assert_allclose(out[2]["points"][:, :3], pcd_pts[:, :3], atol=1e-5)
    np.testing.assert_allclose(out[3]["points"][:, :3], ply_pts[:, :3], atol=1e-5)
    np.testing.assert_array_equal(out[2]["points"][:, 3], 0)  # no colours: intensity 0
    for o in out:
        assert o["gt_boxes"].shape == (0, 7) and o["cams"] == {} and o["sweeps"] == []
        np.testing.assert_array_equal(o["lidar2ego"], np.eye(4))
        assert o["num_dropped_points"] == 0


def test_bin_columns_configurable_recursive_and_suffixes(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    five = _cloud(cols=5)
    five.tofile(tmp_path / "top.bin")
    five.tofile(tmp_path / "sub" / "deeper" / "x.bin")
    np.save(tmp_path / "sub" / "y.npy", _cloud(cols=5))
    flat = FolderDataset(str(tmp_path), num_point_features=5)
    assert len(flat) == 1
    rec = FolderDataset(str(tmp_path), num_point_features=5, recursive=True,
                        pipeline=[LoadPoints(use_dims=(0, 1, 2, 3, 4))])
    assert [rec.get_data_info(i)["token"] for i in range(len(rec))] == \
        ["sub/deeper/x", "sub/y", "top"]
    np.testing.assert_array_equal(rec[0]["points"], five)
    only_npy = FolderDataset(str(tmp_path), recursive=True, suffixes=(".npy",))
    assert len(only_npy) == 1 and only_npy.get_data_info(0)["num_point_features"] == 5


def test_nan_points_in_folder_scan_dropped_with_count(tmp_path):
    pts = _cloud()
    pts[[4, 9], 1] = np.nan
    pts.tofile(tmp_path / "nan.bin")
    ds = FolderDataset(str(tmp_path), pipeline=[LoadPoints()])
    out = ds[0]
    assert out["num_dropped_points"] == 2 and len(out["points"]) == 48


def test_pipeline_pack_and_collate_from_folder(tmp_path):
    for i, n in enumerate((30, 5, 12)):
        _cloud(n=n, seed=i).tofile(tmp_path / f"{i}.bin")
    ds = FolderDataset(str(tmp_path), pipeline=[
        LoadPoints(), PointsRangeFilter([-50, -50, -50, 50, 50, 50]), PackSample()])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_samples)
    batch = next(iter(loader))
    assert batch["offsets"].tolist() == [30, 35, 47]
    assert batch["points"].shape == (47, 4)
    torch.testing.assert_close(batch["points"][35:], torch.from_numpy(_cloud(n=12, seed=2)))
    assert [len(b) for b in batch["gt_boxes"]] == [0, 0, 0]


def test_missing_folder(tmp_path):
    with pytest.raises(DataFileNotFound, match="scan folder not found") as err:
        FolderDataset(str(tmp_path / "nowhere"))
    assert "nowhere" in str(err.value)


def test_folder_without_scans(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    _cloud().tofile(tmp_path / "sub" / "deep.bin")
    with pytest.raises(DataError, match="no point files") as err:
        FolderDataset(str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_bad_files_in_folder_name_the_file(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(10, np.float32))
    np.zeros(7, np.float32).tofile(tmp_path / "trunc.bin")
    ds = FolderDataset(str(tmp_path), pipeline=[LoadPoints(use_dims=None)], test_mode=True)
    with pytest.raises(DataError, match="flat.npy"):
        ds[0]
    with pytest.raises(DataError, match="trunc.bin"):
        ds[1]


def test_registered_and_built_from_config(tmp_path):
    from lidarcl.registry import DATASETS

    _cloud().tofile(tmp_path / "a.bin")
    ds = DATASETS.build(dict(type="FolderDataset", data_root=str(tmp_path),
                             pipeline=[dict(type="lidarcl.LoadPoints")]))
    assert isinstance(ds, FolderDataset) and ds[0]["points"].shape == (50, 4)
