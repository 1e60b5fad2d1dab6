#!/usr/bin/env python
"""Write the label-fraction splits of an info index (lidarcl.datasets.splits), once, beside it.

    python tools/make_splits.py data/nuscenes/nuscenes_infos_train.json            # 1 5 10 25 100 %, seed 0, scenes
    python tools/make_splits.py data/semantickitti/semantickitti_infos_train.json --level frame
    python tools/make_splits.py INDEX --percents 1 10 --seed 1

Each split is <index dir>/splits/<index stem>_<P>pct_seed<S>.json; a fine-tuning config names
it (train_dataloader.dataset.split_file). Nuscenes indexes are split by scene (SLidR's and
SuperFlow's protocol), indexes without scene tokens by frame. A different split already in
place is an error unless --overwrite.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", help="info index of the training split (tools/create_data.py)")
    p.add_argument("--percents", type=float, nargs="+", default=None,
                   help="label fractions in percent (default: 1 5 10 25 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", choices=("scene", "frame"), default=None,
                   help="unit of selection (default: scene when every sample has a scene "
                        "token, else frame)")
    p.add_argument("--overwrite", action="store_true", help="replace different splits")
    args = p.parse_args(argv)

    from lidarcl.datasets.splits import LABEL_FRACTIONS, make_label_splits, read_split
    from lidarcl.errors import DataError

    try:
        written = make_label_splits(args.index, args.percents or LABEL_FRACTIONS,
                                    seed=args.seed, level=args.level,
                                    overwrite=args.overwrite)
    except (DataError, ValueError) as err:
        print(f"make_splits: error: {err}", file=sys.stderr)
        return 2
    for percent, path in written.items():
        meta = read_split(path)["metadata"]
        print(f"{percent:g}%: {meta['units_selected']}/{meta['units_total']} {meta['level']}s, "
              f"{meta['samples_selected']}/{meta['samples_total']} samples -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
