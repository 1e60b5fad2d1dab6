"""SwAV-style swapped prototype prediction with Sinkhorn-Knopp codes (Caron et al.,
NeurIPS 2020, Sec. 3.1 and Eq. 3).

Features of two views ``z_s``, ``z_t`` (L2-normalised) are scored against ``K`` prototypes
``c_k`` (rows of a weight-normalised linear layer): ``p = z C^T``. Codes ``Q`` come from the
other view's scores by Sinkhorn-Knopp under no gradient::

    Q = exp(p / eps)^T  (K x B), Q /= sum(Q)
    repeat n_iters: Q /= K * row sums ; Q /= B * column sums
    codes = (Q * B)^T                      # each row sums to 1, prototypes equally used

and the loss is the swapped prediction ``-1/2 sum_b [q_t . log softmax(p_s / T) + q_s . log
softmax(p_t / T)]`` averaged over rows, student temperature ``T = 0.1``, ``eps = 0.05``, 3
iterations.

* **Frozen prototypes** (SwAV's ``freeze_prototypes_niters``, 313 iterations = the first
  ImageNet epoch): for the first ``freeze_iters`` training iterations (the Runner's
  iteration, read from mmengine's ``MessageHub``) the prototypes get no gradient, so an
  optimiser leaves them unchanged. :attr:`freeze_prototypes` forces it at any iteration.
* **Queue** (SwAV Sec. 4 / its ``queue_length``, for small batches): with ``queue_size > 0``
  the last ``queue_size`` features of each view wait in a queue (:class:`KeyQueue`, from
  iteration ``queue_start_iters`` on); the Sinkhorn codes are computed over the queued
  features' scores and the batch's together, and only the batch rows' codes are used, so the
  equal-partition constraint holds over more samples than one batch. The queue holds
  features, scored against the current prototypes each time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmengine.logging import MessageHub

from lidarcl.models.losses.contrastive import select_pairs
from lidarcl.models.momentum import KeyQueue
from lidarcl.registry import MODELS

__all__ = ["SwAVLoss", "sinkhorn_knopp"]


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3
                   ) -> torch.Tensor:
    """Equal-partition soft codes ``(B, K)`` of ``scores (B, K)`` (module doc), in float32;
    the exponent is shifted by its maximum, which the normalisations cancel."""
    logits = scores.float() / epsilon
    q = torch.exp(logits - logits.max()).t()             # (K, B)
    k, b = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True) * k
        q /= q.sum(dim=0, keepdim=True) * b
    return (q * b).t()


@MODELS.register_module()
class SwAVLoss(nn.Module):
    """Swapped prediction over weight-normalised prototypes (module doc)."""

    def __init__(self, dim: int, num_prototypes: int = 3000, temperature: float = 0.1,
                 epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 max_pairs: int | None = None, loss_weight: float = 1.0,
                 freeze_iters: int = 0, queue_size: int = 0, queue_start_iters: int = 0):
        super().__init__()
        self.prototypes = nn.Linear(dim, num_prototypes, bias=False)
        self.temperature = temperature
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.max_pairs = max_pairs
        self.loss_weight = loss_weight
        self.freeze_iters = int(freeze_iters)
        self.queue_start_iters = int(queue_start_iters)
        self.freeze_prototypes = False
        self.queues = nn.ModuleList([KeyQueue(dim, queue_size) for _ in range(2)]
                                    if queue_size else [])

    @staticmethod
    def _iteration() -> int:
        return int(MessageHub.get_current_instance().get_info("iter") or 0)

    def prototypes_frozen(self) -> bool:
        return self.freeze_prototypes or self._iteration() < self.freeze_iters

    def scores(self, z: torch.Tensor, frozen: bool | None = None) -> torch.Tensor:
        weight = F.normalize(self.prototypes.weight.float(), dim=1)
        if self.prototypes_frozen() if frozen is None else frozen:
            weight = weight.detach()
        return F.normalize(z.float(), dim=1) @ weight.t()

    def codes(self, scores: torch.Tensor, view: int) -> torch.Tensor:
        """Sinkhorn codes of the batch rows, over the queued features too when there are."""
        use_queue = bool(self.queues) and self._iteration() >= self.queue_start_iters \
            and len(self.queues[view]) > 0
        if not use_queue:
            return sinkhorn_knopp(scores, self.epsilon, self.sinkhorn_iterations)
        with torch.no_grad():
            queued = self.scores(self.queues[view].keys(), frozen=True)
            both = torch.cat([queued, scores.detach()])
        return sinkhorn_knopp(both, self.epsilon, self.sinkhorn_iterations)[-len(scores):]

    def forward(self, query: torch.Tensor, key: torch.Tensor, groups=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        query, key, _ = select_pairs(query, key, groups, self.max_pairs, generator)
        if query.shape[0] == 0:
            return query.sum() * 0.0 + self.prototypes.weight.sum() * 0.0
        p_s, p_t = self.scores(query), self.scores(key)
        q_s, q_t = self.codes(p_s, 0), self.codes(p_t, 1)
        loss_s = -(q_t * F.log_softmax(p_s / self.temperature, dim=1)).sum(1).mean()
        loss_t = -(q_s * F.log_softmax(p_t / self.temperature, dim=1)).sum(1).mean()
        if self.training and self.queues and self._iteration() >= self.queue_start_iters:
            self.queues[0].enqueue(query, normalize=True)
            self.queues[1].enqueue(key, normalize=True)
        return self.loss_weight * 0.5 * (loss_s + loss_t)
