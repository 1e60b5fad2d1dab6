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
iterations. The prototypes get no gradient while :attr:`freeze_prototypes` is set (SwAV
freezes them during the first epoch; the pretrainer's hook toggles it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lidarcl.models.losses.contrastive import select_pairs
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
                 max_pairs: int | None = None, loss_weight: float = 1.0):
        super().__init__()
        self.prototypes = nn.Linear(dim, num_prototypes, bias=False)
        self.temperature = temperature
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.max_pairs = max_pairs
        self.loss_weight = loss_weight
        self.freeze_prototypes = False

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        weight = F.normalize(self.prototypes.weight.float(), dim=1)
        if self.freeze_prototypes:
            weight = weight.detach()
        return F.normalize(z.float(), dim=1) @ weight.t()

    def forward(self, query: torch.Tensor, key: torch.Tensor, groups=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        query, key, _ = select_pairs(query, key, groups, self.max_pairs, generator)
        if query.shape[0] == 0:
            return query.sum() * 0.0 + self.prototypes.weight.sum() * 0.0
        p_s, p_t = self.scores(query), self.scores(key)
        q_s = sinkhorn_knopp(p_s, self.epsilon, self.sinkhorn_iterations)
        q_t = sinkhorn_knopp(p_t, self.epsilon, self.sinkhorn_iterations)
        loss_s = -(q_t * F.log_softmax(p_s / self.temperature, dim=1)).sum(1).mean()
        loss_t = -(q_s * F.log_softmax(p_t / self.temperature, dim=1)).sum(1).mean()
        return self.loss_weight * 0.5 * (loss_s + loss_t)
