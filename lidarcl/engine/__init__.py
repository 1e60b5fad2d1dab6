"""Training glue around mmengine's Runner: atomic checkpoint writes, backbone export,
building and running a pretraining config (``tools/pretrain.py`` is a thin front end)."""
from lidarcl.engine.checkpoint import (AtomicLocalBackend, export_backbone,
                                       install_atomic_checkpoints, load_backbone)
from lidarcl.engine.determinism import DeterminismTraceHook
from lidarcl.engine.distributed import CPUDistributedDataParallel, prepare_distributed
from lidarcl.engine.hooks import WeightsOnlyCheckpointHook
from lidarcl.engine.momentum import MomentumUpdateHook
from lidarcl.engine.pretrain import build_pretrain_config, run_pretraining

__all__ = ["AtomicLocalBackend", "install_atomic_checkpoints", "export_backbone",
           "load_backbone", "build_pretrain_config", "run_pretraining",
           "WeightsOnlyCheckpointHook", "MomentumUpdateHook", "CPUDistributedDataParallel",
           "prepare_distributed", "DeterminismTraceHook"]
