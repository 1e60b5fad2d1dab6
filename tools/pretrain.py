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
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the work dir's last checkpoint (or the newest "
                        "earlier one that loads)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                        help="override config keys, e.g. train_cfg.max_iters=100")
    parser.add_argument("--allow-new-keys", action="store_true",
                        help="let --cfg-options add keys the config does not have")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none")
    parser.add_argument("--verbose", action="store_true",
                        help="mmengine's full log stream on the terminal (environment, "
                        "config, hooks, per-iteration lines) instead of a progress line")
    parser.add_argument("--deterministic", action="store_true",
                        help="randomness.deterministic=True: two runs with the same seed "
                        "write the same checkpoints, bit for bit (docs/reproducibility.md)")
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
