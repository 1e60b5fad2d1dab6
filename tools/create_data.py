"""Write lidarcl info indexes (JSON) from a raw dataset.

    python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval \
        --out data/nuscenes [--max-sweeps 10] [--prefix nuscenes]
    python tools/create_data.py kitti --root data/kitti --out data/kitti
    python tools/create_data.py semantickitti --root data/semantickitti/dataset \
        --out data/semantickitti [--train-sequences 0,1,...] [--val-sequences 8]
    python tools/create_data.py gt-database --index data/nuscenes/nuscenes_infos_train.json \
        [--root data/nuscenes] [--out DIR] [--sweeps 9|none] [--min-points 1]

Both also compute the SLIC superpixels of every camera image (SLidR's setting: 150
segments, compactness 6, sigma 3) into ``<out>/superpixels/slic150/<token>_<CHANNEL>.png``
and record them in the indexes; maps already there are kept, so a rerun only converts.
``--superpixels none`` skips them, ``--superpixel-segments N`` changes the count,
``--workers N`` sets the processes (about 1.5-2 s per 1600x900 image per process).

SemanticKITTI has no cameras in its layout: no superpixels.

``--gt-database`` (nuscenes, kitti) then builds the ground-truth database of the train
split for GT sampling (``ObjectSample``): ``<out>/<prefix>_dbinfos_train.json`` and
``<out>/gt_database/<token>_<class>_<k>.bin``, the points of every annotated box relative
to its centre. nuScenes scans are merged with ``--gt-database-sweeps`` sweeps (default 9,
the keyframe and 9 sweeps of OpenPCDet's CenterPoint database and of
``configs/_base_/datasets/nuscenes.py``; ``none``: keyframe only), KITTI scans alone.
``gt-database`` builds it for an index written earlier. A rerun replaces the database.

The conversion logic lives in ``lidarcl.datasets.nuscenes_converter``,
``lidarcl.datasets.kitti_converter``, ``lidarcl.datasets.semantickitti_converter``,
``lidarcl.datasets.superpixels`` and ``lidarcl.datasets.gt_database_converter``; this file
only parses arguments.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _superpixels(args, written: list[str]) -> list[str]:
    if args.superpixels == "none":
        return written
    from lidarcl.datasets.superpixels import create_superpixels

    for path in written:
        create_superpixels(path, args.root, n_segments=args.superpixel_segments,
                           method=args.superpixels, workers=args.workers,
                           overwrite=args.overwrite_superpixels)
    return written


def _gt_database_after(args, written: list[str], num_sweeps) -> list[str]:
    """With ``--gt-database``: the database of the train index just written."""
    if not args.gt_database:
        return written
    from lidarcl.datasets.gt_database_converter import create_gt_database
    from lidarcl.errors import DataError

    train = [p for p in written if os.path.basename(p) == f"{args.prefix}_infos_train.json"]
    if not train:
        raise DataError(args.out, "no train split was written; the ground-truth database "
                                  "is built from the train split")
    return written + [create_gt_database(train[0], args.root, args.out, prefix=args.prefix,
                                         num_sweeps=num_sweeps,
                                         min_points=args.gt_database_min_points)]


def _nuscenes(args) -> list[str]:
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    written = _superpixels(args, create_nuscenes_infos(args.root, args.version, args.out,
                                                       max_sweeps=args.max_sweeps,
                                                       prefix=args.prefix))
    return _gt_database_after(args, written, args.gt_database_sweeps)


def _kitti(args) -> list[str]:
    from lidarcl.datasets.kitti_converter import create_kitti_infos

    written = _superpixels(args, create_kitti_infos(args.root, args.out, prefix=args.prefix))
    return _gt_database_after(args, written, None)


def _gt_database(args) -> list[str]:
    from lidarcl.datasets.gt_database_converter import create_gt_database

    folder = os.path.dirname(os.path.abspath(args.index))
    return [create_gt_database(args.index, args.root or folder, args.out or folder,
                               prefix=args.prefix, num_sweeps=args.sweeps,
                               use_dims=args.use_dims, min_points=args.min_points,
                               split_file=args.split_file)]


def _semantickitti(args) -> list[str]:
    from lidarcl.datasets.semantickitti_converter import (SEMANTICKITTI_SPLITS,
                                                          create_semantickitti_infos,
                                                          parse_sequences)

    splits = {split: parse_sequences(getattr(args, f"{split}_sequences"))
              if getattr(args, f"{split}_sequences") is not None else default
              for split, default in SEMANTICKITTI_SPLITS.items()}
    return create_semantickitti_infos(args.root, args.out, splits=splits, prefix=args.prefix)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _sweeps(text: str):
    """``none`` -> None (keyframe only), ``default`` -> the dataset's default, else an
    integer >= 0."""
    if text.lower() in ("none", "default"):
        return None if text.lower() == "none" else "default"
    return _non_negative_int(text)


def _dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated columns, got {text!r}")
    if dims[:3] != (0, 1, 2):
        raise argparse.ArgumentTypeError(f"must start with the x, y, z columns 0,1,2, got "
                                         f"{text!r}")
    return dims


def _add_gt_database_args(parser: argparse.ArgumentParser, sweeps: bool) -> None:
    parser.add_argument("--gt-database", action="store_true",
                        help="also build the ground-truth database of the train split "
                             "(<out>/<prefix>_dbinfos_train.json, <out>/gt_database/) for "
                             "GT sampling (ObjectSample)")
    if sweeps:
        parser.add_argument("--gt-database-sweeps", type=_sweeps, default=9,
                            help="sweeps merged into the database's scans as LoadSweeps "
                                 "merges them (default 9: the keyframe and 9 sweeps, as "
                                 "OpenPCDet's CenterPoint database; none: keyframe only)")
    parser.add_argument("--gt-database-min-points", type=_non_negative_int, default=1,
                        help="boxes with fewer points get no database record (default 1)")


def _add_superpixel_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--superpixels", choices=("none", "slic"), default="slic",
                        help="superpixels of every camera image, cached in "
                             "<out>/superpixels/ (default slic; none skips them)")
    parser.add_argument("--superpixel-segments", type=_positive_int, default=150,
                        help="SLIC segments per image (default 150, as SLidR)")
    parser.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                        help="processes computing superpixels (default: all CPUs)")
    parser.add_argument("--overwrite-superpixels", action="store_true",
                        help="recompute superpixel maps that are already cached")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)

    nus = sub.add_parser("nuscenes", help="nuScenes tables (or the generator's copy)")
    nus.add_argument("--root", required=True, help="dataroot holding VERSION/*.json")
    nus.add_argument("--version", required=True, help="table version, e.g. v1.0-trainval")
    nus.add_argument("--out", required=True, help="output folder of the info indexes")
    nus.add_argument("--max-sweeps", type=_non_negative_int, default=10,
                     help="previous LiDAR sweeps per keyframe (default 10)")
    nus.add_argument("--prefix", default="nuscenes", help="output file name prefix")
    _add_superpixel_args(nus)
    _add_gt_database_args(nus, sweeps=True)
    nus.set_defaults(func=_nuscenes)

    kit = sub.add_parser("kitti", help="KITTI object detection (raw layout)")
    kit.add_argument("--root", required=True, help="folder holding training/, ImageSets/")
    kit.add_argument("--out", required=True, help="output folder of the info indexes")
    kit.add_argument("--prefix", default="kitti", help="output file name prefix")
    _add_superpixel_args(kit)
    _add_gt_database_args(kit, sweeps=False)
    kit.set_defaults(func=_kitti)

    skt = sub.add_parser("semantickitti", help="SemanticKITTI (dataset/sequences/NN/...)")
    skt.add_argument("--root", required=True, help="folder holding sequences/")
    skt.add_argument("--out", required=True, help="output folder of the info indexes")
    skt.add_argument("--prefix", default="semantickitti", help="output file name prefix")
    for split, default in (("train", "00-07, 09, 10"), ("val", "08"), ("test", "11-21")):
        skt.add_argument(f"--{split}-sequences", default=None,
                         help=f"comma-separated sequences of the {split} split (default: "
                              f"the official {default}; an empty string skips the split)")
    skt.set_defaults(func=_semantickitti)

    gdb = sub.add_parser("gt-database", help="ground-truth database of an info index "
                                             "written earlier (GT sampling, ObjectSample)")
    gdb.add_argument("--index", required=True,
                     help="info index, e.g. data/nuscenes/nuscenes_infos_train.json")
    gdb.add_argument("--root", default=None, help="data root the index's paths are "
                                                  "relative to (default: its folder)")
    gdb.add_argument("--out", default=None, help="output folder (default: the index's)")
    gdb.add_argument("--prefix", default=None, help="output file name prefix (default: the "
                                                    "index's, <prefix>_infos_<split>.json)")
    gdb.add_argument("--sweeps", type=_sweeps, default="default",
                     help="sweeps merged into each scan as LoadSweeps merges them (adds the "
                          "time column); none: keyframe only (default: 9 for nuScenes, "
                          "none otherwise)")
    gdb.add_argument("--use-dims", type=_dims, default=(0, 1, 2, 3),
                     help="columns of the point files kept, as LoadPoints(use_dims) "
                          "(default 0,1,2,3)")
    gdb.add_argument("--min-points", type=_non_negative_int, default=1,
                     help="boxes with fewer points get no record (default 1)")
    gdb.add_argument("--split-file", default=None,
                     help="a label-fraction split of tools/make_splits.py: only its samples' "
                          "objects (written as <prefix>_<split name>_dbinfos_train.json and "
                          "gt_database_<split name>/)")
    gdb.set_defaults(func=_gt_database)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        # checked before converting: the conversion can take an hour before writing
        print(f"create_data: --out {args.out}: exists and is not a folder", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from lidarcl.errors import DataError

    try:
        written = args.func(args)
    except (DataError, OSError) as exc:  # names the file and the problem; no traceback needed
        print(f"create_data: {exc}", file=sys.stderr)
        return 1
    for path in written or []:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
