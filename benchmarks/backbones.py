"""Speed and memory of the backbones on the CPU (or a GPU): forward and forward+backward
time per call and peak memory, on the real nuScenes keyframe and a 10-sweep accumulation
(the keyframe and 9 copies moved by ego motion, as in ``benchmarks/ops.py``), at the
requested thread counts.

Each (backbone, workload, threads) runs in its own subprocess, so the peak resident memory
(``ru_maxrss``) it reports is that run's alone; on a GPU the peak is
``torch.cuda.max_memory_allocated``. Run through ``python tools/benchmark.py backbones``.
"""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.isolated import peak_memory_mib, report, run_isolated

BACKBONES = {
    "MinkUNet18": dict(type="MinkUNet18", in_channels=4, out_channels=64, voxel_size=0.1),
    "MinkUNet34": dict(type="MinkUNet34", in_channels=4, out_channels=64, voxel_size=0.1),
    "VoxelBackBone8x": dict(type="VoxelBackBone8x", in_channels=4),
    "VoxelResBackBone8x": dict(type="VoxelResBackBone8x", in_channels=4),
    "PointTransformerV3": dict(type="PointTransformerV3", in_channels=4, out_channels=64,
                               voxel_size=0.1),
}


def _child(args: list[str]) -> None:
    """One measurement; prints a JSON line."""
    import time

    import numpy as np
    import torch

    from benchmarks.ops import accumulate_sweeps
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    name, sweeps, threads, device, data_root = args[0], int(args[1]), int(args[2]), args[3], \
        Path(args[4])
    torch.set_num_threads(threads)
    register_all_modules()
    frame = json.loads((data_root / "frame.json").read_text())
    pts = np.fromfile(data_root / frame["lidar_file"], dtype=np.float32).reshape(-1, 5)
    if sweeps > 1:
        pts = accumulate_sweeps(pts, sweeps)
    points = torch.from_numpy(pts).to(device)
    offsets = torch.tensor([len(points)], device=device)
    torch.manual_seed(0)
    model = MODELS.build(BACKBONES[name]).to(device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            model(points, offsets)

    def step():
        out = model(points, offsets)
        target = out.bev if out.bev is not None else out.point_features
        target.square().mean().backward()
        model.zero_grad(set_to_none=True)

    results = {}
    for label, fn in (("forward", forward), ("forward+backward", step)):
        fn()
        sync()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        results[label] = sorted(times)[1]
    with torch.no_grad():
        voxels = len(model(points, offsets).voxels.coords)
    report({"points": len(points), "voxels": voxels,
            "params": sum(p.numel() for p in model.parameters()),
            "peak_mib": peak_memory_mib(device), **results})


def main(args) -> int:
    data_root = Path(args.data_root)
    if not (data_root / "frame.json").is_file():
        print(f"real nuScenes frame not found at {data_root}")
        return 1
    names = args.backbones or list(BACKBONES)
    threads = args.threads if args.device == "cpu" else [1]
    print("| backbone | workload | threads | points | voxels | params | forward s | "
          "forward+backward s | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        for sweeps in (1, args.sweeps):
            for t in threads:
                r = run_isolated("benchmarks.backbones",
                                 [name, sweeps, t, args.device, data_root])
                if isinstance(r, str):
                    print(f"| {name} | {sweeps} sweep(s) | {t} | failed: {r[:120]} |||||")
                    continue
                print(f"| {name} | {'keyframe' if sweeps == 1 else f'{sweeps} sweeps'} | {t} "
                      f"| {r['points']:,} | {r['voxels']:,} | {r['params']:,} "
                      f"| {r['forward']:.2f} | {r['forward+backward']:.2f} "
                      f"| {r['peak_mib']:.0f} |", flush=True)
    return 0
