"""The downstream BEV study (``tools/bev_study.py``): what pretraining buys CenterPoint
detection and BEV map segmentation on ``VoxelBackBone8x``.

Data: the fine-tuning study's generated dataset (:func:`~lidarcl.evaluation.finetune_study.
prepare_finetune_data`: 60 scenes x 4 keyframes, 10 of them for validation, so 200 training
and 40 validation scans, with the city's map expansion) and its scene-level label split
(10 %, split seed 0). Detection pastes objects (ground-truth sampling) from the database of
the scans that keep their labels: the whole training set's at 100 %, the split's own at 10 %
(``create_data gt-database --split-file``), so no unlabelled scan leaks into a run.

Runs: every task (``det``: ``configs/det/centerpoint_voxelbackbone8x_synth.py``; ``map``:
``configs/mapseg/bevmap_voxelbackbone8x_synth.py``), label fraction, row and seed fine-tunes
for the same number of iterations at the same batch size (the configs' one-cycle AdamW with
``total_steps`` set to the iterations and a peak rate of ``STUDY_LR``), in the deterministic mode, from random
initialisation or from a pretrained ``backbone.pth`` (``{seed}`` in a row's path: the
pretraining study's seed-``k`` encoder; ``randomness.seed = k``), with no validation inside
the run; its last checkpoint is then scored once on every validation scan: detection by the
devkit (mAP, NDS and per-class AP, ``detection_cvpr_2019``), map segmentation by BEVFusion's
IoU (mIoU@max). The spread over seeds is pretraining's and fine-tuning's together; rows are
compared per seed (:func:`lidarcl.evaluation.study.beyond_spread`).

Sized for the CPU machine: the BEV backbone of both configs is reduced to one layer per stage
(32 and 64 filters, upsampled to 64 + 64 for detection and 32 + 32 for the map head, which
convolves at the neck's width on its 200 x 200 grid; ``STUDY_BEV_BACKBONE``); the encoder is the configs'
(0.2 m voxels, the pretraining study's); detection sees +-25.6 m (``DET_RANGE``: a 32 x 32
BEV map, where the six heads cost a quarter of their +-51.2 m price; 95 % of a generated
scan's points lie within it) and is scored by the devkit with every class range capped at
25.6 m (:func:`~lidarcl.evaluation.nuscenes_det.cropped_detection_config`), map
segmentation keeps BEVFusion's +-50 m grid (encoder over +-51.2 m). Finished runs are kept in
``<out>/bev_study.json``: an interrupted study resumes where it stopped.
"""
from __future__ import annotations

import os
import time

__all__ = ["BEV_TASKS", "STUDY_BEV_BACKBONE", "STUDY_LR", "DET_RANGE", "crop_detection", "prepare_bev_data", "run_bev_study",
           "format_bev_tables"]

# task -> (config, metric keys recorded, the headline metrics of the table)
BEV_TASKS = {
    "det": ("configs/det/centerpoint_voxelbackbone8x_synth.py", ("NDS", "mAP")),
    "map": ("configs/mapseg/bevmap_voxelbackbone8x_synth.py", ("mIoU@max",)),
}
# per task; the map head's two 3x3 convolutions run at the neck's width on the 200 x 200
# output grid (BEVFusion's head): a map iteration took 2.1 s at 64 + 64 channels and 1.4 s
# at 32 + 32 (README, the downstream BEV study)
STUDY_BEV_BACKBONE = {
    "det": dict(layer_nums=[1, 1], num_filters=[32, 64], num_upsample_filters=[64, 64]),
    "map": dict(layer_nums=[1, 1], num_filters=[32, 64], num_upsample_filters=[32, 32]),
}
# the one-cycle peak for a schedule of a few hundred iterations (the configs' 1e-3 is
# OpenPCDet's for 20 epochs); the rate of tests/test_centerpoint_learns.py
STUDY_LR = 3e-3
# detection sees +-DET_RANGE m (module doc); the devkit's class ranges are capped at it
DET_RANGE = 25.6


def prepare_bev_data(root: str, scenes: int, keyframes: int, val_scenes: int, data_seed: int,
                     percents, log=print) -> dict:
    """The fine-tuning study's data (generated once) with its map expansion and the object
    databases of the full training set and of each label split. Returns the
    :func:`~lidarcl.evaluation.finetune_study.prepare_finetune_data` dict plus
    ``"databases": {percent: dbinfos path}``."""
    from lidarcl.datasets.gt_database_converter import create_gt_database
    from lidarcl.evaluation.finetune_study import prepare_finetune_data

    data = prepare_finetune_data(root, scenes, keyframes, val_scenes, data_seed, percents,
                                 log=log)
    expansion = os.path.join(root, "maps", "expansion")
    if not os.path.isdir(expansion) or not os.listdir(expansion):
        raise ValueError(f"{root}: no map expansion under {expansion} (data generated before "
                         "the generator wrote it); delete the folder and run again")
    databases = {}
    for percent in percents:  # a few seconds each: rebuilt on every start
        start = time.perf_counter()
        databases[percent] = create_gt_database(data["train_index"], root, num_sweeps=None,
                                                split_file=data["splits"].get(percent),
                                                log_every=10 ** 9)
        log(f"object database of {percent:g}% of the labels in "
            f"{time.perf_counter() - start:.0f} s -> {databases[percent]}")
    return dict(data, databases=databases)


def _options(task: str, data: dict, percent: float, iters: int, batch_size: int,
             lr: float = STUDY_LR) -> dict:
    root = data["root"].rstrip("/") + "/"
    options = {"train_dataloader.dataset.data_root": root,
               "val_dataloader.dataset.data_root": root,
               "train_dataloader.dataset.split_file": data["splits"].get(percent),
               "train_dataloader.batch_size": batch_size,
               "train_cfg.max_iters": iters, "train_cfg.val_interval": iters + 1,
               "param_scheduler.0.total_steps": iters, "param_scheduler.0.eta_max": lr,
               "optim_wrapper.optimizer.lr": lr,
               "default_hooks.checkpoint.interval": iters,
               "default_hooks.checkpoint.save_best": None}
    if task == "det":
        options["val_evaluator.data_root"] = root
        options["train_dataloader.dataset.pipeline.1.db_file"] = data["databases"][percent]
    return options


def crop_detection(cfg, half_extent: float) -> None:
    """Restrict a CenterPoint config to ``+-half_extent`` m in x and y (the encoder's grid,
    every range filter, the centre range of the decoded boxes) and cap the devkit's class
    ranges at it (``NuScenesDetMetric(max_range)``), in place."""
    r = float(half_extent)
    z_lo, z_hi = cfg.model.backbone.point_range[2], cfg.model.backbone.point_range[5]
    cfg.model.backbone.point_range = [-r, -r, z_lo, r, r, z_hi]
    for transform in cfg.train_dataloader.dataset.pipeline + cfg.val_dataloader.dataset.pipeline:
        if "point_cloud_range" in transform:
            transform["point_cloud_range"] = [-r, -r, z_lo, r, r, z_hi]
    cfg.model.head.test_cfg.post_center_range = [-r - 5, -r - 5, -10.0, r + 5, r + 5, 10.0]
    cfg.val_evaluator.max_range = r


def _run_one(repo: str, task: str, data: dict, work_dir: str, percent: float, seed: int,
             iters: int, batch_size: int, lr: float, checkpoint: str | None) -> dict:
    from lidarcl.engine import build_pretrain_config
    from lidarcl.evaluation.det_inference import run_bev_test
    from lidarcl.evaluation.finetune_study import train_then_score

    config, _ = BEV_TASKS[task]
    cfg = build_pretrain_config(os.path.join(repo, config), work_dir,
                                cfg_options=_options(task, data, percent, iters, batch_size,
                                                     lr))
    if task == "det":
        if cfg.train_dataloader.dataset.pipeline[1]["type"] != "ObjectSample":
            raise ValueError(f"{config}: the study expects ObjectSample at train pipeline "
                             "index 1")
        crop_detection(cfg, DET_RANGE)
    cfg.model.bev_backbone.update(STUDY_BEV_BACKBONE[task])
    cfg.randomness = dict(seed=seed, deterministic=True)
    if checkpoint:
        cfg.model.backbone_checkpoint = os.path.abspath(checkpoint)
    result, train_seconds, last = train_then_score(cfg, work_dir, iters, run_bev_test)
    return {"metrics": result["metrics"], "train_seconds": train_seconds,
            "test_seconds_per_sample": result["seconds_per_sample"], "checkpoint": last}


def run_bev_study(repo: str, out: str, rows: dict, tasks, percents, seeds, iters: dict,
                  data: dict, batch_size: int = 2, lr: float = STUDY_LR,
                  log=print) -> dict:
    """Fine-tune every task, fraction, row (``{name: checkpoint template or None}``) and seed
    for ``iters[task]`` iterations (module doc); runs already in ``<out>/bev_study.json``
    are kept. Returns the study
    (``settings``, ``runs``: one dict per run with its ``metrics``)."""
    from lidarcl.evaluation.finetune_study import _read, _write

    path = os.path.join(out, "bev_study.json")
    settings = {"rows": rows, "tasks": list(tasks), "percents": list(percents),
                "seeds": list(seeds), "iters": {t: iters[t] for t in tasks},
                "batch_size": batch_size, "lr": lr, "det_range": DET_RANGE,
                "configs": {t: BEV_TASKS[t][0] for t in tasks},
                "bev_backbone": {t: STUDY_BEV_BACKBONE[t] for t in tasks},
                "data": {k: v for k, v in data.items() if k not in ("splits", "databases")}}
    study = _read(path, {"settings": settings, "runs": []})
    if study["settings"] != settings:
        raise ValueError(f"{path} holds a study with other settings; use another --out")
    done = {(r["task"], r["row"], r["percent"], r["seed"]) for r in study["runs"]}
    for name, template in rows.items():  # every checkpoint exists before the first run
        for seed in seeds:
            if template and not os.path.isfile(template.format(seed=seed)):
                raise FileNotFoundError(f"row {name}, seed {seed}: "
                                        f"{template.format(seed=seed)} not found")
    for task in tasks:
        for percent in percents:
            for name, template in rows.items():
                for seed in seeds:
                    if (task, name, percent, seed) in done:
                        continue
                    log(f"== {task}: {name} at {percent:g}% of the labels, seed {seed}")
                    result = _run_one(repo, task, data,
                                      os.path.join(out, task, f"{percent:g}pct", name,
                                                   f"seed{seed}"),
                                      percent, seed, iters[task], batch_size, lr,
                                      template.format(seed=seed) if template else None)
                    study["runs"].append({"task": task, "row": name, "percent": percent,
                                          "seed": seed, **result})
                    _write(path, study)
                    headline = ", ".join(f"{k} {result['metrics'][k]:.2f}"
                                         for k in BEV_TASKS[task][1])
                    log(f"{task} {name} {percent:g}% seed {seed}: {headline} "
                        f"({result['train_seconds']:.0f} s fine-tuning)")
    return study


def format_bev_tables(study: dict) -> str:
    """Markdown: per task and headline metric, the fine-tuning study's table (mean +- std
    over seeds, gain over random per seed, rows above beyond the spread)."""
    from lidarcl.evaluation.finetune_study import format_finetune_table

    parts = []
    for task in study["settings"]["tasks"]:
        for metric in BEV_TASKS[task][1]:
            runs = [dict(r, miou=r["metrics"][metric]) for r in study["runs"]
                    if r["task"] == task]
            if runs:
                parts.append(f"**{task}: {metric}**\n\n"
                             + format_finetune_table({"runs": runs}, label=metric))
    return "\n\n".join(parts)
