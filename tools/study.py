#!/usr/bin/env python
"""The pretraining study on a generated dataset: every method x MinkUNet34, then the best
method x each other backbone, each against random initialisation by the linear probe, with
one budget (lidarcl/evaluation/study.py). Prints the table and writes <out>/study.json.
Each pretraining shows a progress line (iteration, loss, ETA) and keeps mmengine's full log
in its work dir (<out>/<method>_<backbone>/<timestamp>/); --verbose streams that log too.

    python tools/study.py --out outputs/study [--scenes 10 --val-scenes 2 --keyframes 4
        --iters 100 --voxel-size 0.2 --seed 0] [--verbose]
"""
import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/study")
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--val-scenes", type=int, default=2)
    parser.add_argument("--keyframes", type=int, default=4)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--voxel-size", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--methods", nargs="*", default=None,
                        help="stage 1 method configs (default: the four methods; none: "
                             "stage 2 only, with --stage2-method)")
    parser.add_argument("--backbones", nargs="*", default=["voxelbackbone8x", "ptv3"],
                        help="stage 2 backbones (none: stage 1 only)")
    parser.add_argument("--stage2-method", default=None,
                        help="method pretrained with the stage 2 backbones (default: the "
                             "stage 1 method with the largest gain)")
    parser.add_argument("--verbose", action="store_true",
                        help="mmengine's full log stream on the terminal for every run")
    args = parser.parse_args(argv)
    if args.methods == [] and args.backbones and args.stage2_method is None:
        parser.error("stage 2 without stage 1 (--methods with no names) needs "
                     "--stage2-method")
    from lidarcl.engine.progress import set_terminal_output
    from lidarcl.errors import DataError

    previous = set_terminal_output("verbose" if args.verbose else "compact")  # before spconv
    try:
        return _study(args)
    except (DataError, FileExistsError, ValueError) as exc:  # one line: file or argument
        print(f"study: error: {exc}", file=sys.stderr)
        return 1
    finally:  # for callers in-process
        set_terminal_output(previous)


def _study(args) -> int:
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.evaluation.study import STUDY_METHODS, format_table, run_study
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    out = os.path.abspath(args.out)
    data_root = os.path.join(out, "data")
    start = time.perf_counter()
    generate_dataset(data_root, scenes=args.scenes, keyframes=args.keyframes, seed=args.seed,
                     image_size=(320, 180), sweeps_per_keyframe=0, val_scenes=args.val_scenes,
                     overwrite=True)
    create_nuscenes_infos(data_root, "v1.0-synthetic", data_root)
    print(f"generated {args.scenes} scenes ({args.val_scenes} val) x {args.keyframes} "
          f"keyframes in {time.perf_counter() - start:.0f} s -> {data_root}", flush=True)
    rows = run_study(REPO, out, data_root, args.iters, args.voxel_size, args.seed,
                     methods=STUDY_METHODS if args.methods is None else args.methods,
                     backbones=args.backbones, stage2_method=args.stage2_method,
                     probe_epochs=args.probe_epochs,
                     log=lambda line: print(line, flush=True))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
