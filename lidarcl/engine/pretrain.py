"""Build and run a pretraining config with mmengine's Runner (single process or under
``torchrun``): atomic checkpoints, resume from the work dir's newest checkpoint that loads,
and the backbone exported on its own (``<work_dir>/backbone.pth``) at the end.

``--cfg-options`` may only change what the config has: mmengine merges any key, so a typo
(``train_cfg.max_iter=5``) or a top-level variable of the config file (``max_iters=5``, read
only while the file is parsed; the Runner reads its own top-level keys only) would be
accepted and change nothing. :func:`build_pretrain_config` refuses such keys, naming each
with a close match, unless ``allow_new_keys`` (``--allow-new-keys``) says they are meant,
e.g. a constructor argument the config leaves at its default. A new top-level key the
Runner reads (``find_unused_parameters=True``) and list indices (``pipeline.2.num_views``,
as mmengine's ``DictAction`` allows) are accepted.
"""
from __future__ import annotations

import difflib
import os

from mmengine.config import Config

from lidarcl.engine import progress  # registers TerminalProgressHook

__all__ = ["build_pretrain_config", "run_pretraining", "unknown_cfg_options"]

# top-level keys mmengine's Runner reads besides its constructor's arguments (runner.py)
_RUNNER_CFG_KEYS = {"model_wrapper_cfg", "find_unused_parameters", "sync_bn", "compile",
                    "activation_checkpointing", "efficient_conv_bn_eval"}


def _runner_keys() -> set:
    import inspect

    from mmengine.runner import Runner

    return (set(inspect.signature(Runner.__init__).parameters) - {"self", "cfg"}
            | _RUNNER_CFG_KEYS)


def _key_problem(cfg: dict, key: str, runner_keys: set) -> str | None:
    """Why ``key`` is not a key of ``cfg`` (a plain dict) the Runner will see, or None."""
    parts = key.split(".")
    if parts[0] not in runner_keys:
        if parts[0] in cfg:
            return ("is a variable of the config file, used only while the file is read: "
                    "setting it changes nothing")
        return "is not a key of the config"
    if len(parts) == 1:  # a Runner argument the config may leave at its default
        return None
    node = cfg
    for depth, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit():  # DictAction's list index
            if int(part) >= len(node):
                return f"indexes past the end of {'.'.join(parts[:depth])!r}"
            node = node[int(part)]
        elif isinstance(node, dict):
            return "is not a key of the config"
        else:
            return (f"goes inside {'.'.join(parts[:depth])!r}, which is not a dict or list "
                    f"({type(node).__name__})")
    return None


def _flat_keys(node, prefix=""):
    items = (node.items() if isinstance(node, dict)
             else ((str(i), v) for i, v in enumerate(node)) if isinstance(node, list) else ())
    for key, value in items:
        yield prefix + key
        yield from _flat_keys(value, f"{prefix}{key}.")


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _close_match(key: str, flat: list) -> str | None:
    """A key of the config whose last part is (nearly) ``key``'s, most like ``key``."""
    close = set(difflib.get_close_matches(_leaf(key), {_leaf(k) for k in flat}, 3, 0.75))
    matches = [k for k in flat if _leaf(k) in close]
    return (difflib.get_close_matches(key, matches, 1, 0.0) or [None])[0]


def unknown_cfg_options(cfg: Config, options: dict) -> list[str]:
    """One line per key of ``options`` that ``cfg`` does not have (see the module doc)."""
    runner_keys, cfg = _runner_keys(), cfg.to_dict()
    flat = [k for top in runner_keys if top in cfg
            for k in [top, *_flat_keys(cfg[top], top + ".")]]
    lines = []
    for key in options:
        problem = _key_problem(cfg, key, runner_keys)
        if problem is not None:
            match = _close_match(key, flat)
            lines.append(f"{key!r} {problem}"
                         + (f" (did you mean {match!r}?)" if match else ""))
    return lines


def add_run_arguments(parser) -> None:
    """The arguments every training tool takes (``tools/pretrain.py``,
    ``tools/pretrain_image.py``): config, work dir, resume, config overrides, terminal mode,
    deterministic mode."""
    from mmengine.config import DictAction

    parser.add_argument("config")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the work dir's last checkpoint (or the newest "
                        "earlier one that loads)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                        help="override config keys, e.g. train_cfg.max_iters=100")
    parser.add_argument("--allow-new-keys", action="store_true",
                        help="let --cfg-options add keys the config does not have")
    parser.add_argument("--verbose", action="store_true",
                        help="mmengine's full log stream on the terminal (environment, "
                        "config, hooks, per-iteration lines) instead of a progress line")
    parser.add_argument("--deterministic", action="store_true",
                        help="randomness.deterministic=True: two runs with the same seed "
                        "write the same checkpoints, bit for bit (docs/reproducibility.md)")


def build_pretrain_config(config: str, work_dir: str | None = None, resume: bool = False,
                          cfg_options: dict | None = None, launcher: str = "none",
                          allow_new_keys: bool = False) -> Config:
    """Read ``config``; ``work_dir`` defaults to ``work_dirs/<config name>``.

    ``cfg_options`` (``--cfg-options``) must name keys the config has, or list indices in
    it, else ValueError lists them; ``allow_new_keys`` accepts new keys (module doc).
    """
    if not os.path.isfile(config):
        raise FileNotFoundError(f"config file not found: {config}")
    cfg = Config.fromfile(config)
    if cfg_options:
        unknown = [] if allow_new_keys else unknown_cfg_options(cfg, cfg_options)
        if unknown:
            raise ValueError(f"{config}: --cfg-options: " + "; ".join(unknown)
                             + ". Pass --allow-new-keys to add keys the config does not have.")
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError) as exc:  # e.g. a new key inside a number
            raise ValueError(f"{config}: --cfg-options: {exc}") from exc
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = os.path.join("work_dirs", os.path.splitext(os.path.basename(config))[0])
    cfg.resume = bool(resume)
    cfg.launcher = launcher
    if "model" not in cfg or "train_dataloader" not in cfg:
        raise ValueError(f"{config}: a training config needs 'model' and "
                         "'train_dataloader'")
    return cfg


def checkpoint_folder(cfg: Config) -> str:
    """Where the checkpoint hook writes: the work dir, or, as mmengine's ``CheckpointHook``
    does with an ``out_dir``, ``<out_dir>/<work dir name>``."""
    hook = (cfg.get("default_hooks") or {}).get("checkpoint") or {}
    out_dir = hook.get("out_dir")
    if not out_dir:
        return cfg.work_dir
    return os.path.join(out_dir, os.path.basename(os.fspath(cfg.work_dir).rstrip(os.sep)))


def remove_partial_writes(work_dir) -> list[str]:
    """Delete the temporary files a killed save left in ``work_dir`` (``.<name>.*.part``
    of :func:`lidarcl.utils.fileio.atomic_write`: never a complete file, and a
    MinkUNet34 checkpoint's is about 450 MB); returns a message per file removed."""
    import glob

    removed = []
    for path in sorted(glob.glob(os.path.join(glob.escape(os.fspath(work_dir)), ".*.part"))):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(f"{path}: partial write of a killed run, removed")
    return removed


def run_pretraining(cfg: Config, export: bool = True, verb: str = "pretrained"):
    """Train with ``Runner.from_cfg(cfg)``; returns the runner. With ``export`` the rank-0
    process writes ``<work_dir>/backbone.pth`` (weights only) at the end.

    Checkpoints go through :class:`~lidarcl.engine.checkpoint.AtomicLocalBackend` and
    :class:`~lidarcl.engine.hooks.AtomicCheckpointHook` (in place of ``CheckpointHook``).
    With ``cfg.resume`` and no ``load_from``, the checkpoint is chosen here by
    :func:`~lidarcl.engine.checkpoint.find_resume_checkpoint` rather than by mmengine,
    which would follow ``last_checkpoint`` wherever it points and die on a truncated file;
    each checkpoint skipped is logged as a warning.

    Terminal output follows :func:`lidarcl.engine.progress.set_terminal_output`: in the
    ``"compact"`` mode the terminal shows warnings, errors, the progress line of
    ``TerminalProgressHook`` (``default_hooks.progress``, added if the config lacks it) and
    a last line naming ``backbone.pth``, while the work dir's log file keeps everything; in
    the ``"verbose"`` mode (the default) mmengine's stream, without the progress hook.
    """
    import time

    from mmengine.dist import is_main_process
    from mmengine.runner import Runner

    from lidarcl.engine.checkpoint import (export_backbone, find_resume_checkpoint,
                                           install_atomic_checkpoints)
    from lidarcl.engine.distributed import prepare_distributed
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    install_atomic_checkpoints()
    hook = (cfg.get("default_hooks") or {}).get("checkpoint")
    if hook is not None and hook.get("type") in ("CheckpointHook", "mmengine.CheckpointHook"):
        hook["type"] = "AtomicCheckpointHook"
    compact = progress.terminal_output() == "compact"
    _set_progress_hook(cfg, compact)
    skipped = []
    if cfg.get("resume") and cfg.get("load_from") is None:
        folder = checkpoint_folder(cfg)
        cfg.load_from, skipped = find_resume_checkpoint(cfg.work_dir, folder)
        cfg.resume = cfg.load_from is not None
        skipped += remove_partial_writes(folder)
    prepare_distributed(cfg)
    start = time.perf_counter()
    runner = (progress.CompactTerminalRunner if compact else Runner).from_cfg(cfg)
    for warning in skipped:
        runner.logger.warning(warning)
    try:
        runner.train()
    finally:  # a traceback (NonFiniteLossError, ...) starts on a line of its own
        progress.end_progress_line()
    path = None
    if export and is_main_process():
        path = export_backbone(runner.model, os.path.join(cfg.work_dir, "backbone.pth"),
                               meta={"iter": runner.iter, "config": cfg.filename,
                                     "backbone": cfg.model.backbone.to_dict()})
        runner.logger.info(f"backbone exported to {path}")
    if compact and is_main_process():
        where = path if path is not None else runner.work_dir
        progress.terminal_print(
            f"{verb} {cfg.model.type} to iteration {runner.iter} in "
            f"{progress.format_duration(time.perf_counter() - start)} -> {where}")
    return runner


def _set_progress_hook(cfg: Config, compact: bool) -> None:
    """``default_hooks.progress``: a ``TerminalProgressHook`` in the compact terminal mode
    (the config's own, or a default one; ``progress=None`` in the config turns it off),
    none in the verbose mode."""
    hooks = cfg.get("default_hooks")
    if hooks is None:
        if not compact:
            return
        cfg.default_hooks = hooks = {}
    if compact and "progress" not in hooks:
        hooks["progress"] = dict(type="TerminalProgressHook")
    elif not compact or hooks["progress"] is None:  # mmengine refuses None for a new key
        hooks.pop("progress", None)
