#!/usr/bin/env python
"""Fine-tune a downstream model with a config (mmengine Runner; single process, or under
torchrun with --launcher pytorch): progress and ETA on the terminal, validation at the
config's interval, the best checkpoint kept (best_mIoU_*.pth), checkpoints written
atomically, --resume from the work dir's newest checkpoint that loads.

    python tools/train.py configs/seg/minkunet34_synth_1pct.py \
        [--work-dir DIR] [--load-backbone outputs/pretrain/backbone.pth [--allow-partial]]
        [--resume] [--cfg-options train_cfg.max_iters=100 ...] [--verbose] [--deterministic]

--load-backbone reads a backbone.pth of tools/pretrain.py. It must fit the config's
backbone exactly: the missing and unexpected keys and shape mismatches are listed and the
run stops, unless --allow-partial (then what fits is loaded and the rest listed in the log).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from lidarcl.engine.pretrain import add_run_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--load-backbone", default=None, metavar="BACKBONE_PTH",
                        help="pretrained backbone weights (backbone.pth of tools/pretrain.py)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="load the tensors of --load-backbone that fit, list the others")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none")
    args = parser.parse_args(argv)

    from lidarcl.engine import build_pretrain_config, run_pretraining
    from lidarcl.engine.checkpoint import load_backbone
    from lidarcl.engine.progress import set_terminal_output
    from lidarcl.errors import DataError

    try:
        cfg = build_pretrain_config(args.config, args.work_dir, args.resume,
                                    args.cfg_options, args.launcher, args.allow_new_keys)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    if args.deterministic:
        cfg.randomness = dict(cfg.get("randomness") or {}, deterministic=True)
    if args.load_backbone:
        if not os.path.isfile(args.load_backbone):
            parser.error(f"--load-backbone {args.load_backbone}: file not found")
        # checked here, before data and the Runner are built: a mismatch stops at once
        from lidarcl.registry import MODELS
        from lidarcl.utils.setup_env import register_all_modules

        register_all_modules()
        try:
            load_backbone(MODELS.build(cfg.model.backbone), args.load_backbone,
                          allow_partial=args.allow_partial)
        except DataError as exc:
            parser.exit(1, f"{parser.prog}: error: {exc}\n")
        cfg.model.backbone_checkpoint = os.path.abspath(args.load_backbone)
        cfg.model.allow_partial = args.allow_partial
    previous = set_terminal_output("verbose" if args.verbose else "compact")
    try:
        run_pretraining(cfg, export=False, verb="trained")
    except DataError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    finally:
        set_terminal_output(previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
