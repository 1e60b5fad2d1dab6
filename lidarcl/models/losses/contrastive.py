"""Pairwise contrastive losses over matched feature rows.

Every loss here takes ``query (N, C)`` and ``key (N, C)`` whose row ``i`` is a positive pair
(the same point, region or sample seen in two views), L2-normalises them and computes in
float32 whatever the input precision (mixed precision would otherwise overflow ``exp(s /
tau)`` at tau = 0.07). Shared options (:class:`PairwiseContrastiveLoss`):

* ``max_pairs``: keep at most this many pairs, drawn uniformly without replacement (the
  ``N x N`` similarity matrix costs ``N^2``; PointContrast uses 4096, as does SLidR's
  point-level PPKT loss; its superpixel loss has no cap).
* ``groups (N,)``: integer labels (e.g. the region or segment of each pair, ``-1`` = none);
  a negative ``j`` of anchor ``i`` with ``groups[j] == groups[i] >= 0`` is a likely false
  negative and is removed from the denominator.
* ``symmetric``: average of the ``query -> key`` and ``key -> query`` directions.
* ``normalize=False``: use the rows as given (still in float32). SLidR and SuperFlow pool
  unit-length point and pixel features per superpixel and compare the means without
  normalising them again (valeoai/SLidR ``loss_superpixels_average``).

DCL and the hard-negative loss skip an anchor whose negatives are all masked (its term
would be undefined); InfoNCE keeps it (its positive is always in the denominator).

Losses (``s_ij`` = cosine similarity, ``tau`` = temperature):

* :class:`InfoNCELoss` (Oord et al. 2018; PointContrast, Xie et al. ECCV 2020, Eq. 1):
  ``-log exp(s_ii / tau) / sum_j exp(s_ij / tau)`` over the other view's rows ``j``.
* :class:`DCLLoss` (decoupled contrastive learning, Yeh et al. ECCV 2022, Eq. 6): the
  positive leaves the denominator, ``-s_ii / tau + log sum_{j != i} [exp(s(q_i, q_j) / tau)
  + exp(s(q_i, k_j) / tau)]`` (negatives from both views, as in the authors' code). With
  ``weighted=True`` it is DCLW: the positive term is multiplied by the von Mises-Fisher
  weight ``w_i = 2 - N exp(s_ii / sigma) / sum_k exp(s_kk / sigma)`` (Eq. 7, sigma = 0.5).
* :class:`HardNegativeLoss` (Robinson et al. ICLR 2021, Eq. 5 with the debiased estimator of
  Chuang et al. NeurIPS 2020): negatives from both views reweighted by ``exp(beta s / tau)``,
  ``Ng = max((sum_j w_j e_j / mean_j w_j - tau_plus M e_pos) / (1 - tau_plus), M e^{-1/tau})``
  with ``e = exp(s / tau)``, ``M`` negatives, loss ``-log e_pos / (e_pos + Ng)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lidarcl.registry import MODELS

__all__ = ["PairwiseContrastiveLoss", "InfoNCELoss", "DCLLoss", "HardNegativeLoss",
           "sample_pairs", "check_pairs", "select_pairs", "multi_positive_terms"]


def check_pairs(query: torch.Tensor, key: torch.Tensor, groups=None) -> None:
    if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor) \
            or query.dim() != 2 or query.shape != key.shape:
        raise ValueError("query and key must be (N, C) tensors of one shape, got "
                         f"{tuple(getattr(query, 'shape', ()))} and "
                         f"{tuple(getattr(key, 'shape', ()))}")
    if groups is not None and (groups.dim() != 1 or groups.shape[0] != query.shape[0]):
        raise ValueError(f"groups must have shape (N={query.shape[0]},), got "
                         f"{tuple(groups.shape)}")


def sample_pairs(num: int, max_pairs: int | None, device, generator=None) -> torch.Tensor | None:
    """Rows to keep: ``None`` (all) when ``num <= max_pairs``, else ``max_pairs`` distinct
    rows drawn uniformly (sorted)."""
    if max_pairs is None or num <= max_pairs:
        return None
    perm = torch.randperm(num, generator=generator, device="cpu")[:max_pairs]
    return perm.sort().values.to(device)


def select_pairs(query, key, groups, max_pairs: int | None, generator=None):
    """The checked pairs a loss works on: ``(query, key, groups)``, at most ``max_pairs`` rows
    drawn by :func:`sample_pairs` (``groups`` may be ``None``)."""
    check_pairs(query, key, groups)
    rows = sample_pairs(query.shape[0], max_pairs, query.device, generator)
    if rows is None:
        return query, key, groups
    return query[rows], key[rows], None if groups is None else groups[rows]


def multi_positive_terms(query: torch.Tensor, key: torch.Tensor, positive: torch.Tensor,
                         allowed: torch.Tensor, queue: torch.Tensor | None,
                         temperature: float) -> torch.Tensor:
    """Per-query multi-positive InfoNCE terms ``(Nq,)``: ``mean_{j in P(i)} -log
    softmax_j`` over the keys ``allowed[i]`` admits plus every queued key (negatives only).
    ``positive`` is a subset of ``allowed``; features are L2-normalised, float32."""
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(key.float(), dim=1)
    logits = (q @ k.t() / temperature).masked_fill(~allowed, float("-inf"))
    if queue is not None and len(queue):
        logits = torch.cat([logits, q @ queue.float().t() / temperature], 1)
        positive = torch.cat([positive, positive.new_zeros(len(q), len(queue))], 1)
    log_prob = torch.log_softmax(logits, dim=1).masked_fill(~positive, 0.0)
    return -log_prob.sum(1) / positive.sum(1).clamp(min=1)


class PairwiseContrastiveLoss(nn.Module):
    """Base of the pairwise losses: checks, pair sampling, normalisation, float32,
    symmetric form. Subclasses implement :meth:`directional` on normalised float32 rows."""

    def __init__(self, temperature: float = 0.07, max_pairs: int | None = None,
                 symmetric: bool = False, loss_weight: float = 1.0, normalize: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if max_pairs is not None and max_pairs < 2:
            raise ValueError(f"max_pairs must be >= 2 (or None), got {max_pairs}")
        self.temperature = float(temperature)
        self.max_pairs = max_pairs
        self.symmetric = symmetric
        self.loss_weight = loss_weight
        self.normalize = normalize

    def forward(self, query: torch.Tensor, key: torch.Tensor, groups: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        query, key, groups = select_pairs(query, key, groups, self.max_pairs, generator)
        if query.shape[0] == 0:
            return query.sum() * 0.0
        q, k = query.float(), key.float()
        if self.normalize:
            q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        same = None
        if groups is not None:
            groups = groups.to(q.device)
            same = (groups[:, None] == groups[None, :]) & (groups[:, None] >= 0)
            same.fill_diagonal_(False)
        loss = self.directional(q, k, same)
        if self.symmetric:
            loss = 0.5 * (loss + self.directional(k, q, same))
        return self.loss_weight * loss

    def directional(self, q, k, same):  # pragma: no cover - abstract
        raise NotImplementedError


@MODELS.register_module()
class InfoNCELoss(PairwiseContrastiveLoss):
    """InfoNCE over the other view's rows (module doc)."""

    def directional(self, q, k, same):
        logits = q @ k.t() / self.temperature
        if same is not None:
            logits = logits.masked_fill(same, float("-inf"))
        target = torch.arange(q.shape[0], device=q.device)
        return F.cross_entropy(logits, target)


@MODELS.register_module()
class DCLLoss(PairwiseContrastiveLoss):
    """Decoupled contrastive loss, and DCLW with ``weighted=True`` (module doc)."""

    def __init__(self, temperature: float = 0.1, weighted: bool = False, sigma: float = 0.5,
                 **kwargs):
        super().__init__(temperature=temperature, **kwargs)
        self.weighted = weighted
        self.sigma = sigma

    def directional(self, q, k, same):
        n = q.shape[0]
        cross = q @ k.t()
        positive = torch.diagonal(cross)
        positive_term = -positive / self.temperature
        if self.weighted:
            weight = 2.0 - n * torch.softmax(positive / self.sigma, dim=0)
            positive_term = positive_term * weight
        eye = torch.eye(n, dtype=torch.bool, device=q.device)
        excluded = eye if same is None else eye | same
        negatives = torch.cat([q @ q.t(), cross], dim=1) / self.temperature
        negatives = negatives.masked_fill(excluded.repeat(1, 2), float("-inf"))
        has_negative = ~excluded.all(1)  # an anchor whose negatives are all masked is skipped
        loss = positive_term + torch.logsumexp(negatives, dim=1)
        return loss[has_negative].mean() if bool(has_negative.any()) else q.sum() * 0.0


@MODELS.register_module()
class HardNegativeLoss(PairwiseContrastiveLoss):
    """Hard-negative reweighting with debiasing (module doc). ``beta = 0`` and
    ``tau_plus = 0`` give the plain NT-Xent loss."""

    def __init__(self, temperature: float = 0.5, beta: float = 1.0, tau_plus: float = 0.1,
                 **kwargs):
        super().__init__(temperature=temperature, **kwargs)
        if not 0.0 <= tau_plus < 1.0:
            raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")
        self.beta = beta
        self.tau_plus = tau_plus

    def directional(self, q, k, same):
        n = q.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=q.device)
        excluded = (eye if same is None else eye | same).repeat(1, 2)
        sims = torch.cat([q @ q.t(), q @ k.t()], dim=1) / self.temperature
        log_pos = torch.diagonal(sims[:, n:])
        keep = ~excluded
        count = keep.sum(1).clamp(min=1).to(sims.dtype)     # M negatives per anchor
        # log of sum_j w_j e_j / mean_j w_j with w = e^beta, in log space
        # scale before masking: beta * -inf would be nan for beta = 0 (and +inf for beta < 0)
        log_weighted = torch.logsumexp(((1.0 + self.beta) * sims).masked_fill(
            excluded, float("-inf")), dim=1) \
            - torch.logsumexp((self.beta * sims).masked_fill(excluded, float("-inf")), dim=1) \
            + torch.log(count)
        ng = (torch.exp(log_weighted) - self.tau_plus * count * torch.exp(log_pos)) \
            / (1.0 - self.tau_plus)
        ng = torch.maximum(ng, count * math.exp(-1.0 / self.temperature))
        loss = torch.log(torch.exp(log_pos) + ng) - log_pos
        has_negative = keep.any(1)  # an anchor whose negatives are all masked is skipped
        return loss[has_negative].mean() if bool(has_negative.any()) else q.sum() * 0.0
