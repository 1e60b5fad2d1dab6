"""Fuzz: random truncations and bit flips of every input kind lidarcl reads (point files,
info indexes, nuScenes tables, KITTI calibration and labels, lidarseg labels, superpixel
maps, images, checkpoints). Each corrupted file must end in the project's own error
(:class:`lidarcl.errors.DataError`) or load to a result that passes the documented
sanity rules (a flipped mantissa bit in a float is still a plausible value: no reader can
tell); never a foreign traceback. Mutations are seeded, so a failure repeats; the message
names the mutation."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from lidarcl.datasets.io import MAX_ABS_COORDINATE, load_image, load_points
from lidarcl.errors import DataError

REPO = Path(__file__).resolve().parents[1]
TRIALS = 24


def mutations(data: bytes, seed: int, trials: int = TRIALS):
    """``(description, bytes)``: truncations (including to 0 and to 1 byte) and flips of
    1 to 8 random bits, alternating."""
    rng = np.random.default_rng(seed)
    yield "truncated to 0 bytes", b""
    yield "truncated to 1 byte", data[:1]
    for i in range(trials - 2):
        if i % 2 == 0:
            cut = int(rng.integers(1, max(2, len(data))))
            yield f"truncated to {cut} of {len(data)} bytes", data[:cut]
        else:
            flipped = bytearray(data)
            bits = rng.integers(0, 8 * len(data), int(rng.integers(1, 9)))
            for bit in bits:
                flipped[bit // 8] ^= 1 << (bit % 8)
            yield f"bits {sorted(bits.tolist())} flipped", bytes(flipped)


def fuzz(path: Path, original: bytes, seed: int, check) -> dict:
    """Write each mutation of ``original`` to ``path`` and run ``check(path)``; returns the
    outcome counts. ``check`` validates a successful result itself (asserts)."""
    outcomes = {"DataError": 0, "loaded": 0}
    for what, data in mutations(original, seed):
        path.write_bytes(data)
        try:
            check(path)
        except DataError as exc:
            assert exc.path is not None, f"{what}: DataError names no file: {exc}"
            outcomes["DataError"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{path.name} {what}: foreign {type(exc).__name__}: {exc}")
        else:
            outcomes["loaded"] += 1
    path.write_bytes(original)
    check(path)  # the intact file still loads
    assert outcomes["DataError"] >= 2, outcomes  # at least the truncations to 0 / 1 byte
    return outcomes


def _plausible(points: np.ndarray, columns: int | None = None) -> None:
    assert points.dtype == np.float32 and points.ndim == 2
    assert columns is None or points.shape[1] == columns
    assert np.isfinite(points[:, :3]).all() and np.abs(points[:, :3]).max(initial=0) \
        <= MAX_ABS_COORDINATE


def _kitti_points() -> np.ndarray:
    path = REAL_DATA.kitti_file("velodyne", ".bin")  # any KITTI copy (conftest)
    return np.fromfile(path, np.float32).reshape(-1, 4)[:3000]


# ------------------------------------------------------------------------ point files
def test_fuzz_bin_point_files(tmp_path):
    points = _kitti_points()
    fuzz(tmp_path / "scan.bin", points.tobytes(), 1,
         lambda p: _plausible(load_points(p, 4)[0], 4))


def test_fuzz_npy_point_files(tmp_path):
    path = tmp_path / "scan.npy"
    np.save(path, _kitti_points())
    fuzz(path, path.read_bytes(), 2, lambda p: _plausible(load_points(p)[0]))


@pytest.mark.parametrize("kind", ["binary", "ascii"])
def test_fuzz_pcd_point_files(tmp_path, kind):
    pytest.importorskip("open3d")
    xyz = _kitti_points()[:400, :3]
    header = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
              f"WIDTH {len(xyz)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(xyz)}\n"
              f"DATA {kind}\n").encode()
    body = xyz.tobytes() if kind == "binary" else \
        "".join(f"{x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in xyz).encode()
    fuzz(tmp_path / "scan.pcd", header + body, 3, lambda p: _plausible(load_points(p)[0], 4))


# ------------------------------------------------------------------------ info index
@pytest.fixture(scope="module")
def kitti_index(tmp_path_factory):
    from lidarcl.datasets.kitti_converter import create_kitti_infos

    kitti = REAL_DATA.require_kitti(shipped=True)  # every fuzzed index reads each sample
    out = tmp_path_factory.mktemp("kitti_index")
    path = Path(create_kitti_infos(kitti, out)[0])
    return path


def test_fuzz_info_index(kitti_index, tmp_path):
    from lidarcl.datasets.kitti_dataset import KittiDataset

    def check(path):
        ds = KittiDataset(ann_file=str(path), data_root=str(REAL_DATA.kitti_root),
                          test_mode=True)
        for i in range(len(ds)):
            sample = ds.get_data_info(i)
            assert Path(sample["lidar_path"]).resolve().is_relative_to(
                REAL_DATA.kitti_root.resolve())

    fuzz(tmp_path / "kitti_infos_train.json", kitti_index.read_bytes(), 4, check)


# --------------------------------------------------------------------- nuScenes tables
@pytest.fixture(scope="module")
def nuscenes_copy(tmp_path_factory):
    # each of 13 tables x 24 mutations converts the copy: the one-keyframe tables only
    source = REAL_DATA.require_nuscenes(shipped=True)
    root = tmp_path_factory.mktemp("nuscenes_root")
    for entry in source.iterdir():
        if entry.name != "v1.0-mini":
            os.symlink(entry, root / entry.name)
    shutil.copytree(source / "v1.0-mini", root / "v1.0-mini")
    return root


TABLES = ("sample.json", "sample_data.json", "calibrated_sensor.json", "ego_pose.json",
          "scene.json", "sample_annotation.json", "instance.json", "category.json",
          "attribute.json", "sensor.json", "log.json", "visibility.json", "map.json")


@pytest.mark.parametrize("table", TABLES)
def test_fuzz_nuscenes_tables(nuscenes_copy, tmp_path, table):
    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    def check(path):
        written = create_nuscenes_infos(nuscenes_copy, "v1.0-mini", tmp_path / "out")
        for index in written:
            read_info_index(index)

    path = nuscenes_copy / "v1.0-mini" / table
    fuzz(path, path.read_bytes(), 5 + TABLES.index(table), check)


# --------------------------------------------------------- calibration and labels
def _kitti_file(sub: str, suffix: str) -> Path:
    return REAL_DATA.kitti_file(sub, suffix)  # any KITTI copy (conftest)


def test_fuzz_kitti_calibration(tmp_path):
    from lidarcl.datasets.kitti_converter import parse_calib

    def check(path):
        calib = parse_calib(path)
        assert np.isfinite(calib.lidar2img).all() and np.isfinite(calib.cam2lidar).all()

    fuzz(tmp_path / "calib.txt", _kitti_file("calib", ".txt").read_bytes(), 20, check)


def test_fuzz_kitti_labels(tmp_path):
    from lidarcl.datasets.kitti_converter import parse_label

    def check(path):
        labels = parse_label(path)
        assert (labels.dimensions[[n != "DontCare" for n in labels.names]] > 0).all()

    fuzz(tmp_path / "label.txt", _kitti_file("label_2", ".txt").read_bytes(), 21, check)


def test_fuzz_lidarseg_labels(tmp_path):
    from lidarcl.datasets.transforms import LoadLidarsegLabels, LoadPoints

    points = _kitti_points()
    scan = tmp_path / "scan.bin"
    points.tofile(scan)
    labels = np.random.default_rng(0).integers(0, 32, len(points)).astype(np.uint8)

    def check(path):
        sample = LoadPoints()({"token": "t", "lidar_path": str(scan), "num_point_features": 4,
                               "lidarseg_path": str(path)})
        out = LoadLidarsegLabels(ignore_index=255)(sample)["pts_semantic_mask"]
        assert out.shape == (len(points),) and out.min() >= 0 and out.max() <= 255

    fuzz(tmp_path / "seg.bin", labels.tobytes(), 22, check)


# ------------------------------------------------------------- images and superpixels
def test_fuzz_superpixel_maps(tmp_path):
    from lidarcl.datasets.superpixels import load_superpixels, write_superpixels

    ids = np.random.default_rng(0).integers(0, 150, (30, 40)).astype(np.uint8)
    path = tmp_path / "sp.png"
    write_superpixels(path, ids)

    def check(p):
        out = load_superpixels(p, expected_shape=(30, 40))
        assert out.shape == (30, 40) and out.min() >= 0

    fuzz(path, path.read_bytes(), 23, check)


def test_fuzz_camera_images(tmp_path):
    source = _kitti_file("image_2", ".png")

    def check(p):
        image = load_image(p)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8

    fuzz(tmp_path / "image.png", source.read_bytes(), 24, check)


# ------------------------------------------------------------------------- checkpoints
def test_fuzz_exported_backbone(tmp_path):
    import torch

    from lidarcl.engine.checkpoint import export_backbone, load_backbone
    from lidarcl.models.backbones.second import VoxelBackBone8x

    torch.manual_seed(0)
    model = torch.nn.Module()
    model.backbone = VoxelBackBone8x(in_channels=4, voxel_size=(0.2, 0.2, 0.2),
                                     point_range=(-20, -20, -3, 20, 20, 3.4))
    path = tmp_path / "backbone.pth"
    export_backbone(model, path)
    reference = {k: v.clone() for k, v in model.backbone.state_dict().items()}

    def check(p):
        target = VoxelBackBone8x(in_channels=4, voxel_size=(0.2, 0.2, 0.2),
                                 point_range=(-20, -20, -3, 20, 20, 3.4))
        load_backbone(target, p)
        loaded = target.state_dict()
        # a checkpoint that loads holds the exported weights exactly (digest checked)
        assert all(torch.equal(loaded[k], v) for k, v in reference.items())

    fuzz(path, path.read_bytes(), 25, check)


def test_fuzz_training_checkpoint(tmp_path):
    """What --resume reads: a checkpoint that fails to load, or whose weights fail the
    digest WeightsOnlyCheckpointHook records, is never resumed from."""
    import torch

    from lidarcl.engine.checkpoint import find_resume_checkpoint, weights_digest

    torch.manual_seed(0)
    state = {"backbone.w": torch.randn(64, 32), "head.b": torch.randn(16),
             "step": torch.tensor(3)}
    path = tmp_path / "iter_3.pth"
    torch.save({"meta": {"iter": 3, "state_dict_sha256": weights_digest(state)},
                "state_dict": state, "message_hub": {"runtime_info": {"iter": 3}}}, path)

    def check(p):
        chosen, _ = find_resume_checkpoint(tmp_path)
        assert chosen == str(p)
        loaded = torch.load(p, weights_only=True)["state_dict"]
        assert all(torch.equal(loaded[k], v) for k, v in state.items())

    fuzz(path, path.read_bytes(), 26, check)
