"""SLIC superpixels: computed on a real nuScenes image (checked against scikit-image called
directly), cached by tools/create_data.py next to the info index on the generated dataset
(tests/conftest.py's ``synthetic_root``), loaded by ``LoadSuperpixels`` in step with
``LoadImages`` and carried through ``PackSample`` and ``collate_samples``."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("skimage", reason="scikit-image is not installed")

from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.segmentation import slic  # noqa: E402

from conftest import REAL_DATA  # noqa: E402
from lidarcl.datasets.collate import collate_samples  # noqa: E402
from lidarcl.datasets.info_format import read_info_index, write_info_index  # noqa: E402
from lidarcl.datasets.io import load_image  # noqa: E402
from lidarcl.datasets.nuscenes_dataset import NuScenesDataset  # noqa: E402
from lidarcl.datasets.superpixels import (compute_slic, create_superpixels,  # noqa: E402
                                          load_superpixels, method_tag, superpixel_path,
                                          write_superpixels)
from lidarcl.datasets.transforms import (GlobalRotScaleTrans, LoadImages,  # noqa: E402
                                         LoadPoints, LoadSuperpixels, PackSample,
                                         RandomFlip3D)
from lidarcl.errors import DataError  # noqa: E402
from lidarcl.registry import TRANSFORMS  # noqa: E402
from lidarcl.utils.setup_env import register_all_modules  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KITTI_ROOT = REAL_DATA.kitti_root
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
           "CAM_BACK_RIGHT")


def _create_data():
    spec = importlib.util.spec_from_file_location("lidarcl_create_data_sp",
                                                  REPO / "tools" / "create_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------- SLIC on a real image
@pytest.fixture(scope="module")
def real_front():
    """(image, compute_slic(image)) of a real keyframe's CAM_FRONT (1600x900): the shipped
    keyframe's, or one of any nuScenes copy (conftest)."""
    image = load_image(REAL_DATA.nuscenes_keyframe_file("CAM_FRONT"))
    assert image.shape == (900, 1600, 3)
    return image, compute_slic(image)


def test_slic_on_real_image_gives_about_150_contiguous_segments(real_front):
    image, labels = real_front
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint8
    ids = np.unique(labels)
    assert 90 <= len(ids) <= 200, f"{len(ids)} segments for n_segments=150"
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # 0 .. S-1, none skipped


def test_slic_matches_scikit_image_called_directly(real_front):
    """SLidR's call (superpixel_segmenter.py): slic(image, n_segments=150, compactness=6,
    sigma=3.0, start_label=0)."""
    image, labels = real_front
    reference = slic(image, n_segments=150, compactness=6, sigma=3.0, start_label=0)
    np.testing.assert_array_equal(labels.astype(np.int64), reference)


def test_real_segments_are_connected_and_local(real_front):
    _, labels = real_front
    boxes = ndimage.find_objects(labels.astype(np.int32) + 1)
    single = 0
    for sid, (rows, cols) in enumerate(boxes):
        area = (rows.stop - rows.start) * (cols.stop - cols.start)
        assert area < 0.15 * labels.size, f"segment {sid} spans {area / labels.size:.0%}"
        single += ndimage.label(labels[rows, cols] == sid)[1] == 1
    assert single >= 0.95 * len(boxes)


def test_compute_slic_rejects_non_rgb():
    with pytest.raises(ValueError, match="uint8 RGB"):
        compute_slic(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        compute_slic(np.zeros((8, 8, 3), np.float32))


# ------------------------------------------------------------- files
def test_naming_and_tags():
    assert method_tag() == "slic150"
    assert method_tag(n_segments=300) == "slic300"
    assert method_tag(compactness=10, sigma=1) == "slic150_c10_s1"
    assert superpixel_path("/x/superpixels", "slic150", "tok", "CAM_FRONT") == \
        os.path.join("/x/superpixels", "slic150", "tok_CAM_FRONT.png")
    with pytest.raises(ValueError, match="unknown superpixel method"):
        method_tag("felzenszwalb")


@pytest.mark.parametrize("top, mode", [(149, "L"), (299, "I;16")])
def test_write_load_round_trip(tmp_path, top, mode):
    labels = (np.arange(40 * 30).reshape(40, 30) % (top + 1))
    path = tmp_path / "sub" / "map.png"
    write_superpixels(path, labels)
    with Image.open(path) as img:
        assert img.mode == mode and img.size == (30, 40)
    back = load_superpixels(path, expected_shape=(40, 30))
    assert back.dtype == np.int16  # ids < 2**15
    np.testing.assert_array_equal(back, labels)
    assert sorted(p.name for p in path.parent.iterdir()) == ["map.png"]  # no temp files left
    with pytest.raises(ValueError, match="ids must lie"):
        write_superpixels(path, labels - 1)


def test_load_superpixels_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(DataError, match="superpixel map not found") as err:
        load_superpixels(missing)
    assert err.value.path == str(missing)

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="unreadable superpixel map") as err:
        load_superpixels(garbage)
    assert err.value.path == str(garbage)

    good = tmp_path / "good.png"
    write_superpixels(good, np.arange(64 * 64).reshape(64, 64) % 200)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match="unreadable") as err:
        load_superpixels(truncated)
    assert err.value.path == str(truncated)

    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(DataError, match="mode RGB") as err:
        load_superpixels(rgb)
    assert err.value.path == str(rgb)

    with pytest.raises(DataError, match="64x64 .* but its image is 900x1600") as err:
        load_superpixels(good, expected_shape=(900, 1600))
    assert err.value.path == str(good)


# ------------------------------------------------------------- create_data, generated set
@pytest.fixture(scope="module")
def generated(synthetic_root, tmp_path_factory):
    """tools/create_data.py (superpixels on by default) on the generated dataset."""
    out = tmp_path_factory.mktemp("sp_infos")
    assert _create_data().main(["nuscenes", "--root", synthetic_root.dataroot,
                                "--version", synthetic_root.version, "--out", str(out),
                                "--max-sweeps", "0", "--workers", "2"]) == 0
    return synthetic_root, out, sorted(out.glob("nuscenes_infos_*.json"))


def test_create_data_writes_one_map_per_camera_and_records_it(generated):
    root, out, paths = generated
    folder = out / "superpixels" / "slic150"
    seen = set()
    for path in paths:
        infos, meta = read_info_index(path)
        assert meta["superpixels"]["method"] == "slic"
        assert meta["superpixels"]["n_segments"] == 150
        assert meta["superpixels"]["compactness"] == 6.0 and meta["superpixels"]["sigma"] == 3.0
        for info in infos:
            assert sorted(info["cams"]) == sorted(CAMERAS)
            for ch, cam in info["cams"].items():
                rel = f"superpixels/slic150/{info['token']}_{ch}.png"
                assert cam["superpixel_path"] == rel  # relative to the index's folder
                labels = load_superpixels(out / rel, expected_shape=(cam["height"],
                                                                     cam["width"]))
                assert labels.shape == (180, 320)
                ids = np.unique(labels)
                np.testing.assert_array_equal(ids, np.arange(len(ids)))
                assert len(ids) > 30
                seen.add(rel)
    assert len(seen) == 20 * 6  # 2 scenes x 10 keyframes x 6 cameras
    assert sorted(f"superpixels/slic150/{p.name}" for p in folder.iterdir()) == sorted(seen)


def test_create_data_again_keeps_cached_maps(generated):
    root, out, paths = generated
    folder = out / "superpixels" / "slic150"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    # the converter rewrites the indexes; the maps are found, not recomputed
    assert _create_data().main(["nuscenes", "--root", root.dataroot, "--version",
                                root.version, "--out", str(out), "--max-sweeps", "0",
                                "--workers", "1"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    for path in paths:
        infos, _ = read_info_index(path)
        assert all("superpixel_path" in cam for info in infos for cam in info["cams"].values())
    index_mtime = paths[0].stat().st_mtime_ns
    result = create_superpixels(paths[0], root.dataroot)
    assert result["computed"] == 0 and result["skipped"] == 6 * len(read_info_index(
        paths[0])[0])
    assert paths[0].stat().st_mtime_ns == index_mtime  # unchanged index not rewritten


def test_superpixels_none_leaves_index_without_them(generated, tmp_path):
    root, _, _ = generated
    assert _create_data().main(["nuscenes", "--root", root.dataroot, "--version",
                                root.version, "--out", str(tmp_path), "--max-sweeps", "0",
                                "--superpixels", "none"]) == 0
    assert not (tmp_path / "superpixels").exists()
    infos, meta = read_info_index(tmp_path / "nuscenes_infos_train.json")
    assert "superpixels" not in meta
    assert not any("superpixel_path" in c for i in infos for c in i["cams"].values())

    ds = NuScenesDataset(str(tmp_path / "nuscenes_infos_train.json"),
                         data_root=root.dataroot, test_mode=True)
    sample = ds[0]
    with pytest.raises(DataError, match="--superpixels slic") as err:
        LoadSuperpixels()(sample)
    assert err.value.path == sample["cams"]["CAM_FRONT"]["path"]


def test_load_superpixels_aligned_with_images_and_collated(generated):
    root, out, paths = generated
    register_all_modules()  # pipeline configs by type name, lidarcl scope
    assert TRANSFORMS.get("LoadSuperpixels") is LoadSuperpixels
    pipeline = [dict(type="LoadPoints"), dict(type="LoadImages"),
                dict(type="LoadSuperpixels"), dict(type="GlobalRotScaleTrans", seed=0),
                dict(type="RandomFlip3D", flip_ratio_bev_horizontal=1.0, seed=0),
                dict(type="PackSample")]
    ds = NuScenesDataset(str(paths[0]), data_root=root.dataroot, pipeline=pipeline,
                         test_mode=True)
    packed = [ds[0], ds[1]]
    for item in packed:
        sp, images = item["superpixels"], item["images"]
        assert sp.dtype == torch.int16 and sp.shape == (6, 180, 320)
        assert images.shape == (6, 3, 180, 320)
        assert item["meta"]["cam_names"] == list(CAMERAS)
        for k, (ch, sp_file) in enumerate(zip(item["meta"]["cam_names"],
                                              item["meta"]["superpixel_paths"])):
            assert Path(sp_file).name.endswith(f"_{ch}.png")
            # the map of camera k is SLIC of image k (pixel for pixel)
            if k in (0, 3):
                image = images[k].permute(1, 2, 0).numpy()
                np.testing.assert_array_equal(sp[k].numpy(), compute_slic(image))
    batch = collate_samples(packed)
    assert len(batch["superpixels"]) == 2
    stacked = torch.stack(batch["superpixels"])  # (B, K, H, W) for lidarcl.ops pooling
    assert stacked.shape == (2, 6, 180, 320)
    assert [tuple(s.shape[-2:]) for s in batch["superpixels"]] == \
        [tuple(i.shape[-2:]) for i in batch["images"]]


def test_load_superpixels_follows_load_images_order(generated):
    root, _, paths = generated
    ds = NuScenesDataset(str(paths[0]), data_root=root.dataroot, test_mode=True)
    sample = LoadImages(channels=("CAM_BACK", "CAM_FRONT"))(ds[0])
    sample = LoadSuperpixels()(sample)
    assert sample["superpixels"].shape == (2, 180, 320)
    assert sample["superpixels"].dtype == np.int16
    for ch, path in zip(("CAM_BACK", "CAM_FRONT"), sample["superpixel_paths"]):
        assert path == sample["cams"][ch]["superpixel_path"] and os.path.isabs(path)
    # without LoadImages: the default camera order, as LoadImages would use
    alone = LoadSuperpixels()(ds[0])
    assert [Path(p).stem.split("_", 1)[1] for p in alone["superpixel_paths"]] == list(CAMERAS)
    # augmentations move points and camera matrices, never pixels: maps unchanged
    aug = RandomFlip3D(1.0, seed=0)(GlobalRotScaleTrans(seed=0)(LoadPoints()(
        LoadSuperpixels()(ds[0]))))
    np.testing.assert_array_equal(aug["superpixels"], alone["superpixels"])
    assert [s.shape for s in PackSample()(aug)["superpixels"]] == [(180, 320)] * 6


def test_load_superpixels_bad_files_name_the_file(generated, tmp_path):
    root, _, paths = generated
    ds = NuScenesDataset(str(paths[0]), data_root=root.dataroot, test_mode=True)
    sample = ds[0]
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    sample["cams"]["CAM_FRONT_LEFT"]["superpixel_path"] = str(bad)
    with pytest.raises(DataError, match="unreadable superpixel map") as err:
        LoadSuperpixels()(sample)
    assert err.value.path == str(bad)

    missing = tmp_path / "gone.png"
    sample["cams"]["CAM_FRONT_LEFT"]["superpixel_path"] = str(missing)
    with pytest.raises(DataError, match="not found") as err:
        LoadSuperpixels()(sample)
    assert err.value.path == str(missing)

    small = tmp_path / "small.png"
    write_superpixels(small, np.zeros((90, 160), np.uint8))
    sample["cams"]["CAM_FRONT_LEFT"]["superpixel_path"] = str(small)
    with pytest.raises(DataError, match="but its image is 180x320") as err:
        LoadSuperpixels()(sample)
    assert err.value.path == str(small)


def test_create_superpixels_missing_image_names_it(generated, tmp_path):
    root, _, paths = generated
    infos, meta = read_info_index(paths[0])
    meta.pop("superpixels")
    info = infos[0]
    for cam in info["cams"].values():
        cam.pop("superpixel_path")
    info["cams"]["CAM_BACK"]["path"] = "samples/CAM_BACK/does_not_exist.jpg"
    index = tmp_path / "one.json"
    write_info_index(index, [info], meta)
    for workers in (1, 2):
        with pytest.raises(DataError, match="image not found") as err:
            create_superpixels(index, root.dataroot, workers=workers)
        assert err.value.path == os.path.join(root.dataroot,
                                              "samples/CAM_BACK/does_not_exist.jpg")
    # the index is left as it was: nothing recorded after a failure
    (after,), meta_after = read_info_index(index)
    assert "superpixels" not in meta_after
    assert not any("superpixel_path" in cam for cam in after["cams"].values())


def test_create_superpixels_recomputes_a_wrong_sized_cache(generated, tmp_path):
    root, _, paths = generated
    infos, meta = read_info_index(paths[0])
    index = tmp_path / "one.json"
    write_info_index(index, [{**infos[0], "cams": {"CAM_FRONT": infos[0]["cams"]["CAM_FRONT"]}}],
                     meta)
    target = superpixel_path(tmp_path / "superpixels", "slic150", infos[0]["token"],
                             "CAM_FRONT")
    write_superpixels(target, np.zeros((10, 10), np.uint8))  # stale, wrong size
    result = create_superpixels(index, root.dataroot)
    assert result["computed"] == 1 and result["skipped"] == 0
    assert load_superpixels(target).shape == (180, 320)
    again = create_superpixels(index, root.dataroot, overwrite=True)
    assert again["computed"] == 1


# ------------------------------------------------------------- KITTI (one camera)
def test_create_data_kitti_superpixels(tmp_path):
    REAL_DATA.require_kitti(shipped=True)  # converts (and segments) the whole root
    assert _create_data().main(["kitti", "--root", str(KITTI_ROOT), "--out", str(tmp_path),
                                "--workers", "1", "--superpixel-segments", "100"]) == 0
    (info,), meta = read_info_index(tmp_path / "kitti_infos_train.json")
    assert meta["superpixels"]["n_segments"] == 100
    cam = info["cams"]["CAM2"]
    assert cam["superpixel_path"] == f"superpixels/slic100/{info['token']}_CAM2.png"
    labels = load_superpixels(tmp_path / cam["superpixel_path"],
                              expected_shape=(cam["height"], cam["width"]))
    assert 50 <= len(np.unique(labels)) <= 150
