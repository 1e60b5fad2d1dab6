#!/usr/bin/env python
"""Linear probe of a pretrained backbone: the frozen backbone with a linear per-point head
trained on semantic labels, mIoU on the validation split, and the same with a randomly
initialised backbone as the baseline, in one run (lidarcl/evaluation/linear_probe.py).

    python tools/linear_probe.py configs/pretrain/pointcontrast_minkunet34_synth.py \
        work_dirs/pointcontrast_minkunet34_synth/backbone.pth [--data-root DIR] \
        [--protocol cached|slidr] [--points-per-scan 20000] [--epochs N] [--lr LR] \
        [--batch-size N] [--seed 0] [--out probe.json]

``--protocol cached`` (default): features of up to ``--points-per-scan`` points per training
scan computed once, head trained with AdamW (30 epochs, lr 1e-2). ``--protocol slidr``:
SLidR's linear probing (SGD lr 0.05, momentum 0.9, cosine schedule, 100 epochs, batches of
16 augmented scans, features recomputed every batch). ``--epochs``, ``--lr`` and
``--batch-size`` override the protocol's values. Labelled points outside the backbone's
voxel grid count as errors of their class; their number is printed per split.
"""
import argparse
import json
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
    parser.add_argument("--protocol", choices=("cached", "slidr"), default="cached",
                        help="cached: features computed once, AdamW (default); slidr: "
                        "SLidR's linear probing (SGD, cosine, augmented batches of scans)")
    parser.add_argument("--points-per-scan", type=_positive_int, default=20000,
                        help="cached protocol: labelled points kept per training scan")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="default: 30 (cached), 100 (slidr)")
    parser.add_argument("--lr", type=float, default=None,
                        help="default: 1e-2 (cached, AdamW), 0.05 (slidr, SGD)")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="default: 4096 points (cached), 16 scans (slidr)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    from mmengine.config import Config

    from lidarcl.errors import DataError
    from lidarcl.evaluation.linear_probe import build_probe_loader, linear_probe_study
    from lidarcl.evaluation.segmentation import iou_text

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
                                     lr=args.lr, batch_size=args.batch_size,
                                     protocol=args.protocol)
    except DataError as exc:  # names the index or data file and the problem
        print(f"linear_probe: {exc}", file=sys.stderr)
        return 1
    first = next(iter(results.values()))
    print(f"protocol {args.protocol}: {first['epochs']} epochs, lr {first['lr']:g}, batch "
          f"{first['batch_size']} {'points' if args.protocol == 'cached' else 'scans'}")
    print("| backbone | mIoU | train points | val points | train outside grid "
          "| val outside grid | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {100 * r['miou']:.2f} | {r['train_points']:,} | {r['val_points']:,} "
              f"| {r['train_outside_points']:,} ({100 * r['train_outside_share']:.2f}%) "
              f"| {r['val_outside_points']:,} ({100 * r['val_outside_share']:.2f}%) "
              f"| {r['seconds']:.0f} |")
    if any(r["val_outside_points"] for r in results.values()):
        print("labelled points outside the backbone's voxel grid have no prediction and count "
              "as errors (false negatives) of their class")
    if "pretrained" in results:
        gain = 100 * (results["pretrained"]["miou"] - results["random"]["miou"])
        print(f"pretrained - random: {gain:+.2f} mIoU")
    for name, r in results.items():
        print(f"{name} IoU: {iou_text(names, r['iou'])}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"config": args.config, "checkpoint": checkpoint, "seed": args.seed,
                       "protocol": args.protocol, "classes": names, "results": results},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
