"""The downstream BEV study's bookkeeping: the options of each run (the label split's own
object database, the schedule) and the tables (mean +- std over seeds and per-seed gains,
computed by hand here); the capped devkit config for cropped detectors."""
from __future__ import annotations

import pytest


def _runs():
    runs = []
    nds = {"random": [10.0, 12.0, 14.0], "prc": [15.0, 16.0, 20.0]}
    miou = {"random": [30.0, 31.0, 32.0], "prc": [30.0, 33.0, 30.0]}
    for row in nds:
        for seed in range(3):
            runs.append({"task": "det", "row": row, "percent": 10, "seed": seed,
                         "metrics": {"NDS": nds[row][seed], "mAP": nds[row][seed] / 2}})
            runs.append({"task": "map", "row": row, "percent": 10, "seed": seed,
                         "metrics": {"mIoU@max": miou[row][seed]}})
    return {"settings": {"tasks": ["det", "map"]}, "runs": runs}


def test_tables_hand_computed():
    from lidarcl.evaluation.bev_study import format_bev_tables

    text = format_bev_tables(_runs())
    det_nds = text.split("**det: NDS**")[1].split("**det: mAP**")[0]
    assert "| row | 10% NDS | 10% gain over random | 10% above, beyond the spread |" in det_nds
    # random 12 +- 2; prc 17 +- 2.65; per-seed gains 5, 4, 6 -> 5 +- 1 (beyond the spread)
    assert "| random | 12.00 +- 2.00 | - | - |" in det_nds
    assert "| prc | 17.00 +- 2.65 | +5.00 +- 1.00 | random |" in det_nds
    det_map = text.split("**det: mAP**")[1].split("**map: mIoU@max**")[0]
    assert "| prc | 8.50 +- 1.32 | +2.50 +- 0.50 | random |" in det_map
    seg = text.split("**map: mIoU@max**")[1]
    # gains 0, 2, -2: mean 0 +- 2, not beyond the spread
    assert "| prc | 31.00 +- 1.73 | +0.00 +- 2.00 | - |" in seg


def test_run_options_take_the_split_and_its_database():
    from lidarcl.evaluation.bev_study import _options

    data = {"root": "/d", "splits": {10: "/d/splits/s10.json"},
            "databases": {10: "/d/db10.json", 100: "/d/db.json"}}
    det10 = _options("det", data, 10, 150, 2, 3e-3)
    assert det10["train_dataloader.dataset.split_file"] == "/d/splits/s10.json"
    assert det10["train_dataloader.dataset.pipeline.1.db_file"] == "/d/db10.json"
    assert det10["param_scheduler.0.total_steps"] == 150
    assert det10["train_cfg.val_interval"] > 150  # no validation inside a run
    det100 = _options("det", data, 100, 150, 2)
    assert det100["train_dataloader.dataset.split_file"] is None
    assert det100["train_dataloader.dataset.pipeline.1.db_file"] == "/d/db.json"
    assert "train_dataloader.dataset.pipeline.1.db_file" not in _options("map", data, 100,
                                                                         150, 2)


def test_cropped_detection_config_caps_the_devkit_ranges():
    pytest.importorskip("nuscenes")
    from lidarcl.evaluation.nuscenes_det import cropped_detection_config, detection_config

    official = detection_config().class_range
    capped = cropped_detection_config(35.0)
    assert capped.class_range == {k: min(v, 35.0) for k, v in official.items()}
    assert capped.class_range["car"] == 35.0 and capped.class_range["barrier"] == 30
    assert capped.dist_ths == detection_config().dist_ths


def test_crop_detection_changes_every_range_together():
    from pathlib import Path

    from mmengine.config import Config

    from lidarcl.evaluation.bev_study import crop_detection

    repo = Path(__file__).resolve().parents[1]
    cfg = Config.fromfile(str(repo / "configs/det/centerpoint_voxelbackbone8x_synth.py"))
    crop_detection(cfg, 25.6)
    box = [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0]
    assert cfg.model.backbone.point_range == box
    filters = [t for t in cfg.train_dataloader.dataset.pipeline
               + cfg.val_dataloader.dataset.pipeline if "point_cloud_range" in t]
    assert len(filters) == 3 and all(t["point_cloud_range"] == box for t in filters)
    assert cfg.val_evaluator.max_range == 25.6
    # 0.2 m voxels over 51.2 m: the encoder's grid and the head's BEV map shrink with it
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    backbone = MODELS.build(cfg.model.backbone)
    assert backbone.grid_shape()[1:] == (256, 256)
