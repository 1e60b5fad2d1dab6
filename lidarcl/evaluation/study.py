"""The pretraining study: linear-probe mIoU of every method x the sparse U-Net, and of the
best method x each backbone, against random initialisation, with the same budget for every
run, on a generated dataset (``tools/study.py``).

Every pretraining runs in the deterministic mode (``randomness.deterministic``): the same
command repeats a row bit for bit on the same machine, so the spread over seeds is the
spread of the data and initialisation, not of thread timing.

Stage 1 pretrains each method config (``configs/pretrain/<method>_minkunet34_synth.py``) for
``iters`` iterations; stage 2 takes the method whose probe gains most over random
initialisation and pretrains it with each other backbone. Every run shares the data, the
seed, the iteration budget, the voxel size and the probe settings; the random baseline is
probed once per backbone, with the same seed.

Over several seeds (``tools/study.py --seeds``) every seed regenerates the dataset and
reruns every row; :func:`summarize_seeds` gives each row's mean and sample standard
deviation, and :func:`beyond_spread` is the one rule by which a table may call two rows
different: the mean of their per-seed differences exceeds the differences' standard
deviation. With three seeds that is a loose, descriptive rule, not a significance test;
rows it does not separate are ties.
:func:`subset_spread` measures how much of a row's spread the choice of validation scenes
alone contributes (``tools/val_spread.py``), which sized the study's validation split.
"""
from __future__ import annotations

import copy
import json
import os
import time

__all__ = ["STUDY_METHODS", "STUDY_VARIANTS", "STUDY_BACKBONES", "CAMERA_METHODS",
           "camera_method", "run_study", "format_table",
           "summarize_seeds", "beyond_spread", "format_seed_table", "subset_spread",
           "choose_stage2_method", "study_config"]

STUDY_METHODS = ("pointcontrast", "prc", "fac", "cmae")
# camera-LiDAR rows: each with the teacher tools/pretrain_image.py trains on the seed's
# images, and (``<method>-randomteacher``) with a frozen teacher at random weights
CAMERA_METHODS = ("slidr", "superflow", "scalr")
RANDOM_TEACHER = "-randomteacher"
# the generated study images are 320 x 180: the camera rows see them at 176 x 320
CAMERA_IMAGE_SIZE = (176, 320)
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


def camera_method(method: str) -> tuple[str, bool] | None:
    """``(camera method, random teacher)`` of a study row name, or None for LiDAR rows."""
    base = method[:-len(RANDOM_TEACHER)] if method.endswith(RANDOM_TEACHER) else method
    if base in CAMERA_METHODS:
        return base, base != method
    return None


def study_config(repo: str, method: str, backbone: str = "minkunet34") -> str:
    """The config a study row of ``method`` pretrains with: the MinkUNet34 one with the
    study's backbone swapped in, or a camera method's config of ``backbone`` (its head to
    the teacher's width depends on the backbone)."""
    if camera_method(method):
        return os.path.join(repo, "configs", "pretrain",
                            f"{camera_method(method)[0]}_{backbone}_synth.py")
    return os.path.join(repo, "configs", "pretrain", f"{method}_minkunet34_synth.py")


def _camera_options(cfg, method: str, camera: dict) -> None:
    """Point a camera-LiDAR config at the seed's camera data and teacher (in place)."""
    base, random_teacher = camera_method(method)
    dataset = cfg.train_dataloader.dataset
    inner = dataset.dataset if dataset.type == "MultiFrameDataset" else dataset
    inner.data_root = camera["root"].rstrip("/") + "/"
    pipelines = [inner.pipeline] + ([dataset.frame_pipeline] if inner is not dataset else [])
    for pipeline in pipelines:
        for step in pipeline:
            if step["type"] in ("ResizeImages", "RandomResizedCropImages"):
                step["size"] = list(CAMERA_IMAGE_SIZE)
            if step["type"] == "LoadSuperpixels" and step.get("tag"):
                step["tag"] = camera["tags"]["random" if random_teacher else "trained"]
    cfg.model.image_teacher.checkpoint = camera["random_teacher" if random_teacher
                                                else "teacher"]
    cfg.model.image_teacher.layout = "lidarcl"


def run_study(repo: str, out: str, data_root: str, iters: int, voxel_size: float,
              seed: int = 0, methods=STUDY_METHODS, backbones=("voxelbackbone8x", "ptv3"),
              probe_epochs: int = 30, points_per_scan: int = 20000, log=print,
              stage2_method: str | None = None, done: list[dict] | None = None,
              camera_data=None) -> list[dict]:
    """Run both stages; returns one row per run and writes ``<out>/study.json``.

    Stage 2 pretrains ``stage2_method`` when given (for example the best method of an
    earlier stage 1 run), else the stage 1 method with the largest gain. ``done``: rows of an
    earlier, interrupted run with the same settings (its ``study.json``); they are kept and
    their (method, backbone) are not run again. ``camera_data``: a callable returning the
    seed's camera data for the camera-LiDAR rows (``{"root", "teacher", "random_teacher",
    "tags"}``; ``tools/study.py`` generates the same keyframes with sweeps, SLIC and
    semantic superpixels and trains the teacher), called once, when such a row runs."""
    import torch

    for kind, names in (("methods", list(methods)), ("backbones", list(backbones or []))):
        if len(set(names)) != len(names):
            raise ValueError(f"{kind} lists a name twice: {names}; each row is measured once")
    unknown = sorted(set(backbones or []) - set(STUDY_BACKBONES(voxel_size)))
    if unknown:
        raise ValueError(f"unknown study backbones {unknown}; known: "
                         f"{sorted(STUDY_BACKBONES(voxel_size))}")
    for method in list(methods) + ([stage2_method] if stage2_method else []):
        if not os.path.isfile(study_config(repo, method)):
            raise ValueError(f"no study config for method {method!r}: "
                             f"{study_config(repo, method)} does not exist")
    # mmengine turns torch's deterministic algorithms on for every run and never off: the
    # caller gets its own setting back
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        return _run_study(repo, out, data_root, iters, voxel_size, seed, methods, backbones,
                          probe_epochs, points_per_scan, log, stage2_method, done,
                          camera_data)
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[1:]


def choose_stage2_method(rows: list[dict]) -> str:
    """The stage 1 method (MinkUNet34 rows) with the largest gain over random
    initialisation: of one run's rows (``gain`` a number) or of :func:`summarize_seeds`'s
    (``gain`` a ``(mean, std)`` pair: the largest mean gain). The four methods of
    :data:`STUDY_METHODS` are preferred over variants when any of them ran."""
    stage_one = [r for r in rows if r["backbone"] == "minkunet34" and r["method"] != "random"]
    if not stage_one:
        raise ValueError("stage 2 needs a method: run stage 1 methods or name one with "
                         "stage2_method (--stage2-method)")
    preferred = [r for r in stage_one if r["method"] in STUDY_METHODS] or stage_one

    def gain(row):
        return row["gain"][0] if isinstance(row["gain"], (tuple, list)) else row["gain"]

    return max(preferred, key=gain)["method"]


def _run_study(repo, out, data_root, iters, voxel_size, seed, methods, backbones,
               probe_epochs, points_per_scan, log, stage2_method, done,
               camera_data) -> list[dict]:
    from lidarcl.engine import build_pretrain_config, run_pretraining
    from lidarcl.engine.determinism import run_environment
    from lidarcl.evaluation.linear_probe import build_probe_loader, linear_probe_study

    rows, random_cache = [], {}
    earlier = {(r["method"], r["backbone"]): r for r in done or []}
    backbone_cfgs = STUDY_BACKBONES(voxel_size)
    loaders = None
    camera = None

    def one(method: str, backbone: str) -> dict:
        nonlocal loaders, camera
        if (method, backbone) in earlier:
            row = earlier[(method, backbone)]
            random_cache.setdefault(backbone, {"miou": row["random_miou"]})
            log(f"{method} x {backbone}: already measured (study.json): probe mIoU "
                f"{100 * row['miou']:.2f} vs random {100 * row['random_miou']:.2f}")
            rows.append(row)
            _write_rows(out, rows, earlier)
            return row
        work_dir = os.path.join(out, f"{method}_{backbone}")
        options = {"train_dataloader.dataset.data_root": data_root.rstrip("/") + "/",
                   "train_dataloader.num_workers": 0,
                   "train_dataloader.persistent_workers": False,
                   "train_cfg.max_iters": iters,
                   "default_hooks.checkpoint.interval": iters,
                   "default_hooks.logger.interval": 20,
                   "randomness.seed": seed}
        if camera_method(method):  # its data root is set below, in the nested dataset
            options.pop("train_dataloader.dataset.data_root")
        cfg = build_pretrain_config(study_config(repo, method, backbone), work_dir, False,
                                    options)
        # bit-for-bit repeatable runs (docs/reproducibility.md), at no measured cost
        cfg.randomness = dict(cfg.get("randomness") or {}, deterministic=True)
        cfg.model.backbone = copy.deepcopy(backbone_cfgs[backbone])
        if camera_method(method):
            if camera is None:
                if camera_data is None:
                    raise ValueError(f"{method}: camera-LiDAR rows need the seed's camera "
                                     "data (camera_data)")
                camera = camera_data()
            _camera_options(cfg, method, camera)
        start = time.perf_counter()
        run_pretraining(cfg)
        seconds = time.perf_counter() - start
        if loaders is None:  # the LiDAR rows' data: the camera data has its keyframes
            probe_cfg = cfg if not camera_method(method) else build_pretrain_config(
                study_config(repo, STUDY_METHODS[0]), work_dir, False,
                {"train_dataloader.dataset.data_root": data_root.rstrip("/") + "/"})
            dataset_cfg = probe_cfg.train_dataloader.dataset.to_dict()
            train_loader, lut, names = build_probe_loader(
                dataset_cfg, "nuscenes_infos_train.json", data_root)
            val_loader, _, _ = build_probe_loader(dataset_cfg, "nuscenes_infos_val.json",
                                                  data_root)
            loaders = (train_loader, val_loader, lut, names)
        train_loader, val_loader, lut, names = loaders
        probe = linear_probe_study(cfg.model.backbone.to_dict(),
                                   os.path.join(work_dir, "backbone.pth"), train_loader,
                                   val_loader, lut, len(names), seed=seed,
                                   epochs=probe_epochs, points_per_scan=points_per_scan,
                                   include_random=backbone not in random_cache)
        if backbone not in random_cache:
            random_cache[backbone] = probe["random"]
        row = {"method": method, "backbone": backbone, "iters": iters, "seed": seed,
               "pretrain_seconds": seconds, "miou": probe["pretrained"]["miou"],
               "random_miou": random_cache[backbone]["miou"],
               "gain": probe["pretrained"]["miou"] - random_cache[backbone]["miou"],
               "environment": run_environment()}
        log(f"{method} x {backbone}: probe mIoU {100 * row['miou']:.2f} vs random "
            f"{100 * row['random_miou']:.2f} ({100 * row['gain']:+.2f}), pretraining "
            f"{seconds:.0f} s")
        rows.append(row)
        _write_rows(out, rows, earlier)
        return row

    for method in methods:
        one(method, "minkunet34")
    if not backbones:
        return rows
    if stage2_method is None:
        stage2_method = choose_stage2_method(rows)
    for backbone in backbones:
        one(stage2_method, backbone)
    return rows


def _write_rows(out: str, rows: list[dict], earlier: dict) -> None:
    """``<out>/study.json`` (atomically): this run's rows, then the earlier run's rows this
    run has not reached (yet), so that an interrupted resume loses nothing."""
    from lidarcl.utils.fileio import atomic_write_bytes

    reached = {(r["method"], r["backbone"]) for r in rows}
    kept = rows + [r for key, r in earlier.items() if key not in reached]
    atomic_write_bytes(os.path.join(out, "study.json"), json.dumps(kept, indent=2).encode())


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


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value)."""
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summarize_seeds(rows_by_seed: dict[int, list[dict]]) -> list[dict]:
    """One summary row per (method, backbone) over the seeds, in first-seen order, then a
    ``random`` row per backbone (random initialisation, probed at every seed): ``miou``,
    ``gain`` and ``pretrain_seconds`` as ``(mean, std)`` over the seeds that ran the row
    (``seeds``), and ``per_seed_miou`` (seed -> mIoU; keys are strings, as in JSON).
    ``gain`` is the mean and spread of the per-seed gains (each seed's pretrained mIoU minus
    its own random one: the pair shares data and probe seed)."""
    keys, per_key, random_per_backbone = [], {}, {}
    for seed in sorted(rows_by_seed):
        for row in rows_by_seed[seed]:
            key = (row["method"], row["backbone"])
            if key not in per_key:
                keys.append(key)
                per_key[key] = []
            per_key[key].append(row)
            random_per_backbone.setdefault(row["backbone"], {})[seed] = row["random_miou"]
    summary = []
    for method, backbone in keys:
        rows = per_key[(method, backbone)]
        summary.append({"method": method, "backbone": backbone,
                        "seeds": [r["seed"] for r in rows],
                        "per_seed_miou": {str(r["seed"]): r["miou"] for r in rows},
                        "miou": _mean_std([r["miou"] for r in rows]),
                        "gain": _mean_std([r["gain"] for r in rows]),
                        "pretrain_seconds": _mean_std([r["pretrain_seconds"] for r in rows])})
    for backbone, by_seed in random_per_backbone.items():
        seeds = sorted(by_seed)
        summary.append({"method": "random", "backbone": backbone, "seeds": seeds,
                        "per_seed_miou": {str(s): by_seed[s] for s in seeds},
                        "miou": _mean_std([by_seed[s] for s in seeds]),
                        "gain": (0.0, 0.0), "pretrain_seconds": (0.0, 0.0)})
    return summary


def beyond_spread(a: dict, b: dict) -> bool:
    """Whether summary rows ``a`` and ``b`` differ by more than the spread of their
    difference: over the seeds both ran, ``d_s = mIoU_a(s) - mIoU_b(s)`` (the two rows of a
    seed share its data, validation scenes and probe seed, so the seed's own difficulty
    cancels), and the rows differ when ``|mean(d)| > std(d)`` (sample std). Needs two
    common seeds: one run has no measured spread. With three seeds this flags a difference
    of pure (normal) noise 22% of the time (Student t with 2 degrees of freedom beyond
    sqrt(3)): a descriptive mark, not a significance test."""
    import numpy as np

    common = sorted(set(a["per_seed_miou"]) & set(b["per_seed_miou"]))
    if len(common) < 2:
        return False
    d = np.array([a["per_seed_miou"][s] - b["per_seed_miou"][s] for s in common])
    return bool(abs(d.mean()) > d.std(ddof=1))


def format_seed_table(summary: list[dict]) -> str:
    """Markdown table of :func:`summarize_seeds`: mean +- std over the seeds, and per row
    the rows of the same backbone it is above by more than the spread of the difference
    (:func:`beyond_spread`); rows it does not list are not separated from it."""
    lines = ["| method | backbone | seeds | probe mIoU | gain over random | pretraining s | "
             "above, beyond the spread |", "|---|---|---|---|---|---|---|"]
    for row in summary:
        above = [other["method"] for other in summary
                 if other is not row and other["backbone"] == row["backbone"]
                 and other["miou"][0] < row["miou"][0] and beyond_spread(row, other)]
        (miou, miou_std), (gain, gain_std) = row["miou"], row["gain"]
        gain_text = ("-" if row["method"] == "random"
                     else f"{100 * gain:+.2f} +- {100 * gain_std:.2f}")
        seconds = ("-" if row["method"] == "random"
                   else f"{row['pretrain_seconds'][0]:.0f}")
        lines.append(f"| {row['method']} | {row['backbone']} | {len(row['seeds'])} | "
                     f"{100 * miou:.2f} +- {100 * miou_std:.2f} | {gain_text} | {seconds} | "
                     f"{', '.join(above) or '-'} |")
    return "\n".join(lines)


def subset_spread(per_scene: dict[str, "np.ndarray"], sizes, draws: int = 1000,
                  seed: int = 0) -> list[dict]:
    """Spread of the probe mIoU due to the choice of validation scenes alone.

    ``per_scene[name]`` is a ``(S, K, K + 1)`` stack of one backbone's confusion matrices,
    one per validation scene of a pool of ``S`` (same scenes, same order, for every name).
    For each size ``k`` in ``sizes``, ``draws`` subsets of ``k`` scenes are drawn without
    replacement from the pool (every subset once when there are at most ``draws``; the same
    subsets for every name) and scored by the mIoU of their summed matrix. Returns per size:
    ``subsets`` (how many were scored, ``exhaustive`` when all), ``mean``, ``std`` (per name)
    and ``pair_std`` (per pair of names: the spread of the difference between the two on
    the same subsets, which is what ranking two rows on one validation split needs).

    The spreads stand for ``k`` scenes drawn from an unbounded population of scenes like the
    pool's: the variance over subsets drawn without replacement (over all subsets, or its
    unbiased estimate from the draws) times ``S / (S - k)``. For a mean of per-scene values
    that is the unbiased estimate (sampling without replacement has variance
    ``sigma^2 / k * (S - k) / (S - 1)`` with ``sigma^2`` the pool's variance, ``ddof=0``;
    from an unbounded population it is ``s^2 / k`` with ``s^2 = sigma^2 * S / (S - 1)``).
    The mIoU of a subset is a ratio of sums whose set of classes changes with the subset,
    so for it the factor is an approximation, the least certain at large ``k``."""
    import itertools
    import math

    import numpy as np

    from lidarcl.evaluation.segmentation import mean_iou

    names = list(per_scene)
    pool = len(per_scene[names[0]])
    if any(len(per_scene[n]) != pool for n in names):
        raise ValueError("every backbone needs one matrix per scene of the same pool")
    if draws < 2:
        raise ValueError(f"draws must be at least 2 (a spread needs two subsets), got {draws}")
    rng = np.random.default_rng(seed)
    results = []
    for size in sizes:
        if not 1 <= size < pool:
            raise ValueError(f"subset size {size} must be in [1, {pool - 1}] for a pool of "
                             f"{pool} scenes")
        exhaustive = math.comb(pool, size) <= draws
        if exhaustive:  # every subset once: the variance over them exactly (ddof 0)
            subsets = [np.array(c) for c in itertools.combinations(range(pool), size)]
        else:           # sampled: the unbiased estimate of that variance (ddof 1)
            subsets = [rng.choice(pool, size=size, replace=False) for _ in range(draws)]
        ddof = 0 if exhaustive else 1
        scores = {n: np.array([mean_iou(per_scene[n][idx].sum(0)) for idx in subsets])
                  for n in names}
        factor = float(np.sqrt(pool / (pool - size)))
        results.append({
            "scenes": int(size), "subsets": len(subsets), "exhaustive": exhaustive,
            "mean": {n: float(scores[n].mean()) for n in names},
            "std": {n: factor * float(scores[n].std(ddof=ddof)) for n in names},
            "pair_std": {f"{a} - {b}":
                         factor * float((scores[a] - scores[b]).std(ddof=ddof))
                         for a, b in itertools.combinations(names, 2)}})
    return results
