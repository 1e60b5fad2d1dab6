"""Speed and memory of one pretraining iteration per method x backbone on the real nuScenes
frame (``../shared/data/real/nuscenes``, converted through nuscenes-devkit), and the share of
the iteration spent in data loading against the model.

Each (method, backbone) runs in its own subprocess at the requested thread count, so the
peak resident memory (``ru_maxrss``; ``torch.cuda.max_memory_allocated`` on a GPU) is that
run's alone. Inside it, the method's nuScenes config (``configs/pretrain/<method>_minkunet34
_nuscenes.py``) is built with the backbone swapped in, and one iteration is:

* **data**: the config's pipeline on the real frame, once per sample of the config's batch
  (loading, range filter, regions where the method uses them, the augmented views, the
  temporal view), then ``collate_samples``; the regions cache is warm after the first
  iteration, so the first (cold) data time is reported on its own. The shared frame has no
  sweep files, so the index lists the keyframe file itself as its neighbouring sweep, moved
  by 0.5 m of ego motion and 0.5 degrees of yaw (``sweep2lidar``), and ``TemporalViews``
  runs in every iteration (``prob=1``; the configs use 0.5): an upper bound of its cost;
* **model**: ``model.train_step`` with the config's optimizer wrapper (forward, the method's
  losses, backward, gradient clipping, AdamW step), then the momentum (key) encoders' EMA
  step for the methods that have them (FAC), as ``MomentumUpdateHook`` does in a run.

Camera-LiDAR methods (``slidr``, ``scalr``, ``superflow``) run their nuScenes configs with
the config's teacher architecture at random weights (the official files are not shipped;
the cost is the same): the index gets the frame's SLIC maps and 17-class semantic maps of
that teacher (computed once, before the rows), and two sweep entries (the keyframe moved by
0.5 m and 1 m) for SuperFlow's dense cloud; the frame is alone in its scene, so SuperFlow's
t-1 and t+1 are the keyframe again through the frame pipeline (their own loading and
augmentation: the cost of real neighbours). The **data** step then includes the image
decoding, resizing / cropping and the superpixel maps of every frame. **ops s** is the time
inside lidarcl's correspondence ops during the model step (``project_points_batched``,
``project_pool``, ``region_pool``, ``gather_pixel_features``, ``visibility``, forward and
the backward of their autograd functions), and its share of the model step.

One warm-up iteration, then the median of ``--iters`` iterations. The baseline of every row
is its own data time: the ratio column is model time / data time.

``--deterministic-cost``: every iteration also runs the model step a second time, on the
same batch, with ``torch.use_deterministic_algorithms(True)`` (what ``randomness=dict(
deterministic=True)`` / ``tools/pretrain.py --deterministic`` switches on through mmengine),
alternating which mode goes first; the extra columns are that step's median and its ratio
to the default step measured beside it (the cost of the deterministic mode; the data step
is the same in both modes: the region step's RANSAC runs on one thread in either).
Run through ``python tools/benchmark.py pretrain``.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.isolated import ROOT, peak_memory_mib, report, run_isolated

METHODS = ("pointcontrast", "prc", "fac", "cmae", "slidr", "scalr", "superflow")
CAMERA_METHODS = ("slidr", "scalr", "superflow")
OPS = ("project_points_batched", "project_pool", "region_pool", "gather_pixel_features",
       "visibility")
BACKBONES = {
    "minkunet34": dict(type="MinkUNet34", in_channels=4, out_channels=64, voxel_size=0.1),
    "voxelbackbone8x": dict(type="VoxelBackBone8x", in_channels=4),
    "ptv3": dict(type="PointTransformerV3", in_channels=4, out_channels=64, voxel_size=0.1),
}


class OpsClock:
    """Seconds spent in lidarcl's correspondence ops (forward and the backward of their
    autograd functions), wherever the pretrainers imported them; an op called inside
    another counts once."""

    def __init__(self, sync):
        import lidarcl.ops as ops
        from lidarcl.models.pretrainers import scalr, slidr, superflow

        self.seconds, self.sync, self._depth = 0.0, sync, 0
        originals = {name: getattr(ops, name) for name in OPS}
        for module in (ops, slidr, superflow, scalr):
            for name, function in originals.items():
                if hasattr(module, name):
                    setattr(module, name, self.timed(function))
        for name in ("_RegionPool", "_ProjectPool", "_GatherPixels"):
            function = getattr(ops, name)
            function.backward = staticmethod(self.timed(function.backward))

    def timed(self, function):
        import time

        def wrapper(*args, **kwargs):
            if self._depth:
                return function(*args, **kwargs)
            self._depth += 1
            self.sync()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.sync()
                self.seconds += time.perf_counter() - start
                self._depth -= 1
        return wrapper


def _child(args: list[str]) -> None:
    """One (method, backbone) measurement; prints a JSON line."""
    import time

    import torch
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    from lidarcl.datasets.collate import collate_samples
    from lidarcl.registry import DATASETS, MODELS
    from lidarcl.utils.setup_env import register_all_modules

    method, backbone, threads, device, iters = args[0], args[1], int(args[2]), args[3], \
        int(args[4])
    data_root, ann_file, cache_dir = args[5], args[6], args[7]
    deterministic_cost = args[8] == "1"
    if deterministic_cost and device == "cuda":  # cuBLAS needs it before its first call
        import os
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    register_all_modules()
    cfg = Config.fromfile(str(ROOT / "configs" / "pretrain" / f"{method}_minkunet34_nuscenes.py"))
    dataset_cfg = cfg.train_dataloader.dataset.to_dict()
    inner = dataset_cfg["dataset"] if dataset_cfg["type"] == "MultiFrameDataset" else dataset_cfg
    inner.update(data_root=data_root, ann_file=ann_file)
    for step in inner["pipeline"]:
        if step["type"] == "SegmentRegions":
            step["cache_dir"] = cache_dir
        if step["type"] == "TemporalViews":
            step["prob"] = 1.0
    dataset = DATASETS.build(dataset_cfg)
    batch_size = int(cfg.train_dataloader.batch_size)
    model_cfg = cfg.model.to_dict()
    model_cfg["backbone"] = dict(BACKBONES[backbone])
    if "image_teacher" in model_cfg:  # the architecture at random weights: the same cost
        model_cfg["image_teacher"]["checkpoint"] = None
    if method == "slidr" and backbone == "voxelbackbone8x":
        model_cfg["head_channels"] = 64  # its 16 channels to the teacher's 64
    model = MODELS.build(model_cfg).to(device)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    momentum_pairs = bool(getattr(model, "momentum_pairs", ()))
    model.momentum_hooked = True  # the step below stands in for MomentumUpdateHook

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    clock = OpsClock(sync)
    ops_times = []

    def model_step(batch, deterministic: bool) -> float:
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.deterministic = deterministic
        clock.seconds = 0.0
        start = time.perf_counter()
        losses = model.train_step(batch, optim_wrapper)
        if momentum_pairs:  # what MomentumUpdateHook does after each iteration of a run
            model.momentum_update(len(model_times) + len(deterministic_times),
                                  (iters + 1) * (2 if deterministic_cost else 1))
        sync()
        seconds = time.perf_counter() - start
        torch.use_deterministic_algorithms(False)
        if not all(torch.isfinite(v).all() for v in losses.values()):
            raise FloatingPointError(f"{method} x {backbone}: non-finite loss {losses}")
        return seconds

    data_times, model_times, deterministic_times, points = [], [], [], 0
    for iteration in range(iters + 1):
        t0 = time.perf_counter()
        batch = collate_samples([dataset[i % len(dataset)] for i in range(batch_size)])
        data_times.append(time.perf_counter() - t0)
        points = int(batch["offsets"][-1])
        order = (False, True) if iteration % 2 == 0 else (True, False)
        for deterministic in order if deterministic_cost else (False,):
            seconds = model_step(batch, deterministic)
            (deterministic_times if deterministic else model_times).append(seconds)
            if not deterministic:
                ops_times.append(clock.seconds)

    def median(values):
        return sorted(values)[len(values) // 2]

    figures = {"batch": batch_size, "points": points, "cold_data": data_times[0],
               "data": median(data_times[1:]), "model": median(model_times[1:]),
               "ops": median(ops_times[1:]), "peak_mib": peak_memory_mib(device)}
    if deterministic_cost:
        figures["model_deterministic"] = median(deterministic_times[1:])
    report(figures)


def _moved(metres: float, degrees: float) -> list:
    yaw = np.deg2rad(degrees)
    moved = np.eye(4)
    moved[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    moved[0, 3] = -metres
    return moved.tolist()


def convert_real_frame(data_root: Path, out: Path) -> Path:
    """nuScenes info index of the real frame (tools/create_data.py's converter)."""
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    create_nuscenes_infos(data_root, "v1.0-mini", out)
    path = out / "nuscenes_infos_train.json"
    index = json.loads(path.read_text())
    for info in index["infos"]:
        info["sweeps"] = [{"path": info["lidar_path"], "sweep2lidar": _moved(0.5 * k, 0.5 * k),
                           "time_lag": 0.05 * k, "num_point_features": 5} for k in (1, 2)]
    path.write_text(json.dumps(index))
    return path


def add_superpixels(ann_file: Path, data_root: Path) -> None:
    """SLIC maps and the semantic maps of SuperFlow's teacher (random weights) for the
    camera methods."""
    from mmengine.config import Config

    from lidarcl.datasets.semantic_superpixels import create_semantic_superpixels
    from lidarcl.datasets.superpixels import create_superpixels
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    create_superpixels(ann_file, data_root)
    cfg = Config.fromfile(str(ROOT / "configs" / "pretrain" / "superflow_minkunet34_nuscenes.py"))
    teacher_cfg = cfg.model.image_teacher.to_dict()
    teacher_cfg.update(checkpoint=None, head=None)
    create_semantic_superpixels(ann_file, data_root, MODELS.build(teacher_cfg), clusters=17,
                                fit_images=6)


def main(args) -> int:
    data_root = Path(args.data_root)
    if not (data_root / "v1.0-mini" / "sample.json").is_file():
        print(f"real nuScenes frame (v1.0-mini tables) not found at {data_root}")
        return 1
    methods = args.methods or list(METHODS)
    backbones = args.backbones or list(BACKBONES)
    unknown = sorted(set(methods) - set(METHODS)) + sorted(set(backbones) - set(BACKBONES))
    if unknown:
        print(f"unknown methods/backbones {unknown}; known: {list(METHODS)} x "
              f"{list(BACKBONES)}")
        return 2
    with tempfile.TemporaryDirectory(prefix="lidarcl_bench_") as tmp:
        ann_file = convert_real_frame(data_root, Path(tmp))
        cache_dir = str(Path(tmp) / "regions")
        if set(methods) & set(CAMERA_METHODS):
            add_superpixels(ann_file, data_root)
        print(f"real nuScenes frame {data_root}, {args.threads} thread(s), device "
              f"{args.device}; median of {args.iters} iterations after one warm-up")
        cost = bool(getattr(args, "deterministic_cost", False))
        extra_head = " model s, deterministic | deterministic / default |" if cost else ""
        print("| method | backbone | batch | points | data s (cold) | data s | model s | "
              "iteration s | data share | model / data | ops s (share of model) | peak MiB |"
              + extra_head)
        print("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if cost else ""))
        for method in methods:
            for backbone in backbones:
                r = run_isolated("benchmarks.pretrain",
                                 [method, backbone, args.threads, args.device, args.iters,
                                  data_root, ann_file, cache_dir, int(cost)])
                if isinstance(r, str):
                    print(f"| {method} | {backbone} | failed: {r[:160]} ||||||||", flush=True)
                    continue
                total = r["data"] + r["model"]
                print(f"| {method} | {backbone} | {r['batch']} | {r['points']:,} "
                      f"| {r['cold_data']:.2f} | {r['data']:.2f} | {r['model']:.2f} "
                      f"| {total:.2f} | {100 * r['data'] / total:.1f}% "
                      f"| {r['model'] / max(r['data'], 1e-9):.1f}x "
                      f"| {r['ops']:.2f} ({100 * r['ops'] / r['model']:.1f}%) "
                      f"| {r['peak_mib']:.0f} |"
                      + (f" {r['model_deterministic']:.2f} | "
                         f"{r['model_deterministic'] / r['model']:.2f}x |" if cost else ""),
                      flush=True)
    return 0
