#!/usr/bin/env python
"""Score a results file or folder in a dataset's official format against its ground truth,
without a model; prints the metrics and writes them as JSON.

    python tools/evaluate.py nuscenes-lidarseg --results RESULTS --root data/nuscenes \
        --version v1.0-trainval --eval-set val [--out metrics.json]
    python tools/evaluate.py semantickitti --results RESULTS --root data/semantickitti/dataset \
        --split data/semantickitti/semantickitti_infos_val.json [--out metrics.json]

nuscenes-lidarseg: RESULTS holds lidarseg/<eval_set>/<token>_lidarseg.bin (the devkit's
layout; tools/test.py --format-only writes it) and is scored by the devkit's LidarSegEval
(lidarcl/evaluation/nuscenes_lidarseg.py). semantickitti: RESULTS holds
sequences/NN/predictions/XXXXXX.label, scored with semantic-kitti-api's rule over the scans
of the --split index (lidarcl/evaluation/semantickitti_eval.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TASKS = ("nuscenes-lidarseg", "semantickitti")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=TASKS)
    p.add_argument("--results", required=True, help="results folder in the official layout")
    p.add_argument("--root", required=True, help="dataset root holding the ground truth")
    p.add_argument("--version", help="nuScenes table version (nuscenes-lidarseg)")
    p.add_argument("--eval-set", help="nuScenes eval set, e.g. val or mini_val")
    p.add_argument("--split", help="info index of the evaluated scans (semantickitti)")
    p.add_argument("--out", help="write the metrics here as JSON")
    args = p.parse_args(argv)

    from lidarcl.errors import DataError

    try:
        if args.task == "nuscenes-lidarseg":
            if not (args.version and args.eval_set):
                p.error("nuscenes-lidarseg needs --version and --eval-set")
            from lidarcl.evaluation.nuscenes_lidarseg import evaluate_lidarseg

            metrics = evaluate_lidarseg(args.results, args.root, args.version, args.eval_set)
        else:
            if not args.split:
                p.error("semantickitti needs --split (the info index of the evaluated scans)")
            from lidarcl.evaluation.semantickitti_eval import evaluate_semantickitti

            metrics = evaluate_semantickitti(args.results, args.root, args.split)
    except (DataError, OSError) as err:
        print(f"evaluate: {err}", file=sys.stderr)
        return 1
    print(f"{args.task}: mIoU {100 * metrics['miou']:.2f} over "
          f"{metrics.get('samples', metrics.get('scans'))} scans")
    print(", ".join(f"{name} {100 * v:.1f}" for name, v in metrics["iou_per_class"].items()
                    if v == v))
    if args.out:
        from lidarcl.utils.fileio import atomic_write

        with atomic_write(args.out, "w") as f:
            json.dump({"task": args.task, **metrics}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
