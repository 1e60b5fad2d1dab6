#!/usr/bin/env python
"""lidarcl benchmarks: prints tables of figures and ratios against a baseline measured in
the same run.

    python tools/benchmark.py ops [--threads 1 2] [--device cpu|cuda] [--sweeps 10]
        [--workload auto|real|synthetic] [--size full|tiny] [--json PATH]

``ops``: the point-pixel kernels against their pure-PyTorch references and the
nuscenes-devkit numpy path, and the pooling kernels deterministic vs atomic (see
``benchmarks/ops.py``; ``--workload synthetic`` imports only numpy, torch and lidarcl.ops).
``backbones``: forward and forward+backward time and peak memory of each backbone
(``benchmarks/backbones.py``)    python tools/benchmark.py backbones [--threads 1 2]
``pretrain``: seconds per pretraining iteration, its data-loading share and peak memory per
method x backbone on the real nuScenes frame (``benchmarks/pretrain.py``)
    python tools/benchmark.py pretrain [--threads 2] [--methods ...] [--backbones ...]
        [--deterministic-cost]
``finetune``: segmentation fine-tuning (seconds per iteration, data share, peak memory) and
test time per scan (plain, with TTA, temporal voting, ratios to plain) per backbone on the
real nuScenes frame with generated lidarseg labels (``benchmarks/finetune.py``)
    python tools/benchmark.py finetune [--threads 2] [--iters 3] [--batch 2]
        [--backbones minkunet34 ptv3] [--json PATH]
``detection``: training (seconds per iteration, model / data, peak memory) and test time per
sample of CenterPoint and BEV map segmentation at 0.075 m on the real nuScenes frame, with
the keyframe alone and with a 10-sweep stand-in (``benchmarks/detection.py``)
    python tools/benchmark.py detection [--threads 2] [--iters 3] [--batch 2]
        [--models centerpoint bevmap] [--loads keyframe sweeps10] [--json PATH]
``corruptions``: seconds per scan of every corruption and severity on the real nuScenes frame
against loading it, fog and snow against their 0.5 s target (``benchmarks/corruptions.py``)
    python tools/benchmark.py corruptions [--threads 1 2] [--repeats 5] [--json PATH]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ops = sub.add_parser("ops", help="point-pixel correspondence kernels")
    ops.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ops.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ops.add_argument("--sweeps", type=int, default=10)
    ops.add_argument("--boxes-only", action="store_true",
                     help="only the rotated-box ops table (real workload)")
    ops.add_argument("--peak-gbps", type=float, default=None,
                     help="GPU memory bandwidth peak for the %% of peak column")
    ops.add_argument("--data-root", default=str(ROOT.parent / "shared/data/real/nuscenes"))
    ops.add_argument("--workload", choices=("auto", "real", "synthetic"), default="auto",
                     help="real: the nuScenes keyframe of --data-root (needs nuscenes-devkit "
                          "and scikit-image); synthetic: a generated scan of the same size "
                          "(numpy + torch only, e.g. on a GPU machine); auto: real when "
                          "the frame is there")
    ops.add_argument("--size", choices=("full", "tiny"), default="full",
                     help="synthetic workload size (tiny: a smoke run in seconds)")
    ops.add_argument("--json", default=None, help="also write the figures to this file")
    bb = sub.add_parser("backbones", help="backbones: forward / backward time, peak memory")
    bb.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    bb.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    bb.add_argument("--sweeps", type=int, default=10)
    bb.add_argument("--backbones", nargs="+", default=None)
    bb.add_argument("--data-root", default=str(ROOT.parent / "shared/data/real/nuscenes"))
    pt = sub.add_parser("pretrain", help="pretraining iteration: data vs model, memory")
    pt.add_argument("--threads", type=int, default=2)
    pt.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    pt.add_argument("--iters", type=int, default=3)
    pt.add_argument("--methods", nargs="+", default=None)
    pt.add_argument("--backbones", nargs="+", default=None)
    pt.add_argument("--data-root", default=str(ROOT.parent / "shared/data/real/nuscenes"))
    pt.add_argument("--deterministic-cost", action="store_true",
                    help="also time each model step with torch's deterministic algorithms "
                         "(the --deterministic mode) on the same batch, and the ratio")
    ft = sub.add_parser("finetune", help="segmentation fine-tuning iteration and test time "
                                         "per scan (plain, TTA, temporal voting)")
    ft.add_argument("--threads", type=int, default=2)
    ft.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ft.add_argument("--iters", type=int, default=3)
    ft.add_argument("--batch", type=int, default=2,
                    help="cap on the config's fine-tuning batch size (16): the frame "
                         "repeated, each copy with its own augmentation")
    ft.add_argument("--backbones", nargs="+", default=["minkunet34", "ptv3"])
    ft.add_argument("--data-root", default=str(ROOT.parent / "shared/data/real/nuscenes"))
    ft.add_argument("--json", default=None, help="also write the figures to this file")
    det = sub.add_parser("detection", help="BEV models (CenterPoint, map segmentation): "
                                           "training iteration and test time per sample")
    det.add_argument("--threads", type=int, default=2)
    det.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    det.add_argument("--iters", type=int, default=3)
    det.add_argument("--batch", type=int, default=2,
                     help="cap on the configs' batch size (4): the frame repeated, each "
                          "copy with its own augmentation")
    det.add_argument("--models", nargs="+", default=["centerpoint", "bevmap"])
    det.add_argument("--loads", nargs="+", default=["keyframe", "sweeps10"],
                     help="keyframe: the frame alone; sweeps10: the keyframe and 9 displaced "
                          "copies, a stand-in for the cost of 10 sweeps")
    det.add_argument("--data-root", default=str(ROOT.parent / "shared/data/real/nuscenes"))
    det.add_argument("--json", default=None, help="also write the figures to this file")
    cor = sub.add_parser("corruptions", help="seconds per scan of every corruption and "
                                             "severity on the real frame")
    cor.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    cor.add_argument("--repeats", type=int, default=5)
    cor.add_argument("--data-root", default=str(ROOT.parent / "shared/data/real/nuscenes"))
    cor.add_argument("--json", default=None, help="also write the figures to this file")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "ops":
        from benchmarks import ops
        return ops.main(args)
    if args.command == "backbones":
        from benchmarks import backbones
        return backbones.main(args)
    if args.command == "pretrain":
        from benchmarks import pretrain
        return pretrain.main(args)
    if args.command == "finetune":
        from benchmarks import finetune
        return finetune.main(args)
    if args.command == "detection":
        from benchmarks import detection
        return detection.main(args)
    if args.command == "corruptions":
        from benchmarks import corruptions
        return corruptions.main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
