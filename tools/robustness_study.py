#!/usr/bin/env python
"""The robustness study (lidarcl.robustness.study): the fine-tuning study's segmentation models
(one row per initialisation, one checkpoint per seed) and one detector on the same
corrupted copies of the validation data, with attacks; tables of mean +- std over the seeds
and the per-seed gain over the baseline row, and a plot of score against severity.

    python tools/robustness_study.py --out outputs/robustness_study --seeds 0 1 2 \\
        --row 'random=outputs/finetune_study_v2/1pct/random/seed{seed}/iter_30.pth' \\
        --row 'prc=outputs/finetune_study_v2/1pct/prc/seed{seed}/iter_30.pth' \\
        --detector outputs/bev_study/det/100pct/random/seed0/iter_250.pth

Each checkpoint is scored with the test_config.py its study run kept beside it, or with
--config (and --cfg-options) for the rows. Finished runs are kept under
OUT/runs/: the same command resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--row", action="append", default=[], metavar="NAME=CHECKPOINT_TEMPLATE",
                   help="a segmentation row; {seed} in the path is the seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--baseline-row", default="random")
    p.add_argument("--detector", default=None, help="one detector checkpoint")
    p.add_argument("--corruptions", nargs="+", default=["robo3d"])
    p.add_argument("--det-corruptions", nargs="+", default=["robo3d", "dong"])
    p.add_argument("--severities", type=int, nargs="+", default=None)
    p.add_argument("--corrupted-root", default=None,
                   help="default: each model's validation data root with -c appended")
    p.add_argument("--val-scans", type=int, default=None,
                   help="score the first N validation scans (default: all)")
    p.add_argument("--attacks", nargs="*", default=["pgd", "spoof", "remove"])
    p.add_argument("--attack-samples", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--epsilon", type=float, default=0.05)
    p.add_argument("--config", default=None,
                   help="the rows' config (default: the test_config.py beside each checkpoint)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                   help="options of the rows' config (e.g. its validation data_root)")
    args = p.parse_args(argv)

    from lidarcl.robustness.evaluate import corruption_names
    from lidarcl.robustness.study import format_study, plot_study, run_study, summarise
    from lidarcl.utils.fileio import atomic_write

    rows = dict(r.split("=", 1) for r in args.row)
    if args.baseline_row not in rows:
        p.error(f"the baseline row {args.baseline_row!r} is not among the rows {list(rows)}")
    seg_names = corruption_names(args.corruptions, "segmentation", False)
    det_names = corruption_names(args.det_corruptions, "detection", False)
    params = {"pgd": dict(epsilon=args.epsilon, steps=args.steps),
              "spoof": dict(steps=args.steps), "remove": dict(rounds=args.steps)}
    study = run_study(args.out, rows, args.seeds, seg_names, args.severities, args.corrupted_root,
                      args.detector, det_names if args.detector else (), args.val_scans,
                      args.attacks, params, args.attack_samples, config=args.config,
                      config_options=args.cfg_options)
    summary = summarise(study, args.baseline_row)
    text = format_study(summary, study["detector"])
    with atomic_write(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    with atomic_write(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plot_study(study, os.path.join(args.out, "robustness_study.png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
