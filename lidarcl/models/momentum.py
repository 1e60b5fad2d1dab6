"""Momentum (EMA) key encoders and key queues.

* **EMA update** (MoCo, He et al. CVPR 2020, Eq. 2; BYOL, Grill et al. 2020):
  ``theta_t <- m theta_t + (1 - m) theta_s`` for every parameter of the key (teacher) copy,
  after each optimiser step. Buffers (BatchNorm running statistics, counters) are copied from
  the online module, as mmengine's and timm's EMA models do, so the key encoder normalises
  with statistics of the same data. The key copy never receives a gradient.
* **Momentum schedule** (BYOL Sec. 3.2; DINO): ``m_k = m_1 - (m_1 - m_0) (cos(pi k / K) +
  1) / 2`` at iteration ``k`` of ``K``: ``m_0`` at the start, ``m_1`` (1.0) at the end.
  ``m_0 = m_1`` gives MoCo's constant momentum (0.999).
* **Key queue** (MoCo v2): a first-in-first-out buffer of the last ``size`` keys (points or
  pooled region features), L2-normalised and detached, used as extra negatives.

Pretrainers declare their key copies with :meth:`MomentumMixin.add_momentum_copy`; the
:class:`~lidarcl.engine.momentum.MomentumUpdateHook` steps them once per iteration. Both the
key copies and the queues are parameters/buffers of the model, so checkpoints hold them and
``--resume`` restores them.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["cosine_momentum", "ema_update", "KeyQueue", "MomentumMixin"]


def cosine_momentum(iteration: int, max_iters: int, base: float, final: float = 1.0
                    ) -> float:
    """Momentum at ``iteration`` (0-based) of ``max_iters`` (module doc)."""
    if not 0.0 <= base <= final <= 1.0:
        raise ValueError(f"momentum needs 0 <= base <= final <= 1, got {base}, {final}")
    if max_iters <= 1:
        return float(base)
    progress = min(max(iteration, 0), max_iters) / max_iters
    return float(final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for parameters; buffers
    copied. The two modules must have the same structure."""
    target_params = dict(target.named_parameters())
    online_params = dict(online.named_parameters())
    if target_params.keys() != online_params.keys():
        raise ValueError("momentum copy and online module differ in parameters: "
                         f"{sorted(target_params.keys() ^ online_params.keys())[:5]}")
    for name, param in target_params.items():
        param.mul_(momentum).add_(online_params[name].detach(), alpha=1.0 - momentum)
    online_buffers = dict(online.named_buffers())
    for name, buffer in target.named_buffers():
        buffer.copy_(online_buffers[name])


class KeyQueue(nn.Module):
    """FIFO queue of ``size`` keys of width ``dim`` (MoCo v2): :meth:`enqueue` writes over
    the oldest rows; :meth:`keys` returns the filled rows (a copy, safe to use in a graph
    while the queue moves on); :meth:`ordered` returns them oldest first."""

    def __init__(self, dim: int, size: int = 65536):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"a key queue needs size >= 1 and dim >= 1, got {size}, {dim}")
        self.register_buffer("queue", torch.zeros(size, dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.int64))

    @property
    def size(self) -> int:
        return len(self.queue)

    def __len__(self) -> int:
        return int(self.queue_len)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, normalize: bool = False) -> None:
        keys = keys.detach().to(self.queue.dtype)
        if normalize:
            keys = F.normalize(keys, dim=1)
        keys = keys[-self.size:]
        rows = (int(self.queue_ptr) + torch.arange(len(keys), device=keys.device)) % self.size
        self.queue[rows.to(self.queue.device)] = keys.to(self.queue.device)
        self.queue_ptr.fill_((int(self.queue_ptr) + len(keys)) % self.size)
        self.queue_len.fill_(min(self.size, int(self.queue_len) + len(keys)))

    def keys(self) -> torch.Tensor:
        return self.queue[:int(self.queue_len)].clone()

    def ordered(self) -> torch.Tensor:
        """The keys oldest first."""
        filled = int(self.queue_len)
        if filled < self.size:
            return self.queue[:filled].clone()
        return torch.roll(self.queue, -int(self.queue_ptr), 0).clone()


class MomentumMixin:
    """Key (momentum) copies of online modules for an ``nn.Module`` pretrainer.

    ``momentum = dict(base=0.996, final=1.0)`` (the cosine schedule) is kept in
    :attr:`momentum_schedule`; :meth:`momentum_update` is what the hook calls.
    """

    momentum_schedule: dict | None = None

    def add_momentum_copy(self, online_name: str, key_name: str | None = None) -> nn.Module:
        """Register ``<online_name>_key``, a frozen deep copy of ``self.<online_name>``."""
        online = getattr(self, online_name)
        key_name = key_name or f"{online_name}_key"
        key = copy.deepcopy(online)
        for param in key.parameters():
            param.requires_grad_(False)
        setattr(self, key_name, key)
        pairs = list(getattr(self, "_momentum_pairs", ()))
        pairs.append((online_name, key_name))
        object.__setattr__(self, "_momentum_pairs", tuple(pairs))
        return key

    @property
    def momentum_pairs(self) -> tuple:
        return tuple(getattr(self, "_momentum_pairs", ()))

    def current_momentum(self, iteration: int, max_iters: int) -> float:
        schedule = self.momentum_schedule or {}
        return cosine_momentum(iteration, max_iters, float(schedule.get("base", 0.999)),
                               float(schedule.get("final", 1.0)))

    def momentum_update(self, iteration: int, max_iters: int) -> float:
        """One EMA step of every key copy at ``iteration``; returns the momentum used."""
        m = self.current_momentum(iteration, max_iters)
        for online_name, key_name in self.momentum_pairs:
            ema_update(getattr(self, key_name), getattr(self, online_name), m)
        return m

    def train(self, mode: bool = True):
        """Key copies follow the mode too, but never require gradients."""
        result = super().train(mode)
        for _, key_name in self.momentum_pairs:
            for param in getattr(self, key_name).parameters():
                param.requires_grad_(False)
        return result
