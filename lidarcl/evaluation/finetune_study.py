"""The fine-tuning study (``tools/finetune_study.py``): what pretraining buys downstream.

One generated dataset (nuScenes layout, with lidarseg) holds the labelled scans; its
label-fraction splits (``tools/make_splits.py``, scene level, split seed 0) fix which
training scans keep their labels, the same for every row and seed, and every run validates
on the same validation scenes. Each row fine-tunes MinkUNet34 (``configs/seg/
minkunet34_synth_1pct.py``: SGD, head at 100x, CE + Lovasz, 0.2 m voxels) for the same
number of iterations and batch size at every fraction, from random initialisation or from a
pretrained ``backbone.pth``, in the deterministic mode, then scores its last checkpoint on
every validation point (``tools/test.py``'s inference; no validation inside the run, so no
checkpoint is picked on the scans the table reports).

Seeds: at seed ``k`` a row loads the backbone its checkpoint template names for ``k``
(``{seed}`` in the path: the pretraining study's seed-``k`` backbone), and the fine-tuning
runs with ``randomness.seed = k`` (head initialisation, data order, augmentation). The
spread over seeds is therefore pretraining's and fine-tuning's together. Rows are compared
as in the pretraining study (:func:`lidarcl.evaluation.study.beyond_spread`): per-seed
differences against their own spread.

Temporal voting (:mod:`lidarcl.evaluation.temporal_voting`) is measured on the best row
(largest mean mIoU at the smallest fraction) at every fraction and seed, on the same
checkpoints. Once scored, a run's checkpoint keeps the model weights only (``state_dict`` and
``meta``, rewritten atomically): SGD's momentum buffers would double the study's disk use
(36 MinkUNet34 runs: 5.2 GB instead of 10.4 GB) and are never read again.
"""
from __future__ import annotations

import json
import os
import time

__all__ = ["prepare_finetune_data", "run_finetune_study", "summarize_finetune",
           "format_finetune_table", "scaled_lr", "train_then_score", "without_validation",
           "add_data_arguments", "parse_rows"]

SEG_CONFIG = "configs/seg/minkunet34_synth_1pct.py"
SLIDR_LR, SLIDR_BATCH = 0.02, 16


def _read(path: str, default):
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def _write(path: str, data) -> None:
    from lidarcl.utils.fileio import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)


def prepare_finetune_data(root: str, scenes: int, keyframes: int, val_scenes: int,
                          data_seed: int, percents, log=print) -> dict:
    """Generate the dataset (once; kept when its stamp matches), index it and write its
    splits. Returns ``{"root", "train_index", "splits": {percent: path}}``."""
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.splits import make_label_splits
    from lidarcl.datasets.synthetic import generate_dataset

    settings = dict(scenes=scenes, keyframes=keyframes, val_scenes=val_scenes, seed=data_seed)
    stamp = os.path.join(root, "finetune_data.json")
    if _read(stamp, {}).get("settings") != settings:
        start = time.perf_counter()
        generate_dataset(root, scenes=scenes, keyframes=keyframes, seed=data_seed,
                         image_size=(160, 90), sweeps_per_keyframe=0, val_scenes=val_scenes,
                         overwrite=True)
        create_nuscenes_infos(root, "v1.0-synthetic", root, max_sweeps=0)
        _write(stamp, {"settings": settings, "seconds": time.perf_counter() - start})
        log(f"generated {scenes} scenes x {keyframes} keyframes ({val_scenes} for "
            f"validation) in {time.perf_counter() - start:.0f} s -> {root}")
    train_index = os.path.join(root, "nuscenes_infos_train.json")
    splits = make_label_splits(train_index, [p for p in percents if p < 100], seed=0,
                               level="scene")
    return {"root": root, "train_index": train_index, "splits": splits}


def _run_one(repo: str, data: dict, work_dir: str, percent: float, seed: int, iters: int,
             checkpoint: str | None, voxel_size: float, batch_size: int,
             lr: float) -> dict:
    from lidarcl.engine import build_pretrain_config
    from lidarcl.evaluation.seg_inference import run_segmentation_test

    # no validation inside the run (without_validation): the one evaluation is on the last
    # checkpoint, so no checkpoint is chosen on the validation scans the table reports
    options = {"train_dataloader.dataset.data_root": data["root"],
               "val_dataloader.dataset.data_root": data["root"],
               "train_dataloader.dataset.split_file": data["splits"].get(percent),
               "train_dataloader.batch_size": batch_size,
               "optim_wrapper.optimizer.lr": lr,
               "train_cfg.max_iters": iters, "train_cfg.val_interval": iters + 1,
               "default_hooks.checkpoint.interval": iters,
               "default_hooks.checkpoint.save_best": None,
               "model.backbone.voxel_size": voxel_size}
    cfg = build_pretrain_config(os.path.join(repo, SEG_CONFIG), work_dir, cfg_options=options)
    cfg.randomness = dict(seed=seed, deterministic=True)
    warm_up = min(cfg.param_scheduler[0]["end"], max(1, iters // 5))
    cfg.param_scheduler[0]["end"] = warm_up
    cfg.param_scheduler[1].update(begin=warm_up, end=iters)
    if checkpoint:
        cfg.model.backbone_checkpoint = checkpoint
    result, train_seconds, last = train_then_score(cfg, work_dir, iters,
                                                   run_segmentation_test)
    return {"miou": result["metrics"]["mIoU"], "per_class": result["metrics"],
            "train_seconds": train_seconds, "checkpoint": last,
            "test_seconds_per_scan": result["seconds_per_scan"]}


def train_then_score(cfg, work_dir: str, iters: int, score) -> tuple[dict, float, str]:
    """Train ``cfg`` for ``iters`` iterations without validation, score the last checkpoint
    with ``score(cfg, path)`` and keep its weights only; the scoring config is kept as
    ``<work_dir>/test_config.py`` (the run's own dump has no validation loader). Returns
    ``(score's result, training seconds, checkpoint path)``."""
    from lidarcl.engine import run_pretraining

    start = time.perf_counter()
    run_pretraining(without_validation(cfg), export=False, verb="trained")
    train_seconds = time.perf_counter() - start
    last = os.path.join(work_dir, f"iter_{iters}.pth")
    result = score(cfg, last)
    _keep_weights_only(last)
    cfg.dump(os.path.join(work_dir, "test_config.py"))
    return result, train_seconds, last


def add_data_arguments(parser) -> None:
    """The generated dataset's arguments shared by the fine-tuning studies' tools."""
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--val-scenes", type=int, default=10)
    parser.add_argument("--keyframes", type=int, default=4)
    parser.add_argument("--data-seed", type=int, default=100,
                        help="generator seed of the labelled data (default 100: scenes "
                             "other than the pretraining study's)")


def parse_rows(parser, items) -> dict:
    """``{"random": None, NAME: PATH, ...}`` of ``--row NAME=PATH`` items (parser.error on a
    malformed or repeated one)."""
    rows = {"random": None}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or name in rows:
            parser.error(f"--row {item!r}: expected a new NAME=PATH")
        rows[name] = path
    return rows


def without_validation(cfg):
    """A copy of ``cfg`` with no validation loop: mmengine's ``IterBasedTrainLoop``
    validates after the last iteration whatever ``val_interval`` says (mmengine 0.10.7), and
    the studies score the last checkpoint once themselves."""
    import copy

    train_only = copy.deepcopy(cfg)
    train_only.val_dataloader = train_only.val_cfg = train_only.val_evaluator = None
    return train_only


def scaled_lr(batch_size: int) -> float:
    """SLidR's fine-tuning rate (backbone 0.02, head 2.0 at batches of 16 scans) scaled
    linearly to ``batch_size`` (Goyal et al. 2017, arXiv 1706.02677). Unscaled at batch 2,
    every run of a first study here (30 iterations) jumped from a loss of about 2.5 to
    20-880 when the warm-up ended, and 20 of 36 logged above 10 at the end (README)."""
    return SLIDR_LR * batch_size / SLIDR_BATCH


def _keep_weights_only(path: str) -> None:
    """Rewrite an mmengine checkpoint as ``{"state_dict", "meta"}`` (module doc)."""
    from lidarcl.engine.checkpoint import atomic_torch_save, read_state_dict

    state, meta = read_state_dict(path)
    atomic_torch_save({"state_dict": state, "meta": meta}, path)


def run_finetune_study(repo: str, out: str, rows: dict, percents, seeds, iters: int,
                       data: dict, voxel_size: float = 0.2, voting: dict | None = None,
                       batch_size: int = 2, lr: float | None = None, log=print) -> dict:
    """Fine-tune every row (``{name: checkpoint path template or None}``) at every fraction
    and seed (module doc); finished runs in ``<out>/finetune_study.json`` are kept.
    ``lr`` is the backbone's learning rate (the head's is 100x, the config's ``lr_mult``);
    by default SLidR's 0.02 at batch 16 scaled linearly to ``batch_size``
    (:func:`scaled_lr`). Returns the study dict (``runs``, ``voting`` and ``settings``)."""
    from lidarcl.evaluation.temporal_voting import VOTING_DEFAULTS

    path = os.path.join(out, "finetune_study.json")
    lr = scaled_lr(batch_size) if lr is None else lr
    settings = {"rows": rows, "percents": list(percents), "seeds": list(seeds),
                "iters": iters, "batch_size": batch_size, "lr": lr, "voxel_size": voxel_size,
                "config": SEG_CONFIG,
                "data": {k: v for k, v in data.items() if k != "splits"}}
    study = _read(path, {"settings": settings, "runs": [], "voting": []})
    if study["settings"] != settings:
        raise ValueError(f"{path} holds a study with other settings; use another --out")
    done = {(r["row"], r["percent"], r["seed"]) for r in study["runs"]}
    for percent in percents:
        for name, template in rows.items():
            for seed in seeds:
                if (name, percent, seed) in done:
                    continue
                checkpoint = template.format(seed=seed) if template else None
                if checkpoint and not os.path.isfile(checkpoint):
                    raise FileNotFoundError(f"row {name}, seed {seed}: {checkpoint} not found")
                log(f"== {name} at {percent:g}% of the labels, seed {seed}")
                result = _run_one(repo, data, os.path.join(out, f"{percent:g}pct", name,
                                                           f"seed{seed}"),
                                  percent, seed, iters, checkpoint, voxel_size,
                                  batch_size, lr)
                study["runs"].append({"row": name, "percent": percent, "seed": seed,
                                      **result})
                _write(path, study)
                log(f"{name} {percent:g}% seed {seed}: mIoU {result['miou']:.2f} "
                    f"({result['train_seconds']:.0f} s fine-tuning)")
    if voting is not None:
        from mmengine.config import Config

        from lidarcl.evaluation.seg_inference import run_segmentation_test

        summary = summarize_finetune(study)
        smallest = min(percents)
        best = max((s for s in summary if s["percent"] == smallest),
                   key=lambda s: s["miou"][0])["row"]
        voting = dict(VOTING_DEFAULTS, **voting)
        finished = {(v["row"], v["percent"], v["seed"]) for v in study["voting"]}
        for run in study["runs"]:
            key = (run["row"], run["percent"], run["seed"])
            if run["row"] != best or key in finished:
                continue
            cfg = Config.fromfile(os.path.join(os.path.dirname(run["checkpoint"]),
                                               os.path.basename(SEG_CONFIG)))
            result = run_segmentation_test(cfg, run["checkpoint"], voting=voting)
            study["voting"].append({"row": best, "percent": run["percent"],
                                    "seed": run["seed"], "voting": voting,
                                    "miou": result["metrics"]["mIoU"],
                                    "miou_without": run["miou"]})
            _write(path, study)
            log(f"{best} {run['percent']:g}% seed {run['seed']}: temporal voting "
                f"{result['metrics']['mIoU']:.2f} (without {run['miou']:.2f})")
    return study


def summarize_finetune(study: dict) -> list[dict]:
    """Per (row, fraction): mean and sample std of the mIoU over the seeds, the per-seed
    values, and the gain over the ``random`` row of the same seed (mean, std)."""
    from lidarcl.evaluation.study import _mean_std

    by_key: dict = {}
    for run in study["runs"]:
        by_key.setdefault((run["row"], run["percent"]), {})[str(run["seed"])] = run["miou"]
    summary = []
    for (row, percent), per_seed in by_key.items():
        random = by_key.get(("random", percent), {})
        gains = [per_seed[s] - random[s] for s in per_seed if s in random]
        summary.append({"row": row, "percent": percent, "per_seed_miou": per_seed,
                        "miou": _mean_std(list(per_seed.values())),
                        "gain": _mean_std(gains) if gains and row != "random" else None})
    return summary


def format_finetune_table(study: dict, label: str = "mIoU") -> str:
    """Markdown: one line per row, mIoU (mean +- std over seeds) and gain per fraction,
    and the rows it is above beyond the spread (per fraction). ``label`` names the score
    in the header (the BEV study tabulates mAP, NDS and mIoU@max through this)."""
    from lidarcl.evaluation.study import beyond_spread

    summary = summarize_finetune(study)
    percents = sorted({s["percent"] for s in summary})
    rows = list(dict.fromkeys(s["row"] for s in summary))
    cell = {(s["row"], s["percent"]): s for s in summary}
    head = ["row"] + [f"{p:g}% {what}" for p in percents
                      for what in (label, "gain over random", "above, beyond the spread")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        parts = [row]
        for p in percents:
            s = cell.get((row, p))
            if s is None:
                parts += ["-", "-", "-"]
                continue
            above = [o["row"] for o in summary if o["percent"] == p and o is not s
                     and o["miou"][0] < s["miou"][0] and beyond_spread(s, o)]
            gain = "-" if s["gain"] is None else f"{s['gain'][0]:+.2f} +- {s['gain'][1]:.2f}"
            parts += [f"{s['miou'][0]:.2f} +- {s['miou'][1]:.2f}", gain,
                      ", ".join(above) or "-"]
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines)
