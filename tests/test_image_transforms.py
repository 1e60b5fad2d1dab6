"""Image augmentations keep every projection exact (lidarcl.datasets.transforms.image):
a hand-built camera where each pixel is known, and the real nuScenes frame against the
devkit's ``map_pointcloud_to_image``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REAL_DATA
from lidarcl.datasets.transforms import (LoadImages, RandomFlipImages, RandomResizedCropImages,
                                         ResizeImages, SelectCameras)
from lidarcl.structures.camera import points_to_image, project_points

# camera looking along lidar +x: cam x = -lidar y, cam y = -lidar z, cam z = lidar x
LIDAR2CAM = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
CAM2IMG = np.array([[10, 0, 6, 0], [0, 10, 4, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)


def _hand_sample(seed: int = 0) -> dict:
    """One 8 x 12 camera; every pixel a distinct colour and superpixel id; 400 points in
    front of it with non-integer pixels."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    ids = np.arange(96, dtype=np.int16).reshape(8, 12)
    depth = rng.uniform(2, 20, 400)
    u, v = rng.uniform(0.01, 11.99, 400), rng.uniform(0.01, 7.99, 400)
    points = np.stack([depth, -(u - 6) * depth / 10, -(v - 4) * depth / 10,
                       np.zeros(400)], 1).astype(np.float32)
    return {"token": "hand", "points": points, "images": [image], "superpixels": ids[None],
            "lidar2img": (CAM2IMG @ LIDAR2CAM)[None], "cam2img": CAM2IMG[None],
            "lidar2cam": LIDAR2CAM[None], "img_shape": np.array([[8, 12]]),
            "cam_names": ["CAM_FRONT"], "cams": {"CAM_FRONT": {"cam2img": CAM2IMG[:3, :3]}}}


def _pixels(sample: dict, camera: int = 0):
    index, uv, _ = points_to_image(sample["points"], sample["lidar2img"][camera],
                                   tuple(sample["img_shape"][camera]), margin=0.0)
    return index, np.floor(uv).astype(int)


def test_resize_flip_and_crop_move_pixels_and_projections_together():
    before = _hand_sample()
    index0, pix0 = _pixels(before)
    assert len(index0) == 400
    image0, ids0 = before["images"][0].copy(), before["superpixels"][0].copy()

    up = ResizeImages((16, 24))(_hand_sample())  # u' = 2u, v' = 2v exactly
    _, uv_up, _ = points_to_image(up["points"], up["lidar2img"][0], (16, 24), margin=0.0)
    _, uv0, _ = points_to_image(before["points"], before["lidar2img"][0], (8, 12), margin=0.0)
    np.testing.assert_allclose(uv_up, 2 * uv0, rtol=0, atol=1e-9)
    index, pix = _pixels(up)
    np.testing.assert_array_equal(up["superpixels"][0][pix[:, 1], pix[:, 0]],
                                  ids0[pix0[:, 1], pix0[:, 0]])  # nearest: same id
    assert up["img_shape"].tolist() == [[16, 24]] and up["images"][0].shape == (16, 24, 3)
    np.testing.assert_allclose(up["cams"]["CAM_FRONT"]["cam2img"], up["cam2img"][0])

    flipped = RandomFlipImages(prob=1.0)(_hand_sample())  # u' = 12 - u
    index, pix = _pixels(flipped)
    np.testing.assert_array_equal(index, index0)
    np.testing.assert_array_equal(pix[:, 0], 11 - pix0[:, 0])
    np.testing.assert_array_equal(flipped["images"][0][pix[:, 1], pix[:, 0]],
                                  image0[pix0[:, 1], pix0[:, 0]])
    np.testing.assert_array_equal(flipped["superpixels"][0][pix[:, 1], pix[:, 0]],
                                  ids0[pix0[:, 1], pix0[:, 0]])

    # a pure crop: area 1/4 at aspect 3/2 is 4 x 6 pixels, the output size itself
    crop = RandomResizedCropImages((4, 6), scale=(0.25, 0.25), ratio=(1.5, 1.5),
                                   min_points=1, seed=3)(_hand_sample())
    aug = crop["img_aug_matrix"][0]
    assert aug[0, 0] == aug[1, 1] == 1.0 and aug[0, 2] <= 0 and aug[1, 2] <= 0
    index, pix = _pixels(crop)
    where = {int(i): k for k, i in enumerate(index0)}
    old = pix0[[where[int(i)] for i in index]]
    np.testing.assert_array_equal(pix, old + aug[[0, 1], 2].astype(int))
    np.testing.assert_array_equal(crop["images"][0][pix[:, 1], pix[:, 0]],
                                  image0[old[:, 1], old[:, 0]])
    np.testing.assert_array_equal(crop["superpixels"][0][pix[:, 1], pix[:, 0]],
                                  ids0[old[:, 1], old[:, 0]])
    # the crop keeps exactly the points whose old pixel lies inside its box
    top, left = int(-aug[1, 2]), int(-aug[0, 2])
    inside = (pix0[:, 0] >= left) & (pix0[:, 0] < left + 6) & (pix0[:, 1] >= top) \
        & (pix0[:, 1] < top + 4)
    assert len(index) == int(inside.sum()) > 0


def test_crop_keeps_enough_points_and_cameras_are_selected_with_their_matrices():
    sample = _hand_sample()
    sample["points"] = sample["points"][:50]  # 50 points; min_share 0.75 -> >= 38 kept
    out = RandomResizedCropImages((8, 12), scale=(0.3, 1.0), min_points=10_000,
                                  min_share=0.75, seed=0)(sample)
    kept = len(_pixels(out)[0])
    assert kept >= 38 or np.allclose(out["img_aug_matrix"][0], np.eye(4))

    many = _hand_sample()
    for key in ("images", "cam_names"):
        many[key] = many[key] * 3
    many["cam_names"] = ["A", "B", "C"]
    for key in ("superpixels", "lidar2img", "cam2img", "lidar2cam", "img_shape"):
        many[key] = np.concatenate([many[key]] * 3)
    many["lidar2img"][1] *= 2.0
    many = RandomFlipImages(prob=1.0)(many)  # img_aug_matrix exists from here on
    picked = SelectCameras(2, seed=1)(many)
    assert len(picked["images"]) == 2 and picked["lidar2img"].shape == (2, 4, 4)
    assert picked["img_aug_matrix"].shape == (2, 4, 4) and len(picked["cam_names"]) == 2
    for k, name in enumerate(picked["cam_names"]):
        factor = 2.0 if name == "B" else 1.0
        flip = np.array([[-1, 0, 12, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        np.testing.assert_allclose(picked["lidar2img"][k],
                                   flip @ (factor * (CAM2IMG @ LIDAR2CAM)), atol=1e-12)
    with pytest.raises(ValueError, match="needs LoadImages"):
        ResizeImages((4, 4))({"token": "x", "points": np.zeros((1, 4))})


@pytest.fixture(scope="module")
def real_sample(tmp_path_factory):
    root = REAL_DATA.require_nuscenes(shipped=True)
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
    from nuscenes.nuscenes import NuScenes, NuScenesExplorer

    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    out = tmp_path_factory.mktemp("image_infos")
    info = read_info_index(create_nuscenes_infos(str(root), "v1.0-mini", str(out))[0],
                           dataset="nuscenes")[0][0]
    frame = json.loads((root / "frame.json").read_text())
    points = np.fromfile(root / frame["lidar_file"], dtype=np.float32).reshape(-1, 5)
    explorer = NuScenesExplorer(NuScenes(version="v1.0-mini", dataroot=str(root),
                                         verbose=False))
    devkit = {ch: explorer.map_pointcloud_to_image(info["nuscenes"]["lidar_token"],
                                                   cam["sample_data_token"])[0][:2].T
              for ch, cam in info["cams"].items()}
    for cam in info["cams"].values():  # the index holds paths relative to the data root
        cam["path"] = str(root / cam["path"])
    return info, points, devkit


def _real(info, points) -> dict:
    import copy

    return LoadImages()({"token": info["token"], "points": points.copy(),
                         "cams": copy.deepcopy(info["cams"])})


def test_real_frame_projections_follow_resize_crop_and_flip(real_sample):
    """After each image transform, the points that project into a camera land where the
    devkit's pixel, mapped by the transform's affine map, says (the devkit and lidarcl
    agree to 0.5 pixel before any transform)."""
    info, points, devkit = real_sample
    sample = _real(info, points)
    sample = ResizeImages((450, 800))(sample)
    sample = RandomResizedCropImages((224, 416), seed=0)(sample)
    sample = RandomFlipImages(prob=0.5, seed=1)(sample)
    assert np.asarray(sample["images"]).shape == (6, 224, 416, 3)
    flips = 0
    for k, name in enumerate(sample["cam_names"]):
        aug = sample["img_aug_matrix"][k]
        flips += aug[0, 0] < 0
        dev_uv = devkit[name]
        mapped = dev_uv * np.diag(aug)[:2] + aug[[0, 1], 2]
        uv, _ = project_points(points, sample["lidar2img"][k])
        # the devkit keeps its points in file order: the same points, projected again
        index, _, _ = points_to_image(points, np.asarray(info["cams"][name]["lidar2img"]),
                                      (900, 1600))
        assert len(index) == len(dev_uv)
        scale = np.abs(np.diag(aug)[:2])
        assert (np.abs(uv[index] - mapped) < 0.5 * scale + 1e-6).all(), name
        inside = (mapped[:, 0] >= 0) & (mapped[:, 0] < 416) & (mapped[:, 1] >= 0) \
            & (mapped[:, 1] < 224)
        assert inside.sum() >= min(1024, 0.75 * len(dev_uv)) or np.allclose(
            np.diag(aug)[:2], np.abs([416 / 1600, 224 / 900]))
    assert 0 < flips < 6  # seed 1: some cameras flipped, not all


def test_drop_cuboids_drops_one_cuboid_as_slidr_and_keeps_enough_pairs():
    """SLidR's DropCuboids: the points strictly inside a cuboid centred on a random point,
    edges U(0, 0.2) x the scan's extent, leave; a scan whose camera would keep fewer than
    min_pairs pairs stays whole."""
    from lidarcl.datasets.transforms import DropCuboids

    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform([2, -20, -2], [40, 20, 2], (4000, 3)),
                             rng.uniform(0, 1, (4000, 1))], 1).astype(np.float32)
    lidar2img = np.array([[320.0, -400.0, 0.0, 0.0], [90.0, 0.0, -400.0, 0.0],
                          [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])  # looks along +x

    def sample():
        return {"points": points.copy(), "lidar2img": lidar2img[None],
                "img_shape": np.array([[180, 640]])}

    out = DropCuboids(min_pairs=10, seed=3)(sample())
    draws = np.random.default_rng(3)
    xyz = points[:, :3].astype(np.float64)
    half = (xyz.max(0) - xyz.min(0)) * draws.random() * 0.2 / 2
    centre = xyz[int(draws.uniform(0, len(xyz)))]
    inside = ((xyz < centre + half) & (xyz > centre - half)).all(1)
    assert 0 < inside.sum() < len(points)
    np.testing.assert_array_equal(out["points"], points[~inside])
    whole = DropCuboids(min_pairs=10 ** 6, seed=3)(sample())
    np.testing.assert_array_equal(whole["points"], points)
