#!/usr/bin/env python
"""How much of a probe mIoU is the choice of validation scenes: the spread of the study's
linear probe over validation splits of 2, 4, 8, ... scenes drawn from a large pool, for
pretrained checkpoints and random initialisation (lidarcl/evaluation/study.py,
``subset_spread``). Used to size the study's validation split (README, Study).

    python tools/val_spread.py --out outputs/val_spread --checkpoint \\
        prc=outputs/study/seed0/prc_minkunet34/backbone.pth ... [--train-scenes 8 --pool 24
        --keyframes 4 --seed 0 --voxel-size 0.2 --probe-epochs 30 --sizes 2 4 8 12 16]

The dataset is the study's generator at ``--seed`` with ``--train-scenes`` training scenes
followed by ``--pool`` validation scenes: the generator draws each scene from (seed, scene
index), so the training scenes are those of a study at the same seed and keyframes, and the
checkpoints of that study were pretrained on them. Every backbone is probed once (the
study's probe: MinkUNet34 at --voxel-size, 30 epochs, seed), each validation scene is
scored on its own, and subsets of scenes are drawn without replacement (all of them when
there are at most --draws; the same subsets for every backbone). Prints per subset size the
std of each backbone's mIoU and of the difference between each pair, and writes
<out>/val_spread.json.
"""
import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/val_spread")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a MinkUNet34 backbone.pth of the study (repeat)")
    parser.add_argument("--train-scenes", type=int, default=8)
    parser.add_argument("--pool", type=int, default=24, help="validation scenes generated")
    parser.add_argument("--keyframes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--voxel-size", type=float, default=0.2)
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8, 12, 16])
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args(argv)
    checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or name == "random":
            parser.error(f"--checkpoint takes NAME=PATH with NAME other than 'random', "
                         f"got {item!r}")
        if not os.path.isfile(path):
            parser.error(f"--checkpoint {name}: no file {path}")
        checkpoints[name] = os.path.abspath(path)
    if args.draws < 2:
        parser.error(f"--draws must be at least 2 (a spread needs two subsets), got "
                     f"{args.draws}")
    if any(not 1 <= k < args.pool for k in args.sizes):
        parser.error(f"--sizes must lie in [1, {args.pool - 1}] (below --pool)")
    return _run(args, checkpoints)


def _run(args, checkpoints: dict) -> int:
    import numpy as np

    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.engine import build_pretrain_config
    from lidarcl.evaluation.linear_probe import build_probe_loader, linear_probe_study
    from lidarcl.evaluation.segmentation import mean_iou
    from lidarcl.evaluation.study import STUDY_BACKBONES, subset_spread
    from lidarcl.utils.fileio import atomic_write_bytes
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    out = os.path.abspath(args.out)
    data_root = os.path.join(out, "data")
    start = time.perf_counter()
    generate_dataset(data_root, scenes=args.train_scenes + args.pool, keyframes=args.keyframes,
                     seed=args.seed, image_size=(320, 180), sweeps_per_keyframe=0,
                     val_scenes=args.pool, overwrite=True)
    create_nuscenes_infos(data_root, "v1.0-synthetic", data_root)
    print(f"generated {args.train_scenes} + {args.pool} scenes x {args.keyframes} keyframes "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    cfg = build_pretrain_config(
        os.path.join(REPO, "configs", "pretrain", "pointcontrast_minkunet34_synth.py"),
        os.path.join(out, "unused_work_dir"), False,
        {"train_dataloader.dataset.data_root": data_root + "/"})
    dataset_cfg = cfg.train_dataloader.dataset.to_dict()
    train_loader, lut, names = build_probe_loader(dataset_cfg, "nuscenes_infos_train.json",
                                                  data_root)
    val_loader, _, _ = build_probe_loader(dataset_cfg, "nuscenes_infos_val.json", data_root)
    with open(os.path.join(data_root, "nuscenes_infos_val.json")) as handle:
        scene_of_scan = [info["scene_token"] for info in json.load(handle)["infos"]]
    scenes = list(dict.fromkeys(scene_of_scan))
    backbone_cfg = STUDY_BACKBONES(args.voxel_size)["minkunet34"]
    per_scene, full = {}, {}
    for name in ["random"] + list(checkpoints):  # the study's probe, one backbone each
        begin = time.perf_counter()
        per_scan: list = []
        linear_probe_study(backbone_cfg, checkpoints.get(name), train_loader, val_loader, lut,
                           len(names), seed=args.seed, include_random=name == "random",
                           epochs=args.probe_epochs, val_per_batch=per_scan)
        if len(per_scan) != len(scene_of_scan):
            raise RuntimeError(f"{len(per_scan)} validation scans scored, "
                               f"{len(scene_of_scan)} in the index")
        stack = np.stack([sum(cm for cm, s in zip(per_scan, scene_of_scan) if s == scene)
                          for scene in scenes])
        per_scene[name] = stack
        full[name] = mean_iou(stack.sum(0))
        print(f"{name}: mIoU {100 * full[name]:.2f} on all {len(scenes)} validation scenes "
              f"({time.perf_counter() - begin:.0f} s)", flush=True)
    spread = subset_spread(per_scene, args.sizes, draws=args.draws, seed=args.seed)
    pairs = list(spread[0]["pair_std"])
    print(f"\nstd of the probe mIoU over validation splits of k scenes drawn from "
          f"{len(scenes)}, for scenes from an unbounded pool (x sqrt(S / (S - k))), in mIoU "
          "points; subsets: all of them when there are at most --draws")
    print("| scenes | subsets | " + " | ".join(per_scene) + " | " + " | ".join(pairs) + " |")
    print("|---|---|" + "---|" * (len(per_scene) + len(pairs)))
    for entry in spread:
        print(f"| {entry['scenes']} | {entry['subsets']}"
              f"{' (all)' if entry['exhaustive'] else ''} | "
              + " | ".join(f"{100 * entry['std'][n]:.2f}" for n in per_scene) + " | "
              + " | ".join(f"{100 * entry['pair_std'][p]:.2f}" for p in pairs) + " |")
    atomic_write_bytes(os.path.join(out, "val_spread.json"), json.dumps(
        {"settings": vars(args), "checkpoints": checkpoints, "scenes": len(scenes),
         "full_pool_miou": full, "spread": spread,
         "per_scene_confusion": {n: m.tolist() for n, m in per_scene.items()}}).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
