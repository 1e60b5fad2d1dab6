"""CenterPoint learns: trained a few hundred iterations on generated scans, it detects cars
in other scans, scored by the devkit (acceptance point of the detection issue).

Sized for the test suite: 4 generated scenes of 4 keyframes (3 scenes / 12 scans to train,
1 scene / 4 scans to score), the synth config (VoxelBackBone8x at 0.2 m) cropped to
+-16 m with one task (car), a one-layer BEV backbone, 200 iterations at batch 2 in one cycle
(lr 3e-3), deterministic. The devkit's class range is capped at the crop
(:func:`~lidarcl.evaluation.nuscenes_det.cropped_detection_config`), so ground truth the
model cannot see is not counted. Measured here: car AP 50.7 after 62 s of training; an
untrained model scores about 0 (the check of the check below).
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "det" / "centerpoint_voxelbackbone8x_synth.py")
RANGE = 16.0
ITERS = 200


@pytest.fixture(scope="module")
def car_scans(tmp_path_factory) -> str:
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset

    root = str(tmp_path_factory.mktemp("det_learns"))
    generate_dataset(root, scenes=4, keyframes=4, seed=0, image_size=(160, 90),
                     sweeps_per_keyframe=0, val_scenes=1, overwrite=True)
    create_nuscenes_infos(root, "v1.0-synthetic", root, max_sweeps=0)
    return root


def _config(root: str, work_dir: str):
    from lidarcl.engine import build_pretrain_config
    from lidarcl.evaluation.bev_study import STUDY_BEV_BACKBONE, crop_detection

    data_root = root.rstrip("/") + "/"
    cfg = build_pretrain_config(CONFIG, work_dir, cfg_options={
        "train_dataloader.dataset.data_root": data_root,
        "val_dataloader.dataset.data_root": data_root, "val_evaluator.data_root": data_root,
        "train_dataloader.batch_size": 2,
        "train_dataloader.num_workers": 0, "val_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "val_dataloader.persistent_workers": False,
        "train_cfg.max_iters": ITERS, "train_cfg.val_interval": ITERS + 1,
        "param_scheduler.0.total_steps": ITERS, "param_scheduler.0.eta_max": 3e-3,
        "default_hooks.checkpoint.interval": ITERS, "default_hooks.checkpoint.save_best": None,
        "model.head.class_names": ["car"], "model.head.tasks": [["car"]],
        "model.head.test_cfg.nms.min_radius": [4]})
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert pipeline[1]["type"] == "ObjectSample"
    del pipeline[1]  # the scans' own cars are enough here
    crop_detection(cfg, RANGE)  # ranges, centre range, devkit class ranges capped
    cfg.model.bev_backbone.update(STUDY_BEV_BACKBONE["det"])
    cfg.randomness = dict(seed=0, deterministic=True)
    return cfg


def test_centerpoint_trained_200_iterations_detects_cars(car_scans, tmp_path):
    import torch

    from lidarcl.engine import run_pretraining
    from lidarcl.evaluation.det_inference import run_bev_test
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    cfg = _config(car_scans, str(tmp_path / "work"))
    torch.manual_seed(0)
    untrained = tmp_path / "untrained.pth"
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {}}, untrained)
    before = run_bev_test(cfg, str(untrained))["metrics"]
    run_pretraining(cfg, export=False, verb="trained")
    after = run_bev_test(cfg, str(tmp_path / "work" / f"iter_{ITERS}.pth"))["metrics"]
    # 4 scans of a scene not trained on; every car within the crop counts
    assert before["AP.car"] < 5.0, before
    assert after["AP.car"] > 20.0, after
