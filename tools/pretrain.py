#!/usr/bin/env python
"""Pretrain a backbone with a config (mmengine Runner; single process, or under torchrun
with --launcher pytorch). Checkpoints go to the work dir (atomically), --resume continues
from its newest checkpoint that loads, and <work_dir>/backbone.pth holds the backbone alone
at the end. --cfg-options may only set keys the config has, unless --allow-new-keys.
The terminal shows a progress line (iteration, loss, ETA), warnings, errors and the path of
backbone.pth; mmengine's full log (environment, config, hooks, per-iteration lines) is in
<work_dir>/<timestamp>/<timestamp>.log, and --verbose prints it on the terminal too.

    python tools/pretrain.py configs/pretrain/pointcontrast_minkunet34_synth.py \
        [--work-dir DIR] [--resume] [--cfg-options train_cfg.max_iters=100 ...] [--verbose]
        [--deterministic] [--trace]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from lidarcl.engine.pretrain import add_run_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none")
    parser.add_argument("--trace", action="store_true",
                        help="write <work_dir>/trace.jsonl (digests of each iteration's "
                        "batch, gradients and weights) for tools/compare_runs.py")
    args = parser.parse_args(argv)

    from lidarcl.engine import build_pretrain_config, run_pretraining
    from lidarcl.engine.progress import set_terminal_output
    from lidarcl.errors import DataError

    try:
        cfg = build_pretrain_config(args.config, args.work_dir, args.resume,
                                    args.cfg_options, args.launcher, args.allow_new_keys)
    except (FileNotFoundError, ValueError) as exc:  # a bad path or key: one line, no trace
        parser.error(str(exc))
    if args.deterministic:
        cfg.randomness = dict(cfg.get("randomness") or {}, deterministic=True)
    if args.trace:
        cfg.custom_hooks = list(cfg.get("custom_hooks") or []) + [
            dict(type="DeterminismTraceHook")]
    previous = set_terminal_output("verbose" if args.verbose else "compact")
    try:
        run_pretraining(cfg)
    except DataError as exc:  # e.g. --resume and no checkpoint of the work dir loads
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    finally:  # for callers in-process
        set_terminal_output(previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
