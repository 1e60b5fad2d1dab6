#!/usr/bin/env python
"""The pretraining study on a generated dataset: every method x MinkUNet34, then the best
method x each other backbone, each against random initialisation by the linear probe, with
one budget (lidarcl/evaluation/study.py). Prints the table and writes <out>/study.json.
Each pretraining shows a progress line (iteration, loss, ETA) and keeps mmengine's full log
in its work dir (<out>/<method>_<backbone>/<timestamp>/); --verbose streams that log too.

    python tools/study.py --out outputs/study [--scenes 24 --val-scenes 16 --keyframes 4
        --iters 80 --voxel-size 0.2] [--seed 0 | --seeds 0 1 2] [--resume] [--verbose]

With ``--seeds 0 1 2`` every seed regenerates the dataset with that seed and reruns every
pretraining and probe under <out>/seed<k>/; stage 1 runs at every seed first, stage 2 then
takes the method with the largest mean gain (or --stage2-method) at every seed, and the tool
prints mean +- std over the seeds per row, marking which rows are above others by more than
the spread, and writes <out>/summary.json. ``--resume`` continues an interrupted study: rows
already in a seed's study.json (same settings) are kept, not rerun.
"""
import argparse
import json
import os
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/study")
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--val-scenes", type=int, default=16,
                        help="validation scenes (16: sized by tools/val_spread.py, README)")
    parser.add_argument("--keyframes", type=int, default=4)
    parser.add_argument("--iters", type=int, default=80)
    parser.add_argument("--voxel-size", type=float, default=0.2)
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None,
                       help="one seed, results directly under --out (default 0)")
    seeds.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="several seeds: data and every run again per seed, under "
                            "<out>/seed<k>/, and mean +- std per row")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows an earlier run of the same study finished")
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--methods", nargs="*", default=None,
                        help="stage 1 method configs (default: the four methods; none: "
                             "stage 2 only, with --stage2-method); camera-LiDAR rows: "
                             "slidr, superflow, scalr (with the seed's MoCo v2 teacher) and "
                             "<method>-randomteacher")
    parser.add_argument("--backbones", nargs="*", default=["voxelbackbone8x", "ptv3"],
                        help="stage 2 backbones (none: stage 1 only)")
    parser.add_argument("--stage2-method", default=None,
                        help="method pretrained with the stage 2 backbones (default: the "
                             "stage 1 method with the largest (mean) gain)")
    parser.add_argument("--teacher-iters", type=int, default=None,
                        help="iterations of the camera rows' image teacher (default: its "
                             "config's, 300)")
    parser.add_argument("--verbose", action="store_true",
                        help="mmengine's full log stream on the terminal for every run")
    args = parser.parse_args(argv)
    if args.methods == [] and args.backbones and args.stage2_method is None:
        parser.error("stage 2 without stage 1 (--methods with no names) needs "
                     "--stage2-method")
    for flag, names in (("--seeds", args.seeds), ("--methods", args.methods),
                        ("--backbones", args.backbones)):
        if names is not None and len(set(names)) != len(names):
            parser.error(f"{flag} repeats a name: {names}")
    from lidarcl.evaluation.study import STUDY_BACKBONES, study_config

    unknown = sorted(set(args.backbones) - set(STUDY_BACKBONES(args.voxel_size)))
    if unknown:
        parser.error(f"--backbones: unknown {unknown}; known: "
                     f"{sorted(STUDY_BACKBONES(args.voxel_size))}")
    for method in (args.methods or []) + [m for m in [args.stage2_method] if m]:
        if not os.path.isfile(study_config(REPO, method)):
            parser.error(f"no study config for method {method!r}: "
                         f"{study_config(REPO, method)} does not exist")
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


def _settings(args, seed: int) -> dict:
    return {"scenes": args.scenes, "val_scenes": args.val_scenes, "keyframes": args.keyframes,
            "iters": args.iters, "voxel_size": args.voxel_size, "seed": seed,
            "probe_epochs": args.probe_epochs}


def _read_json(path: str, kind: type):
    """A JSON file the study wrote, or ``ValueError`` naming the file and the problem."""
    try:
        with open(path) as handle:
            value = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read it as JSON ({exc}); delete it or choose "
                         "another --out") from exc
    if not isinstance(value, kind):
        raise ValueError(f"{path}: holds a {type(value).__name__}, not the study's "
                         f"{kind.__name__}; delete it or choose another --out")
    return value


def _prepare(args, out: str, seed: int) -> tuple[str, list]:
    """The seed's dataset under <out>/data (generated unless a resumed run already did it)
    and the rows an earlier run finished (``--resume``)."""
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.utils.fileio import atomic_write_bytes

    os.makedirs(out, exist_ok=True)
    settings_path = os.path.join(out, "settings.json")
    study_path = os.path.join(out, "study.json")
    data_root = os.path.join(out, "data")
    infos = [os.path.join(data_root, f"nuscenes_infos_{split}.json")
             for split in ("train", "val")]
    settings = _settings(args, seed)
    earlier = _read_json(settings_path, dict) if os.path.isfile(settings_path) else None
    if not args.resume and os.path.isfile(study_path):
        raise FileExistsError(f"{study_path} holds an earlier study: pass --resume to "
                              "continue it, or choose another --out")
    if args.resume and earlier is None and os.path.isfile(study_path):
        raise ValueError(f"{study_path} has no settings.json beside it (a study from before "
                         "--resume existed), so its settings cannot be checked: choose "
                         "another --out")
    if args.resume and earlier is not None and earlier != settings:
        raise ValueError(f"{settings_path}: the earlier study used {earlier}, not "
                         f"{settings}; resume it with the same arguments or choose "
                         "another --out")
    if args.resume and earlier == settings and all(os.path.isfile(p) for p in infos):
        # settings.json is written after the data and its infos, and removed before
        # they are generated again: matching settings mean complete data
        done = _read_json(study_path, list) if os.path.isfile(study_path) else []
        return data_root, done
    # the data is gone (a cleaned work space) but the rows are there: the generator writes
    # the same bytes for the same arguments, so the rows stay valid if the new data's
    # digest is the one recorded when they were measured
    keep_rows = args.resume and earlier == settings and os.path.isfile(study_path)
    digest_path = os.path.join(out, "data_digest.json")
    earlier_digest = _read_json(digest_path, dict).get("sha256") \
        if os.path.isfile(digest_path) else None
    start = time.perf_counter()
    for path in [settings_path] + infos:  # until the new data is complete
        if os.path.isfile(path):
            os.remove(path)
    # regions cached for an earlier dataset here are keyed by sample tokens that the new
    # one reuses: they go with the data they were computed from
    shutil.rmtree(os.path.join(data_root, "regions"), ignore_errors=True)
    generate_dataset(data_root, scenes=args.scenes, keyframes=args.keyframes, seed=seed,
                     image_size=(320, 180), sweeps_per_keyframe=0, val_scenes=args.val_scenes,
                     overwrite=True)
    create_nuscenes_infos(data_root, "v1.0-synthetic", data_root)
    digest = _data_digest(data_root)
    atomic_write_bytes(digest_path, json.dumps({"sha256": digest}, indent=2).encode())
    atomic_write_bytes(settings_path, json.dumps(settings, indent=2).encode())
    print(f"seed {seed}: generated {args.scenes} scenes ({args.val_scenes} val) x "
          f"{args.keyframes} keyframes in {time.perf_counter() - start:.0f} s -> {data_root}",
          flush=True)
    if not keep_rows:
        return data_root, []
    done = _read_json(study_path, list)
    if earlier_digest is not None and earlier_digest != digest:
        print(f"seed {seed}: the regenerated data differs from the data of the rows in "
              f"{study_path} (another generator?): they are measured again", flush=True)
        return data_root, []
    print(f"seed {seed}: {len(done)} finished row(s) kept: the regenerated data "
          + ("has the digest they were measured on" if earlier_digest is not None else
             "cannot be checked against theirs (no data_digest.json: a study from before "
             "it was recorded; the generator writes the same bytes for the same arguments)"),
          flush=True)
    return data_root, done


def _data_digest(data_root: str) -> str:
    """SHA-256 over the generated files (scans, images, labels, tables; not the info
    indexes, which record the folder they were written in)."""
    import hashlib

    digest = hashlib.sha256()
    for folder in ("samples", "sweeps", "lidarseg", "v1.0-synthetic"):
        for base, dirs, files in sorted(os.walk(os.path.join(data_root, folder))):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(base, name)
                digest.update(os.path.relpath(path, data_root).encode())
                with open(path, "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()


CAMERA_SWEEPS = 2  # SuperFlow's dense cloud: the keyframe and its 2 newest sweeps


def _prepare_camera(args, out: str, seed: int, data_root: str, log) -> dict:
    """The seed's camera data for the camera-LiDAR rows, under <out>/camera (made once, kept
    for a resumed run): the dataset generated again with the same arguments plus
    CAMERA_SWEEPS sweeps per keyframe (the generator draws sweeps from their own stream, so
    the keyframes are those of <out>/data: checked here), its train index with the sweeps
    and SLIC superpixels, the MoCo v2 teacher of tools/pretrain_image.py trained on its
    train images, a teacher at random weights written to a file, and each teacher's
    17-class semantic superpixels."""
    import hashlib
    import importlib.util

    import torch

    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.semantic_superpixels import create_semantic_superpixels
    from lidarcl.datasets.superpixels import create_superpixels
    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.engine.checkpoint import atomic_torch_save, weights_digest
    from lidarcl.models.image import ImageTeacher
    from lidarcl.utils.fileio import atomic_write_bytes

    folder = os.path.join(out, "camera")
    root = os.path.join(folder, "data")
    stamp_path = os.path.join(folder, "camera.json")
    settings = {**_settings(args, seed), "sweeps_per_keyframe": CAMERA_SWEEPS,
                "teacher_config": "configs/pretrain_image/mocov2_resnet18_synth.py",
                "teacher_iters": args.teacher_iters, "clusters": 17}
    result = {"root": root, "teacher": os.path.join(folder, "image_teacher", "encoder.pth"),
              "random_teacher": os.path.join(folder, "random_teacher.pth"),
              "tags": {"trained": "kmeans17", "random": "kmeans17_randomteacher"}}
    if os.path.isfile(stamp_path) and _read_json(stamp_path, dict).get("settings") == settings:
        return result
    start = time.perf_counter()
    if os.path.isfile(stamp_path):
        os.remove(stamp_path)
    generate_dataset(root, scenes=args.scenes, keyframes=args.keyframes, seed=seed,
                     image_size=(320, 180), sweeps_per_keyframe=CAMERA_SWEEPS,
                     val_scenes=args.val_scenes, overwrite=True)
    create_nuscenes_infos(root, "v1.0-synthetic", root, max_sweeps=CAMERA_SWEEPS)
    train_index = os.path.join(root, "nuscenes_infos_train.json")
    for name in sorted(os.listdir(os.path.join(data_root, "samples", "LIDAR_TOP"))):
        digests = [hashlib.sha256(open(os.path.join(base, "samples", "LIDAR_TOP", name),
                                       "rb").read()).hexdigest() for base in (data_root, root)]
        if digests[0] != digests[1]:
            raise ValueError(f"{root}: keyframe {name} differs from {data_root}'s; the "
                             "camera rows must see the LiDAR rows' scans")
    create_superpixels(train_index, root)
    teacher_dir = os.path.dirname(result["teacher"])
    shutil.rmtree(teacher_dir, ignore_errors=True)
    spec = importlib.util.spec_from_file_location(
        "pretrain_image", os.path.join(REPO, "tools", "pretrain_image.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    teacher_args = [os.path.join(REPO, settings["teacher_config"]), "--work-dir", teacher_dir,
                    "--deterministic", "--cfg-options",
                    f"train_dataloader.dataset.data_root={root}", f"randomness.seed={seed}"]
    if args.teacher_iters:
        teacher_args.append(f"train_cfg.max_iters={args.teacher_iters}")
    try:  # the tool ends with parser.exit on a data error
        status = tool.main(teacher_args)
    except SystemExit as exc:
        status = exc.code
    if status != 0:
        raise ValueError(f"{teacher_dir}: the image teacher's pretraining failed (exit "
                         f"status {status}; its log is in that folder)")
    encoder = dict(type="resnet", depth=18, dilate=[False, True, True])
    torch.manual_seed(seed)
    state = ImageTeacher(encoder=encoder, head=None).encoder.state_dict()
    atomic_torch_save({"state_dict": state, "meta": {
        "encoder": dict(type="resnet", depth=18), "method": "random initialisation",
        "seed": seed, "weights_sha256": weights_digest(state)}}, result["random_teacher"])
    for key, path in (("trained", result["teacher"]), ("random", result["random_teacher"])):
        teacher = ImageTeacher(encoder=encoder, checkpoint=path, layout="lidarcl", head=None)
        create_semantic_superpixels(train_index, root, teacher, clusters=settings["clusters"],
                                    tag=result["tags"][key], overwrite=True)
    atomic_write_bytes(stamp_path, json.dumps(
        {"settings": settings, "seconds": time.perf_counter() - start}, indent=2).encode())
    log(f"seed {seed}: camera data, SLIC and semantic superpixels, image teacher in "
        f"{time.perf_counter() - start:.0f} s -> {folder}")
    return result


def _camera(args, out: str, seed: int, data_root: str, log):
    """The camera data of a seed, prepared when a camera-LiDAR row first needs it."""
    return lambda: _prepare_camera(args, out, seed, data_root, log)


def _study(args) -> int:
    from lidarcl.evaluation.study import (STUDY_METHODS, choose_stage2_method,
                                          format_seed_table, format_table, run_study,
                                          summarize_seeds)
    from lidarcl.utils.fileio import atomic_write_bytes
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    out = os.path.abspath(args.out)
    methods = STUDY_METHODS if args.methods is None else args.methods
    log = lambda line: print(line, flush=True)  # noqa: E731
    common = dict(iters=args.iters, voxel_size=args.voxel_size,
                  probe_epochs=args.probe_epochs, log=log)
    if args.seeds is None:  # one seed, directly under --out
        seed = 0 if args.seed is None else args.seed
        data_root, done = _prepare(args, out, seed)
        rows = run_study(REPO, out, data_root, seed=seed, methods=methods,
                         backbones=args.backbones, stage2_method=args.stage2_method,
                         done=done, camera_data=_camera(args, out, seed, data_root, log),
                         **common)
        print(format_table(rows))
        return 0

    start = time.perf_counter()
    summary_path = os.path.join(out, "summary.json")
    if os.path.isfile(summary_path) and not args.resume:
        raise FileExistsError(f"{summary_path} holds an earlier study: pass --resume to "
                              "continue it, or choose another --out")
    folders = {seed: os.path.join(out, f"seed{seed}") for seed in args.seeds}
    prepared = {seed: _prepare(args, folders[seed], seed) for seed in args.seeds}
    rows_by_seed = {}
    for seed in args.seeds:  # stage 1 at every seed first: stage 2 takes the mean best
        log(f"== seed {seed}: stage 1")
        data_root, done = prepared[seed]
        rows_by_seed[seed] = run_study(REPO, folders[seed], data_root, seed=seed,
                                       methods=methods, backbones=[], done=done,
                                       camera_data=_camera(args, folders[seed], seed,
                                                           data_root, log), **common)
    stage2_method = args.stage2_method
    if args.backbones and stage2_method is None:
        stage2_method = choose_stage2_method(summarize_seeds(rows_by_seed))
        log(f"stage 2 takes {stage2_method}: the largest mean gain over the seeds")
    if args.backbones:
        for seed in args.seeds:
            log(f"== seed {seed}: stage 2 ({stage2_method})")
            data_root, done = prepared[seed]  # done: a resumed run's stage 2 rows too
            rows_by_seed[seed] = run_study(REPO, folders[seed], data_root, seed=seed,
                                           methods=methods, backbones=args.backbones,
                                           stage2_method=stage2_method,
                                           done=rows_by_seed[seed] + done, **common)
    summary = summarize_seeds(rows_by_seed)
    environments = []  # rows of a resumed study may come from other machines or versions
    for row in (r for rows in rows_by_seed.values() for r in rows):
        environment = row.get("environment")  # None: a row from before it was recorded
        if environment not in environments:
            environments.append(environment)
    atomic_write_bytes(summary_path, json.dumps(
        {"settings": {k: v for k, v in _settings(args, None).items() if k != "seed"},
         "seeds": args.seeds, "stage2_method": stage2_method, "rows": summary,
         "environments": environments,
         "wall_seconds_this_invocation": time.perf_counter() - start}, indent=2).encode())
    print(format_seed_table(summary))
    if len(environments) > 1:
        print(f"note: the rows ran in {len(environments)} environments (CPU, library "
              f"versions, threads; summary.json lists them): a row repeats bit for bit only "
              f"in its own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
