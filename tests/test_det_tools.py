"""tools/train.py, tools/test.py and tools/evaluate.py end to end on the BEV models, on a
tiny generated set: CenterPoint trains (with ground-truth sampling from the set's own object
database), resumes from its checkpoint, is scored by the devkit through the validation metric,
writes the official results JSON, and tools/evaluate.py scores that file to the same numbers;
the BEV map segmentor trains and is scored."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_tool as _tool

REPO = Path(__file__).resolve().parents[1]
DET_CONFIG = str(REPO / "configs" / "det" / "centerpoint_voxelbackbone8x_synth.py")
MAP_CONFIG = str(REPO / "configs" / "mapseg" / "bevmap_voxelbackbone8x_synth.py")
SMALL = ["model.backbone.voxel_size=[0.4,0.4,0.2]", "model.bev_backbone.layer_nums=[1,1]",
         "model.bev_backbone.num_filters=[16,32]",
         "model.bev_backbone.num_upsample_filters=[16,16]",
         "train_dataloader.num_workers=0", "val_dataloader.num_workers=0",
         "train_dataloader.persistent_workers=False", "val_dataloader.persistent_workers=False"]


def _data(root: str) -> list[str]:
    return [f"train_dataloader.dataset.data_root={root}/",
            f"val_dataloader.dataset.data_root={root}/"]


def _schedule(total: int, iters: int) -> list[str]:
    return [f"train_cfg.max_iters={iters}", f"train_cfg.val_interval={total}",
            f"param_scheduler.0.total_steps={total}", "default_hooks.checkpoint.interval=1"]


def test_centerpoint_train_resume_test_format_and_evaluate(tiny_dataset, tmp_path, capsys):
    from lidarcl.datasets.gt_database_converter import create_gt_database

    db = create_gt_database(f"{tiny_dataset}/nuscenes_infos_train.json", tiny_dataset,
                            out_dir=str(tmp_path / "db"), num_sweeps=None)
    det = SMALL + _data(tiny_dataset) + [f"val_evaluator.data_root={tiny_dataset}/",
                                         f"train_dataloader.dataset.pipeline.1.db_file={db}"]
    work = tmp_path / "work"
    train = _tool("train")
    assert train.main([DET_CONFIG, "--work-dir", str(work), "--cfg-options",
                       *det, *_schedule(3, 2)]) == 0
    assert (work / "iter_2.pth").is_file()
    # resume continues from iteration 2 (the checkpoint loads with weights_only=True, the
    # one-cycle scheduler's state included)
    assert train.main([DET_CONFIG, "--work-dir", str(work), "--resume", "--cfg-options",
                       *det, *_schedule(3, 3)]) == 0
    assert (work / "iter_3.pth").is_file()
    log = "\n".join(p.read_text() for p in work.glob("*/*.log"))
    assert "resumed" in log.lower() or "resume" in log.lower()

    test = _tool("test")
    metrics_file = tmp_path / "metrics.json"
    test_opts = SMALL + _data(tiny_dataset) + [f"val_evaluator.data_root={tiny_dataset}/"]
    assert test.main([DET_CONFIG, str(work / "iter_3.pth"), "--metrics-out", str(metrics_file),
                      "--cfg-options", *test_opts]) == 0
    metrics = json.loads(metrics_file.read_text())["metrics"]
    assert {"mAP", "NDS", "AP.car", "mATE"} <= set(metrics)
    out = tmp_path / "results"
    assert test.main([DET_CONFIG, str(work / "iter_3.pth"), "--format-only", "--out", str(out),
                      "--cfg-options", *test_opts]) == 0
    results = out / "results_nusc.json"
    submission = json.loads(results.read_text())
    assert submission["meta"]["use_lidar"] is True and submission["results"]
    scored = tmp_path / "scored.json"
    assert _tool("evaluate").main(["nuscenes-det", "--results", str(results), "--root",
                                   tiny_dataset, "--version", "v1.0-synthetic",
                                   "--eval-set", "val", "--out", str(scored)]) == 0
    summary = json.loads(scored.read_text())
    summary = summary.get("metrics", summary)
    assert 100 * summary["mean_ap"] == pytest.approx(metrics["mAP"], abs=1e-9)
    assert 100 * summary["nd_score"] == pytest.approx(metrics["NDS"], abs=1e-9)


def test_map_segmentor_train_and_test(tiny_dataset, tmp_path):
    opts = SMALL + _data(tiny_dataset) + [
        "train_dataloader.dataset.pipeline.3.xbound=[-25.0,25.0,0.5]",
        "train_dataloader.dataset.pipeline.3.ybound=[-25.0,25.0,0.5]",
        "val_dataloader.dataset.pipeline.1.xbound=[-25.0,25.0,0.5]",
        "val_dataloader.dataset.pipeline.1.ybound=[-25.0,25.0,0.5]",
        "model.head.xbound=[-25.0,25.0,0.5]", "model.head.ybound=[-25.0,25.0,0.5]"]
    work = tmp_path / "work"
    assert _tool("train").main([MAP_CONFIG, "--work-dir", str(work), "--cfg-options", *opts,
                                *_schedule(2, 2)]) == 0
    metrics_file = tmp_path / "metrics.json"
    assert _tool("test").main([MAP_CONFIG, str(work / "iter_2.pth"), "--metrics-out",
                               str(metrics_file), "--cfg-options", *opts]) == 0
    metrics = json.loads(metrics_file.read_text())["metrics"]
    assert 0 <= metrics["mIoU@max"] <= 100 and "divider@0.50" in metrics
    with pytest.raises(SystemExit):
        _tool("test").main([MAP_CONFIG, str(work / "iter_2.pth"), "--format-only", "--out",
                            str(tmp_path / "x"), "--cfg-options", *opts])
