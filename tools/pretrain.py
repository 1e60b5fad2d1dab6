#!/usr/bin/env python
"""Pretrain a backbone with a config (mmengine Runner; single process, or under torchrun
with --launcher pytorch). Checkpoints go to the work dir (atomically), --resume continues
from its last checkpoint, and <work_dir>/backbone.pth holds the backbone alone at the end.

    python tools/pretrain.py configs/pretrain/pointcontrast_minkunet34_synth.py \
        [--work-dir DIR] [--resume] [--cfg-options train_cfg.max_iters=100 ...]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in the work dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                        help="override config keys, e.g. train_cfg.max_iters=100")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none")
    args = parser.parse_args(argv)

    from lidarcl.engine import build_pretrain_config, run_pretraining

    cfg = build_pretrain_config(args.config, args.work_dir, args.resume, args.cfg_options,
                                args.launcher)
    run_pretraining(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
