"""Regression tests of the hardening issue: paths confined to their root, sanity bounds on
point files, empty scans, info index field types, the region cache (token names, read-only
roots, tagging), folder scanning (symlink loops, cache folders) and voxelisation overflow.
Each case was a silent wrong result, a foreign traceback or a write outside a root."""
from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lidarcl.datasets.info_format import read_info_index, write_info_index
from lidarcl.datasets.io import MAX_ABS_COORDINATE, load_points
from conftest import REAL_DATA
from lidarcl.errors import DataError

EYE = np.eye(4).tolist()


def _scan(n=200, seed=0) -> np.ndarray:
    """A scan in sensor order: points along a sweep of rings, as a LiDAR writes them."""
    rng = np.random.default_rng(seed)
    azimuth = np.linspace(-np.pi, np.pi, n)
    radius = 10 + np.cumsum(rng.normal(0, 0.05, n))
    return np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth),
                     -1.7 + rng.normal(0, 0.02, n), rng.uniform(0, 1, n)], 1).astype(np.float32)


def _info(token="tok", lidar_path="points/a.bin", **overrides) -> dict:
    info = {"token": token, "lidar_path": lidar_path, "num_point_features": 4,
            "lidar2ego": EYE, "ego2global": EYE, "sweeps": [], "cams": {}, "gt_boxes": [],
            "gt_names": []}
    info.update(overrides)
    return info


def _dataset(tmp_path, infos, test_mode=True, pipeline=(), name="kitti"):
    from lidarcl.datasets.kitti_dataset import KittiDataset

    index = tmp_path / "index" / f"{name}_infos.json"
    write_info_index(index, infos, {"dataset": "kitti"})
    return index, KittiDataset(ann_file=str(index), data_root=str(tmp_path / "root"),
                               pipeline=list(pipeline), test_mode=test_mode)


# ------------------------------------------------------------------------ paths confined
@pytest.mark.parametrize("field,value", [
    ("lidar_path", "../../../etc/passwd"),
    ("lidar_path", "/etc/passwd"),
    ("lidarseg_path", "../outside.bin"),
    ("sweeps", [{"path": "../../x.bin", "sweep2lidar": EYE, "time_lag": 0.05}]),
    ("cams", {"CAM2": {"path": "../../img.png", "height": 2, "width": 2, "cam2img": EYE,
                       "lidar2cam": EYE}}),
    ("cams", {"CAM2": {"path": "img.png", "height": 2, "width": 2, "cam2img": EYE,
                       "lidar2cam": EYE, "superpixel_path": "../../sp.png"}}),
])
def test_index_paths_leaving_the_root_name_the_index_and_the_entry(tmp_path, field, value):
    (tmp_path / "root").mkdir()
    index, ds = _dataset(tmp_path, [_info(**{field: value})])
    with pytest.raises(DataError, match="leaves its root") as err:
        ds.get_data_info(0)
    message = str(err.value)
    assert message.startswith(str(index)) and "tok" in message
    bad = value if isinstance(value, str) else json.dumps(value)
    assert any(part in message for part in ("passwd", "outside.bin", "x.bin", "img.png",
                                            "sp.png")), (bad, message)


def test_index_paths_inside_the_root_are_accepted_relative_or_absolute(tmp_path):
    root = tmp_path / "root"
    (root / "points").mkdir(parents=True)
    _, ds = _dataset(tmp_path, [_info(), _info("t2", str(root / "points" / "b.bin")),
                                _info("t3", "points/../points/c.bin")])
    assert ds.get_data_info(0)["lidar_path"] == str(root / "points" / "a.bin")
    assert ds.get_data_info(1)["lidar_path"] == str(root / "points" / "b.bin")
    assert ds.get_data_info(2)["lidar_path"] == str(root / "points" / "c.bin")


def test_symlinks_the_user_placed_inside_the_root_are_followed(tmp_path):
    """nuScenes set-ups often link samples/ to another disk: that is the user's layout."""
    disk = tmp_path / "disk"
    disk.mkdir()
    _scan().tofile(disk / "a.bin")
    (tmp_path / "root").mkdir()
    os.symlink(disk, tmp_path / "root" / "points")
    from lidarcl.datasets.transforms import LoadPoints

    _, ds = _dataset(tmp_path, [_info()], pipeline=[LoadPoints()])
    assert len(ds[0]["points"]) == 200


def test_region_cache_never_leaves_its_folder_for_a_hostile_token(tmp_path):
    from lidarcl.datasets.regions import cached_regions, region_cache_path

    cache = tmp_path / "data" / "cache"
    points = _scan(300)
    for token in ("../../x", "/tmp/abs", "a/b", "..", "ok_token-1.2"):
        labels = cached_regions(points, token, str(cache))
        path = Path(region_cache_path(str(cache), token))
        assert path.parent.parent == cache and path.is_file(), (token, path)
        np.testing.assert_array_equal(np.load(path), labels)
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "data" / "x.npy").exists()
    assert Path(region_cache_path(str(cache), "ok_token-1.2")).name == "ok_token-1.2.npy"
    # distinct tokens never share a file
    names = {Path(region_cache_path(str(cache), t)).name for t in ("a/b", "a_b", "a b")}
    assert len(names) == 3


def test_superpixel_maps_never_leave_their_folder_for_a_hostile_token(tmp_path):
    pytest.importorskip("skimage")
    from PIL import Image

    from lidarcl.datasets.superpixels import create_superpixels

    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8)).save(
        root / "img" / "a.png")
    cam = {"path": "img/a.png", "height": 24, "width": 32, "cam2img": EYE, "lidar2cam": EYE}
    infos = [_info("../../../evil", cams={"CAM_FRONT": cam}),
             _info("t2", cams={"../../CAM": cam})]
    out = tmp_path / "out"
    index = out / "idx.json"
    write_info_index(index, infos, {"dataset": "kitti"})
    result = create_superpixels(index, root, n_segments=4)
    written = sorted(p for p in tmp_path.rglob("*.png") if "img" not in p.parts)
    assert len(written) == 2 and all(out / "superpixels" in p.parents for p in written)
    assert result["computed"] == 2
    # the index records them, relative to its folder and inside it
    infos, _ = read_info_index(index)
    for info in infos:
        for cam in info["cams"].values():
            assert (out / cam["superpixel_path"]).resolve() in [p.resolve() for p in written]
    # an image path that leaves the data root is refused, naming the index
    write_info_index(index, [_info(cams={"CAM_FRONT": {**cam, "path": "../../etc/x.png"}})],
                     {"dataset": "kitti"})
    with pytest.raises(DataError, match="leaves its root") as err:
        create_superpixels(index, root, n_segments=4)
    assert str(index) in str(err.value)


# ------------------------------------------------------------ info index field types
@pytest.mark.parametrize("change,match", [
    (dict(num_point_features=0), "num_point_features must be an integer >= 3"),
    (dict(num_point_features=-4), "num_point_features must be an integer >= 3"),
    (dict(num_point_features="4"), "num_point_features must be an integer >= 3"),
    (dict(num_point_features=True), "num_point_features must be an integer >= 3"),
    (dict(num_point_features=4.5), "num_point_features must be an integer >= 3"),
    (dict(lidar2ego=[[1, 0], [0, 1]]), r"lidar2ego must be a finite 4x4 matrix, got shape \(2, 2\)"),
    (dict(ego2global=[["a"] * 4] * 4), "ego2global must be a 4x4 numeric matrix"),
    (dict(lidar_path=5), "lidar_path must be a non-empty string"),
    (dict(lidar_path=""), "lidar_path must be a non-empty string"),
    (dict(token=""), "token must be a non-empty string"),
    (dict(token=None), "token must be a non-empty string"),
    (dict(sweeps={}), "sweeps must be a list"),
    (dict(sweeps=[{"path": "s.bin", "sweep2lidar": np.eye(3).tolist()}]), "sweep 0 sweep2lidar"),
    (dict(sweeps=[{"path": "s.bin", "sweep2lidar": EYE, "time_lag": "x"}]), "time_lag"),
    (dict(cams=[]), "cams must be an object"),
    (dict(cams={"C": {"path": "a.png"}}), "camera C lacks keys"),
    (dict(cams={"C": {"path": "a.png", "height": 0, "width": 4, "cam2img": EYE,
                      "lidar2cam": EYE}}), "camera C height must be an integer >= 1"),
    (dict(gt_boxes=[[1, 2, 3]]), r"gt_boxes must be \(M, 7\)"),
    (dict(gt_boxes="none"), "gt_boxes must be a list"),
    (dict(gt_names=[1]), "gt_names must be strings"),
    (dict(gt_boxes=[[0.0] * 7], gt_names=["Car"], gt_velocity=[[1, 2, 3]]),
     r"gt_velocity must be \(1, 2\)"),
    (dict(gt_boxes=[[0.0] * 7], gt_names=["Car"], gt_velocity="x"), "gt_velocity"),
    (dict(gt_boxes=[[0.0] * 7], gt_names=["Car"], num_lidar_pts=["a"]),
     "num_lidar_pts must be integers"),
    (dict(gt_boxes=[[0.0] * 7], gt_names=["Car"], num_lidar_pts=[1, 2]),
     "num_lidar_pts must be a list of 1"),
    (dict(gt_boxes=[[0.0] * 7], gt_names=[]), "gt_names must be a list of 1"),
])
def test_info_index_fields_of_the_wrong_type_name_the_index_and_field(tmp_path, change, match):
    path = tmp_path / "infos.json"
    write_info_index(path, [_info(**change)], {"dataset": "kitti"})
    with pytest.raises(DataError, match=match) as err:
        read_info_index(path)
    assert str(err.value).startswith(str(path)) and "sample 0" in str(err.value)


@pytest.mark.parametrize("infos,match", [
    ([5], "sample 0 must be an object"),
    (["x"], "sample 0 must be an object"),
    ([_info(), _info()], "samples 0 and 1 share the token"),
    ({"a": 1}, "no 'infos' list"),
])
def test_info_index_with_a_broken_list_names_the_index(tmp_path, infos, match):
    path = tmp_path / "infos.json"
    path.write_text(json.dumps({"metadata": {"format": "lidarcl-info", "format_version": 1},
                                "infos": infos}))
    with pytest.raises(DataError, match=match) as err:
        read_info_index(path)
    assert str(path) in str(err.value)


def test_info_index_that_is_binary_garbage_names_the_index(tmp_path):
    path = tmp_path / "infos.json"
    path.write_bytes(b"\xff\xfe\x00garbage\x9c")
    with pytest.raises(DataError, match="not a JSON info index") as err:
        read_info_index(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------- point files
def test_float64_bin_is_refused_with_the_likely_layout(tmp_path):
    path = tmp_path / "double.bin"
    _scan(500).astype(np.float64).tofile(path)
    with pytest.raises(DataError, match="float64") as err:
        load_points(path, 4)
    assert str(path) in str(err.value)


def test_wrong_column_count_on_the_real_nuscenes_file_is_refused(tmp_path):
    """The real keyframe has 5 columns; read as 4 (its size allows it) it is garbage."""
    source = REAL_DATA.nuscenes_lidar_file(shipped_scan=True)  # its size: 34,688 x 5 x 4
    points, dropped = load_points(source, 5)
    assert dropped == 0 and len(points) > 30000
    assert os.path.getsize(source) % 16 == 0
    with pytest.raises(DataError, match="5 float32 columns|num_point_features") as err:
        load_points(source, 4)
    assert str(source) in str(err.value)


def test_wrong_column_count_on_the_real_kitti_file_is_refused(tmp_path):
    source = REAL_DATA.kitti_file("velodyne", ".bin")  # any KITTI copy
    points, dropped = load_points(source, 4)
    assert dropped == 0 and len(points) > 10000
    rows = len(points) - len(points) % 15  # a row count that 3, 5 and 6 columns all divide
    path = tmp_path / "kitti.bin"
    points[:rows].tofile(path)
    load_points(path, 4)
    for wrong in (3, 5, 6):
        with pytest.raises(DataError, match="num_point_features|implausible") as err:
            load_points(path, wrong)
        assert str(path) in str(err.value)


def test_generated_scans_read_without_a_layout_complaint(synthetic_root):
    files = sorted(Path(synthetic_root.dataroot).rglob("*.pcd.bin"))[:6]
    assert files
    for path in files:
        points, dropped = load_points(path, 5)
        assert dropped == 0 and len(points) > 1000


def test_shuffled_scans_are_not_mistaken_for_a_wrong_layout(tmp_path):
    points = _scan(4000)
    path = tmp_path / "shuffled.bin"
    points[np.random.default_rng(1).permutation(len(points))].tofile(path)
    assert len(load_points(path, 4)[0]) == 4000


def test_implausible_coordinates_few_dropped_with_a_count_many_refused(tmp_path, caplog):
    points = _scan(1000)
    points[[3, 500], 0] = 5e7
    points[7, 2] = -2e5
    path = tmp_path / "far.bin"
    points.tofile(path)
    with caplog.at_level(logging.WARNING):
        kept, dropped = load_points(path, 4)
    assert dropped == 3 and len(kept) == 997 and np.abs(kept[:, :3]).max() <= MAX_ABS_COORDINATE
    assert str(path) in caplog.text and "implausible" in caplog.text
    with pytest.raises(DataError, match="implausible"):
        load_points(path, 4, drop_nonfinite=False)
    points[:600, 1] = 1e9
    points.tofile(path)
    with pytest.raises(DataError, match="600 of 1000 points") as err:
        load_points(path, 4)
    assert str(path) in str(err.value)


def test_npy_of_strings_or_objects_is_refused(tmp_path):
    path = tmp_path / "strings.npy"
    np.save(path, np.array([["1", "2", "3", "4"]] * 5))
    with pytest.raises(DataError, match="numeric array") as err:
        load_points(path)
    assert str(path) in str(err.value)
    np.save(path, np.array([["a", "b", "c"]]))
    with pytest.raises(DataError, match="numeric array"):
        load_points(path)


def _pcd(points: np.ndarray, declared: int, kind="binary") -> bytes:
    header = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
              f"WIDTH {declared}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {declared}\n"
              f"DATA {kind}\n").encode()
    if kind == "ascii":
        return header + "".join(f"{x} {y} {z}\n" for x, y, z in points).encode()
    return header + points.astype(np.float32).tobytes()


@pytest.mark.parametrize("kind", ["binary", "ascii"])
def test_pcd_whose_header_promises_more_points_than_it_holds(tmp_path, kind):
    pytest.importorskip("open3d")
    xyz = _scan(50)[:, :3]
    good = tmp_path / "good.pcd"
    good.write_bytes(_pcd(xyz, 50, kind))
    np.testing.assert_allclose(load_points(good)[0][:, :3], xyz, rtol=1e-5, atol=1e-4)
    bad = tmp_path / "bad.pcd"
    bad.write_bytes(_pcd(xyz, 5000, kind))
    with pytest.raises(DataError, match="promises 5000 points") as err:
        load_points(bad)
    assert str(bad) in str(err.value)


# ---------------------------------------------------------------------- empty scans
def test_empty_scan_is_skipped_with_a_warning_or_an_error(tmp_path, caplog):
    from lidarcl.datasets.transforms import LoadPoints

    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    sample = {"token": "e1", "lidar_path": str(path), "num_point_features": 4}
    with caplog.at_level(logging.WARNING):
        assert LoadPoints()(dict(sample)) is None
    assert str(path) in caplog.text and "empty scan" in caplog.text
    with pytest.raises(DataError, match="empty scan") as err:
        LoadPoints(skip_empty=False)(dict(sample))
    assert str(path) in str(err.value)


def _two_scan_dataset(tmp_path, test_mode, pipeline):
    root = tmp_path / "root"
    (root / "points").mkdir(parents=True)
    _scan().tofile(root / "points" / "a.bin")
    (root / "points" / "b.bin").write_bytes(b"")
    return _dataset(tmp_path, [_info("a", "points/a.bin"), _info("b", "points/b.bin")],
                    test_mode=test_mode, pipeline=pipeline)


def test_datasets_skip_empty_scans_in_training_and_name_them_in_evaluation(tmp_path):
    from lidarcl.datasets.transforms import LoadPoints, PackSample

    pipeline = [LoadPoints(), PackSample(keys=["points"])]
    _, train = _two_scan_dataset(tmp_path, False, pipeline)
    for _ in range(5):  # the empty one is replaced by a drawn non-empty one
        assert train[1]["points"].shape == (200, 4)
    _, test = _two_scan_dataset(tmp_path / "t", True, pipeline)
    assert test[0]["points"].shape == (200, 4)
    with pytest.raises(DataError, match="cannot skip samples") as err:
        test[1]
    assert "b.bin" in str(err.value)


def test_a_scan_emptied_by_the_range_filter_is_skipped_before_the_backbone(tmp_path):
    from lidarcl.datasets.transforms import LoadPoints, PackSample, PointsRangeFilter

    pipeline = [LoadPoints(), PointsRangeFilter([50, 50, -5, 60, 60, 3]),
                PackSample(keys=["points"])]
    _, train = _two_scan_dataset(tmp_path, False, pipeline)
    train.max_refetch = 3
    with pytest.raises(DataError, match="all skipped by the pipeline"):
        train[0]


def test_folder_dataset_skips_an_empty_scan(tmp_path):
    from lidarcl.datasets.folder_dataset import FolderDataset
    from lidarcl.datasets.transforms import LoadPoints, PackSample

    _scan().tofile(tmp_path / "a.bin")
    (tmp_path / "b.bin").write_bytes(b"")
    ds = FolderDataset(str(tmp_path), pipeline=[LoadPoints(), PackSample(keys=["points"])])
    assert ds[1]["points"].shape == (200, 4)


# --------------------------------------------------------------------- voxelisation
def test_voxelize_without_a_range_refuses_a_huge_coordinate():
    from lidarcl.ops.voxelize import voxelize

    points = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1e30, 0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="too large"):
        voxelize(points, torch.tensor([2]), 0.1)
    ok = voxelize(points[:1], torch.tensor([1]), 0.1)
    assert ok.coords.shape[0] == 1


# ------------------------------------------------------------- folders and the cache
def test_recursive_folder_with_a_symlink_loop_lists_each_scan_once(tmp_path):
    from lidarcl.datasets.folder_dataset import FolderDataset

    (tmp_path / "a" / "b").mkdir(parents=True)
    _scan().tofile(tmp_path / "a" / "b" / "scan.bin")
    _scan().tofile(tmp_path / "top.bin")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")
    os.symlink(tmp_path, tmp_path / "a" / "up")
    ds = FolderDataset(str(tmp_path), recursive=True)
    assert sorted(ds.get_data_info(i)["token"] for i in range(len(ds))) == ["a/b/scan", "top"]


def test_recursive_folder_with_a_region_cache_never_lists_the_cache(tmp_path):
    from lidarcl.datasets.folder_dataset import FolderDataset
    from lidarcl.datasets.transforms import LoadPoints, SegmentRegions

    (tmp_path / "sub").mkdir()
    _scan(300).tofile(tmp_path / "sub" / "scan.bin")
    _scan(300, seed=1).tofile(tmp_path / "top.bin")
    pipeline = [LoadPoints(), SegmentRegions(cache_dir="regions")]
    for _ in range(2):  # the second run reads the cache: it must not list it as scans
        ds = FolderDataset(str(tmp_path), recursive=True, pipeline=pipeline)
        assert sorted(ds.get_data_info(i)["token"] for i in range(len(ds))) == \
            ["sub/scan", "top"]
        for i in range(len(ds)):
            assert len(ds[i]["regions"]) == 300
    cached = list((tmp_path / "regions").rglob("*.npy"))
    assert len(cached) == 2 and (cached[0].parent / "CACHEDIR.TAG").is_file()


def test_region_cache_on_a_read_only_root_computes_without_caching(tmp_path, monkeypatch,
                                                                   caplog):
    from lidarcl.datasets import regions

    points = _scan(300)
    expected = regions.segment_regions(points)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(regions.os, "makedirs", read_only)
    with caplog.at_level(logging.WARNING):
        labels = regions.cached_regions(points, "tok", str(tmp_path / "ro" / "cache"))
        regions.cached_regions(points, "tok2", str(tmp_path / "ro" / "cache"))
    np.testing.assert_array_equal(labels, expected)
    assert caplog.text.count("not writable") == 1 and "Read-only" in caplog.text
    assert not (tmp_path / "ro").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_region_cache_in_a_read_only_folder_computes_without_caching(tmp_path):
    from lidarcl.datasets.regions import cached_regions, segment_regions

    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        points = _scan(300)
        np.testing.assert_array_equal(cached_regions(points, "t", str(tmp_path / "ro" / "c")),
                                      segment_regions(points))
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_files_written_for_users_get_the_umask_mode(tmp_path):
    from lidarcl.datasets.regions import cached_regions, region_cache_path

    from lidarcl.datasets.superpixels import write_superpixels

    old = os.umask(0o022)
    try:
        write_info_index(tmp_path / "i.json", [_info()], {"dataset": "kitti"})
        cached_regions(_scan(300), "t", str(tmp_path / "c"))
        write_superpixels(tmp_path / "sp.png", np.zeros((4, 5), np.uint8))
        os.umask(0o002)
        write_info_index(tmp_path / "j.json", [_info()], {"dataset": "kitti"})
    finally:
        os.umask(old)
    assert (tmp_path / "i.json").stat().st_mode & 0o777 == 0o644
    assert Path(region_cache_path(str(tmp_path / "c"), "t")).stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "sp.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "j.json").stat().st_mode & 0o777 == 0o664


# ------------------------------------------------------------------ found in review
def test_a_data_error_in_a_loader_worker_stays_a_one_line_data_error(tmp_path):
    """torch rebuilds a worker's exception as exc_type(traceback text): DataError keeps the
    worker's own line, so tools still print one line naming the file."""
    from lidarcl.datasets.folder_dataset import FolderDataset
    from lidarcl.datasets.transforms import LoadPoints

    (tmp_path / "bad.bin").write_bytes(b"\x00" * 6)
    ds = FolderDataset(str(tmp_path), pipeline=[LoadPoints()])
    loader = torch.utils.data.DataLoader(ds, num_workers=1, collate_fn=lambda b: b)
    with pytest.raises(DataError) as err:
        next(iter(loader))
    assert str(err.value) == (f"{tmp_path / 'bad.bin'}: truncated or mis-described point "
                              "file: 6 bytes is not a multiple of 4 float32 columns (16 bytes) "
                              "(in a data loader worker)")
    import pickle

    error = DataError("/a.bin", "problem")
    again = pickle.loads(pickle.dumps(error))
    assert (again.path, again.problem, str(again)) == ("/a.bin", "problem", "/a.bin: problem")


def test_interleaved_scans_are_not_mistaken_for_a_wrong_layout(tmp_path):
    """Lasers written alternately (raw Velodyne firing order, dual returns): every other
    point follows the scan, so 4 columns read as 8 look smooth; that is not evidence."""
    low, high = _scan(2000, seed=0), _scan(2000, seed=1)
    high[:, :3] *= 3.0  # a second laser ring, far from the first
    interleaved = np.empty((4000, 4), np.float32)
    interleaved[0::2], interleaved[1::2] = low, high
    path = tmp_path / "interleaved.bin"
    interleaved.tofile(path)
    np.testing.assert_array_equal(load_points(path, 4)[0], interleaved)
    # a real 5-column file declared as 4 is still caught (test_wrong_column_count_*)


def test_georeferenced_clouds_pass_with_their_own_bound(tmp_path):
    utm = _scan(500).astype(np.float64)
    utm[:, 0] += 5.0e5
    utm[:, 1] += 5.4e6
    path = tmp_path / "utm.npy"
    np.save(path, utm)
    with pytest.raises(DataError, match="beyond 100000 m"):
        load_points(path)
    points, dropped = load_points(path, max_abs_coordinate=None)
    assert dropped == 0 and len(points) == 500


def test_folder_dataset_leaves_hidden_files_and_folders_out(tmp_path):
    from lidarcl.datasets.folder_dataset import FolderDataset

    _scan().tofile(tmp_path / "scan.bin")
    (tmp_path / "._scan.bin").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (tmp_path / ".ipynb_checkpoints").mkdir()
    _scan().tofile(tmp_path / ".ipynb_checkpoints" / "scan-checkpoint.bin")
    for recursive in (False, True):
        ds = FolderDataset(str(tmp_path), recursive=recursive)
        assert [ds.get_data_info(i)["token"] for i in range(len(ds))] == ["scan"]


def test_a_region_cache_in_the_data_root_itself_does_not_hide_the_scans(tmp_path):
    from lidarcl.datasets.folder_dataset import FolderDataset
    from lidarcl.datasets.transforms import LoadPoints, SegmentRegions

    _scan(300).tofile(tmp_path / "scan.bin")
    for _ in range(2):
        ds = FolderDataset(str(tmp_path), recursive=True,
                           pipeline=[LoadPoints(), SegmentRegions(cache_dir=".")])
        assert len(ds) == 1 and len(ds[0]["regions"]) == 300
    assert not (tmp_path / "CACHEDIR.TAG").exists()


def test_superpixels_out_dir_must_lie_inside_the_index_folder(tmp_path):
    from lidarcl.datasets.superpixels import create_superpixels

    index = tmp_path / "index" / "idx.json"
    write_info_index(index, [_info()], {"dataset": "kitti"})
    with pytest.raises(ValueError, match="must lie inside the info index's folder"):
        create_superpixels(index, tmp_path, out_dir=tmp_path / "elsewhere")


def test_malformed_dataset_extras_name_the_index(tmp_path):
    (tmp_path / "root").mkdir()
    index, ds = _dataset(tmp_path, [_info(gt_boxes=[[0.0] * 7], gt_names=["Car"],
                                          kitti={"bboxes_2d": [[1, 2, 3]]})])
    with pytest.raises(DataError, match="malformed entry") as err:
        ds.get_data_info(0)
    assert str(err.value).startswith(str(index))


def test_atomic_write_interrupted_leaves_the_old_file_and_no_temporary(tmp_path):
    """The one writer behind indexes, superpixels, region caches and checkpoints: an
    exception (or a kill, tests/test_checkpoints.py) mid-write never touches the old file."""
    from lidarcl.utils.fileio import atomic_write

    path = tmp_path / "index.json"
    path.write_text("old complete content")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path, "w") as handle:
            handle.write("new partial cont")
            raise KeyboardInterrupt
    assert path.read_text() == "old complete content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]
    with atomic_write(path, "w") as handle:
        handle.write("new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == \
        ["index.json"]
