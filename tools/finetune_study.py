#!/usr/bin/env python
"""The fine-tuning study (lidarcl/evaluation/finetune_study.py): MinkUNet34 fine-tuned on 1 %
and 10 % of a generated dataset's labels from random initialisation and from pretrained
backbones, over seeds, with temporal voting on the best row; resumable.

    python tools/finetune_study.py --out outputs/finetune_study --seeds 0 1 2 --iters 30 \
        --row prc=outputs/study/seed{seed}/prc_minkunet34/backbone.pth \
        --row pointcontrast=outputs/study/seed{seed}/pointcontrast_minkunet34/backbone.pth

Every row, fraction and seed is one fine-tuning (--iters iterations) and one evaluation on
every validation point; the table (mean +- std over the seeds, gain over random
initialisation of the same seed, rows above beyond the spread) is printed and written to
<out>/finetune_table.md, every figure to <out>/finetune_study.json.
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
                   help="a pretrained row; {seed} in the path is the seed (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--percents", type=float, nargs="+", default=[1, 10])
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=None,
                   help="backbone learning rate, the head's is 100x (default: SLidR's 0.02 "
                        "at batch 16 scaled linearly to --batch-size, 0.0025 at 2)")
    p.add_argument("--voxel-size", type=float, default=0.2)
    add_data_arguments(p)
    p.add_argument("--no-voting", action="store_true")
    args = p.parse_args(argv)
    rows = parse_rows(p, args.row)

    from lidarcl.engine.progress import set_terminal_output
    from lidarcl.evaluation.finetune_study import (format_finetune_table,
                                                   prepare_finetune_data, run_finetune_study)
    from lidarcl.utils.fileio import atomic_write
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    set_terminal_output("compact")
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    data = prepare_finetune_data(os.path.join(args.out, "data"), args.scenes, args.keyframes,
                                 args.val_scenes, args.data_seed, args.percents)
    study = run_finetune_study(REPO, args.out, rows, args.percents, args.seeds, args.iters,
                               data, args.voxel_size,
                               voting=None if args.no_voting else {},
                               batch_size=args.batch_size, lr=args.lr)
    table = format_finetune_table(study)
    with atomic_write(os.path.join(args.out, "finetune_table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    for v in study["voting"]:
        print(f"temporal voting, {v['row']} {v['percent']:g}% seed {v['seed']}: "
              f"{v['miou']:.2f} (without {v['miou_without']:.2f})")
    print(f"this invocation: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
