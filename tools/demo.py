#!/usr/bin/env python
"""The main job on the embedded default: generate a small driving dataset in nuScenes'
layout, check it loads in nuscenes-devkit, write its info index, run it through the
configured pipeline into batches, print a summary and draw the first sample; then pretrain
a backbone on it (mmengine Runner), run the linear probe against random initialisation and
print the table (scratch vs pretrained).

The terminal shows one line per stage, the pretraining progress (iteration, loss, ETA), the
probe and the table; the dataset summary goes to <out>/summary.txt and mmengine's full log
(environment, config, hooks, per-iteration lines) to <out>/pretrain/<timestamp>/; --verbose
prints all of it on the terminal too.

    python tools/demo.py --out outputs/demo [--scenes 2 --keyframes 4 --seed 0]
        [--pretrain-config CONFIG --pretrain-iters 60 --voxel-size 0.2 | --no-pretrain]
        [--verbose]
"""
import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--keyframes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, default=(800, 450),
                        metavar=("W", "H"))
    parser.add_argument("--config", default=os.path.join(
        REPO, "configs", "_base_", "datasets", "synthetic.py"))
    parser.add_argument("--pretrain-config", default=os.path.join(
        REPO, "configs", "pretrain", "pointcontrast_minkunet34_synth.py"))
    parser.add_argument("--pretrain-iters", type=int, default=60)
    parser.add_argument("--voxel-size", type=float, default=0.2,
                        help="backbone voxel size for the demo's pretraining and probe")
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--no-pretrain", action="store_true")
    parser.add_argument("--verbose", action="store_true",
                        help="the full summary, every picture and mmengine's log stream on "
                        "the terminal")
    args = parser.parse_args(argv)

    from lidarcl.engine.progress import set_terminal_output

    previous = set_terminal_output("verbose" if args.verbose else "compact")  # before spconv
    try:
        return _demo(args)
    finally:  # for callers in-process
        set_terminal_output(previous)


def _demo(args) -> int:
    from mmengine.config import Config
    from mmengine.runner import Runner, set_random_seed
    from nuscenes.nuscenes import NuScenes

    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.summary import format_summary, summarize_batches
    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.utils.setup_env import register_all_modules
    from lidarcl.visualization import save_dataset_views

    register_all_modules()
    set_random_seed(args.seed)  # augmentation draws from the seeded global generators
    data_root = os.path.abspath(os.path.join(args.out, "data"))
    version = "v1.0-synthetic"
    start = time.perf_counter()
    generate_dataset(data_root, scenes=args.scenes, keyframes=args.keyframes, seed=args.seed,
                     image_size=tuple(args.image_size), version=version, overwrite=True)
    print(f"generated {args.scenes} scenes x {args.keyframes} keyframes in "
          f"{time.perf_counter() - start:.1f} s -> {data_root}", flush=True)

    nusc = NuScenes(version=version, dataroot=data_root, verbose=False)
    print(f"nuscenes-devkit: {len(nusc.scene)} scenes, {len(nusc.sample)} samples, "
          f"{len(nusc.sample_data)} sample_data, {len(nusc.sample_annotation)} annotations, "
          f"{len(getattr(nusc, 'lidarseg', []))} lidarseg files", flush=True)
    del nusc

    written = create_nuscenes_infos(data_root, version, data_root)
    print("info index:", ", ".join(os.path.basename(p) for p in written), flush=True)

    cfg = Config.fromfile(args.config)
    loader_cfg = cfg.train_dataloader
    loader_cfg.dataset.data_root = data_root
    loader_cfg.num_workers = 0
    loader_cfg.persistent_workers = False
    loader = Runner.build_dataloader(loader_cfg, seed=args.seed)
    summary = format_summary(summarize_batches(loader, cfg.class_names))
    summary_path = os.path.join(args.out, "summary.txt")
    with open(summary_path, "w") as handle:
        handle.write(summary + "\n")
    if args.verbose:
        print(summary)
    else:  # its first line; the rest (points, boxes, point-pixel pairs) in summary.txt
        print(f"pipeline: {summary.splitlines()[0]}; summary -> {summary_path}", flush=True)

    info = os.path.join(data_root, "nuscenes_infos_train.json")
    vis = os.path.join(args.out, "vis")
    pictures = save_dataset_views("nuscenes", info, data_root, [0], vis, color_by="label")
    if args.verbose:
        print("pictures:", *pictures, sep="\n  ")
    else:
        print(f"pictures: {len(pictures)} of sample 0 (bird's-eye view, cameras) -> {vis}",
              flush=True)
    if not args.no_pretrain:
        pretrain_and_probe(args, data_root)
    return 0


def pretrain_and_probe(args, data_root: str) -> None:
    """Pretrain ``--pretrain-config`` for ``--pretrain-iters`` iterations on the generated
    data, then the linear probe (pretrained vs random initialisation) on its val split."""
    from lidarcl.engine import build_pretrain_config, run_pretraining
    from lidarcl.evaluation.linear_probe import build_probe_loader, linear_probe_study

    work_dir = os.path.abspath(os.path.join(args.out, "pretrain"))
    options = {"train_dataloader.dataset.data_root": data_root + "/",
               "train_dataloader.num_workers": 0,
               "train_dataloader.persistent_workers": False,
               "model.backbone.voxel_size": args.voxel_size,
               "train_cfg.max_iters": args.pretrain_iters,
               "default_hooks.checkpoint.interval": max(1, args.pretrain_iters),
               "randomness.seed": args.seed}
    cfg = build_pretrain_config(args.pretrain_config, work_dir, False, options)
    start = time.perf_counter()
    run_pretraining(cfg)  # compact: its progress and "pretrained ... -> backbone.pth"
    if args.verbose:
        print(f"pretrained {cfg.model.type} to iteration {args.pretrain_iters} in "
              f"{time.perf_counter() - start:.0f} s -> {work_dir}/backbone.pth")
    dataset_cfg = cfg.train_dataloader.dataset.to_dict()
    train_loader, lut, names = build_probe_loader(dataset_cfg, "nuscenes_infos_train.json",
                                                  data_root)
    val_loader, _, _ = build_probe_loader(dataset_cfg, "nuscenes_infos_val.json", data_root)
    print(f"linear probe: {len(train_loader.dataset)} train / {len(val_loader.dataset)} val "
          f"scans, {args.probe_epochs} epochs, pretrained then random backbone ...",
          flush=True)
    start = time.perf_counter()
    results = linear_probe_study(cfg.model.backbone.to_dict(),
                                 os.path.join(work_dir, "backbone.pth"), train_loader,
                                 val_loader, lut, len(names), seed=args.seed,
                                 epochs=args.probe_epochs)
    print(f"linear probe (frozen backbone, linear head, val mIoU %; "
          f"{time.perf_counter() - start:.0f} s):")
    print("| backbone | mIoU |")
    print("|---|---|")
    for name in ("random", "pretrained"):
        print(f"| {name} | {100 * results[name]['miou']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
