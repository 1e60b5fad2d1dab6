"""The dataset configs build real data loaders through mmengine's registries and Runner."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import REAL_DATA
from lidarcl.registry import DATASETS, TRANSFORMS
from lidarcl.utils.setup_env import register_all_modules

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.py"))


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_all_modules()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_names_registered_components(path):
    cfg = Config.fromfile(str(path))
    for key in ("train_dataloader", "val_dataloader"):
        if "dataset" not in (cfg.get(key) or {}):
            continue  # loaders.py: shared settings without a dataset
        loader = cfg[key]
        assert DATASETS.get(loader.dataset.type) is not None, loader.dataset.type
        for pipeline in _pipelines(loader.dataset):
            for step in pipeline:
                assert TRANSFORMS.get(step["type"]) is not None, step["type"]
    if "type" in (cfg.get("model") or {}):
        from lidarcl.registry import MODELS

        teacher = cfg.model.get("image_teacher")
        if teacher is not None and teacher.get("checkpoint") and \
                not Path(teacher.checkpoint).is_file():  # official weights: not shipped
            assert teacher.checkpoint.startswith("checkpoints/") and teacher.layout
            teacher.checkpoint = None
        model = MODELS.build(cfg.model)  # every pretraining config builds its model
        assert hasattr(model, "backbone")
    if path.parent.name == "pretrain":  # <method>_<backbone>_<dataset>.py: what it says
        method, backbone, dataset = path.stem.split("_")
        assert type(model.backbone).__name__ == PRETRAIN_BACKBONES[backbone]
        dataset_cfg = cfg.train_dataloader.dataset
        inner = dataset_cfg.dataset if dataset_cfg.type == "MultiFrameDataset" else dataset_cfg
        assert (inner.type, inner.data_root) == PRETRAIN_DATASETS[dataset]
        assert "_delete_" not in str(cfg.model) + str(dataset_cfg)
        assert cfg.train_dataloader.sampler.type == "InfiniteSampler"
        steps = [[step["type"] for step in pipeline] for pipeline in _pipelines(dataset_cfg)]
        if method in CAMERA_METHODS:  # images with exact lidar2img; superpixels where pooled
            for frame_steps in steps:
                assert "LoadImages" in frame_steps and "PackSample" == frame_steps[-1]
                assert ("LoadSuperpixels" in frame_steps) == (method != "scalr")
            assert (dataset_cfg.type == "MultiFrameDataset") == (method == "superflow")
            return
        assert "MultiViewAugment" in steps[0]
        assert ("TemporalViews" in steps[0]) == (dataset in ("synth", "nuscenes"))


CAMERA_METHODS = ("slidr", "superflow", "scalr")


def _pipelines(dataset_cfg) -> list:
    """The pipelines of a dataset config: its own, or a MultiFrameDataset's two."""
    if dataset_cfg.type == "MultiFrameDataset":
        return [dataset_cfg.dataset.pipeline, dataset_cfg.frame_pipeline]
    return [dataset_cfg.pipeline]


PRETRAIN_BACKBONES = {"minkunet34": "MinkUNet34", "voxelbackbone8x": "VoxelBackBone8x",
                      "ptv3": "PointTransformerV3"}
PRETRAIN_DATASETS = {"synth": ("NuScenesDataset", "data/synthetic/"),
                     "nuscenes": ("NuScenesDataset", "data/nuscenes/"),
                     "kitti": ("KittiDataset", "data/kitti/"),
                     "folder": ("FolderDataset", "data/scans/")}


def test_every_method_has_its_pretraining_configs():
    present = {p.stem for p in (REPO / "configs" / "pretrain").glob("*.py")}
    expected = {f"{method}_{backbone}_{dataset}"
                for method in ("pointcontrast", "prc", "fac", "cmae")
                for backbone, dataset in [(b, d) for b in PRETRAIN_BACKBONES
                                          for d in ("synth", "nuscenes")]
                + [("minkunet34", "kitti"), ("minkunet34", "folder")]}
    expected |= {f"{method}_{backbone}_synth" for method in CAMERA_METHODS
                 for backbone in PRETRAIN_BACKBONES}
    expected |= {f"{method}_minkunet34_nuscenes" for method in CAMERA_METHODS}
    assert expected <= present, sorted(expected - present)


def _loader(cfg_name, data_root, ann_file, **dataset_overrides):
    cfg = Config.fromfile(str(REPO / "configs" / "_base_" / "datasets" / cfg_name))
    loader = cfg.train_dataloader
    loader.num_workers = 0
    loader.persistent_workers = False
    loader.dataset.update(data_root=str(data_root), ann_file=str(ann_file), **dataset_overrides)
    return cfg, Runner.build_dataloader(loader, seed=0)


@REAL_DATA.needs_kitti(shipped=True)
def test_kitti_config_yields_batches_of_the_real_frame(tmp_path):
    from lidarcl.datasets.kitti_converter import create_kitti_infos

    kitti = REAL_DATA.kitti_root
    create_kitti_infos(kitti, tmp_path)
    cfg, loader = _loader("kitti.py", kitti, tmp_path / "kitti_infos_train.json")
    batch = next(iter(loader))
    raw = np.fromfile(kitti / "training/velodyne/000008.bin", np.float32).reshape(-1, 4)
    points, offsets = batch["points"], batch["offsets"]
    assert points.dtype == torch.float32 and points.shape[1] == 4
    assert offsets.tolist() == [len(points)]
    assert 0.8 * len(raw) < len(points) <= len(raw)       # range filter keeps most of the FOV crop
    pc_range = np.asarray(cfg.point_cloud_range)
    assert (points[:, :3].numpy() >= pc_range[:3]).all()
    assert (points[:, :3].numpy() < pc_range[3:]).all()
    # the six cars of frame 000008, labelled "Car" = class 2 of (Pedestrian, Cyclist, Car)
    assert batch["gt_labels"][0].tolist() == [2] * len(batch["gt_boxes"][0])
    assert 1 <= len(batch["gt_boxes"][0]) <= 6


@REAL_DATA.needs_nuscenes(shipped=True)
def test_nuscenes_config_yields_batches_of_the_real_frame(tmp_path):
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    nus = REAL_DATA.nuscenes_root
    create_nuscenes_infos(nus, REAL_DATA.nuscenes_version, tmp_path)
    cfg, loader = _loader("nuscenes.py", nus, tmp_path / "nuscenes_infos_train.json",
                          pipeline=Config.fromfile(str(REPO / "configs/_base_/datasets/nuscenes.py")
                                                   ).test_pipeline)
    batch = next(iter(loader))
    points = batch["points"]
    assert points.shape[1] == 5                     # x, y, z, intensity, time (no sweeps: 0)
    assert torch.all(points[:, 4] == 0)
    assert len(batch["lidar2img"][0]) == 6
    labels = batch["gt_labels"][0]
    assert len(labels) > 0 and int(labels.max()) < len(cfg.class_names)


def test_generated_set_goes_through_create_data_and_config_into_batches(synthetic_root,
                                                                         tmp_path):
    """2 scenes x 10 keyframes -> tools/create_data.py -> synthetic config -> batches."""
    import subprocess
    import sys

    from nuscenes.nuscenes import NuScenes

    out = tmp_path / "infos"
    subprocess.run([sys.executable, str(REPO / "tools/create_data.py"), "nuscenes",
                    "--root", synthetic_root.dataroot, "--version", synthetic_root.version,
                    "--out", str(out), "--max-sweeps", "1", "--superpixels", "none"],
                   check=True)
    nusc = NuScenes(version=synthetic_root.version, dataroot=synthetic_root.dataroot,
                    verbose=False)
    cfg = Config.fromfile(str(REPO / "configs/_base_/datasets/synthetic.py"))
    seen = 0
    for key in ("train_dataloader", "val_dataloader"):
        loader_cfg = cfg[key]
        loader_cfg.num_workers = 0
        loader_cfg.persistent_workers = False
        loader_cfg.dataset.update(data_root=synthetic_root.dataroot,
                                  ann_file=str(out / loader_cfg.dataset.ann_file))
        loader = Runner.build_dataloader(loader_cfg, seed=0)
        for batch in loader:
            offsets = batch["offsets"].tolist()
            assert offsets[-1] == len(batch["points"])
            assert len(offsets) == len(batch["gt_boxes"]) == len(batch["lidar2img"])
            times = batch["points"][:, 4]
            for i, meta in enumerate(batch["meta"]):
                sample = nusc.get("sample", meta["token"])
                lo = offsets[i - 1] if i else 0
                sample_times = times[lo:offsets[i]]
                # keyframe points carry time 0; a sample after the first of its scene has
                # its previous sweep merged, 0.05-0.5 s older
                assert (sample_times == 0).sum() > 20000
                if sample["prev"]:
                    lag = sample_times[sample_times > 0]
                    assert len(lag) > 10000 and 0.04 < float(lag.min()) <= 0.5
                assert len(batch["lidar2img"][i]) == 6
            seen += len(offsets)
    assert seen == len(nusc.sample) == 20


def test_folder_config_yields_batches_of_scans(tmp_path):
    raw = np.fromfile(REAL_DATA.kitti_file("velodyne", ".bin"), np.float32).reshape(-1, 4)
    # within 45 m: in the config's +-51.2 m range under any rotation and a scale <= 1.05
    raw = raw[np.hypot(raw[:, 0], raw[:, 1]) < 45.0]
    raw[:5000].tofile(tmp_path / "a.bin")
    np.save(tmp_path / "b.npy", raw[5000:9000])
    cfg = Config.fromfile(str(REPO / "configs/_base_/datasets/folder.py"))
    loader_cfg = cfg.train_dataloader
    loader_cfg.update(num_workers=0, persistent_workers=False)
    loader_cfg.dataset.data_root = str(tmp_path)
    batch = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))
    assert sorted(np.diff([0] + batch["offsets"].tolist())) == [4000, 5000]
    assert batch["points"].shape == (9000, 4)
