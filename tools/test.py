#!/usr/bin/env python
"""Evaluate a fine-tuned checkpoint on a config's validation split, or write its predictions
in the dataset's official submission format.

    python tools/test.py configs/seg/minkunet34_synth_1pct.py work_dirs/.../best_mIoU_iter_300.pth
        [--tta] [--temporal-voting [--voting-window 1 --voting-radius 0.2 --voting-weight 1]]
        [--format-only --out DIR [--eval-set val]] [--metrics-out metrics.json]
        [--cfg-options ...]

Detection (CenterPoint configs, configs/det/): the devkit's mAP / NDS (nuScenes layout) or
KITTI's AP; --format-only writes <out>/results_nusc.json (nuScenes' results JSON) or
<out>/data/<id>.txt (KITTI label files), which tools/evaluate.py nuscenes-det / kitti-det
score. BEV map segmentation (configs/mapseg/): IoU per class at 0.35-0.65 and mIoU@max.

Segmentation: metrics (mIoU, IoU per class) on every point of every validation scan. --tta averages the
class probabilities over the 8 symmetries of the xy square (4 rotations x 2 flips).
--temporal-voting lets the neighbouring scans of the same scene vote through the ego poses
(lidarcl/evaluation/temporal_voting.py). --format-only writes nuScenes-lidarseg
(<out>/lidarseg/<eval_set>/<token>_lidarseg.bin, submission.json) or SemanticKITTI
(<out>/sequences/NN/predictions/*.label) files, which tools/evaluate.py scores.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation")
    parser.add_argument("--temporal-voting", action="store_true")
    parser.add_argument("--voting-window", type=int, default=1,
                        help="neighbouring scans on each side (default 1)")
    parser.add_argument("--voting-radius", type=float, default=0.2,
                        help="metres to the nearest neighbour point that votes (default 0.2)")
    parser.add_argument("--voting-weight", type=float, default=1.0)
    parser.add_argument("--format-only", action="store_true",
                        help="write the official submission files, no metrics")
    parser.add_argument("--out", help="folder of --format-only's files")
    parser.add_argument("--eval-set", default="val", help="nuScenes eval set name of the files")
    parser.add_argument("--metrics-out", help="write the metrics as JSON")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None)
    parser.add_argument("--allow-new-keys", action="store_true")
    args = parser.parse_args(argv)
    if args.format_only and not args.out:
        parser.error("--format-only needs --out")

    from lidarcl.engine import build_pretrain_config
    from lidarcl.errors import DataError
    from lidarcl.evaluation.det_inference import BEV_MODELS, run_bev_test
    from lidarcl.evaluation.seg_inference import run_segmentation_test
    from lidarcl.evaluation.temporal_voting import VOTING_DEFAULTS

    try:
        cfg = build_pretrain_config(args.config, None, False, args.cfg_options,
                                    allow_new_keys=args.allow_new_keys)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    if cfg.model.type in BEV_MODELS:
        if args.tta or args.temporal_voting:
            parser.error("--tta and --temporal-voting apply to segmentation configs")
        try:
            result = run_bev_test(cfg, args.checkpoint, format_only=args.format_only,
                                  out_dir=args.out, device=args.device)
        except (DataError, ValueError) as exc:
            parser.exit(1, f"{parser.prog}: error: {exc}\n")
        print(f"{result['samples']} samples, {result['seconds_per_sample']:.2f} s per sample")
        if args.format_only:
            print("wrote " + ", ".join(result["written"][:3])
                  + (f" and {len(result['written']) - 3} more" if len(result["written"]) > 3
                     else ""))
            return 0
        metrics = result["metrics"]
        print(", ".join(f"{k} {v:.2f}" for k, v in metrics.items()
                        if k in ("mAP", "NDS", "mIoU@max", "mAP_3d_moderate_R40")
                        or k.startswith("AP.") or k.endswith("@max")))
        if args.metrics_out:
            from lidarcl.utils.fileio import atomic_write

            with atomic_write(args.metrics_out, "w") as f:
                json.dump({k: v for k, v in result.items() if k != "written"}, f, indent=1)
        return 0
    voting = (dict(VOTING_DEFAULTS, window=args.voting_window, radius=args.voting_radius,
                   weight=args.voting_weight) if args.temporal_voting else None)
    try:
        result = run_segmentation_test(cfg, args.checkpoint, tta=args.tta, voting=voting,
                                       format_only=args.format_only, out_dir=args.out,
                                       eval_set=args.eval_set, device=args.device)
    except (DataError, ValueError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    extras = (" with TTA" if args.tta else "") + (" with temporal voting" if voting else "")
    print(f"{result['scans']} scans{extras}, {result['seconds_per_scan']:.2f} s per scan")
    if args.format_only:
        print(f"wrote {result['written']} prediction files under {args.out}")
        return 0
    metrics = result["metrics"]
    print(f"mIoU {metrics['mIoU']:.2f}")
    print(", ".join(f"{k[4:]} {v:.1f}" for k, v in metrics.items() if k.startswith("IoU.")))
    if args.metrics_out:
        from lidarcl.utils.fileio import atomic_write

        with atomic_write(args.metrics_out, "w") as f:
            json.dump({k: v for k, v in result.items() if k != "written"}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
