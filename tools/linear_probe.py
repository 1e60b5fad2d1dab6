#!/usr/bin/env python
"""Linear probe of a pretrained backbone: the frozen backbone with a linear per-point head
trained on semantic labels, mIoU on the validation split, and the same with a randomly
initialised backbone as the baseline, in one run (lidarcl/evaluation/linear_probe.py).

    python tools/linear_probe.py configs/pretrain/pointcontrast_minkunet34_synth.py \
        work_dirs/pointcontrast_minkunet34_synth/backbone.pth [--data-root DIR] \
        [--points-per-scan 20000] [--epochs 30] [--seed 0] [--out probe.json]
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint", help="backbone.pth from tools/pretrain.py, or a full "
                        "checkpoint; 'none' runs the random baseline only")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--train-ann", default="nuscenes_infos_train.json")
    parser.add_argument("--val-ann", default="nuscenes_infos_val.json")
    parser.add_argument("--points-per-scan", type=_positive_int, default=20000)
    parser.add_argument("--epochs", type=_positive_int, default=30)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    from mmengine.config import Config

    from lidarcl.errors import DataError
    from lidarcl.evaluation.linear_probe import build_probe_loader, linear_probe_study

    if not os.path.isfile(args.config):
        parser.error(f"config file not found: {args.config}")
    checkpoint = None if args.checkpoint.lower() == "none" else args.checkpoint
    if checkpoint and not os.path.isfile(checkpoint):
        parser.error(f"checkpoint not found: {checkpoint}")
    cfg = Config.fromfile(args.config)
    dataset_cfg = cfg.train_dataloader.dataset.to_dict()
    ranges = [s["point_cloud_range"] for s in dataset_cfg.get("pipeline", [])
              if s.get("type") == "PointsRangeFilter"]
    extra = dict(point_cloud_range=ranges[0]) if ranges else {}
    try:
        train_loader, lut, names = build_probe_loader(dataset_cfg, args.train_ann,
                                                      args.data_root, **extra)
        val_loader, _, _ = build_probe_loader(dataset_cfg, args.val_ann, args.data_root,
                                              **extra)
        results = linear_probe_study(cfg.model.backbone.to_dict(), checkpoint, train_loader,
                                     val_loader, lut, len(names), seed=args.seed,
                                     points_per_scan=args.points_per_scan, epochs=args.epochs,
                                     lr=args.lr)
    except DataError as exc:  # names the index or data file and the problem
        print(f"linear_probe: {exc}", file=sys.stderr)
        return 1
    print("| backbone | mIoU | train points | val points | seconds |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {100 * r['miou']:.2f} | {r['train_points']:,} | {r['val_points']:,} "
              f"| {r['seconds']:.0f} |")
    if "pretrained" in results:
        gain = 100 * (results["pretrained"]["miou"] - results["random"]["miou"])
        print(f"pretrained - random: {gain:+.2f} mIoU")
    for name, r in results.items():
        per_class = ", ".join(f"{n} {100 * v:.1f}" for n, v in zip(names, r["iou"])
                              if not math.isnan(v))
        print(f"{name} IoU: {per_class}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"config": args.config, "checkpoint": checkpoint, "seed": args.seed,
                       "classes": names, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
