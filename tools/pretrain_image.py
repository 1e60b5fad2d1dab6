#!/usr/bin/env python
"""Pretrain an image encoder self-supervised (MoCo v2) on a dataset's camera images and
write the teacher file the camera-LiDAR configs load (mmengine Runner, as tools/pretrain.py:
atomic checkpoints, --resume, --deterministic). At the end <work_dir>/encoder.pth holds the
encoder alone in the "lidarcl" layout: {"state_dict", "meta": {"encoder", "method", "iter",
"weights_sha256"}}; pass it to a camera-LiDAR config as
    --cfg-options model.image_teacher.checkpoint=<work_dir>/encoder.pth

    python tools/pretrain_image.py configs/pretrain_image/mocov2_resnet18_synth.py \
        [--work-dir DIR] [--resume] [--cfg-options train_cfg.max_iters=100 ...] [--verbose]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from lidarcl.engine.pretrain import add_run_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    args = parser.parse_args(argv)

    from lidarcl.engine import build_pretrain_config, run_pretraining
    from lidarcl.engine.checkpoint import export_backbone
    from lidarcl.engine.progress import set_terminal_output, terminal_print
    from lidarcl.errors import DataError

    try:
        cfg = build_pretrain_config(args.config, args.work_dir, args.resume,
                                    args.cfg_options, "none", args.allow_new_keys)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    if cfg.model.get("type") != "MoCoV2":
        parser.error(f"{args.config}: model.type is {cfg.model.get('type')!r}; "
                     "tools/pretrain_image.py trains image encoders (MoCoV2)")
    if args.deterministic:
        cfg.randomness = dict(cfg.get("randomness") or {}, deterministic=True)
    # MoCo's key shuffle draws from the run's seed unless the config sets its own
    cfg.model.setdefault("seed", int((cfg.get("randomness") or {}).get("seed", 0)))
    previous = set_terminal_output("verbose" if args.verbose else "compact")
    try:
        runner = run_pretraining(cfg, export=False)
        path = export_backbone(runner.model, os.path.join(cfg.work_dir, "encoder.pth"),
                               meta={"encoder": cfg.model.backbone.to_dict(),
                                     "method": cfg.model.type, "iter": runner.iter,
                                     "config": cfg.filename})
        terminal_print(f"image encoder -> {path} (layout 'lidarcl')")
    except DataError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    finally:
        set_terminal_output(previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
