#!/usr/bin/env python
"""Write corrupted copies of a nuScenes, KITTI or SemanticKITTI dataset
(lidarcl.robustness.writer), one dataroot per corruption and severity, in the dataset's own
layout and with its info index (nuScenes: with sweeps, lidarseg labels and tables).

    python tools/create_corrupted.py --dataset nuscenes --root data/nuscenes --version v1.0-trainval \\
        --corruptions all --severities 1 2 3 --out data/nuscenes-c
    python tools/create_corrupted.py --dataset nuscenes --root data/synthetic_seg --version v1.0-synthetic \\
        --corruptions fog snow --out data/synthetic_seg-c                  # every severity of each

OUT/<corruption>/<severity>/ is a dataroot (OUT/fog/2/nuscenes_infos_val.json is its index):
point configs read it by setting data_root. --dataset kitti writes the KITTI object layout
(velodyne corrupted with rings from the elevation, ImageSets of the index's frames, links to
images, labels and calibrations; no sweeps). --dataset semantickitti writes
sequences/NN/velodyne and labels of every scan of the index's sequences (Robo3D's eight
corruptions; SemanticKITTI has no boxes, cameras or sweeps):

    python tools/create_corrupted.py --dataset semantickitti --root data/semantickitti/dataset \
        --index data/semantickitti/semantickitti_infos_val.json --out data/semantickitti-c

The samples are those of --index (default: the
root's nuscenes_infos_val.json, Robo3D's choice) and every sweep of their scenes. Robo3D's
eight corruptions have severities 1-3 (light, moderate, heavy), Dong et al.'s 1-5; a severity
a corruption lacks is left out. Progress and ETA go to stderr. Run the same command again
to resume an interrupted run: finished files and sets are kept.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("nuscenes", "kitti", "semantickitti"),
                   default="nuscenes",
                   help="layout of the source: nuScenes (and the generator's copy of it), "
                        "the KITTI object layout or SemanticKITTI")
    p.add_argument("--root", required=True, help="dataroot (nuScenes: holding VERSION/*.json; "
                                                 "KITTI: holding training/, ImageSets/; "
                                                 "SemanticKITTI: holding sequences/)")
    p.add_argument("--version", default=None, help="nuScenes table version, e.g. "
                                                   "v1.0-trainval")
    p.add_argument("--index", default=None,
                   help="info index of the samples to corrupt (default: "
                        "ROOT/<prefix>_infos_val.json)")
    p.add_argument("--prefix", default=None, help="info index file name prefix (default: the "
                                                  "dataset's name)")
    p.add_argument("--corruptions", nargs="+", default=["all"],
                   help="corruption names, or all (default: every corruption the layout "
                        "takes)")
    p.add_argument("--severities", type=int, nargs="+", default=None,
                   help="severities (default: every severity of each corruption)")
    p.add_argument("--seed", type=int, default=0, help="the sets' seed (default 0)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--link-sweeps", action="store_true",
                   help="link every sweep unchanged instead of corrupting it (faster; for "
                        "models that read keyframes only)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset == "nuscenes" and not args.version:
        parser.error("--version is needed for nuScenes")
    args.prefix = args.prefix or args.dataset

    from lidarcl.errors import DataError
    from lidarcl.robustness.writer import create_corrupted
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    index = args.index or os.path.join(args.root, f"{args.prefix}_infos_val.json")
    try:
        report = create_corrupted(args.root, args.version, index, args.out,
                                  corruptions=args.corruptions, severities=args.severities,
                                  seed=args.seed, prefix=args.prefix,
                                  corrupt_sweeps=not args.link_sweeps, dataset=args.dataset)
    except (DataError, ValueError) as err:
        print(f"create_corrupted: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("create_corrupted: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130
    skipped = sum(r["state"] == "complete" for r in report)
    print(f"{len(report)} sets under {args.out} ({skipped} already complete)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
