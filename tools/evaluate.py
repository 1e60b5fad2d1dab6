#!/usr/bin/env python
"""Score a results file or folder in a dataset's official format against its ground truth,
without a model; prints the metrics and writes them as JSON.

    python tools/evaluate.py nuscenes-lidarseg --results RESULTS --root data/nuscenes \
        --version v1.0-trainval --eval-set val [--out metrics.json]
    python tools/evaluate.py semantickitti --results RESULTS --root data/semantickitti/dataset \
        --split data/semantickitti/semantickitti_infos_val.json [--out metrics.json]
    python tools/evaluate.py kitti-det --results RESULTS --root data/kitti \
        --split ImageSets/val.txt [--classes Car Pedestrian Cyclist] [--out metrics.json]
    python tools/evaluate.py nuscenes-det --results results.json --root data/nuscenes \
        --version v1.0-trainval --eval-set val [--out metrics.json]

nuscenes-lidarseg: RESULTS holds lidarseg/<eval_set>/<token>_lidarseg.bin (the devkit's
layout; tools/test.py --format-only writes it) and is scored by the devkit's LidarSegEval
(lidarcl/evaluation/nuscenes_lidarseg.py). semantickitti: RESULTS holds
sequences/NN/predictions/XXXXXX.label, scored with semantic-kitti-api's rule over the scans
of the --split index (lidarcl/evaluation/semantickitti_eval.py). kitti-det: RESULTS holds
<id>.txt (or data/<id>.txt) in KITTI's label format with a score, camera frame, scored against
<root>/training/label_2/<id>.txt for the ids of --split (a path, or relative to --root) by the
official evaluator's algorithm -- 2D box, BEV, 3D AP and AOS, R40 and R11, easy / moderate /
hard (lidarcl/evaluation/kitti_det_eval.py); a frame without a result file has no detections.
nuscenes-det: RESULTS is the devkit's submission JSON ({"meta", "results": {sample_token:
[boxes]}}, global frame; lidarcl.evaluation.nuscenes_det.write_nuscenes_results writes it),
with an entry for every sample of the eval set; scored by the devkit's detection evaluation
(config detection_cvpr_2019): DetectionEval itself on an official version, the same loaders,
filters and metric functions over the scenes of <root>/<version>/splits.json otherwise
(lidarcl/evaluation/nuscenes_det.py). Prints mAP, the TP errors, NDS and the per-class AP;
--out holds the devkit's metrics_summary.json content.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TASKS = ("nuscenes-lidarseg", "semantickitti", "kitti-det", "nuscenes-det")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=TASKS)
    p.add_argument("--results", required=True, help="results folder in the official layout "
                   "(nuscenes-det: the results JSON file)")
    p.add_argument("--root", required=True, help="dataset root holding the ground truth")
    p.add_argument("--version", help="nuScenes table version (nuscenes-lidarseg, "
                   "nuscenes-det)")
    p.add_argument("--eval-set", help="nuScenes eval set, e.g. val or mini_val")
    p.add_argument("--split", help="semantickitti: info index of the evaluated scans; "
                   "kitti-det: split file of frame ids, e.g. ImageSets/val.txt (a path, or "
                   "relative to --root)")
    p.add_argument("--classes", nargs="+", default=None,
                   help="kitti-det: classes to evaluate (default Car Pedestrian Cyclist)")
    p.add_argument("--out", help="write the metrics here as JSON")
    args = p.parse_args(argv)

    from lidarcl.errors import DataError

    try:
        if args.task == "nuscenes-lidarseg":
            if not (args.version and args.eval_set):
                p.error("nuscenes-lidarseg needs --version and --eval-set")
            from lidarcl.evaluation.nuscenes_lidarseg import evaluate_lidarseg

            metrics = evaluate_lidarseg(args.results, args.root, args.version, args.eval_set)
        elif args.task == "nuscenes-det":
            if not (args.version and args.eval_set):
                p.error("nuscenes-det needs --version and --eval-set")
            from lidarcl.evaluation.nuscenes_det import evaluate_nuscenes_det

            metrics = evaluate_nuscenes_det(args.results, args.root, args.version, args.eval_set)
        elif args.task == "kitti-det":
            if not args.split:
                p.error("kitti-det needs --split (a file of frame ids, e.g. ImageSets/val.txt)")
            from lidarcl.evaluation.kitti_det_eval import (CLASS_NAMES, DEFAULT_CLASSES,
                                                           evaluate_kitti_det)

            classes = args.classes or DEFAULT_CLASSES
            unknown = [c for c in classes if c.lower() not in {n.lower() for n in CLASS_NAMES}]
            if unknown:
                p.error(f"kitti-det: unknown class {unknown[0]!r}; the KITTI evaluator knows "
                        f"{' '.join(CLASS_NAMES)}")
            metrics = evaluate_kitti_det(args.results, args.root, args.split, classes)
        else:
            if not args.split:
                p.error("semantickitti needs --split (the info index of the evaluated scans)")
            from lidarcl.evaluation.semantickitti_eval import evaluate_semantickitti

            metrics = evaluate_semantickitti(args.results, args.root, args.split)
    except (DataError, OSError) as err:
        print(f"evaluate: {err}", file=sys.stderr)
        return 1
    if args.task == "kitti-det":
        return _report_kitti_det(args, metrics)
    if args.task == "nuscenes-det":
        return _report_nuscenes_det(args, metrics)
    print(f"{args.task}: mIoU {100 * metrics['miou']:.2f} over "
          f"{metrics.get('samples', metrics.get('scans'))} scans")
    print(", ".join(f"{name} {100 * v:.1f}" for name, v in metrics["iou_per_class"].items()
                    if v == v))
    if args.out:
        from lidarcl.utils.fileio import atomic_write

        with atomic_write(args.out, "w") as f:
            json.dump({"task": args.task, **metrics}, f, indent=1)
    return 0


def _report_kitti_det(args, result: dict) -> int:
    print(result["summary"], end="")
    print(f"kitti-det: {result['frames']} frames ({result['frames_with_results']} with a "
          "result file); " + ", ".join(
              f"{cls} 3D AP_R40 moderate {result['metrics'][f'{cls}_3d/moderate_R40']:.2f}"
              for cls in result["classes"]))
    if result["frames_with_results"] == 0:
        print(f"evaluate: warning: no result file of the split's frames in {args.results}",
              file=sys.stderr)
    if args.out:
        from lidarcl.utils.fileio import atomic_write

        with atomic_write(args.out, "w") as f:
            json.dump({"task": args.task, **result}, f, indent=1)
    return 0


_TP_NAMES = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE",
             "vel_err": "mAVE", "attr_err": "mAAE"}


def _report_nuscenes_det(args, summary: dict) -> int:
    """The devkit's own printout (DetectionEval.main): mAP, TP errors, NDS, per class."""
    print(f"nuscenes-det ({args.version} {args.eval_set}): mAP {summary['mean_ap']:.4f}  "
          f"NDS {summary['nd_score']:.4f}")
    print("  ".join(f"{_TP_NAMES[name]} {value:.4f}"
                    for name, value in summary["tp_errors"].items()))
    print(f"{'class':<22}{'AP':>7}{'ATE':>7}{'ASE':>7}{'AOE':>7}{'AVE':>7}{'AAE':>7}")
    for name, ap in summary["mean_dist_aps"].items():
        tp = summary["label_tp_errors"][name]
        print(f"{name:<22}{ap:>7.3f}" + "".join(
            f"{tp[m]:>7.3f}" for m in ("trans_err", "scale_err", "orient_err", "vel_err",
                                       "attr_err")))
    if args.out:
        from lidarcl.utils.fileio import atomic_write

        with atomic_write(args.out, "w") as f:
            json.dump({"task": args.task, **summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
