#!/usr/bin/env python
"""Generate the procedural nuScenes-layout dataset (thin CLI over lidarcl.datasets.synthetic).

Example:
    python tools/make_synthetic.py --out data/synthetic --scenes 10 --keyframes 40 --seed 0
    python tools/make_synthetic.py --format semantickitti --out data/synthetic_kitti \
        --scenes 10 --keyframes 40 --val-scenes 2

--format semantickitti generates the scenes in the nuScenes layout in a temporary folder and
exports their keyframes as SemanticKITTI sequences (lidarcl.datasets.synthetic.semantickitti_export:
one sequence per scene, train scenes first), then prints the create_data command whose
--train-sequences / --val-sequences match the generated split.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="dataroot to write (tables under OUT/VERSION)")
    p.add_argument("--scenes", type=int, default=2)
    p.add_argument("--keyframes", type=int, default=10, help="annotated samples per scene (2 Hz)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, nargs=2, default=(800, 450), metavar=("W", "H"))
    p.add_argument("--sweeps-per-keyframe", type=int, default=9,
                   help="non-key lidar sweeps between keyframes (9 = nuScenes' 20 Hz)")
    p.add_argument("--version", default="v1.0-synthetic")
    p.add_argument("--val-scenes", type=int, default=None, help="scenes put in the val split")
    p.add_argument("--write-depth", action="store_true", help="also write per-camera depth PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    p.add_argument("--format", choices=("nuscenes", "semantickitti"), default="nuscenes",
                   help="layout written to OUT (default nuscenes)")
    args = p.parse_args(argv)
    if args.format == "semantickitti":
        return _semantickitti(args)
    from lidarcl.datasets.synthetic import generate_dataset
    try:
        s = generate_dataset(args.out, scenes=args.scenes, keyframes=args.keyframes, seed=args.seed,
                             image_size=tuple(args.image_size),
                             sweeps_per_keyframe=args.sweeps_per_keyframe, version=args.version,
                             val_scenes=args.val_scenes, write_depth=args.write_depth,
                             overwrite=args.overwrite)
    except (OSError, ValueError) as err:  # checked before anything is written: no traceback
        print(f"make_synthetic: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {s['version']} to {s['dataroot']}: {s['scenes']} scenes ({s['val_scenes']} in "
          f"val), {s['samples']} samples, {s['lidar_sweeps']} lidar sweeps, "
          f"{s['annotations']} annotations of "
          f"{s['instances']} instances, {s['mean_points_per_keyframe']:.0f} points/keyframe, "
          f"{s['seconds']:.1f} s")
    return 0


def _semantickitti(args) -> int:
    import os
    import tempfile

    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.datasets.synthetic.semantickitti_export import export_semantickitti

    if os.path.exists(os.path.join(args.out, "sequences")) and not args.overwrite:
        print(f"make_synthetic: error: {os.path.join(args.out, 'sequences')} exists; pass "
              "--overwrite", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out, prefix=".nuscenes_layout_") as tmp:
        try:
            generate_dataset(tmp, scenes=args.scenes, keyframes=args.keyframes, seed=args.seed,
                             image_size=tuple(args.image_size),
                             sweeps_per_keyframe=args.sweeps_per_keyframe,
                             version=args.version, val_scenes=args.val_scenes, overwrite=True)
        except (OSError, ValueError) as err:
            print(f"make_synthetic: error: {err}", file=sys.stderr)
            return 2
        summary = export_semantickitti(tmp, args.version, args.out, overwrite=args.overwrite)
    splits = summary["splits"]
    print(f"wrote {len(summary['sequences'])} SemanticKITTI sequences ({summary['scans']} scans) "
          f"to {os.path.join(args.out, 'sequences')}; index them with:")
    print(f"  python tools/create_data.py semantickitti --root {args.out} --out {args.out} "
          f"--train-sequences {','.join(splits.get('train', []))} "
          f"--val-sequences '{','.join(splits.get('val', []))}' --test-sequences ''")
    return 0


if __name__ == "__main__":
    sys.exit(main())
