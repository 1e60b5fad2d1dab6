"""Camera-LiDAR pretrainers from their configs: two training iterations of each method on
each backbone, on generated scenes with cameras, sweeps, SLIC and semantic superpixels (and
t-1 / t+1 frames for SuperFlow); the teacher stays frozen while the 3D side and the heads
learn."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lidarcl.registry import DATASETS, MODELS

REPO = Path(__file__).resolve().parents[1]
BACKBONES = ["minkunet34", "ptv3", "voxelbackbone8x"]
SMALL = {"minkunet34": dict(voxel_size=0.6), "voxelbackbone8x": dict(),
         "ptv3": dict(voxel_size=0.6, enc_patch_size=[128] * 5, dec_patch_size=[128] * 4)}


@pytest.fixture(scope="module")
def camera_dataset(tmp_path_factory) -> str:
    """2 generated scenes x 2 keyframes, six 160 x 90 cameras, info indexes with SLIC maps."""
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.superpixels import create_superpixels
    from lidarcl.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("camera_data")
    from lidarcl.datasets.semantic_superpixels import create_semantic_superpixels
    from lidarcl.models.image import ImageTeacher

    summary = generate_dataset(str(root), scenes=2, keyframes=2, seed=0, image_size=(160, 90),
                               sweeps_per_keyframe=2, version="v1.0-synthetic",
                               overwrite=True)
    torch.manual_seed(0)
    teacher = ImageTeacher(encoder=dict(type="resnet", depth=18, dilate=[False, True, True]),
                           head=None)
    for index in create_nuscenes_infos(summary["dataroot"], "v1.0-synthetic",
                                       summary["dataroot"]):
        create_superpixels(index, summary["dataroot"])
        create_semantic_superpixels(index, summary["dataroot"], teacher, clusters=17,
                                    min_area=4, fit_images=12)
    return summary["dataroot"]


def _config(method: str, backbone: str, data_root: str):
    from mmengine.config import Config

    cfg = Config.fromfile(str(REPO / "configs" / "pretrain" / f"{method}_{backbone}_synth.py"))
    dataset = cfg.train_dataloader.dataset
    pipelines = [dataset.pipeline] if "pipeline" in dataset else \
        [dataset.dataset.pipeline, dataset.frame_pipeline]  # MultiFrameDataset (SuperFlow)
    (dataset if "pipeline" in dataset else dataset.dataset).data_root = data_root + "/"
    for pipeline in pipelines:
        for step in pipeline:
            if step["type"] in ("RandomResizedCropImages", "ResizeImages"):
                step["size"] = [56, 104]  # the generated 160 x 90 images, small
            if step["type"] in ("PointsRangeFilter", "LoadDenseCloud"):
                step["point_cloud_range"] = [-20.0, -20.0, -5.0, 20.0, 20.0, 3.0]  # fewer points
    if backbone == "voxelbackbone8x":
        cfg.model.backbone.point_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
        cfg.model.backbone.voxel_size = [0.4, 0.4, 0.2]
    else:
        cfg.model.backbone.update(SMALL[backbone])
    return cfg


def _two_iterations(cfg):
    from lidarcl.datasets.collate import collate_samples
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = collate_samples([dataset[0], dataset[1]])
    torch.manual_seed(0)
    np.random.seed(0)
    model = MODELS.build(cfg.model).train()
    teacher = {k: v.clone() for k, v in model.teacher.encoder.state_dict().items()}
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    losses = []
    for _ in range(2):
        out = model(mode="loss", **batch)
        total = sum(out.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append({k: float(v) for k, v in out.items()})
    return model, losses, teacher, backbone


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("method", ["slidr", "scalr", "superflow"])
def test_two_iterations_of_each_method_on_each_backbone(method, backbone, camera_dataset):
    cfg = _config(method, backbone, camera_dataset)
    model, losses, teacher, backbone_before = _two_iterations(cfg)
    assert all(np.isfinite(v) and v > 0 for step in losses for v in step.values()), losses
    if method == "superflow":
        assert set(losses[0]) == {"loss_spatial", "loss_d2s", "loss_temporal"}
    for name, value in model.teacher.encoder.state_dict().items():  # frozen, BN included
        assert torch.equal(value, teacher[name]), name
    # every backbone weight the loss reaches has learnt (VoxelBackBone8x's point features
    # come from its first stage: the deeper ones get no gradient, as in every method)
    reached = [k for k, p in model.backbone.named_parameters()
               if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    assert reached and all(not torch.equal(model.backbone.get_parameter(k), backbone_before[k])
                           for k in reached)
    trained = model.teacher.head if model.teacher.head is not None else model.head
    assert trained.weight.grad is not None
