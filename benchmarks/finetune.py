"""Speed and memory of segmentation fine-tuning and of test time per scan, per backbone, on
the real nuScenes frame (``../shared/data/real/nuscenes``, converted through
nuscenes-devkit), with the fine-tuning configs ``configs/seg/<backbone>_nuscenes_1pct.py``
(MinkUNet34 and PointTransformerV3: the ``Segmentor``, 16 classes, CE + Lovasz-softmax).

**Labels.** The shared frame has no nuScenes-lidarseg file (and its ``category.json`` lists
only the 10 categories of its boxes), so the benchmark builds a temporary copy of the data
root (``samples/``, ``maps/`` and the tables linked, not copied) that adds one: the
``category.json`` of the release (the 32 lidarseg categories at their official label
indices; the 10 shipped records keep their tokens), a ``lidarseg.json`` record for the
LiDAR keyframe and ``lidarseg/v1.0-mini/<token>_lidarseg.bin`` with **generated** labels
(one uint8 per point of the file): a point inside an annotated box takes the box's
category, the others a class from their height and range (ground: driveable surface up to
15 m, sidewalk to 22 m, other flat to 25 m, terrain beyond, for the points more than
1.5 m below the sensor; manmade up to 2 m above the sensor, vegetation higher), and 1 % of
the points, drawn at random, are ``noise`` (ignored in training). The classes of the boxes
follow the frame's annotations: 14 of the 16 training classes occur on the shipped frame.
The labels are plausible, not true: the benchmark measures cost, not accuracy. The copy
is converted with ``tools/create_data.py``'s converter, so the index carries the
``lidarseg_path`` and the category numbering as a real release would.

Each backbone runs in two subprocesses at the requested thread count, one per part, so the
peak resident memory (``ru_maxrss``; ``torch.cuda.max_memory_allocated`` on a GPU) of each
part is that part's alone:

1. **fine-tuning iteration** (``model.train()``):

   * **data**: the config's ``train_pipeline`` on the frame (loading the points and the
     lidarseg labels through the dataset's learning map, the rotation / scaling / flips),
     once per sample of a batch of the config's size (16) capped to ``--batch`` (default
     2): the same frame repeated, each copy with its own augmentation; then
     ``collate_samples``;
   * **model**: ``model.train_step(batch, optim_wrapper)`` with the config's optimizer
     wrapper built by mmengine's ``build_optim_wrapper`` (SGD lr 0.02, momentum 0.9,
     dampening 0.1, weight decay 1e-4; the head at ``lr_mult=100`` through
     ``paramwise_cfg``): forward, CE + Lovasz, backward, SGD step.

   Reported: the median seconds of data and of model, their sum, the data share of the
   iteration, and the peak memory of the subprocess; the first (warm-up) data time is
   reported on its own as the cold one.

2. **test time per scan** (``model.eval()``, the config's test pipeline, batch 1, built
   once: the data step is not timed here): ``model.test_step`` (data preprocessor and
   ``mode="predict"``, the scores brought back to the CPU) **plain** (``model.tta = None``)
   and **with TTA** (``model.tta = dict(DEFAULT_TTA)``: 8 runs of the backbone, the xy
   square's symmetries); **temporal voting**: the time of ``vote(points, scores, pose,
   neighbours)`` (``lidarcl/evaluation/temporal_voting.py``, its default radius 0.2 m and
   weight 1) with 2 neighbours: the frame seen by a LiDAR that the ego carried 0.5 m and
   1 m further forward (pose ``ego2global @ T_x(d) @ lidar2ego``, the points expressed in
   that LiDAR's frame: a static world), each with the plain prediction's scores, as
   ``tools/test.py --temporal-voting`` votes with the neighbours' own predictions (made
   once per scan anyway). The transport puts every neighbour point back onto a point of
   the scan, so every point gets its two votes. Per scan with voting costs plain + vote.
   The baseline of the ratios is the plain time measured in the same subprocess.

One warm-up iteration (of each test mode), then the median of ``--iters`` iterations.
``--json PATH`` also writes the figures of every part (with the learning rates of the
optimizer's parameter groups, the labelled points of the batch and the points that got both
votes, as checks of the set-up). Run through ``python tools/benchmark.py finetune``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.isolated import ROOT, peak_memory_mib, report, run_isolated

BACKBONES = ("minkunet34", "ptv3")
VERSION = "v1.0-mini"
VOTE_OFFSETS_M = (0.5, 1.0)  # ego motion of the two voting neighbours


def _median(values):
    return sorted(values)[len(values) // 2]


def _build(backbone: str, threads: int, device: str):
    import torch
    from mmengine.config import Config

    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    np.random.seed(0)
    register_all_modules()
    cfg = Config.fromfile(str(ROOT / "configs" / "seg" / f"{backbone}_nuscenes_1pct.py"))
    model = MODELS.build(cfg.model.to_dict()).to(device)
    return cfg, model


def _train_part(backbone, threads, device, iters, batch_cap, data_root, ann_file) -> dict:
    import time

    import torch
    from mmengine.optim import build_optim_wrapper

    from lidarcl.datasets.collate import collate_samples
    from lidarcl.registry import DATASETS

    cfg, model = _build(backbone, threads, device)
    dataset_cfg = cfg.train_dataloader.dataset.to_dict()
    dataset_cfg.update(data_root=data_root, ann_file=ann_file, split_file=None)
    dataset = DATASETS.build(dataset_cfg)
    batch_size = min(int(cfg.train_dataloader.batch_size), batch_cap)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = sorted({group["lr"] for group in optim_wrapper.optimizer.param_groups})
    model.train()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    data_times, model_times, points, labelled = [], [], 0, 0
    for _ in range(iters + 1):
        t0 = time.perf_counter()
        batch = collate_samples([dataset[0] for _ in range(batch_size)])
        data_times.append(time.perf_counter() - t0)
        points = int(batch["offsets"][-1])
        labelled = int((batch["pts_semantic_mask"] != model.ignore_index).sum())
        sync()
        t0 = time.perf_counter()
        losses = model.train_step(batch, optim_wrapper)
        sync()
        model_times.append(time.perf_counter() - t0)
        if not all(torch.isfinite(v).all() for v in losses.values()):
            raise FloatingPointError(f"{backbone}: non-finite loss {losses}")
    return {"batch": batch_size, "config_batch": int(cfg.train_dataloader.batch_size),
            "points": points, "labelled_points": labelled, "learning_rates": lrs,
            "cold_data": data_times[0], "data": _median(data_times[1:]),
            "model": _median(model_times[1:]), "peak_mib": peak_memory_mib(device)}


def _translation_x(metres: float) -> np.ndarray:
    moved = np.eye(4)
    moved[0, 3] = metres
    return moved


def _test_part(backbone, threads, device, iters, data_root, ann_file) -> dict:
    import time

    import torch

    from lidarcl.datasets.collate import collate_samples
    from lidarcl.evaluation.temporal_voting import VOTING_DEFAULTS, transport, vote
    from lidarcl.models.segmentors import DEFAULT_TTA, tta_matrices
    from lidarcl.registry import DATASETS

    cfg, model = _build(backbone, threads, device)
    dataset_cfg = cfg.val_dataloader.dataset.to_dict()
    dataset_cfg.update(data_root=data_root, ann_file=ann_file)
    dataset = DATASETS.build(dataset_cfg)
    batch = collate_samples([dataset[0]])
    model.eval()
    meta = batch["meta"][0]
    lidar2ego = np.asarray(meta["lidar2ego"], dtype=np.float64)
    ego2global = np.asarray(meta["ego2global"], dtype=np.float64)
    pose = ego2global @ lidar2ego
    points = batch["points"][:, :3].numpy().astype(np.float64)
    neighbour_poses = [ego2global @ _translation_x(d) @ lidar2ego for d in VOTE_OFFSETS_M]
    neighbour_points = [transport(points, pose, p) for p in neighbour_poses]

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def predict(tta):
        model.tta = tta
        sync()
        t0 = time.perf_counter()
        predictions = model.test_step(batch)
        sync()
        return time.perf_counter() - t0, predictions[0]

    plain_times, tta_times, vote_times, matched = [], [], [], 0
    for _ in range(iters + 1):
        seconds, prediction = predict(None)
        plain_times.append(seconds)
        seconds, _ = predict(dict(DEFAULT_TTA))
        tta_times.append(seconds)
        scores = prediction.scores.numpy()
        neighbours = [(p, scores, q) for p, q in zip(neighbour_points, neighbour_poses)]
        t0 = time.perf_counter()
        voted, _ = vote(points, scores, pose, neighbours)
        vote_times.append(time.perf_counter() - t0)
        inside = scores.sum(1) > 0
        # the points whose vote total grew by both neighbours' scores (sanity of the set-up)
        matched = int(np.isclose(voted[inside].sum(1), 3.0, atol=1e-3).sum())
    return {"points": len(points), "inside": int((prediction.labels >= 0).sum()),
            "vote_matched": matched, "tta_runs": len(tta_matrices(**DEFAULT_TTA)),
            "vote_radius": VOTING_DEFAULTS["radius"], "plain": _median(plain_times[1:]),
            "tta": _median(tta_times[1:]), "vote": _median(vote_times[1:]),
            "peak_mib": peak_memory_mib(device)}


def _child(args: list[str]) -> None:
    """One part ("train" or "test") of one backbone; prints a JSON line."""
    part, backbone, threads, device, iters = args[0], args[1], int(args[2]), args[3], \
        int(args[4])
    batch_cap, data_root, ann_file = int(args[5]), args[6], args[7]
    if part == "train":
        report(_train_part(backbone, threads, device, iters, batch_cap, data_root, ann_file))
    else:
        report(_test_part(backbone, threads, device, iters, data_root, ann_file))


# ------------------------------------------------------------------ the labelled copy
def _token(name: str) -> str:
    return hashlib.md5(f"lidarcl-benchmark/category/{name}".encode()).hexdigest()


def generated_labels(points: np.ndarray, boxes: np.ndarray, names, seed: int = 0
                     ) -> np.ndarray:
    """uint8 nuScenes-lidarseg category index of every point (module doc): the box's
    category inside an annotated box, else by height and range; 1 % noise."""
    from lidarcl.datasets.nuscenes_constants import LIDARSEG_CATEGORIES as CATS
    from lidarcl.structures.boxes import points_in_boxes

    xyz = np.nan_to_num(points[:, :3].astype(np.float64))
    distance = np.linalg.norm(xyz[:, :2], axis=1)
    ground = xyz[:, 2] < -1.5  # the sensor is about 1.84 m above the ground
    labels = np.where(xyz[:, 2] < 2.0, CATS.index("static.manmade"),
                      CATS.index("static.vegetation"))
    for upto, name in ((np.inf, "flat.terrain"), (25.0, "flat.other"),
                       (22.0, "flat.sidewalk"), (15.0, "flat.driveable_surface")):
        labels = np.where(ground & (distance < upto), CATS.index(name), labels)
    if len(boxes):
        inside = points_in_boxes(xyz, np.asarray(boxes, dtype=np.float64)[:, :7])
        hit = inside.any(1)
        box_labels = np.array([CATS.index(n) for n in names])
        labels[hit] = box_labels[inside[hit].argmax(1)]
    noise = np.random.default_rng(seed).random(len(labels)) < 0.01
    labels[noise] = CATS.index("noise")
    return labels.astype(np.uint8)


def labelled_copy(data_root: Path, out: Path) -> tuple[Path, Path]:
    """``(data root, info index)`` of a copy of the real frame's root with generated
    nuScenes-lidarseg labels (module doc), converted by the nuScenes converter."""
    from lidarcl.datasets.nuscenes_constants import LIDARSEG_CATEGORIES
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    root = out / "nuscenes"
    tables = root / VERSION
    tables.mkdir(parents=True)
    for name in os.listdir(data_root):
        if name != VERSION:
            (root / name).symlink_to(data_root / name)
    for table in (data_root / VERSION).iterdir():
        if table.name not in ("category.json", "lidarseg.json"):
            (tables / table.name).symlink_to(table)
    shipped = {c["name"]: c for c in json.loads((data_root / VERSION / "category.json")
                                                .read_text())}
    categories = [{"token": shipped.get(name, {}).get("token", _token(name)), "name": name,
                   "description": shipped.get(name, {}).get("description", name),
                   "index": index} for index, name in enumerate(LIDARSEG_CATEGORIES)]
    (tables / "category.json").write_text(json.dumps(categories, indent=1))
    sample_data = json.loads((data_root / VERSION / "sample_data.json").read_text())
    lidar = [sd for sd in sample_data if "/LIDAR_TOP/" in sd["filename"] and sd["is_key_frame"]]
    records, label_files = [], {}
    for sd in lidar:
        filename = f"lidarseg/{VERSION}/{sd['token']}_lidarseg.bin"
        raw = np.fromfile(data_root / sd["filename"], dtype=np.float32).reshape(-1, 5)
        (root / filename).parent.mkdir(parents=True, exist_ok=True)
        np.zeros(len(raw), dtype=np.uint8).tofile(root / filename)  # labels below
        records.append({"token": sd["token"], "sample_data_token": sd["token"],
                        "filename": filename})
        label_files[filename] = raw
    (tables / "lidarseg.json").write_text(json.dumps(records, indent=1))
    create_nuscenes_infos(root, VERSION, out)
    ann_file = out / "nuscenes_infos_train.json"
    for info in json.loads(ann_file.read_text())["infos"]:
        raw = label_files[info["lidarseg_path"]]
        generated_labels(raw, np.asarray(info["gt_boxes"]).reshape(-1, 7),
                         info["gt_names"]).tofile(root / info["lidarseg_path"])
    return root, ann_file


# ------------------------------------------------------------------------ the table
def main(args) -> int:
    data_root = Path(args.data_root)
    if not (data_root / VERSION / "sample.json").is_file():
        print(f"real nuScenes frame ({VERSION} tables) not found at {data_root}")
        return 1
    backbones = args.backbones or list(BACKBONES)
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown:
        print(f"unknown backbones {unknown}; known: {list(BACKBONES)}")
        return 2
    batch_cap = int(getattr(args, "batch", 2))
    results = {"setup": {"data_root": str(data_root), "threads": args.threads,
                         "device": args.device, "iters": args.iters, "batch_cap": batch_cap,
                         "labels": "generated (benchmarks/finetune.py: generated_labels)"},
               "rows": []}
    with tempfile.TemporaryDirectory(prefix="lidarcl_bench_ft_") as tmp:
        root, ann_file = labelled_copy(data_root, Path(tmp))
        print(f"real nuScenes frame {data_root} with generated lidarseg labels, "
              f"{args.threads} thread(s), device {args.device}; median of {args.iters} "
              "iterations after one warm-up")
        rows = []
        for backbone in backbones:
            row = {"backbone": backbone}
            for part in ("train", "test"):
                row[part] = run_isolated("benchmarks.finetune",
                                         [part, backbone, args.threads, args.device,
                                          args.iters, batch_cap, root, ann_file])
            rows.append(row)
            results["rows"].append(row)
    print("\nfine-tuning iteration (train_step: CE + Lovasz, SGD, head lr x100)")
    print("| backbone | batch | points | data s (cold) | data s | model s | iteration s "
          "| data share | model / data | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        r = row["train"]
        if isinstance(r, str):
            print(f"| {row['backbone']} | failed: {r[:160]} ||||||||")
            continue
        total = r["data"] + r["model"]
        print(f"| {row['backbone']} | {r['batch']} | {r['points']:,} | {r['cold_data']:.2f} "
              f"| {r['data']:.2f} | {r['model']:.2f} | {total:.2f} "
              f"| {100 * r['data'] / total:.1f}% | {r['model'] / max(r['data'], 1e-9):.1f}x "
              f"| {r['peak_mib']:.0f} |")
    print("\ntest time per scan (batch 1; ratios to the plain time of the same run)")
    print("| backbone | points | plain s | TTA s (8 runs) | TTA / plain | vote s (2 neighbours) "
          "| plain + vote s | (plain + vote) / plain | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        r = row["test"]
        if isinstance(r, str):
            print(f"| {row['backbone']} | failed: {r[:160]} |||||||")
            continue
        plain = max(r["plain"], 1e-9)
        print(f"| {row['backbone']} | {r['points']:,} | {r['plain']:.3f} | {r['tta']:.3f} "
              f"| {r['tta'] / plain:.2f}x | {r['vote']:.3f} | {r['plain'] + r['vote']:.3f} "
              f"| {(r['plain'] + r['vote']) / plain:.2f}x | {r['peak_mib']:.0f} |")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"\nfigures written to {args.json}")
    return 0
