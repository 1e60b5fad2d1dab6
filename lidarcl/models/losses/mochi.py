"""MoCo-style InfoNCE with a feature queue and hard negative mixing (MoCHi, Kalantidis et
al., NeurIPS 2020, Sec. 4).

For each query ``q`` (L2-normalised) and its positive key ``k``, the negatives are the
``queue`` of keys from earlier iterations. MoCHi ranks them by similarity to ``q``, keeps the
``n_hard`` hardest, and synthesises

* ``s`` mixes of two hard negatives ``h = a n_i + (1 - a) n_j``, ``a ~ U(0, 1)`` (Eq. 3),
* ``s_prime`` mixes of the query with a hard negative ``h' = b q + (1 - b) n_j``,
  ``b ~ U(0, b_max)``, ``b_max = 0.5`` so the negative stays dominant (Eq. 4),

each L2-normalised and detached (no gradient flows through a synthetic negative), appended
to the logits only as negatives. The loss is cross-entropy with the positive at index 0 over
``[q.k, q.queue, q.h, q.h'] / tau`` (tau = 0.2, MoCo v2), and the keys then enter the queue
(first in, first out). Until the queue holds ``n_hard`` keys MoCHi adds nothing; an empty
queue falls back to the in-batch keys as negatives.

The keys must come from a momentum (EMA) key encoder, as in MoCo and MoCHi: a pretrainer
whose loss is MoCHi (``needs_key_encoder``) builds key copies of its backbone and head
(:mod:`lidarcl.models.momentum`) and passes their outputs as ``key``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lidarcl.models.losses.contrastive import select_pairs
from lidarcl.models.momentum import KeyQueue
from lidarcl.registry import MODELS

__all__ = ["MoCHiLoss", "MixedNegatives", "mix_hard_negatives"]


@dataclass
class MixedNegatives:
    """Synthetic negatives and the draws that made them (for tests and inspection)."""

    mixed: torch.Tensor         # (B, s, C)
    mixed_query: torch.Tensor   # (B, s', C)
    pair_index: torch.Tensor    # (B, s, 2) indices into the queue
    alpha: torch.Tensor         # (B, s)
    query_index: torch.Tensor   # (B, s') indices into the queue
    beta: torch.Tensor          # (B, s')


def mix_hard_negatives(q: torch.Tensor, queue: torch.Tensor, n_hard: int, s: int,
                       s_prime: int, beta_max: float = 0.5,
                       generator: torch.Generator | None = None) -> MixedNegatives:
    """MoCHi's synthetic negatives for normalised queries ``q (B, C)`` from ``queue (Q, C)``."""
    batch, dim = q.shape
    n_hard = min(n_hard, queue.shape[0])
    with torch.no_grad():
        hardest = torch.topk(q @ queue.t(), n_hard, dim=1).indices       # (B, N)
        pick = torch.randint(0, n_hard, (batch, s, 2), generator=generator).to(q.device)
        pair_index = torch.gather(hardest, 1, pick.view(batch, -1)).view(batch, s, 2)
        alpha = torch.rand(batch, s, generator=generator).to(q.device, q.dtype)
        mixed = alpha[..., None] * queue[pair_index[..., 0]] \
            + (1 - alpha[..., None]) * queue[pair_index[..., 1]]
        pick_q = torch.randint(0, n_hard, (batch, s_prime), generator=generator).to(q.device)
        query_index = torch.gather(hardest, 1, pick_q)
        beta = (torch.rand(batch, s_prime, generator=generator) * beta_max).to(q.device, q.dtype)
        mixed_query = beta[..., None] * q[:, None, :] \
            + (1 - beta[..., None]) * queue[query_index]
    return MixedNegatives(F.normalize(mixed, dim=-1), F.normalize(mixed_query, dim=-1),
                          pair_index, alpha, query_index, beta)


@MODELS.register_module()
class MoCHiLoss(nn.Module):
    """InfoNCE against a queue of past keys with MoCHi's mixed hard negatives (module doc).

    Args:
        dim: feature width; queue_size: keys kept (MoCo: 65,536; region features of a few
            batches are enough for point clouds); temperature: MoCo v2's 0.2.
        n_hard, s, s_prime: MoCHi's N, s and s' (paper's ImageNet setting 1024, 1024, 256).
        max_pairs: cap on the queries (and enqueued keys) per call.
    """

    needs_key_encoder = True

    def __init__(self, dim: int, queue_size: int = 65536, temperature: float = 0.2,
                 n_hard: int = 1024, s: int = 1024, s_prime: int = 256,
                 beta_max: float = 0.5, max_pairs: int | None = 4096,
                 loss_weight: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.n_hard, self.s, self.s_prime, self.beta_max = n_hard, s, s_prime, beta_max
        self.max_pairs = max_pairs
        self.loss_weight = loss_weight
        self.key_queue = KeyQueue(dim, queue_size)

    @property
    def queue(self) -> torch.Tensor:
        return self.key_queue.queue

    @property
    def queue_ptr(self) -> torch.Tensor:
        return self.key_queue.queue_ptr

    @property
    def queue_len(self) -> torch.Tensor:
        return self.key_queue.queue_len

    def enqueue(self, keys: torch.Tensor) -> None:
        self.key_queue.enqueue(keys)

    def forward(self, query: torch.Tensor, key: torch.Tensor, groups=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        query, key, _ = select_pairs(query, key, groups, self.max_pairs, generator)
        if query.shape[0] == 0:
            return query.sum() * 0.0
        q = F.normalize(query.float(), dim=1)
        k = F.normalize(key.float(), dim=1).detach()  # keys come from the momentum encoder
        # a copy: enqueue() below overwrites the buffer in place, which would invalidate the
        # tensor saved for backward by q @ queue.t()
        queue = self.key_queue.keys().float()
        positive = (q * k).sum(1, keepdim=True)
        if len(queue) == 0:
            negatives = q @ k.t()
            negatives = negatives.masked_fill(torch.eye(len(q), dtype=torch.bool,
                                                        device=q.device), float("-inf"))
            logits = [positive, negatives]
        else:
            logits = [positive, q @ queue.t()]
            if len(queue) >= self.n_hard and (self.s or self.s_prime):
                mix = mix_hard_negatives(q.detach(), queue, self.n_hard, self.s,
                                         self.s_prime, self.beta_max, generator)
                logits += [torch.einsum("bc,bsc->bs", q, mix.mixed),
                           torch.einsum("bc,bsc->bs", q, mix.mixed_query)]
        logits = torch.cat(logits, dim=1) / self.temperature
        target = torch.zeros(len(q), dtype=torch.int64, device=q.device)
        loss = F.cross_entropy(logits, target)
        if self.training:
            self.enqueue(k)
        return self.loss_weight * loss
