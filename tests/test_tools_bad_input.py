"""Bad input to the converters and tools: every failure is one line naming the file (or
argument) and the problem -- a DataError from the library, and from a CLI a message on
stderr with a non-zero exit, never a foreign traceback or a silent wrong result.

nuScenes and KITTI cases break copies of the shipped real frames (tests/conftest.py,
``REAL_DATA``); they skip on another copy of the datasets."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from conftest import load_tool as _tool
from lidarcl.errors import DataError

REPO = Path(__file__).resolve().parents[1]
NUS_ROOT = REAL_DATA.nuscenes_root
KITTI_ROOT = REAL_DATA.kitti_root
VERSION = "v1.0-mini"

# the cases edit copies of the shipped frames' tables and files (the whole root is copied)
needs_nuscenes = REAL_DATA.needs_nuscenes(shipped=True)
needs_kitti = REAL_DATA.needs_kitti(shipped=True)


def _one_line_error(capsys, *needles) -> str:
    """The CLI's stderr: one line, no traceback, holding every needle."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


# ------------------------------------------------------------------------------- nuScenes
@pytest.fixture
def nus(tmp_path):
    """A copy of the real v1.0-mini tables (samples/ and maps/ linked): ``(root, tables)``."""
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
    REAL_DATA.require_nuscenes(shipped=True)
    root = tmp_path / "nus"
    shutil.copytree(NUS_ROOT / VERSION, root / VERSION)
    (root / "samples").symlink_to(NUS_ROOT / "samples")
    (root / "maps").symlink_to(NUS_ROOT / "maps")
    return root, root / VERSION


def _convert(root, tmp_path):
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    return create_nuscenes_infos(root, VERSION, tmp_path / "out")


def _edit(tables: Path, table: str, edit) -> list:
    """Apply ``edit(records)`` to a table file; returns the records."""
    path = tables / f"{table}.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))
    return records


def _lidar_record(records: list) -> dict:
    return next(r for r in records if "LIDAR_TOP" in r["filename"])


@pytest.mark.parametrize("table", ["sample_data", "calibrated_sensor", "scene"])
def test_nuscenes_invalid_json_names_the_table(nus, tmp_path, table):
    root, tables = nus
    (tables / f"{table}.json").write_text('[{"token": "a",')
    with pytest.raises(DataError, match="not valid JSON") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / f"{table}.json")


@pytest.mark.parametrize("table", ["sample_data", "ego_pose", "category"])
def test_nuscenes_zero_byte_table(nus, tmp_path, table):
    root, tables = nus
    (tables / f"{table}.json").write_text("")
    with pytest.raises(DataError, match="0 bytes") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / f"{table}.json")


@pytest.mark.parametrize("table", ["sample", "scene", "sample_data"])
def test_nuscenes_empty_list_table(nus, tmp_path, table):
    """``[]`` for a table that must hold records: today a KeyError (sample, sample_data) or
    silently empty indexes (scene)."""
    root, tables = nus
    (tables / f"{table}.json").write_text("[]")
    with pytest.raises(DataError, match="empty") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / f"{table}.json")


def test_nuscenes_table_not_a_list_of_records(nus, tmp_path):
    root, tables = nus
    (tables / "sample.json").write_text("{}")  # the devkit loads a dict without complaint
    with pytest.raises(DataError, match="list of records") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / "sample.json")
    (tables / "sample.json").write_text('["a", "b"]')
    with pytest.raises(DataError, match="record 0") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / "sample.json")


def test_nuscenes_missing_table_file(nus, tmp_path):
    root, tables = nus
    (tables / "instance.json").unlink()
    with pytest.raises(DataError, match="not found") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / "instance.json")


@pytest.mark.parametrize("table, field", [("sample_data", "calibrated_sensor_token"),
                                          ("sample_data", "ego_pose_token"),
                                          ("sample", "scene_token"),
                                          ("sample_annotation", "instance_token")])
def test_nuscenes_dangling_token(nus, tmp_path, table, field):
    root, tables = nus

    def dangle(records):
        (_lidar_record(records) if table == "sample_data" else records[0])[field] = "nowhere"

    records = _edit(tables, table, dangle)
    bad = _lidar_record(records) if table == "sample_data" else records[0]
    with pytest.raises(DataError, match=f"{field} 'nowhere'") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / f"{table}.json")
    assert bad["token"] in str(err.value)


@pytest.mark.parametrize("table, edit, needle", [
    ("ego_pose", lambda rec: rec.pop("translation"), "missing field 'translation'"),
    ("ego_pose", lambda rec: rec.update(rotation=[0, 0, 0, 0]), "zero quaternion"),
    ("sample_data", lambda rec: rec.update(height=None), "TypeError"),
])
def test_nuscenes_malformed_field(nus, tmp_path, table, edit, needle):
    """A field of the wrong shape or type: one DataError naming the tables and the sample,
    not a numpy/pyquaternion traceback."""
    root, tables = nus
    _edit(tables, table, lambda records: [edit(rec) for rec in records])
    with pytest.raises(DataError, match=needle) as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables) and "ca9a282c9e77460f8360f564131a8af5" in str(err.value)


def test_create_data_cli_broken_table_is_one_line(nus, tmp_path, capsys):
    root, tables = nus
    _edit(tables, "sample_data",
          lambda records: _lidar_record(records).update(ego_pose_token="nowhere"))
    argv = ["nuscenes", "--root", str(root), "--version", VERSION, "--out",
            str(tmp_path / "out"), "--superpixels", "none"]
    assert _tool("create_data").main(argv) == 1
    _one_line_error(capsys, tables / "sample_data.json", "nowhere")


@pytest.mark.parametrize("channel", ["LIDAR_TOP", "CAM_FRONT"])
def test_nuscenes_missing_data_file(nus, tmp_path, channel):
    """A sample_data whose file is absent: today an index that fails at training time."""
    root, tables = nus
    moved = {}

    def move(records):
        rec = next(r for r in records if f"/{channel}/" in r["filename"])
        rec["filename"] = rec["filename"].replace(channel, f"{channel}_GONE")
        moved.update(rec)

    _edit(tables, "sample_data", move)
    with pytest.raises(DataError, match="not found") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / "sample_data.json")
    assert moved["token"] in str(err.value) and moved["filename"] in str(err.value)


def test_nuscenes_missing_sweep_and_lidarseg_files(nus, tmp_path):
    root, tables = nus
    records = _edit(tables, "sample_data", lambda r: None)
    key = _lidar_record(records)
    sweep = {**key, "token": "sweep0", "is_key_frame": False, "prev": "",
             "next": key["token"], "timestamp": key["timestamp"] - 50_000,
             "filename": "sweeps/LIDAR_TOP/sweep0.pcd.bin"}
    key["prev"] = "sweep0"
    (tables / "sample_data.json").write_text(json.dumps(records + [sweep]))
    with pytest.raises(DataError, match="sweep0.pcd.bin") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / "sample_data.json") and "sweep0" in str(err.value)

    key["prev"] = ""
    (tables / "sample_data.json").write_text(json.dumps(records))
    label = f"lidarseg/{VERSION}/{key['token']}_lidarseg.bin"
    (tables / "lidarseg.json").write_text(json.dumps([
        {"token": key["token"], "sample_data_token": key["token"], "filename": label}]))
    with pytest.raises(DataError, match="not found") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / "lidarseg.json")
    assert key["token"] in str(err.value) and label in str(err.value)


@pytest.mark.parametrize("filename", ["../../etc/passwd", "/etc/passwd"])
def test_nuscenes_filename_leaving_the_root(nus, tmp_path, filename):
    """Today either path is written into the index (and /etc/passwd even exists)."""
    root, tables = nus
    _edit(tables, "sample_data", lambda r: _lidar_record(r).update(filename=filename))
    with pytest.raises(DataError, match="leaves its root") as err:
        _convert(root, tmp_path)
    assert err.value.path == str(tables / "sample_data.json")


# ---------------------------------------------------------------------------------- KITTI
@pytest.fixture
def kitti(tmp_path):
    REAL_DATA.require_kitti(shipped=True)
    root = tmp_path / "kitti"
    shutil.copytree(KITTI_ROOT, root)
    return root


def _set_calib(path: Path, key: str, values) -> None:
    lines = [line if not line.startswith(f"{key}:") else
             f"{key}: " + " ".join(f"{v:.12e}" for v in np.ravel(values))
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("r0", [np.zeros((3, 3)),
                                np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0.0]]),  # rank 2
                                np.diag([1.0, 1.0, 1e-9])])  # |det| < 1e-6
def test_kitti_singular_r0_rect(kitti, tmp_path, r0):
    from lidarcl.datasets.kitti_converter import create_kitti_infos, parse_calib

    calib = kitti / "training/calib/000008.txt"
    _set_calib(calib, "R0_rect", r0)
    with pytest.raises(DataError, match="R0_rect is singular") as err:
        parse_calib(calib)
    assert err.value.path == str(calib)
    with pytest.raises(DataError, match="R0_rect"):
        create_kitti_infos(kitti, tmp_path / "out")


# ---------------------------------------------------------------------------------- tools
@needs_kitti
def test_create_data_out_is_a_file(kitti, tmp_path, capsys):
    out = tmp_path / "infos.json"
    out.write_text("keep me")
    argv = ["kitti", "--root", str(kitti), "--out", str(out), "--superpixels", "none"]
    assert _tool("create_data").main(argv) != 0
    _one_line_error(capsys, out, "not a folder")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("args, needle", [
    (["--image-size", "0", "0"], "image_size"),
    (["--image-size", "-8", "10"], "image_size"),
    (["--val-scenes", "5", "--scenes", "1"], "val_scenes"),
    (["--val-scenes", "2", "--scenes", "2"], "val_scenes"),
    (["--val-scenes", "-1"], "val_scenes"),
    (["--scenes", "0"], "scene"),
    (["--keyframes", "0"], "keyframe"),
])
def test_make_synthetic_impossible_arguments(tmp_path, capsys, args, needle):
    out = tmp_path / "synthetic"
    assert _tool("make_synthetic").main(["--out", str(out), *args]) != 0
    _one_line_error(capsys, needle)
    assert not out.exists(), "nothing may be created for an impossible request"


@pytest.fixture
def kitti_index(kitti, tmp_path):
    from lidarcl.datasets.kitti_converter import create_kitti_infos

    (path,) = create_kitti_infos(kitti, tmp_path / "infos")
    return kitti, path


def test_visualize_index_out_of_range(kitti_index, tmp_path, capsys):
    root, index = kitti_index
    argv = ["--dataset", "kitti", "--info", index, "--data-root", str(root), "--index", "0",
            "3", "--out", str(tmp_path / "vis")]
    assert _tool("visualize").main(argv) != 0
    _one_line_error(capsys, "index 3", "1 samples", index)
    assert not (tmp_path / "vis").exists()  # checked before drawing index 0


@pytest.mark.parametrize("resolution, needle", [("0", "positive"), ("-0.1", "positive"),
                                                ("1e-5", "resolution >= 0.0098")])
def test_visualize_impossible_resolution(kitti_index, tmp_path, capsys, resolution, needle):
    """A tiny resolution used to allocate the whole canvas (GiBs); 0 divided by zero."""
    root, index = kitti_index
    argv = ["--dataset", "kitti", "--info", index, "--data-root", str(root),
            "--resolution", resolution, "--out", str(tmp_path / "vis")]
    assert _tool("visualize").main(argv) != 0
    _one_line_error(capsys, "resolution", needle)


def test_render_bev_refuses_huge_or_empty_canvas():
    from lidarcl.visualization import MAX_BEV_SIDE, bev_canvas_shape, render_bev

    points = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="resolution >= 0.0123"):
        render_bev(points, resolution=0.001)  # 100000 x 100000 pixels
    with pytest.raises(ValueError, match="x_max > x_min"):
        render_bev(points, bev_range=(10, -5, 0, 5))
    with pytest.raises(ValueError, match="coarser"):
        render_bev(points, resolution=1000.0)
    assert bev_canvas_shape((-50, -50, 50, 50), 100 / MAX_BEV_SIDE) == (MAX_BEV_SIDE,) * 2


# --------------------------------------------------------------------------- linear probe
@pytest.fixture(scope="module")
def probe_data(tmp_path_factory):
    """A tiny generated dataset whose val split is empty (``val_scenes=0``) and a probe
    config: ``(root, config)``."""
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset

    tmp = tmp_path_factory.mktemp("probe")
    root = generate_dataset(str(tmp / "data"), scenes=1, keyframes=2, seed=1,
                            image_size=(32, 18), sweeps_per_keyframe=0, val_scenes=0,
                            version="v1.0-synthetic")["dataroot"]
    create_nuscenes_infos(root, "v1.0-synthetic", root)
    config = tmp / "probe_cfg.py"
    config.write_text(
        "_base_ = ['%s']\n" % (REPO / "configs/pretrain/pointcontrast_minkunet34_synth.py")
        + "model = dict(backbone=dict(type='MinkUNet18', voxel_size=0.5, out_channels=16))\n")
    return root, config


def _probe(root, config, *extra):
    return _tool("linear_probe").main([str(config), "none", "--data-root", str(root),
                                       "--epochs", "1", "--points-per-scan", "500", *extra])


def test_linear_probe_empty_validation_split(probe_data, capsys):
    """Today: mIoU nan and exit 0."""
    root, config = probe_data
    assert _probe(root, config) == 1
    _one_line_error(capsys, Path(root) / "nuscenes_infos_val.json", "validation split is empty")


def test_linear_probe_empty_training_split(probe_data, capsys):
    root, config = probe_data
    assert _probe(root, config, "--train-ann", "nuscenes_infos_val.json",
                  "--val-ann", "nuscenes_infos_train.json") == 1
    _one_line_error(capsys, Path(root) / "nuscenes_infos_val.json", "training split is empty")


def test_linear_probe_split_without_labelled_points(probe_data, tmp_path, capsys):
    """Every point labelled noise (ignored): nothing to train on, nothing to score."""
    root, config = probe_data
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    for label_file in (copy / "lidarseg").rglob("*.bin"):
        np.zeros(label_file.stat().st_size, np.uint8).tofile(label_file)
    assert _probe(copy, config, "--val-ann", "nuscenes_infos_train.json") == 1
    _one_line_error(capsys, copy / "nuscenes_infos_train.json", "no labelled point")


def test_run_linear_probe_no_labelled_validation_point(probe_data, tmp_path):
    """Labelled training scans but a validation split whose points are all ignored."""
    import torch
    from mmengine.config import Config

    from lidarcl.evaluation.linear_probe import build_probe_loader, run_linear_probe
    from lidarcl.registry import MODELS

    root, config = probe_data
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    for label_file in (copy / "lidarseg").rglob("*.bin"):
        np.zeros(label_file.stat().st_size, np.uint8).tofile(label_file)
    cfg = Config.fromfile(str(config)).train_dataloader.dataset.to_dict()
    train, lut, names = build_probe_loader(cfg, "nuscenes_infos_train.json", str(root))
    val, _, _ = build_probe_loader(cfg, "nuscenes_infos_train.json", str(copy))
    torch.manual_seed(0)
    backbone = MODELS.build(dict(type="MinkUNet18", in_channels=4, voxel_size=0.5,
                                 out_channels=16))
    with pytest.raises(DataError, match="no labelled point in the validation split") as err:
        run_linear_probe(backbone, train, val, lut, len(names), points_per_scan=500, epochs=1)
    assert err.value.path == str(copy / "nuscenes_infos_train.json")
