"""Seconds per scan of every corruption at every severity on the real nuScenes frame
(34,688 points, 69 boxes) with generated lidarseg labels (``benchmarks/finetune.py``:
``labelled_copy``), against loading the scan and its labels in the same run; fog and snow
against the 0.5 s target of the robustness issue (at 2 threads).

    python tools/benchmark.py corruptions [--threads 1 2] [--repeats 5] [--json PATH]

Each figure is the median of ``--repeats`` calls after one warm-up call (the first fog call
also computes its soft-peak table: reported apart as ``first call``).
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_SECONDS = {"fog": 0.5, "snow": 0.5}


def _copy(sample: dict) -> dict:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in sample.items()}


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(data_root: Path, threads: int, repeats: int) -> dict:
    import numba
    import torch

    from benchmarks.finetune import labelled_copy
    from lidarcl.datasets.nuscenes_dataset import NuScenesDataset
    from lidarcl.datasets.transforms.loading import LoadLidarsegLabels, LoadPoints
    from lidarcl.robustness.corruptions import CORRUPTIONS

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    with tempfile.TemporaryDirectory() as tmp:
        root, ann_file = labelled_copy(data_root, Path(tmp))
        dataset = NuScenesDataset(str(ann_file), data_root=str(root),
                                  pipeline=[LoadPoints(use_dims=None), LoadLidarsegLabels()])
        sample = dataset[0]
        load = _timed(lambda: dataset[0], repeats)
    rows = []
    for name, cls in CORRUPTIONS.items():
        for severity in range(1, len(cls.parameters) + 1):
            corruption = cls(severity)
            start = time.perf_counter()
            try:
                out = corruption(_copy(sample))
            except ValueError as exc:  # e.g. a stale sweep: the frame has no sweeps
                rows.append({"corruption": name, "severity": severity,
                             "parameter": corruption.parameter, "seconds": None,
                             "not_measured": str(exc), "points_in": len(sample["points"])})
                continue
            first = time.perf_counter() - start
            seconds = _timed(lambda: corruption(_copy(sample)), repeats)
            rows.append({"corruption": name, "severity": severity,
                         "parameter": corruption.parameter, "seconds": seconds,
                         "first_call": first, "points_in": len(sample["points"]),
                         "points_out": len(out["points"]), "to_load": seconds / load,
                         "to_target": (seconds / TARGET_SECONDS[name]
                                       if name in TARGET_SECONDS else None)})
    return {"threads": threads, "load_seconds": load, "rows": rows}


def format_table(result: dict) -> str:
    lines = [f"threads {result['threads']}: loading the scan and its labels "
             f"{result['load_seconds'] * 1e3:.1f} ms",
             "| corruption | severity | parameter | s / scan | first call | points out "
             "| x load | x target |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["seconds"] is None:
            lines.append(f"| {r['corruption']} | {r['severity']} | {r['parameter']:g} | "
                         f"not measured: {r['not_measured']} | | | | |")
            continue
        target = "-" if r["to_target"] is None else f"{r['to_target']:.2f}"
        lines.append(f"| {r['corruption']} | {r['severity']} | {r['parameter']:g} | "
                     f"{r['seconds']:.4f} | {r['first_call']:.3f} | "
                     f"{r['points_out']} / {r['points_in']} | {r['to_load']:.1f} | {target} |")
    return "\n".join(lines)


def main(args) -> int:
    data_root = Path(args.data_root)
    if not (data_root / "v1.0-mini" / "sample.json").is_file():
        print(f"real nuScenes frame (v1.0-mini tables) not found at {data_root}")
        return 1
    results = []
    for threads in args.threads:
        result = measure(data_root, threads, args.repeats)
        print(format_table(result) + "\n")
        results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0
