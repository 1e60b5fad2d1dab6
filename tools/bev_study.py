#!/usr/bin/env python
"""The downstream BEV study (lidarcl/evaluation/bev_study.py): CenterPoint detection and BEV
map segmentation on VoxelBackBone8x fine-tuned at 10 % and 100 % of a generated dataset's
labels from random initialisation and from pretrained encoders, over seeds; resumable.

    python tools/bev_study.py --out outputs/bev_study --seeds 0 1 2 --det-iters 250 --map-iters 80 \
        --row 'prc=outputs/study/seed{seed}/prc_voxelbackbone8x/backbone.pth' \
        --row 'pointcontrast=outputs/study/seed{seed}/pointcontrast_voxelbackbone8x/backbone.pth'

Every task, fraction, row and seed is one fine-tuning (--det-iters / --map-iters iterations)
and one evaluation on every validation scan (devkit mAP / NDS; mIoU@max); the tables
(mean +- std over the seeds, gain over random initialisation of the same seed, rows above
beyond the spread) are printed and written to <out>/bev_table.md, every figure to <out>/bev_study.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
    from lidarcl.evaluation.finetune_study import add_data_arguments, parse_rows

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--row", action="append", default=[], metavar="NAME=BACKBONE_PTH",
                   help="a pretrained VoxelBackBone8x row; {seed} in the path is the seed "
                        "(repeatable)")
    p.add_argument("--tasks", nargs="+", default=["det", "map"], choices=["det", "map"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--percents", type=float, nargs="+", default=[10, 100])
    p.add_argument("--det-iters", type=int, default=250)
    p.add_argument("--map-iters", type=int, default=80)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3,
                   help="one-cycle peak learning rate (the configs' 1e-3 is for 20 epochs)")
    add_data_arguments(p)
    args = p.parse_args(argv)
    rows = parse_rows(p, args.row)

    from lidarcl.engine.progress import set_terminal_output
    from lidarcl.evaluation.bev_study import format_bev_tables, prepare_bev_data, run_bev_study
    from lidarcl.utils.fileio import atomic_write
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    set_terminal_output("compact")
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    try:
        data = prepare_bev_data(os.path.join(args.out, "data"), args.scenes, args.keyframes,
                                args.val_scenes, args.data_seed, args.percents)
        study = run_bev_study(REPO, args.out, rows, args.tasks, args.percents, args.seeds,
                              {"det": args.det_iters, "map": args.map_iters}, data,
                              batch_size=args.batch_size, lr=args.lr)
    except (FileNotFoundError, ValueError) as exc:
        print(f"bev_study: error: {exc}", file=sys.stderr)
        return 1
    tables = format_bev_tables(study)
    with atomic_write(os.path.join(args.out, "bev_table.md"), "w") as f:
        f.write(tables + "\n")
    print(tables)
    print(f"this invocation: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
