"""Semantic superpixels from a frozen teacher (SuperFlow's view-consistent ids): k-means
against scipy on separated clusters, the cleaning on a hand-made map, the cache written and
shared by the splits of one folder, loaded by tag, and a user's own maps registered."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_spherical_kmeans_separates_directions_as_scipy_kmeans_does():
    from scipy.cluster.vq import kmeans2

    from lidarcl.datasets.semantic_superpixels import assign_codewords, spherical_kmeans

    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.normal(size=(8, 8)))[0][:4]  # 4 orthogonal directions
    truth = rng.integers(0, 4, 400)
    points = centres[truth] + rng.normal(0, 0.05, (400, 8))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    codebook = spherical_kmeans(torch.from_numpy(points), 4, seed=1)
    ours = assign_codewords(torch.from_numpy(points).t().reshape(8, 20, 20), codebook).reshape(-1)
    _, theirs = kmeans2(points, 4, seed=1, minit="++")
    # the same partition up to the numbering of the clusters: one label per true cluster
    # and one true cluster per label (a merged pair of clusters fails the second count)
    for labels in (ours.numpy(), theirs):
        pairs = {(int(a), int(b)) for a, b in zip(labels, truth)}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == 4
    np.testing.assert_allclose(torch.linalg.norm(codebook, dim=1).numpy(), 1.0, atol=1e-5)


def test_cleaning_absorbs_small_segments_into_their_surroundings():
    from lidarcl.datasets.semantic_superpixels import clean_labels

    labels = np.zeros((12, 12), dtype=np.int64)
    labels[:, 6:] = 1
    labels[2:4, 2:4] = 2      # 4 pixels inside label 0
    labels[8, 9] = 0          # 1 pixel inside label 1
    labels[9:12, 0:6] = 3     # 18 pixels: kept
    cleaned = clean_labels(labels, min_area=5)
    expected = np.zeros((12, 12), dtype=np.int64)
    expected[:, 6:] = 1
    expected[9:12, 0:6] = 3
    np.testing.assert_array_equal(cleaned, expected)
    np.testing.assert_array_equal(clean_labels(labels, min_area=1), labels)


@pytest.fixture(scope="module")
def camera_root(tmp_path_factory) -> str:
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("semantic_data")
    summary = generate_dataset(str(root), scenes=2, keyframes=2, seed=0, image_size=(160, 90),
                               version="v1.0-synthetic", overwrite=True)
    create_nuscenes_infos(summary["dataroot"], "v1.0-synthetic", summary["dataroot"])
    return summary["dataroot"]


def _teacher(seed: int = 0):
    from lidarcl.models.image import ImageTeacher

    torch.manual_seed(seed)
    return ImageTeacher(encoder=dict(type="resnet", depth=18, dilate=[False, True, True]),
                        head=None)


def test_semantic_maps_are_cached_shared_by_splits_and_loaded_by_tag(camera_root):
    from lidarcl.datasets.nuscenes_dataset import NuScenesDataset
    from lidarcl.datasets.semantic_superpixels import create_semantic_superpixels
    from lidarcl.datasets.transforms import LoadImages, LoadSuperpixels
    from lidarcl.errors import DataError

    teacher = _teacher()
    train = os.path.join(camera_root, "nuscenes_infos_train.json")
    val = os.path.join(camera_root, "nuscenes_infos_val.json")
    first = create_semantic_superpixels(train, camera_root, teacher, clusters=6,
                                        label_stride=4, min_area=4, fit_images=8)
    second = create_semantic_superpixels(val, camera_root, teacher, clusters=6,
                                         label_stride=4, min_area=4, fit_images=8)
    assert first["fitted"] and not second["fitted"]
    assert first["codebook"] == second["codebook"]
    assert first["computed"] > 0 and second["computed"] > 0
    again = create_semantic_superpixels(train, camera_root, teacher, clusters=6,
                                        label_stride=4, min_area=4, fit_images=8)
    assert again["computed"] == 0 and again["skipped"] == first["computed"]
    meta = json.load(open(train))["metadata"]["superpixel_sets"]["kmeans6"]
    assert meta["num_superpixels"] == 6 and meta["teacher"]["encoder"]["depth"] == 18

    dataset = NuScenesDataset(ann_file=train, data_root=camera_root,
                              pipeline=[LoadImages(), LoadSuperpixels(tag="kmeans6")])
    sample = dataset[0]
    maps = sample["superpixels"]
    assert maps.shape == (6, 90, 160) and int(maps.max()) < 6

    # another teacher is refused without overwrite
    with pytest.raises(DataError, match="another teacher"):
        create_semantic_superpixels(train, camera_root, _teacher(seed=5), clusters=6,
                                    label_stride=4, min_area=4, fit_images=8)
    with pytest.raises(DataError, match="no superpixel set 'slic150'"):
        NuScenesDataset(ann_file=train, data_root=camera_root,
                        pipeline=[LoadImages(), LoadSuperpixels(tag="slic150")])[0]


class ColourTeacher(torch.nn.Module):
    """A teacher whose feature is the pixel's colour minus grey: pure red, green and blue
    point three ways 109 degrees apart, so the ids a map should give are known."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        self.encoder_cfg = {"type": "colour"}

    def encode(self, images):
        return self.encoder(images - 0.5)


STRIPE_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def test_semantic_ids_follow_the_content_across_cameras_and_frames(camera_root, tmp_path):
    """Every image painted with three vertical stripes of pure colours, in an order drawn
    per image: the maps give each colour one id, the same in every camera and every frame
    (SuperFlow's view consistency), away from the stripes' borders."""
    import shutil

    from PIL import Image

    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.datasets.semantic_superpixels import create_semantic_superpixels
    from lidarcl.datasets.superpixels import load_superpixels, superpixel_path

    root = tmp_path / "stripes"
    shutil.copytree(camera_root, root)
    index = root / "nuscenes_infos_train.json"
    infos, _ = read_info_index(index)
    rng = np.random.default_rng(0)
    orders = {}
    for info in infos:
        for channel, cam in info["cams"].items():
            order = rng.permutation(3)
            edges = np.linspace(0, cam["width"], 4).astype(int)
            image = np.zeros((cam["height"], cam["width"], 3), dtype=np.uint8)
            for stripe in range(3):
                image[:, edges[stripe]:edges[stripe + 1]] = STRIPE_COLOURS[order[stripe]]
            Image.fromarray(image).save(root / cam["path"], quality=100)
            orders[(info["token"], channel)] = (order, edges)
    assert len({tuple(o) for o, _ in orders.values()}) > 1
    done = create_semantic_superpixels(index, root, ColourTeacher(), clusters=3,
                                       label_stride=4, min_area=4, fit_images=8)
    assert done["computed"] == len(orders)
    id_of_colour = {}
    for (token, channel), (order, edges) in orders.items():
        labels = load_superpixels(superpixel_path(root / "superpixels", "kmeans3", token,
                                                  channel))
        for stripe in range(3):
            inside = labels[:, edges[stripe] + 10:edges[stripe + 1] - 10]
            ids = np.unique(inside)
            assert len(ids) == 1, (token, channel, stripe, ids)
            colour = int(order[stripe])
            assert id_of_colour.setdefault(colour, int(ids[0])) == int(ids[0]), \
                (token, channel, colour)
    assert sorted(id_of_colour.values()) == [0, 1, 2]


def test_users_maps_are_registered_in_the_same_layout(camera_root, tmp_path):
    import shutil

    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.datasets.semantic_superpixels import register_superpixel_set
    from lidarcl.datasets.superpixels import superpixel_path, write_superpixels
    from lidarcl.errors import DataError

    root = tmp_path / "copy"
    shutil.copytree(camera_root, root)
    index = root / "nuscenes_infos_val.json"
    infos, _ = read_info_index(index)
    for info in infos:
        for channel, cam in info["cams"].items():
            labels = np.full((cam["height"], cam["width"]), 3, dtype=np.uint8)
            write_superpixels(superpixel_path(root / "superpixels", "mine4", info["token"],
                                              channel), labels)
    with pytest.raises(DataError, match="num_superpixels"):
        register_superpixel_set(index, "mine4", 3)
    done = register_superpixel_set(index, "mine4", 4, "constant maps")
    assert done["maps"] == sum(len(i["cams"]) for i in infos)
    os.remove(superpixel_path(root / "superpixels", "mine4", infos[0]["token"],
                              sorted(infos[0]["cams"])[0]))
    with pytest.raises(DataError, match="not found|no such|missing"):
        register_superpixel_set(index, "mine4", 4)


def test_a_vit_teacher_labels_an_image_whose_shrunk_sides_are_not_patch_multiples():
    """KITTI's 1242 x 375 shrunk to 448 wide is 135 high: the ViT sees 140 x 448 (whole
    patches of 14) and the grid keeps the label stride of the original image."""
    from lidarcl.datasets.semantic_superpixels import _feature_grid
    from lidarcl.models.image import ImageTeacher

    torch.manual_seed(0)
    teacher = ImageTeacher(encoder=dict(type="vit", size=(24, 1, 2)), head=None)
    seen = []
    encode = teacher.encode
    teacher.encode = lambda images: seen.append(tuple(images.shape[-2:])) or encode(images)
    image = np.random.default_rng(0).integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    grid = _feature_grid(teacher, image, label_stride=4, work_side=448)
    assert seen == [(140, 448)]
    assert grid.shape == (24, 375 // 4, 1242 // 4)
    np.testing.assert_allclose(torch.linalg.norm(grid, dim=0).numpy(), 1.0, atol=1e-5)
