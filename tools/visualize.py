#!/usr/bin/env python
"""Draw samples of an indexed dataset: a BEV of the points (coloured by height, intensity or
label) with the boxes, and every camera image with the projected points coloured by depth.

    python tools/visualize.py --dataset nuscenes --info data/synthetic/nuscenes_infos_train.json \
        --data-root data/synthetic --index 0 --color label --out outputs/vis
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lidarcl.errors import DataError
from lidarcl.visualization import save_dataset_views


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["nuscenes", "kitti"], required=True)
    parser.add_argument("--info", required=True, help="info index written by create_data.py")
    parser.add_argument("--data-root", required=True, help="root the index's paths refer to")
    parser.add_argument("--index", type=int, nargs="+", default=[0], help="sample indices")
    parser.add_argument("--color", choices=["height", "intensity", "label"], default="height")
    parser.add_argument("--bev-range", type=float, nargs=4, default=None,
                        metavar=("X_MIN", "Y_MIN", "X_MAX", "Y_MAX"))
    parser.add_argument("--resolution", type=float, default=0.1, help="BEV metres per pixel")
    parser.add_argument("--out", required=True, help="output folder for the PNGs")
    args = parser.parse_args(argv)
    try:
        written = save_dataset_views(args.dataset, args.info, args.data_root, args.index,
                                     args.out, color_by=args.color, bev_range=args.bev_range,
                                     resolution=args.resolution)
    except (DataError, OSError) as exc:  # names the file and the problem
        print(f"visualize: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # an impossible argument (index, resolution, range)
        print(f"visualize: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
