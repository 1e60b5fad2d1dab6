#!/usr/bin/env python
"""Score a trained model on clean, corrupted and attacked validation data
(lidarcl.robustness.evaluate): Robo3D's CE / RR / mCE / mRR, Dong et al.'s RCE / mRCE, the
accuracy under attack and the attack success rate. Writes robustness.json, robustness.md
and robustness.png (score against severity per corruption) under --out.

    python tools/robustness.py configs/seg/minkunet34_nuscenes_1pct.py CKPT --corruptions robo3d \\
        --baseline nuscenes-c-minkunet18                         # nuScenes-C, Robo3D's baseline
    python tools/robustness.py CONFIG CKPT --corruptions fog snow --severities 1 2 3 \\
        --attacks pgd spoof remove --epsilon 0.05 --attack-samples 10 --baseline base.json

Corrupted copies of the config's validation data are written under --corrupted-root
(default: the data root with "-c" appended) when missing and reused by every later run
(tools/create_corrupted.py writes the same sets). Corruption groups: robo3d (the eight at
severities 1-3), dong (the six object-level ones at 1-5, and temporal misalignment for
detectors), all (both). --baseline: a results JSON of this tool for the baseline model, a
{"clean": A, "<corruption>": A or [A per severity]} JSON, or nuscenes-c-minkunet18.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lidarcl.robustness.evaluate import corruption_names  # noqa: E402  (the tool's API)


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--corruptions", nargs="*", default=["robo3d"],
                   help="names or groups (robo3d, dong, all); none: attacks only")
    p.add_argument("--severities", type=int, nargs="+", default=None,
                   help="default: every severity of each corruption")
    p.add_argument("--corrupted-root", default=None,
                   help="where the corrupted copies are (written when missing)")
    p.add_argument("--seed", type=int, default=0, help="the corrupted sets' seed")
    from lidarcl.robustness.attacks import ATTACKS

    p.add_argument("--attacks", nargs="*", default=[], choices=ATTACKS)
    p.add_argument("--epsilon", type=float, default=0.05, help="PGD budget, metres (L-inf)")
    p.add_argument("--steps", type=int, default=10, help="PGD and spoofing steps")
    p.add_argument("--step-size", type=float, default=None,
                   help="PGD step, metres (default 2.5 epsilon / steps)")
    p.add_argument("--range-limit", type=float, default=70.0,
                   help="no attacked point beyond this range (m; or its clean range)")
    p.add_argument("--spoof-points", type=int, default=60)
    p.add_argument("--spoof-distance", type=float, default=8.0)
    p.add_argument("--remove-points", type=int, default=200)
    p.add_argument("--remove-rounds", type=int, default=4)
    p.add_argument("--val-scans", type=int, default=None,
                   help="score the first N validation scans only (default: all)")
    p.add_argument("--attack-samples", type=int, default=None,
                   help="attack only the first N validation scans (their clean score is "
                        "reported beside)")
    p.add_argument("--score-threshold", type=float, default=0.3,
                   help="detection: a box counts as detected above this score")
    p.add_argument("--baseline", default=None)
    p.add_argument("--metric", default=None, help="default: mIoU (segmentation), NDS "
                                                  "(detection); mAP for detection")
    p.add_argument("--out", default=None, help="default: work_dirs/robustness/<checkpoint>")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    from lidarcl.engine import build_pretrain_config
    from lidarcl.errors import DataError
    from lidarcl.robustness import evaluate as E

    try:
        cfg = E.limit_scans(build_pretrain_config(args.config, None, False, args.cfg_options),
                            args.val_scans)
        task = E.task_of(cfg)
        baseline = E.load_baseline(args.baseline)
    except (FileNotFoundError, ValueError, DataError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    reads_images = any(t.get("type") == "LoadImages"
                       for t in E._val_dataset_cfg(cfg).pipeline)
    names = corruption_names(args.corruptions, task, reads_images)
    root = str(E._val_dataset_cfg(cfg).data_root).rstrip("/")
    corrupted_root = args.corrupted_root or f"{root}-c"
    out = args.out or os.path.join("work_dirs", "robustness",
                                   os.path.splitext(os.path.basename(args.checkpoint))[0])
    params = {"pgd": dict(epsilon=args.epsilon, steps=args.steps, step_size=args.step_size,
                          range_limit=args.range_limit),
              "spoof": dict(num_points=args.spoof_points, distance=args.spoof_distance,
                            steps=args.steps, range_limit=args.range_limit),
              "remove": dict(num_points=args.remove_points, rounds=args.remove_rounds)}
    print(f"corrupted sets under {corrupted_root}; {len(names)} corruptions"
          + (f", attacks {' '.join(args.attacks)}" if args.attacks else ""))
    try:
        results = E.run_robustness(cfg, args.checkpoint, names, args.severities,
                                   corrupted_root, args.attacks, params, baseline,
                                   args.metric, args.seed, args.device, args.attack_samples,
                                   args.score_threshold)
    except (DataError, ValueError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    paths = E.write_report(results, out)
    summary = results["summary"]
    print(", ".join(f"{k} {summary[k]:.2f}" for k in ("mCE", "mRR", "mRCE") if k in summary))
    print("wrote " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
