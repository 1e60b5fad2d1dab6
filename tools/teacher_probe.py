#!/usr/bin/env python
"""Linear probe of frozen image teachers at the point-pixel pairs: the teachers' encoder
features at the pixels of the labelled points a camera sees, a linear head per teacher,
mIoU over the camera-visible validation points (lidarcl/evaluation/teacher_probe.py). It
says how much of the 3D classes a teacher can pass on before any distillation.

    python tools/teacher_probe.py configs/pretrain/slidr_minkunet34_synth.py \
        --teacher trained=outputs/study/seed0/camera/image_teacher/encoder.pth \
        --teacher random=outputs/study/seed0/camera/random_teacher.pth \
        --data-root outputs/study/seed0/camera/data [--layout lidarcl] [--seed 0] \
        [--points-per-scan 20000] [--out teacher_probe.json]

The encoder architecture is the config's ``model.image_teacher.encoder``; every teacher
file must fit it (``--layout``: lidarcl, torchvision, moco_v2 or dinov2). All teachers see
the same points and the same head seed.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _teacher(text: str):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a camera-LiDAR pretraining config (its dataset and "
                        "model.image_teacher.encoder)")
    parser.add_argument("--teacher", type=_teacher, action="append", required=True,
                        help="NAME=PATH of a teacher's weights (repeat to compare)")
    parser.add_argument("--layout", default="lidarcl",
                        help="key layout of the teacher files (default: lidarcl)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--train-ann", default="nuscenes_infos_train.json")
    parser.add_argument("--val-ann", default="nuscenes_infos_val.json")
    parser.add_argument("--points-per-scan", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    from mmengine.config import Config

    from lidarcl.errors import DataError
    from lidarcl.evaluation.segmentation import iou_text
    from lidarcl.evaluation.teacher_probe import build_teacher_probe_loader, run_teacher_probe
    from lidarcl.models.image import ImageTeacher
    from lidarcl.utils.fileio import atomic_write_bytes

    if not os.path.isfile(args.config):
        parser.error(f"config file not found: {args.config}")
    for name, path in args.teacher:
        if not os.path.isfile(path):
            parser.error(f"teacher {name}: file not found: {path}")
    cfg = Config.fromfile(args.config)
    if "image_teacher" not in cfg.model:
        parser.error(f"{args.config} has no model.image_teacher (not a camera-LiDAR config)")
    encoder = cfg.model.image_teacher.encoder.to_dict()
    dataset_cfg = cfg.train_dataloader.dataset.to_dict()
    results = {}
    try:
        train_loader, lut, names = build_teacher_probe_loader(dataset_cfg, args.train_ann,
                                                              args.data_root)
        val_loader, _, _ = build_teacher_probe_loader(dataset_cfg, args.val_ann,
                                                      args.data_root)
        for name, path in args.teacher:
            start = time.perf_counter()
            teacher = ImageTeacher(encoder=encoder, checkpoint=path, layout=args.layout,
                                   head=None).eval()
            results[name] = run_teacher_probe(teacher, train_loader, val_loader, lut,
                                              len(names), points_per_scan=args.points_per_scan,
                                              seed=args.seed)
            results[name].update(checkpoint=path, seconds=time.perf_counter() - start)
    except DataError as exc:  # names the index or data file and the problem
        print(f"teacher_probe: {exc}", file=sys.stderr)
        return 1
    print(f"encoder {encoder}; camera-visible labelled points, head seed {args.seed}")
    print("| teacher | mIoU | train points | val points | seconds |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {100 * r['miou']:.2f} | {r['train_points']:,} | "
              f"{r['val_points']:,} | {r['seconds']:.0f} |")
    for name, r in results.items():
        print(f"{name} IoU: {iou_text(names, r['iou'])}")
    if args.out:  # written whole or not at all
        atomic_write_bytes(args.out, json.dumps(
            {"config": args.config, "encoder": encoder, "seed": args.seed, "classes": names,
             "results": results}, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
