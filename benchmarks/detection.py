"""Speed and memory of the two BEV models' training iteration and of their test time per
sample, on the real nuScenes frame (``../shared/data/real/nuscenes``: the ``v1.0-mini``
tables of one LiDAR keyframe of scene-0061 with its 69 annotated boxes), at the published
voxel size, with the configs

* ``centerpoint``: ``configs/det/centerpoint_voxel0075_nuscenes.py`` (CenterPoint:
  VoxelResBackBone8x at 0.075 x 0.075 x 0.2 m over [-54, 54]^2 x [-5, 3] m, SECOND's BEV
  backbone and neck, the center head with nuScenes' 6 class groups; AdamW, gradient norm
  clipped at 10);
* ``bevmap``: ``configs/mapseg/bevmap_voxel0075_nuscenes.py`` (``BEVMapSegmentor``: the same
  encoder and neck, the BEV map head on 200 x 200 cells of 0.5 m, six classes, focal loss).

**Index.** The frame is converted by the project's converter (``create_nuscenes_infos``,
as ``tools/create_data.py`` does) from a temporary copy of the data root (the tables and
``samples/`` linked, not copied; ``maps/`` holds the shipped raster and the generated map
expansion below). scene-0061 is in the mini train split; its index serves both parts.

**Two point loads.** Both configs load the keyframe with ``LoadSweeps(num_sweeps=9)``
(OpenPCDet's 10-sweep setting: x, y, z, intensity and a time column). The shipped frame has
no sweep files, so each model is measured twice:

* ``keyframe``: the index as converted, with no sweeps: ``LoadSweeps`` then merges nothing
  and appends the time column (0) to the keyframe's points; the config's pipeline runs
  unchanged;
* ``sweeps10``: a **stand-in for the cost of 10 sweeps, not real sweeps**: the index lists
  9 sweeps, each a link to the keyframe's own file, with ``time_lag = 0.05 s x k`` (nuScenes
  sweeps come at 20 Hz) and ``sweep2lidar = inv(lidar2ego) @ T_x(-0.5 m x k) @ lidar2ego``
  (:func:`stand_in_sweeps`): the keyframe's scan pattern as the LiDAR would have taken it
  with the ego 0.5 m per sweep further back along its x axis, a static world seen from a
  moving ego, put into the keyframe's frame by the config's own ``LoadSweeps`` (which reads
  the 9 files and drops each sweep's points within 1 m of the sensor, ``|x|, |y| < 1``).
  That gives the point count of the published 10-sweep setting for sweeps of the
  keyframe's size: 10 x 34,688 points are read, 9 x 8,274 of them lie within 1 m of the
  sensor in their sweep, so about 7.7x the keyframe's 32,330 points in range reach the
  model (about 249k), spread over displaced voxels as real sweeps' are; the geometry of
  moving objects and of the real sweeps' own scan patterns is not reproduced.

**Ground-truth sampling.** ``ObjectSample`` (det train pipeline) reads a database built from
the frame by ``create_gt_database`` (``num_sweeps=0``: the keyframe's points with the zero
time column, so the records have the 5 columns of both loads; sampled objects carry
keyframe points only, where a 10-sweep database's would carry their sweeps' too). Drawn
from the scene itself, every record would overlap its own box and be rejected, so nothing
would ever be pasted; the benchmark therefore turns the database's records by 180 degrees
about the LiDAR's z axis (box centre, yaw, velocity and the stored points: the objects
stand on the opposite side of the sensor), so that the draws that do not collide are
pasted, as in real training. The pipeline runs the config's sample groups and min points.
The frame offers little to sample: it already holds at least the group's number of cars,
barriers, pedestrians and traffic cones, and its single construction vehicle, bus and
bicycle have fewer than 5 points (filtered out), so only its 2 trucks can be drawn (1 per
sample, pasted when it does not collide): about 0.2 objects are pasted per sample, where a
full nuScenes database pastes up to tens (the groups' caps sum to 40), so GT sampling's
share of the data time is an underestimate. The ``targets`` column reports the boxes per
sample after the pipeline (range filter included; the frame has 69).

**Map labels.** ``LoadBEVMapMask`` (mapseg pipelines) needs ``maps/expansion/<location>.json``,
a separate download the shipped frame lacks. The benchmark writes a **generated** one for the
frame's location (``singapore-onenorth``): the synthetic generator's grid city
(``lidarcl.datasets.synthetic``: ``make_layout`` seed 0, ``build_map_expansion``), a square
of ``MAP_HALF_EXTENT_M`` x 2 = 1.5 km centred on the LiDAR, shifted so that a north-south
road runs through it. The labels are plausible, not true; the rasterisation cost grows with
the records a patch query scans (the devkit walks every record of a layer), so it is
indicative only.

Each (model, load) runs in two subprocesses at the requested thread count, one per part, so
the peak resident memory (``ru_maxrss``; ``torch.cuda.max_memory_allocated`` on a GPU) of
each part is that part's alone:

1. **training iteration** (``model.train()``):

   * **data**: the config's ``train_pipeline`` on the frame (loading and sweeps, GT
     sampling for CenterPoint, rotation / scaling / translation, flips, map labels for the
     map model, range filters, shuffle), once per sample of a batch of the config's size
     (4) capped to ``--batch`` (default 2): the same frame repeated, each copy with its own
     augmentation; then ``collate_samples``;
   * **model**: ``model.train_step(batch, optim_wrapper)`` with the config's optimizer
     wrapper built by mmengine's ``build_optim_wrapper`` (AdamW lr 1e-3, weight decay 0.01,
     gradient norm clipped at 10): data preprocessor, forward, loss, backward, clipping,
     step. The losses are checked to be finite.

   Reported: points per sample (after the pipeline), batch, the median seconds of data and
   of model, their sum (iteration), the model / data ratio, the iteration relative to the
   same model's ``keyframe`` iteration of the same run, and the peak memory; the first
   (warm-up) data time, which loads the map for the map model, is reported on its own as
   the cold one.

2. **test time per sample** (``model.eval()``, the config's test pipeline, batch 1):
   **data** (the test pipeline and ``collate_samples``) and **model**
   (``model.test_step``: data preprocessor and ``mode="predict"``, circle NMS for
   CenterPoint, probabilities brought back to the CPU for the map model). Reported: their
   medians, the model time relative to the training iteration's model time per sample of
   the same (model, load), the test time relative to the ``keyframe`` load, and the peak
   memory.

One warm-up iteration, then the median of ``--iters`` iterations. ``--json PATH`` also
writes the figures of every part. Run through ``python tools/benchmark.py detection``.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.isolated import ROOT, peak_memory_mib, report, run_isolated

CONFIGS = {"centerpoint": "configs/det/centerpoint_voxel0075_nuscenes.py",
           "bevmap": "configs/mapseg/bevmap_voxel0075_nuscenes.py"}
LOADS = ("keyframe", "sweeps10")
VERSION = "v1.0-mini"
STAND_IN_SWEEPS = 9          # + the keyframe: OpenPCDet's 10 sweeps
SWEEP_STEP_M = 0.5           # ego motion per sweep of the stand-in (backwards along ego x)
SWEEP_PERIOD_S = 0.05        # nuScenes LiDAR sweeps: 20 Hz
MAP_HALF_EXTENT_M = 750.0    # generated map expansion: a 1.5 km square around the LiDAR


def _median(values):
    return sorted(values)[len(values) // 2]


# ----------------------------------------------------------------- pure helpers
def stand_in_sweeps(lidar2ego, num_sweeps: int = STAND_IN_SWEEPS,
                    step_m: float = SWEEP_STEP_M, period_s: float = SWEEP_PERIOD_S
                    ) -> list[dict]:
    """``[{"time_lag", "sweep2lidar"}]`` of the stand-in sweeps k = 1 .. ``num_sweeps``
    (newest first, module doc): the LiDAR of sweep k sat on an ego ``step_m * k`` metres
    further back along the ego's x axis, ``period_s * k`` seconds earlier, so
    ``sweep2lidar = inv(lidar2ego) @ T_x(-step_m * k) @ lidar2ego`` (the converter's
    ``key LiDAR <- key ego <- global <- sweep ego <- sweep LiDAR`` with the sweep's ego pose
    ``ego2global @ T_x(-step_m * k)``)."""
    lidar2ego = np.asarray(lidar2ego, dtype=np.float64)
    ego2lidar = np.linalg.inv(lidar2ego)
    sweeps = []
    for k in range(1, int(num_sweeps) + 1):
        moved = np.eye(4)
        moved[0, 3] = -step_m * k
        sweeps.append({"time_lag": period_s * k,
                       "sweep2lidar": (ego2lidar @ moved @ lidar2ego).tolist()})
    return sweeps


def turn_database(db_file: str | os.PathLike) -> dict[str, int]:
    """Turn every record of a ground-truth database by 180 degrees about the LiDAR's z axis
    in place (module doc): box ``x, y -> -x, -y``, yaw + pi (wrapped to [-pi, pi)),
    velocity negated, the stored points (relative to the box centre) ``dx, dy -> -dx, -dy``.
    Returns the records per class."""
    db_file = Path(db_file)
    index = json.loads(db_file.read_text())
    columns = int(index["metadata"]["num_point_features"])
    counts = {}
    for name, records in index["objects"].items():
        counts[name] = len(records)
        for rec in records:
            x, y, z, length, width, height, yaw = rec["box"]
            yaw = (yaw + 2 * math.pi) % (2 * math.pi) - math.pi  # wrap(yaw + pi)
            rec["box"] = [-x, -y, z, length, width, height, yaw]
            if rec.get("velocity") is not None:
                rec["velocity"] = [None if v is None else -v for v in rec["velocity"]]
            path = db_file.parent / rec["path"]
            pts = np.fromfile(path, dtype=np.float32).reshape(-1, columns)
            pts[:, :2] *= -1
            pts.tofile(path)
    db_file.write_text(json.dumps(index))
    return counts


# ---------------------------------------------------------------- the prepared copy
def _map_expansion(lidar_xy) -> tuple[dict, int]:
    """The generated grid city's map expansion around the global ``lidar_xy`` (module doc)
    and its number of layer records."""
    from lidarcl.datasets.synthetic.map_expansion import build_map_expansion
    from lidarcl.datasets.synthetic.maps import make_layout

    layout = make_layout(np.random.default_rng(0), MAP_HALF_EXTENT_M)
    nearest = layout.roads_x[np.argmin(np.abs(layout.roads_x[:, 0])), 0]
    offset = np.array([lidar_xy[0] - nearest, lidar_xy[1]])
    counter = itertools.count()
    expansion = build_map_expansion(layout, offset, lambda: f"{next(counter):032x}")
    layers = ("drivable_area", "road_segment", "lane", "ped_crossing", "walkway", "stop_line",
              "carpark_area", "road_divider", "lane_divider")
    return expansion, sum(len(expansion.get(layer, ())) for layer in layers)


def prepared_root(data_root: Path, out: Path) -> dict:
    """The copy of the frame's root (module doc) under ``out``: ``{"root", "index"
    ({load: info index}), "db_file", "db_counts", "map_records", "location"}``."""
    from lidarcl.datasets.gt_database_converter import create_gt_database
    from lidarcl.datasets.info_format import read_info_index, write_info_index
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    root = out / "nuscenes"
    root.mkdir(parents=True)
    for name in os.listdir(data_root):
        if name != "maps":
            (root / name).symlink_to(data_root / name)
    (root / "maps" / "expansion").mkdir(parents=True)
    for name in os.listdir(data_root / "maps"):
        (root / "maps" / name).symlink_to(data_root / "maps" / name)
    create_nuscenes_infos(root, VERSION, out)
    keyframe_index = out / "nuscenes_infos_train.json"
    infos, meta = read_info_index(keyframe_index)
    if len(infos) != 1:
        raise ValueError(f"expected the one keyframe of the real frame, got {len(infos)}")
    info = infos[0]
    if info["sweeps"]:
        raise ValueError("the frame's index lists sweeps: the stand-in would replace them")

    # the stand-in sweeps: links to the keyframe's file
    sweep_dir = root / "sweeps" / "LIDAR_TOP"
    sweep_dir.mkdir(parents=True)
    stem = Path(info["lidar_path"]).name
    sweeps = []
    for k, sweep in enumerate(stand_in_sweeps(info["lidar2ego"]), start=1):
        name = f"standin{k}__{stem}"
        (sweep_dir / name).symlink_to(data_root / info["lidar_path"])
        sweeps.append({"path": f"sweeps/LIDAR_TOP/{name}",
                       "timestamp": int(info["timestamp"] - sweep["time_lag"] * 1e6),
                       **sweep})
    sweeps_index = out / "nuscenes_infos_train_sweeps10.json"
    write_info_index(sweeps_index, [{**info, "sweeps": sweeps}], meta)

    db_file = create_gt_database(keyframe_index, root, out_dir=out, num_sweeps=0)
    db_counts = turn_database(db_file)

    lidar2global = (np.asarray(info["ego2global"], dtype=np.float64)
                    @ np.asarray(info["lidar2ego"], dtype=np.float64))
    expansion, records = _map_expansion(lidar2global[:2, 3])
    location = info["location"]
    (root / "maps" / "expansion" / f"{location}.json").write_text(
        json.dumps(expansion, separators=(",", ":")))
    return {"root": root, "index": {"keyframe": keyframe_index, "sweeps10": sweeps_index},
            "db_file": Path(db_file), "db_counts": db_counts, "map_records": records,
            "location": location}


# ------------------------------------------------------------------- the children
def _build(model_name: str, threads: int, device: str):
    import torch
    from mmengine.config import Config

    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    np.random.seed(0)
    register_all_modules()
    cfg = Config.fromfile(str(ROOT / CONFIGS[model_name]))
    model = MODELS.build(cfg.model.to_dict()).to(device)
    return cfg, model


def _dataset(dataset_cfg, data_root, ann_file, db_file):
    from lidarcl.registry import DATASETS

    dataset_cfg = dataset_cfg.to_dict()
    dataset_cfg.update(data_root=str(data_root), ann_file=str(ann_file))
    for step in dataset_cfg["pipeline"]:
        if step["type"] == "ObjectSample":
            step["db_file"] = str(db_file)
    return DATASETS.build(dataset_cfg)


def _sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _train_part(model_name, threads, device, iters, batch_cap, data_root, ann_file,
                db_file) -> dict:
    import time

    import torch
    from mmengine.optim import build_optim_wrapper

    from lidarcl.datasets.collate import collate_samples

    cfg, model = _build(model_name, threads, device)
    dataset = _dataset(cfg.train_dataloader.dataset, data_root, ann_file, db_file)
    batch_size = min(int(cfg.train_dataloader.batch_size), batch_cap)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()

    data_times, model_times, points, targets, losses = [], [], 0, "", {}
    for _ in range(iters + 1):
        t0 = time.perf_counter()
        batch = collate_samples([dataset[0] for _ in range(batch_size)])
        data_times.append(time.perf_counter() - t0)
        points = int(batch["offsets"][-1])
        if "gt_boxes" in batch:
            targets = f"{sum(len(b) for b in batch['gt_boxes']) / batch_size:.1f} boxes"
        elif "gt_masks_bev" in batch:  # cells with a map class
            mapped = np.mean([np.asarray(m).any(0).mean() for m in batch["gt_masks_bev"]])
            targets = f"{100 * mapped:.0f}% cells"
        _sync(device)
        t0 = time.perf_counter()
        losses = model.train_step(batch, optim_wrapper)
        _sync(device)
        model_times.append(time.perf_counter() - t0)
        if not all(torch.isfinite(torch.as_tensor(v)).all() for v in losses.values()):
            raise FloatingPointError(f"{model_name}: non-finite loss {losses}")
    return {"batch": batch_size, "config_batch": int(cfg.train_dataloader.batch_size),
            "points_per_sample": points / batch_size, "targets_per_sample": targets,
            "losses": {k: float(v) for k, v in losses.items()},
            "cold_data": data_times[0], "data": _median(data_times[1:]),
            "model": _median(model_times[1:]), "peak_mib": peak_memory_mib(device)}


def _test_part(model_name, threads, device, iters, data_root, ann_file, db_file) -> dict:
    import time

    import torch

    from lidarcl.datasets.collate import collate_samples

    cfg, model = _build(model_name, threads, device)
    dataset = _dataset(cfg.val_dataloader.dataset, data_root, ann_file, db_file)
    model.eval()
    data_times, model_times, points, outputs = [], [], 0, ""
    for _ in range(iters + 1):
        t0 = time.perf_counter()
        batch = collate_samples([dataset[0]])
        data_times.append(time.perf_counter() - t0)
        points = int(batch["offsets"][-1])
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            predictions = model.test_step(batch)
        _sync(device)
        model_times.append(time.perf_counter() - t0)
        prediction = predictions[0]
        if hasattr(prediction, "probs"):
            outputs = f"probs {tuple(prediction.probs.shape)}"
        elif hasattr(prediction, "boxes"):
            outputs = f"{len(prediction.boxes)} boxes"
    return {"points": points, "outputs": outputs, "cold_data": data_times[0],
            "data": _median(data_times[1:]), "model": _median(model_times[1:]),
            "peak_mib": peak_memory_mib(device)}


def _child(args: list[str]) -> None:
    """One part ("train" or "test") of one model and point load; prints a JSON line."""
    part, model_name, threads, device, iters = args[0], args[1], int(args[2]), args[3], \
        int(args[4])
    batch_cap, data_root, ann_file, db_file = int(args[5]), args[6], args[7], args[8]
    if part == "train":
        report(_train_part(model_name, threads, device, iters, batch_cap, data_root,
                           ann_file, db_file))
    else:
        report(_test_part(model_name, threads, device, iters, data_root, ann_file, db_file))


# ------------------------------------------------------------------------ the table
def main(args) -> int:
    data_root = Path(args.data_root)
    if not (data_root / VERSION / "sample.json").is_file():
        print(f"real nuScenes frame ({VERSION} tables) not found at {data_root}")
        return 1
    models = args.models or list(CONFIGS)
    loads = args.loads or list(LOADS)
    unknown = sorted(set(models) - set(CONFIGS)) + sorted(set(loads) - set(LOADS))
    if unknown:
        print(f"unknown models / loads {unknown}; known: {list(CONFIGS)} / {list(LOADS)}")
        return 2
    batch_cap = int(getattr(args, "batch", 2))
    results = {"setup": {"data_root": str(data_root), "threads": args.threads,
                         "device": args.device, "iters": args.iters, "batch_cap": batch_cap,
                         "configs": {m: CONFIGS[m] for m in models},
                         "sweeps10": f"stand-in: keyframe + {STAND_IN_SWEEPS} links to it, "
                                     f"ego {SWEEP_STEP_M} m back per sweep, "
                                     f"time {SWEEP_PERIOD_S} s x k",
                         "map": "generated grid city (benchmarks/detection.py)"},
               "rows": []}
    with tempfile.TemporaryDirectory(prefix="lidarcl_bench_det_") as tmp:
        prep = prepared_root(data_root, Path(tmp))
        results["setup"].update(gt_database={k: v for k, v in prep["db_counts"].items()},
                                map_records=prep["map_records"], location=prep["location"])
        print(f"real nuScenes frame {data_root}, {args.threads} thread(s), device "
              f"{args.device}; median of {args.iters} iterations after one warm-up")
        print(f"GT database: {sum(prep['db_counts'].values())} objects of the frame, turned "
              f"180 deg; map: generated grid city at {prep['location']}, "
              f"{prep['map_records']} layer records")
        rows = []
        for model_name in models:
            for load in loads:
                row = {"model": model_name, "load": load}
                for part in ("train", "test"):
                    row[part] = run_isolated("benchmarks.detection",
                                             [part, model_name, args.threads, args.device,
                                              args.iters, batch_cap, prep["root"],
                                              prep["index"][load], prep["db_file"]])
                rows.append(row)
                results["rows"].append(row)

    def baseline(model_name, part, keys):
        """Sum of ``keys`` of the model's keyframe row (the ratios' baseline), or None."""
        for row in rows:
            if row["model"] == model_name and row["load"] == "keyframe" and \
                    isinstance(row[part], dict):
                return sum(row[part][key] for key in keys)
        return None

    print("\ntraining iteration (train_step; sweeps10 = keyframe + 9 displaced copies, a "
          "stand-in for the cost of 10 sweeps, not real sweeps)")
    print("| model | load | points / sample | targets / sample | batch | data s (cold) | data s "
          "| model s | iteration s | model / data | iteration / keyframe | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        r = row["train"]
        if isinstance(r, str):
            print(f"| {row['model']} | {row['load']} | failed: {r[:160]} ||||||||||")
            continue
        total = r["data"] + r["model"]
        base = baseline(row["model"], "train", ("data", "model"))
        print(f"| {row['model']} | {row['load']} | {r['points_per_sample']:,.0f} "
              f"| {r['targets_per_sample']} "
              f"| {r['batch']} | {r['cold_data']:.2f} | {r['data']:.2f} | {r['model']:.2f} "
              f"| {total:.2f} | {r['model'] / max(r['data'], 1e-9):.1f}x "
              f"| {'-' if base is None else f'{total / base:.2f}x'} | {r['peak_mib']:.0f} |")
    print("\ntest time per sample (batch 1; test / train: test model s over the training "
          "iteration's model s per sample)")
    print("| model | load | points | outputs | data s | model s | data + model s "
          "| test / train | model / keyframe | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        r, t = row["test"], row["train"]
        if isinstance(r, str):
            print(f"| {row['model']} | {row['load']} | failed: {r[:160]} ||||||||")
            continue
        total = r["data"] + r["model"]
        base = baseline(row["model"], "test", ("model",))
        per_sample = (f"{r['model'] / (t['model'] / t['batch']):.2f}x"
                      if isinstance(t, dict) else "-")
        to_keyframe = "-" if base is None else f"{r['model'] / base:.2f}x"
        print(f"| {row['model']} | {row['load']} | {r['points']:,} | {r['outputs']} "
              f"| {r['data']:.3f} | {r['model']:.3f} | {total:.3f} | {per_sample} "
              f"| {to_keyframe} | {r['peak_mib']:.0f} |")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        print(f"\nfigures written to {args.json}")
    return 0
