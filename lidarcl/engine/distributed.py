"""Distributed training on CPU processes (gloo) through mmengine's Runner.

mmengine's ``pytorch`` launcher assumes one GPU per process: it calls
``torch.cuda.set_device(LOCAL_RANK)`` before ``init_process_group`` and wraps the model in
``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``, which DDP refuses for a CPU module.
On a machine without CUDA, :func:`prepare_distributed` initialises the process group with
gloo itself (the Runner then skips its own initialisation) and selects
:class:`CPUDistributedDataParallel`, so ``torchrun ... tools/pretrain.py --launcher
pytorch`` trains on CPU processes exactly as on GPUs. With CUDA nothing changes.
"""
from __future__ import annotations

import torch
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

from lidarcl.registry import MODEL_WRAPPERS

__all__ = ["CPUDistributedDataParallel", "prepare_distributed"]


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for a module on the CPU: no ``device_ids``."""

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module=module, device_ids=None, **kwargs)


def prepare_distributed(cfg: Config) -> None:
    """Before ``Runner.from_cfg``: set up CPU (gloo) data parallelism when the config asks
    for the ``pytorch`` launcher on a machine without CUDA (module doc)."""
    if cfg.get("launcher", "none") != "pytorch" or torch.cuda.is_available():
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    if cfg.get("model_wrapper_cfg") is None:
        # scoped name: the Runner looks the wrapper up in mmengine's root registry
        cfg.model_wrapper_cfg = dict(
            type="lidarcl.CPUDistributedDataParallel", broadcast_buffers=False,
            find_unused_parameters=cfg.get("find_unused_parameters", False))
