"""The pretraining study: linear-probe mIoU of every method x the sparse U-Net, and of the
best method x each backbone, against random initialisation, with the same budget for every
run, on a generated dataset (``tools/study.py``).

Stage 1 pretrains each method config (``configs/pretrain/<method>_minkunet34_synth.py``) for
``iters`` iterations; stage 2 takes the method whose probe gains most over random
initialisation and pretrains it with each other backbone. Every run shares the data, the
seed, the iteration budget, the voxel size and the probe settings; the random baseline is
probed once per backbone, with the same seed.
"""
from __future__ import annotations

import copy
import json
import os
import time

__all__ = ["STUDY_METHODS", "STUDY_VARIANTS", "STUDY_BACKBONES", "run_study", "format_table"]

STUDY_METHODS = ("pointcontrast", "prc", "fac", "cmae")
# variants measured beside the methods' defaults (README study): Point-CMAE's cosine
# consistency for the masked contrast, and PointContrast on four views with MV-DHEL
STUDY_VARIANTS = ("cmae-cosine", "pointcontrast-mv4")


def STUDY_BACKBONES(voxel_size: float) -> dict:
    """Backbone configs of stage 2 at the study's voxel size (range of the generated data)."""
    return {
        "minkunet34": dict(type="MinkUNet34", in_channels=4, out_channels=64,
                           voxel_size=voxel_size),
        "voxelbackbone8x": dict(type="VoxelBackBone8x", in_channels=4,
                                voxel_size=(voxel_size, voxel_size, 0.2),
                                point_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)),
        "ptv3": dict(type="PointTransformerV3", in_channels=4, out_channels=64,
                     voxel_size=voxel_size),
    }


def _config(repo: str, method: str) -> str:
    return os.path.join(repo, "configs", "pretrain", f"{method}_minkunet34_synth.py")


def run_study(repo: str, out: str, data_root: str, iters: int, voxel_size: float,
              seed: int = 0, methods=STUDY_METHODS, backbones=("voxelbackbone8x", "ptv3"),
              probe_epochs: int = 30, points_per_scan: int = 20000, log=print,
              stage2_method: str | None = None) -> list[dict]:
    """Run both stages; returns one row per run and writes ``<out>/study.json``.

    Stage 2 pretrains ``stage2_method`` when given (for example the best method of an
    earlier stage 1 run), else the stage 1 method with the largest gain."""
    from lidarcl.engine import build_pretrain_config, run_pretraining
    from lidarcl.evaluation.linear_probe import build_probe_loader, linear_probe_study

    rows, random_cache = [], {}
    backbone_cfgs = STUDY_BACKBONES(voxel_size)
    loaders = None

    def one(method: str, backbone: str) -> dict:
        nonlocal loaders
        work_dir = os.path.join(out, f"{method}_{backbone}")
        options = {"train_dataloader.dataset.data_root": data_root.rstrip("/") + "/",
                   "train_dataloader.num_workers": 0,
                   "train_dataloader.persistent_workers": False,
                   "train_cfg.max_iters": iters,
                   "default_hooks.checkpoint.interval": iters,
                   "default_hooks.logger.interval": 20,
                   "randomness.seed": seed}
        cfg = build_pretrain_config(_config(repo, method), work_dir, False, options)
        cfg.model.backbone = copy.deepcopy(backbone_cfgs[backbone])
        start = time.perf_counter()
        run_pretraining(cfg)
        seconds = time.perf_counter() - start
        if loaders is None:
            dataset_cfg = cfg.train_dataloader.dataset.to_dict()
            train_loader, lut, names = build_probe_loader(
                dataset_cfg, "nuscenes_infos_train.json", data_root)
            val_loader, _, _ = build_probe_loader(dataset_cfg, "nuscenes_infos_val.json",
                                                  data_root)
            loaders = (train_loader, val_loader, lut, names)
        train_loader, val_loader, lut, names = loaders
        probe = linear_probe_study(cfg.model.backbone.to_dict(),
                                   os.path.join(work_dir, "backbone.pth"), train_loader,
                                   val_loader, lut, len(names), seed=seed,
                                   epochs=probe_epochs, points_per_scan=points_per_scan)
        if backbone not in random_cache:
            random_cache[backbone] = probe["random"]
        row = {"method": method, "backbone": backbone, "iters": iters, "seed": seed,
               "pretrain_seconds": seconds, "miou": probe["pretrained"]["miou"],
               "random_miou": random_cache[backbone]["miou"],
               "gain": probe["pretrained"]["miou"] - random_cache[backbone]["miou"]}
        log(f"{method} x {backbone}: probe mIoU {100 * row['miou']:.2f} vs random "
            f"{100 * row['random_miou']:.2f} ({100 * row['gain']:+.2f}), pretraining "
            f"{seconds:.0f} s")
        rows.append(row)
        with open(os.path.join(out, "study.json"), "w") as handle:
            json.dump(rows, handle, indent=2)
        return row

    for method in methods:
        one(method, "minkunet34")
    if not backbones:
        return rows
    if stage2_method is None:
        stage_one = [r for r in rows if r["backbone"] == "minkunet34"
                     and r["method"] in STUDY_METHODS] or rows
        if not stage_one:
            raise ValueError("stage 2 needs a method: run stage 1 methods or name one "
                             "with stage2_method (--stage2-method)")
        stage2_method = max(stage_one, key=lambda r: r["gain"])["method"]
    for backbone in backbones:
        one(stage2_method, backbone)
    return rows


def format_table(rows: list[dict], previous: list[dict] | None = None) -> str:
    """Markdown table of ``rows``; with ``previous`` (an earlier ``study.json``), the
    earlier probe mIoU of the same method and backbone beside each row."""
    before = {(r["method"], r["backbone"]): r for r in previous or []}
    head = "| method | backbone | probe mIoU | random init | gain | pretraining s |"
    rule = "|---|---|---|---|---|---|"
    if previous is not None:
        head += " before: mIoU | before: gain |"
        rule += "---|---|"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r['method']} | {r['backbone']} | {100 * r['miou']:.2f} | "
                f"{100 * r['random_miou']:.2f} | {100 * r['gain']:+.2f} | "
                f"{r['pretrain_seconds']:.0f} |")
        if previous is not None:
            old = before.get((r["method"], r["backbone"]))
            line += (f" {100 * old['miou']:.2f} | {100 * old['gain']:+.2f} |" if old
                     else " - | - |")
        lines.append(line)
    return "\n".join(lines)
