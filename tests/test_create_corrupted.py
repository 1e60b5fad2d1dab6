"""tools/create_corrupted.py and lidarcl.robustness.writer: the corrupted copy is a dataroot
that create_data and NuScenesDataset read, equal to corrupting inside the pipeline, with its
sweeps, labels in step, calibration noise in the tables, and a run that resumes."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import load_tool

VERSION = "v1.0-synthetic"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    root = str(tmp_path_factory.mktemp("corrupt_source"))
    generate_dataset(root, scenes=2, keyframes=2, seed=3, image_size=(64, 36),
                     sweeps_per_keyframe=2, val_scenes=1)
    create_nuscenes_infos(root, VERSION, root, max_sweeps=10)
    return root


@pytest.fixture(scope="module")
def written(source, tmp_path_factory):
    from lidarcl.robustness.writer import create_corrupted

    out = str(tmp_path_factory.mktemp("corrupt_out"))
    report = create_corrupted(source, VERSION, os.path.join(source, "nuscenes_infos_val.json"),
                              out, ["beam_missing", "fog", "local_rotation",
                                    "spatial_misalignment", "temporal_misalignment"], [2],
                              log=lambda *_: None)
    assert [r["state"] for r in report] == ["new"] * 5
    return out


def _dataset(root, extra=(), labels="dataset", index="nuscenes_infos_val.json"):
    from lidarcl.datasets.nuscenes_dataset import NuScenesDataset

    pipeline = [dict(type="LoadPoints", use_dims=None, skip_empty=False)]
    if labels:
        pipeline.append(dict(type="LoadLidarsegLabels", label_mapping=labels,
                             ignore_index=255))
    return NuScenesDataset(ann_file=os.path.join(root, index), data_root=root,
                           pipeline=pipeline + list(extra), test_mode=True)


@pytest.mark.parametrize("name", ["beam_missing", "fog", "local_rotation"])
def test_copy_equals_the_pipeline_transform(source, written, name):
    """Every keyframe of the copy (points and labels through the learning map) equals the
    clean keyframe corrupted inside the pipeline; labels stay in step with the points."""
    from lidarcl.robustness.corruptions import CORRUPTIONS

    copy = _dataset(os.path.join(written, name, "2"))
    fly = _dataset(source, [dict(type=CORRUPTIONS[name].__name__, severity=2)], labels=None)
    raw = _dataset(source, [dict(type=CORRUPTIONS[name].__name__, severity=2)])
    assert len(copy) == len(fly) == 2
    for i in range(len(copy)):
        a, b, c = copy[i], fly[i], raw[i]
        assert a["token"] == b["token"]
        np.testing.assert_array_equal(a["points"], b["points"].astype(np.float32))
        np.testing.assert_array_equal(a["pts_semantic_mask"], c["pts_semantic_mask"])
        assert len(a["pts_semantic_mask"]) == len(a["points"])
    if name == "beam_missing":  # 50 % of the rings 2..28 gone (test_corruptions: exact count)
        clean = _dataset(source)[0]
        assert len(copy[0]["points"]) < 0.8 * len(clean["points"])


def test_copy_goes_through_create_data(written, tmp_path):
    """create_data reads the copy's tables and files: its index equals the one written."""
    create_data = load_tool("create_data")
    root = os.path.join(written, "fog", "2")
    assert create_data.main(["nuscenes", "--root", root, "--version", VERSION, "--out",
                             str(tmp_path), "--superpixels", "none"]) == 0
    with open(tmp_path / "nuscenes_infos_val.json") as f:
        again = json.load(f)["infos"]
    with open(os.path.join(root, "nuscenes_infos_val.json")) as f:
        ours = json.load(f)["infos"]
    assert again == ours and len(ours) == 2
    with open(os.path.join(root, "corruption.json")) as f:
        manifest = json.load(f)
    assert manifest["complete"] and manifest["parameter"] == 0.05  # fog's beta, moderate


def test_sweeps(source, written):
    """Sweeps of the scenes are written: corrupted for a points-only corruption, linked
    unchanged for a box corruption (boxes exist at keyframes only)."""
    from lidarcl.datasets.io import load_points

    root = os.path.join(written, "beam_missing", "2")
    info = _dataset(root).get_data_info(0)
    assert info["sweeps"]
    for sweep in info["sweeps"]:
        path = sweep["path"]
        clean = load_points(os.path.join(source, os.path.relpath(path, root)), 5)[0]
        broken = load_points(path, 5)[0]
        assert len(broken) < 0.8 * len(clean)
        assert set(np.unique(broken[:, 4])) < set(np.unique(clean[:, 4]))
    info = _dataset(os.path.join(written, "local_rotation", "2")).get_data_info(0)
    for sweep in info["sweeps"]:
        assert os.path.islink(sweep["path"])


def test_spatial_misalignment_in_the_tables(source, written):
    """The copy's index (recomputed by create_nuscenes_infos from the new calibrated_sensor
    records) holds the noisy lidar2cam of the pipeline transform; the points are linked."""
    from lidarcl.robustness.corruptions import build_corruption

    root = os.path.join(written, "spatial_misalignment", "2")
    copy = _dataset(root).get_data_info(1)
    clean = _dataset(source).get_data_info(1)
    noisy = build_corruption("spatial_misalignment", 2)(clean)
    for channel, cam in copy["cams"].items():
        np.testing.assert_allclose(cam["lidar2cam"], noisy["cams"][channel]["lidar2cam"],
                                   atol=1e-9)
        assert np.abs(np.asarray(cam["lidar2cam"]) - np.asarray(
            _dataset(source).get_data_info(1)["cams"][channel]["lidar2cam"])).max() > 1e-4
    assert os.path.islink(copy["lidar_path"])


def test_temporal_misalignment_writes_the_stale_sweep(source, written):
    from lidarcl.robustness.corruptions import build_corruption

    copy = _dataset(os.path.join(written, "temporal_misalignment", "2"))[1]
    fly = build_corruption("temporal_misalignment", 2)(_dataset(source, labels=None)[1])
    np.testing.assert_array_equal(copy["points"], fly["points"].astype(np.float32))
    assert set(np.unique(copy["pts_semantic_mask"])) == {255}


def test_resume_after_interruption(source, tmp_path):
    """An interrupted run leaves whole files only; the rerun writes the rest without
    touching them and ends byte-equal to an uninterrupted run; a complete set is skipped;
    a folder with other settings is refused."""
    from lidarcl.errors import DataError
    from lidarcl.robustness.writer import create_corrupted

    index = os.path.join(source, "nuscenes_infos_val.json")
    args = dict(corruptions=["crosstalk"], severities=[1], log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt):
        create_corrupted(source, VERSION, index, str(tmp_path / "a"), stop_after=3, **args)
    lidar = tmp_path / "a" / "crosstalk" / "1" / "samples" / "LIDAR_TOP"
    sweeps = tmp_path / "a" / "crosstalk" / "1" / "sweeps" / "LIDAR_TOP"
    first = {p: p.stat().st_mtime_ns for d in (lidar, sweeps) for p in d.iterdir()}
    assert len(first) == 3
    assert not list(tmp_path.glob("a/crosstalk/1/*.tmp*"))
    manifest = tmp_path / "a" / "crosstalk" / "1" / "corruption.json"
    assert json.loads(manifest.read_text())["complete"] is False
    report = create_corrupted(source, VERSION, index, str(tmp_path / "a"), **args)
    assert report[0]["state"] == "partial"
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())
    create_corrupted(source, VERSION, index, str(tmp_path / "b"), **args)
    set_a, set_b = tmp_path / "a" / "crosstalk" / "1", tmp_path / "b" / "crosstalk" / "1"
    files = sorted(p.relative_to(set_b) for p in set_b.rglob("*")
                   if p.is_file() and not p.is_symlink() and p.suffix in (".bin", ".json")
                   and p.name != "corruption.json")
    assert len(files) >= 12
    for rel in files:
        if rel.name.startswith("nuscenes_infos"):  # holds the absolute data root
            continue
        assert (set_a / rel).read_bytes() == (set_b / rel).read_bytes(), rel
    assert create_corrupted(source, VERSION, index, str(tmp_path / "a"), **args)[0]["state"] \
        == "complete"
    with pytest.raises(DataError, match="other settings .*seed"):
        create_corrupted(source, VERSION, index, str(tmp_path / "a"), seed=1, **args)


def test_tool(source, tmp_path, capsys):
    tool = load_tool("create_corrupted")
    assert tool.main(["--root", source, "--version", VERSION, "--corruptions", "motion_blur",
                      "--severities", "1", "4", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "motion_blur" / "1" / "nuscenes_infos_val.json").is_file()
    assert not (tmp_path / "motion_blur" / "4").exists()  # Robo3D's have 3 severities
    assert "ETA" in capsys.readouterr().err
    assert tool.main(["--root", source, "--version", "v1.0-nope", "--out",
                      str(tmp_path)]) == 2
    assert "v1.0-nope" in capsys.readouterr().err
    assert tool.main(["--root", source, "--version", VERSION, "--corruptions", "rain",
                      "--out", str(tmp_path)]) == 2


def test_kitti_layout(real_data, tmp_path):
    """The real KITTI frame: the copy's velodyne file equals the pipeline transform (rings
    from the HDL-64E elevations), create_data reads the copy, the noisy calibration is
    written as Tr_velo_to_cam, and temporal misalignment (no sweeps) is refused."""
    from lidarcl.datasets.kitti_converter import create_kitti_infos
    from lidarcl.datasets.kitti_dataset import KittiDataset
    from lidarcl.robustness.corruptions import build_corruption
    from lidarcl.robustness.writer import create_corrupted
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    root = str(real_data.require_kitti(shipped=True))
    index = create_kitti_infos(root, tmp_path / "index")[0]
    out = tmp_path / "out"
    create_corrupted(root, None, index, str(out), ["beam_missing", "spatial_misalignment"],
                     [2], dataset="kitti", prefix="kitti", log=lambda *_: None)

    def dataset(data_root):
        return KittiDataset(ann_file=os.path.join(data_root, "kitti_infos_train.json")
                            if data_root != root else index, data_root=data_root,
                            pipeline=[dict(type="LoadPoints", use_dims=None)], test_mode=True)

    clean = dataset(root)[0]
    copy = dataset(str(out / "beam_missing" / "2"))[0]
    expected = build_corruption("beam_missing", 2, ring_column=None, num_beams=64)(
        dataset(root)[0])
    np.testing.assert_array_equal(copy["points"], expected["points"].astype(np.float32))
    assert 0.3 < len(copy["points"]) / len(clean["points"]) < 0.8
    np.testing.assert_array_equal(copy["gt_boxes"], clean["gt_boxes"])
    create_data = load_tool("create_data")
    again = tmp_path / "again"
    assert create_data.main(["kitti", "--root", str(out / "beam_missing" / "2"), "--out",
                             str(again), "--superpixels", "none"]) == 0
    assert json.loads((again / "kitti_infos_train.json").read_text())["infos"] == json.loads(
        (out / "beam_missing" / "2" / "kitti_infos_train.json").read_text())["infos"]
    spatial = dataset(str(out / "spatial_misalignment" / "2")).get_data_info(0)
    noisy = build_corruption("spatial_misalignment", 2)(dataset(root).get_data_info(0))
    (channel, cam), = spatial["cams"].items()
    np.testing.assert_allclose(cam["lidar2cam"], noisy["cams"][channel]["lidar2cam"],
                               atol=1e-9)
    with pytest.raises(ValueError, match="no sweeps"):
        create_corrupted(root, None, index, str(out), ["temporal_misalignment"], [1],
                         dataset="kitti", log=lambda *_: None)


@pytest.fixture(scope="module")
def semantickitti(source, tmp_path_factory):
    """The generated scenes in the SemanticKITTI layout (the export reads them through the
    devkit), indexed, and Robo3D's eight written at severity 2."""
    from lidarcl.datasets.semantickitti_converter import create_semantickitti_infos
    from lidarcl.datasets.synthetic.semantickitti_export import export_semantickitti
    from lidarcl.robustness.writer import create_corrupted

    root = str(tmp_path_factory.mktemp("semantickitti"))
    summary = export_semantickitti(source, VERSION, root)
    create_semantickitti_infos(root, root, splits={k: tuple(v) for k, v in
                                                   summary["splits"].items() if v})
    index = os.path.join(root, "semantickitti_infos_val.json")
    out = str(tmp_path_factory.mktemp("semantickitti_c"))
    report = create_corrupted(root, None, index, out, "all", [2], dataset="semantickitti",
                              prefix="semantickitti", log=lambda *_: None)
    return root, index, out, report


def _semantickitti_dataset(root, index, extra=(), with_row=False):
    from lidarcl.datasets.semantickitti_dataset import SemanticKITTIDataset

    return SemanticKITTIDataset(ann_file=index, data_root=root, pipeline=[
        dict(type="LoadPoints", use_dims=None, skip_empty=False),
        dict(type="LoadSemanticKITTILabels", ignore_index=255)] + list(extra), test_mode=True)


@pytest.mark.parametrize("name", ["beam_missing", "wet_ground", "incomplete_echo", "fog"])
def test_semantickitti_copy_equals_the_pipeline_transform(semantickitti, name):
    """Each scan of the SemanticKITTI copy equals the clean scan corrupted inside a pipeline
    that reads the 19 training labels (the label sets given as training labels: an
    independent encoding of the same classes); the copy's labels, through the learning map,
    equal the transform's; every point the corruption kept in place keeps its whole uint32
    label (raw semantic id and instance), every displaced one gets 0."""
    from lidarcl.robustness.corruptions import build_corruption
    from lidarcl.robustness.writer import semantickitti_corruption_args

    root, index, out, report = semantickitti
    assert sorted(r["name"] for r in report) == sorted(
        ["fog", "wet_ground", "snow", "motion_blur", "beam_missing", "crosstalk",
         "incomplete_echo", "cross_sensor"])
    copy_root = os.path.join(out, name, "2")
    copy = _semantickitti_dataset(copy_root, os.path.join(copy_root,
                                                          "semantickitti_infos_val.json"))
    clean = _semantickitti_dataset(root, index)
    corruption = build_corruption(name, 2, **semantickitti_corruption_args(name, offset=None))
    assert len(copy) == len(clean) >= 2
    changed = 0
    for i in range(len(clean)):
        sample = clean[i]
        raw_clean = np.fromfile(os.path.join(root, sample["lidarseg_path"]), "<u4")
        instance_clean = sample["pts_instance_mask"].copy()
        # the instance column carries row + 1 here: a corruption sets it to 0 exactly where
        # it displaces a point (and carries it along with every kept one)
        sample["pts_instance_mask"] = np.arange(1, len(sample["points"]) + 1)
        expected = corruption(sample)
        got = copy[i]
        assert got["token"] == expected["token"]
        np.testing.assert_array_equal(got["points"], expected["points"].astype(np.float32))
        np.testing.assert_array_equal(got["pts_semantic_mask"], expected["pts_semantic_mask"])
        displaced = expected["pts_instance_mask"] == 0
        rows = expected["pts_instance_mask"] - 1
        raw_copy = np.fromfile(os.path.join(copy_root, got["lidarseg_path"]), "<u4")
        np.testing.assert_array_equal(raw_copy[~displaced], raw_clean[rows[~displaced]])
        assert np.all(raw_copy[displaced] == 0)
        np.testing.assert_array_equal(got["pts_instance_mask"],
                                      np.where(displaced, 0, instance_clean[rows]))
        assert displaced.any() == (name == "fog")  # the others only remove points
        changed += len(got["points"]) != len(raw_clean)
    if name in ("beam_missing", "incomplete_echo", "wet_ground"):
        assert changed, f"{name} removed no point"


def test_semantickitti_copy_goes_through_create_data_and_refuses_what_it_cannot_take(
        semantickitti, tmp_path):
    from lidarcl.robustness.writer import create_corrupted

    root, index, out, _ = semantickitti
    copy_root = os.path.join(out, "snow", "2")
    create_data = load_tool("create_data")
    sequences = json.loads(open(index).read())["metadata"]["sequences"]
    assert create_data.main(["semantickitti", "--root", copy_root, "--out", str(tmp_path),
                             "--train-sequences", "", "--test-sequences", "",
                             "--val-sequences", ",".join(sequences)]) == 0
    written = json.loads((tmp_path / "semantickitti_infos_val.json").read_text())["infos"]
    assert written == json.loads(open(os.path.join(
        copy_root, "semantickitti_infos_val.json")).read())["infos"]
    assert json.load(open(os.path.join(copy_root, "corruption.json")))["complete"] is True
    for name in ("local_cutout", "spatial_misalignment", "temporal_misalignment"):
        with pytest.raises(ValueError, match="no boxes, cameras or sweeps"):
            create_corrupted(root, None, index, str(tmp_path / "x"), [name], [1],
                             dataset="semantickitti", log=lambda *_: None)
    from lidarcl.errors import DataError

    document = json.loads(open(index).read())
    document["infos"][0]["lidarseg_path"] = None  # a scan without labels
    unlabelled = tmp_path / "semantickitti_infos_unlabelled.json"
    unlabelled.write_text(json.dumps(document))
    with pytest.raises(DataError, match="incomplete echo needs point labels"):
        create_corrupted(root, None, str(unlabelled), str(tmp_path / "y"), ["incomplete_echo"],
                         [1], dataset="semantickitti", log=lambda *_: None)
    document = json.loads(open(index).read())
    document["metadata"]["sequences"] = document["metadata"]["sequences"] + ["21"]
    unlisted = tmp_path / "semantickitti_infos_unlisted.json"
    unlisted.write_text(json.dumps(document))
    with pytest.raises(DataError, match="split names sequences"):
        create_corrupted(root, None, str(unlisted), str(tmp_path / "z"), ["fog"], [1],
                         dataset="semantickitti", log=lambda *_: None)
    assert not (tmp_path / "z" / "fog" / "1" / "sequences").exists()  # refused before writing
    tool = load_tool("create_corrupted")
    args = ["--dataset", "semantickitti", "--root", root, "--index", index, "--severities", "1",
            "--out", str(tmp_path / "tool"), "--corruptions"]
    assert tool.main(args + ["local_cutout"]) == 2
    assert tool.main(args + ["beam_missing"]) == 0
    assert (tmp_path / "tool" / "beam_missing" / "1" / "semantickitti_infos_val.json").is_file()


def test_robustness_tool_routes_a_semantickitti_config_to_its_layout(semantickitti):
    """tools/robustness.py's writer step on a SemanticKITTI segmentation config finds the
    copies the writer made (same settings: complete, reused), and the corrupted config's
    validation dataset reads the copy."""
    from mmengine.config import Config

    from lidarcl.registry import DATASETS
    from lidarcl.robustness.evaluate import corrupted_config, write_corrupted_sets

    root, index, out, _ = semantickitti
    cfg = Config.fromfile(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "configs/seg/minkunet18_semantickitti_1pct.py"))
    cfg.val_dataloader.dataset.data_root = root
    report = write_corrupted_sets(cfg, ["beam_missing"], [2], out, log=lambda *_: None)
    assert [(r["name"], r["state"]) for r in report] == [("beam_missing", "complete")]
    dataset = DATASETS.build(corrupted_config(cfg, report[0]["dir"]).val_dataloader.dataset)
    copy = _semantickitti_dataset(report[0]["dir"], os.path.join(
        report[0]["dir"], "semantickitti_infos_val.json"))
    packed = dataset[0]
    assert packed["meta"]["token"] == copy[0]["token"]
    np.testing.assert_array_equal(packed["points"].numpy(), copy[0]["points"][:, :4])
    np.testing.assert_array_equal(packed["pts_semantic_mask"].numpy(),
                                  copy[0]["pts_semantic_mask"])
