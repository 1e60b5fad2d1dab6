"""Build and run a pretraining config with mmengine's Runner (single process or under
``torchrun``): atomic checkpoints, resume from the work dir's last checkpoint, and the
backbone exported on its own (``<work_dir>/backbone.pth``) at the end."""
from __future__ import annotations

import os

from mmengine.config import Config

__all__ = ["build_pretrain_config", "run_pretraining"]


def build_pretrain_config(config: str, work_dir: str | None = None, resume: bool = False,
                          cfg_options: dict | None = None, launcher: str = "none") -> Config:
    """Read ``config``; ``work_dir`` defaults to ``work_dirs/<config name>``."""
    if not os.path.isfile(config):
        raise FileNotFoundError(f"config file not found: {config}")
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = os.path.join("work_dirs", os.path.splitext(os.path.basename(config))[0])
    cfg.resume = bool(resume)
    cfg.launcher = launcher
    if "model" not in cfg or "train_dataloader" not in cfg:
        raise ValueError(f"{config}: a pretraining config needs 'model' and "
                         "'train_dataloader'")
    return cfg


def run_pretraining(cfg: Config, export: bool = True):
    """Train with ``Runner.from_cfg(cfg)``; returns the runner. With ``export`` the rank-0
    process writes ``<work_dir>/backbone.pth`` (weights only) at the end."""
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner

    from lidarcl.engine.checkpoint import export_backbone, install_atomic_checkpoints
    from lidarcl.engine.distributed import prepare_distributed
    from lidarcl.registry import register_all_modules

    register_all_modules()
    install_atomic_checkpoints()
    prepare_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    if export and is_main_process():
        path = export_backbone(runner.model, os.path.join(cfg.work_dir, "backbone.pth"),
                               meta={"iter": runner.iter, "config": cfg.filename,
                                     "backbone": cfg.model.backbone.to_dict()})
        runner.logger.info(f"backbone exported to {path}")
    return runner
