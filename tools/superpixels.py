#!/usr/bin/env python
"""Superpixel sets beyond SLIC (which tools/create_data.py writes): semantic superpixels from
a frozen image teacher (k-means codebook; SuperFlow's view-consistent ids), or maps made by
another model registered in the same layout (lidarcl/datasets/semantic_superpixels.py).

    # the teacher of a camera-LiDAR config (its model.image_teacher), with its checkpoint
    python tools/superpixels.py semantic configs/pretrain/superflow_minkunet34_synth.py \
        --index data/synthetic/nuscenes_infos_train.json data/synthetic/nuscenes_infos_val.json \
        --root data/synthetic [--checkpoint outputs/image_teacher/encoder.pth] [--clusters 17]
    # maps from another model, already in <index dir>/superpixels/<tag>/<token>_<CAM>.png
    python tools/superpixels.py register --index data/nuscenes/nuscenes_infos_train.json \
        --tag openseed17 --num-superpixels 17

The first index fits the codebook (<index dir>/superpixels/<tag>/codebook.pt); the others in
the same folder reuse it, so every split shares the ids.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    semantic = sub.add_parser("semantic", help="k-means superpixels from a config's teacher")
    semantic.add_argument("config", help="a camera-LiDAR config (its model.image_teacher)")
    semantic.add_argument("--index", nargs="+", required=True)
    semantic.add_argument("--root", required=True, help="data root of the indexes' images")
    semantic.add_argument("--checkpoint", default=None,
                          help="teacher weights (default: the config's)")
    semantic.add_argument("--layout", default=None, help="their layout (default: the config's)")
    semantic.add_argument("--clusters", type=int, default=17)
    semantic.add_argument("--tag", default=None, help="default kmeans<clusters>")
    semantic.add_argument("--label-stride", type=int, default=4)
    semantic.add_argument("--min-area", type=int, default=64)
    semantic.add_argument("--fit-images", type=int, default=200)
    semantic.add_argument("--seed", type=int, default=0)
    semantic.add_argument("--overwrite-superpixels", action="store_true")
    register = sub.add_parser("register", help="record maps made by another model")
    register.add_argument("--index", nargs="+", required=True)
    register.add_argument("--tag", required=True)
    register.add_argument("--num-superpixels", type=int, required=True)
    register.add_argument("--description", default="")
    args = parser.parse_args(argv)

    from lidarcl.datasets.semantic_superpixels import (create_semantic_superpixels,
                                                       register_superpixel_set)
    from lidarcl.errors import DataError

    try:
        if args.command == "register":
            for index in args.index:
                done = register_superpixel_set(index, args.tag, args.num_superpixels,
                                               args.description)
                print(f"{done['index']}: set {done['tag']!r} recorded ({done['maps']} maps)")
            return 0
        from mmengine.config import Config

        from lidarcl.registry import MODELS
        from lidarcl.utils.setup_env import register_all_modules

        register_all_modules()
        cfg = Config.fromfile(args.config)
        teacher_cfg = cfg.model.get("image_teacher")
        if teacher_cfg is None:
            parser.error(f"{args.config}: model.image_teacher is not set")
        teacher_cfg = teacher_cfg.to_dict()
        if args.checkpoint is not None:
            teacher_cfg["checkpoint"] = args.checkpoint
        if args.layout is not None:
            teacher_cfg["layout"] = args.layout
        teacher = MODELS.build(teacher_cfg)
        if teacher.checkpoint is None:
            print("note: the teacher has no checkpoint (random weights)", file=sys.stderr)
        for position, index in enumerate(args.index):
            # the first index refits the codebook when asked; the others reuse it
            done = create_semantic_superpixels(
                index, args.root, teacher, clusters=args.clusters, tag=args.tag,
                label_stride=args.label_stride, min_area=args.min_area,
                fit_images=args.fit_images, seed=args.seed,
                overwrite=args.overwrite_superpixels,
                refit=args.overwrite_superpixels and position == 0)
            print(f"{done['index']}: set {done['tag']!r}, {done['computed']} maps computed, "
                  f"{done['skipped']} cached, codebook "
                  f"{'fitted' if done['fitted'] else 'reused'} ({done['codebook']})")
    except (DataError, ValueError) as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
