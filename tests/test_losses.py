"""Contrastive loss library (``lidarcl.models.losses``) against independent naive references.

Every reference below is written straight from the paper formula with plain Python loops over
anchors / negatives in float64 (explicit ``exp`` sums, no ``logsumexp``, no masking tricks),
never by calling the library. Each test compares the library's value and its gradients with
respect to the inputs (the library computes in float32, hence tolerances around 1e-5..1e-4)
with the reference differentiated by autograd through those loops.

Notation: ``s(a, b)`` is the cosine similarity of two rows, ``t`` the temperature; row ``i``
of ``query`` and ``key`` is a positive pair.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lidarcl.models  # noqa: F401  (registers the losses)
from lidarcl.models.losses import (DCLLoss, HardNegativeLoss, InfoNCELoss, MoCHiLoss,
                                   MVDHELLoss, MVInfoNCELoss, SwAVLoss, mix_hard_negatives,
                                   sinkhorn_knopp)
from lidarcl.registry import MODELS

F64 = torch.float64
VALUE_TOL = dict(rtol=2e-5, atol=2e-5)
GRAD_TOL = dict(rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# naive building blocks
# --------------------------------------------------------------------------------------------

def _zero():
    return torch.zeros((), dtype=F64)


def _unit(v: torch.Tensor) -> torch.Tensor:
    """``v / ||v||`` of one 1-D float64 row."""
    return v / torch.sqrt((v * v).sum())


def _rows(x: torch.Tensor) -> list:
    """L2-normalised rows of ``x`` as a Python list of 1-D float64 tensors."""
    return [_unit(x[i].to(F64)) for i in range(x.shape[0])]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


def _same_group(groups, i: int, j: int) -> bool:
    """``j`` is a likely false negative of anchor ``i``: same label, label >= 0."""
    return groups is not None and j != i and int(groups[j]) == int(groups[i]) \
        and int(groups[i]) >= 0


def _inputs(n: int, c: int, seed: int, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(n, c, generator=g, dtype=F64).to(dtype)
    key = (query.to(F64) + 0.8 * torch.randn(n, c, generator=g, dtype=F64)).to(dtype)
    return query, key


def _compare(library_fn, reference_fn, tensors, value_tol=VALUE_TOL, grad_tol=GRAD_TOL):
    """Value and gradients (w.r.t. every tensor) of the library vs the naive reference."""
    lib_in = [t.detach().clone().requires_grad_(True) for t in tensors]
    ref_in = [t.detach().clone().to(F64).requires_grad_(True) for t in tensors]
    value = library_fn(*lib_in)
    expected = reference_fn(*ref_in)
    assert value.dim() == 0 and torch.isfinite(value)
    torch.testing.assert_close(value.detach().to(F64), expected.detach(), **value_tol)
    lib_grads = torch.autograd.grad(value, lib_in, allow_unused=True)
    ref_grads = torch.autograd.grad(expected, ref_in, allow_unused=True)
    for lib_grad, ref_grad in zip(lib_grads, ref_grads):
        lib_grad = torch.zeros_like(ref_in[0]) if lib_grad is None else lib_grad.to(F64)
        ref_grad = torch.zeros_like(lib_grad) if ref_grad is None else ref_grad
        torch.testing.assert_close(lib_grad, ref_grad, **grad_tol)
    return value


GROUPS = {
    None: None,
    "labels": [0, 0, 1, -1, 1, 2, -1, 0],   # N = 8, with "no group" (-1) rows
}


# --------------------------------------------------------------------------------------------
# 1. InfoNCE
# --------------------------------------------------------------------------------------------

def naive_infonce(q, k, t, groups=None):
    """InfoNCE (Oord et al. 2018) as used by PointContrast (Xie et al. ECCV 2020, Eq. 1):
    ``mean_i -log exp(s(q_i, k_i)/t) / sum_j exp(s(q_i, k_j)/t)``; with groups, a negative
    ``j != i`` of the same group (label >= 0) leaves the denominator."""
    qs, ks = _rows(q), _rows(k)
    n = len(qs)
    total = _zero()
    for i in range(n):
        numerator = torch.exp(_dot(qs[i], ks[i]) / t)
        denominator = _zero()
        for j in range(n):
            if _same_group(groups, i, j):
                continue
            denominator = denominator + torch.exp(_dot(qs[i], ks[j]) / t)
        total = total - torch.log(numerator / denominator)
    return total / n


def naive_symmetric(direction, q, k, symmetric, **kw):
    if symmetric:
        return 0.5 * (direction(q, k, **kw) + direction(k, q, **kw))
    return direction(q, k, **kw)


@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("groups", list(GROUPS))
def test_infonce_matches_naive(temperature, symmetric, groups):
    query, key = _inputs(8, 5, seed=1)
    labels = None if groups is None else torch.tensor(GROUPS[groups])
    loss = InfoNCELoss(temperature=temperature, symmetric=symmetric)
    _compare(lambda q, k: loss(q, k, groups=labels),
             lambda q, k: naive_symmetric(naive_infonce, q, k, symmetric, t=temperature,
                                          groups=labels),
             [query, key])


@pytest.mark.parametrize("symmetric", [False, True])
def test_infonce_max_pairs_uses_the_seeded_draw(symmetric):
    n, max_pairs, seed = 11, 6, 123
    query, key = _inputs(n, 4, seed=2)
    labels = torch.tensor([0, 1, 0, -1, 2, 1, 0, 2, -1, 1, 0])
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_pairs]
    rows = rows.sort().values
    loss = InfoNCELoss(temperature=0.1, max_pairs=max_pairs, symmetric=symmetric)
    _compare(lambda q, k: loss(q, k, groups=labels,
                               generator=torch.Generator().manual_seed(seed)),
             lambda q, k: naive_symmetric(naive_infonce, q[rows], k[rows], symmetric, t=0.1,
                                          groups=labels[rows]),
             [query, key])
    # rows that were not drawn get no gradient
    q = query.clone().requires_grad_(True)
    loss(q, key, groups=labels, generator=torch.Generator().manual_seed(seed)).backward()
    dropped = torch.ones(n, dtype=torch.bool)
    dropped[rows] = False
    assert torch.all(q.grad[dropped] == 0) and torch.all(q.grad[rows].abs().sum(1) > 0)


@pytest.mark.parametrize("max_pairs", [6, 7, 100])
def test_infonce_max_pairs_at_least_n_keeps_all_rows(max_pairs):
    query, key = _inputs(6, 4, seed=3)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    loss = InfoNCELoss(temperature=0.2, max_pairs=max_pairs)
    _compare(lambda q, k: loss(q, k, generator=g),
             lambda q, k: naive_infonce(q, k, 0.2), [query, key])
    assert torch.equal(g.get_state(), state)  # nothing drawn


def test_infonce_rejects_bad_options():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0.0)
    with pytest.raises(ValueError, match="max_pairs"):
        InfoNCELoss(max_pairs=1)


# --------------------------------------------------------------------------------------------
# 2. DCL / DCLW
# --------------------------------------------------------------------------------------------

def naive_dcl(q, k, t, weighted=False, sigma=0.5, groups=None, detach_weight=False):
    """Decoupled contrastive loss (Yeh et al. ECCV 2022, Eq. 6; negatives from both views as
    in the authors' code): per anchor ``-w_i s(q_i, k_i)/t + log(sum_{j != i} exp(s(q_i, q_j)
    /t) + sum_{j != i} exp(s(q_i, k_j)/t))``, ``w_i = 1``, or for DCLW (Eq. 7) the von
    Mises-Fisher weight ``w_i = 2 - N exp(s(q_i,k_i)/sigma) / sum_m exp(s(q_m,k_m)/sigma)``
    (not detached). Same-group negatives leave both sums; an anchor without negatives is
    skipped. ``detach_weight`` (a wrong variant, for the test) stops the weight's gradient."""
    qs, ks = _rows(q), _rows(k)
    n = len(qs)
    vmf = [torch.exp(_dot(qs[m], ks[m]) / sigma) for m in range(n)]
    vmf_sum = _zero()
    for value in vmf:
        vmf_sum = vmf_sum + value
    terms = []
    for i in range(n):
        negatives, count = _zero(), 0
        for j in range(n):
            if j == i or _same_group(groups, i, j):
                continue
            negatives = negatives + torch.exp(_dot(qs[i], qs[j]) / t) \
                + torch.exp(_dot(qs[i], ks[j]) / t)
            count += 2
        if count == 0:
            continue
        positive_term = -_dot(qs[i], ks[i]) / t
        if weighted:
            weight = 2.0 - n * vmf[i] / vmf_sum
            positive_term = positive_term * (weight.detach() if detach_weight else weight)
        terms.append(positive_term + torch.log(negatives))
    if not terms:
        return _zero()
    total = _zero()
    for term in terms:
        total = total + term
    return total / len(terms)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("groups", list(GROUPS))
def test_dcl_matches_naive(weighted, symmetric, groups):
    query, key = _inputs(8, 6, seed=4)
    labels = None if groups is None else torch.tensor(GROUPS[groups])
    loss = DCLLoss(temperature=0.1, weighted=weighted, sigma=0.5, symmetric=symmetric)
    _compare(lambda q, k: loss(q, k, groups=labels),
             lambda q, k: naive_symmetric(naive_dcl, q, k, symmetric, t=0.1, weighted=weighted,
                                          sigma=0.5, groups=labels),
             [query, key])


def test_dclw_sigma_and_weight_gradient():
    """DCLW with a non-default sigma matches the reference, and its weight keeps its
    gradient: the reference with a detached weight has a clearly different gradient."""
    query, key = _inputs(7, 5, seed=5)
    _compare(lambda q, k: DCLLoss(temperature=0.2, weighted=True, sigma=0.3)(q, k),
             lambda q, k: naive_dcl(q, k, 0.2, weighted=True, sigma=0.3), [query, key])
    q = query.clone().requires_grad_(True)
    DCLLoss(temperature=0.2, weighted=True, sigma=0.3)(q, key).backward()
    q64 = query.clone().requires_grad_(True)
    naive_dcl(q64, key, 0.2, weighted=True, sigma=0.3, detach_weight=True).backward()
    assert (q.grad.to(F64) - q64.grad).abs().max() > 1e-2


@pytest.mark.parametrize("make", [lambda: DCLLoss(), lambda: DCLLoss(weighted=True),
                                  lambda: HardNegativeLoss()], ids=["dcl", "dclw", "hard"])
def test_all_anchors_without_negatives_give_zero(make):
    """Every row in one group: no anchor keeps a negative, all are skipped -> a zero that can
    be backpropagated (no nan gradient). Anchor ``i`` lacks negatives only if every other row
    shares its group, so it is all anchors or none."""
    query, key = _inputs(5, 4, seed=6)
    q = query.clone().requires_grad_(True)
    value = make()(q, key, groups=torch.zeros(5, dtype=torch.int64))
    assert value.dim() == 0 and float(value.detach()) == 0.0
    value.backward()
    assert torch.all(q.grad == 0)
    single = make()(q[:1], key[:1])  # N = 1: no negatives either
    assert float(single.detach()) == 0.0 and torch.isfinite(single)
    # and the naive references agree
    for naive in (naive_dcl, naive_hard_negative):
        kw = dict(beta=1.0, tau_plus=0.1) if naive is naive_hard_negative else {}
        assert float(naive(query, key, 0.5, groups=torch.zeros(5, dtype=torch.int64), **kw)) \
            == 0.0


# --------------------------------------------------------------------------------------------
# 3. Hard negatives (Robinson et al.)
# --------------------------------------------------------------------------------------------

def naive_hard_negative(q, k, t, beta, tau_plus, groups=None, clamp=True):
    """Hard negative sampling (Robinson et al. ICLR 2021, Eq. 5) with the debiased estimator
    of Chuang et al. (NeurIPS 2020): negatives of anchor ``i`` are ``q_j`` and ``k_j`` for
    ``j != i`` (minus same-group ones), ``e_j = exp(s(q_i, x_j)/t)``, ``w_j = e_j ** beta``,
    ``Ng = max((sum_j w_j e_j / mean_j w_j - tau_plus M pos) / (1 - tau_plus), M e^{-1/t})``,
    loss ``-log pos / (pos + Ng)``; anchors without negatives are skipped."""
    qs, ks = _rows(q), _rows(k)
    n = len(qs)
    terms = []
    for i in range(n):
        negatives = []
        for j in range(n):
            if j == i or _same_group(groups, i, j):
                continue
            negatives.append(torch.exp(_dot(qs[i], qs[j]) / t))
            negatives.append(torch.exp(_dot(qs[i], ks[j]) / t))
        if not negatives:
            continue
        m = len(negatives)
        positive = torch.exp(_dot(qs[i], ks[i]) / t)
        weighted_sum, weight_sum = _zero(), _zero()
        for e in negatives:
            w = e ** beta
            weighted_sum = weighted_sum + w * e
            weight_sum = weight_sum + w
        reweighted = weighted_sum / (weight_sum / m)
        ng = (reweighted - tau_plus * m * positive) / (1.0 - tau_plus)
        floor = m * math.exp(-1.0 / t)
        if clamp and float(ng.detach()) < floor:
            ng = torch.tensor(floor, dtype=F64)
        terms.append(-torch.log(positive / (positive + ng)))
    if not terms:
        return _zero()
    total = _zero()
    for term in terms:
        total = total + term
    return total / len(terms)


def naive_nt_xent(q, k, t):
    """NT-Xent with both views' negatives (SimCLR, Chen et al. ICML 2020, anchors in ``q``):
    ``-log pos / (pos + sum_{j != i} [exp(s(q_i, q_j)/t) + exp(s(q_i, k_j)/t)])``."""
    qs, ks = _rows(q), _rows(k)
    n = len(qs)
    total = _zero()
    for i in range(n):
        positive = torch.exp(_dot(qs[i], ks[i]) / t)
        negatives = _zero()
        for j in range(n):
            if j != i:
                negatives = negatives + torch.exp(_dot(qs[i], qs[j]) / t) \
                    + torch.exp(_dot(qs[i], ks[j]) / t)
        total = total - torch.log(positive / (positive + negatives))
    return total / n


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("tau_plus", [0.0, 0.1])
@pytest.mark.parametrize("groups", list(GROUPS))
def test_hard_negative_matches_naive(beta, tau_plus, groups):
    query, key = _inputs(8, 5, seed=7)
    labels = None if groups is None else torch.tensor(GROUPS[groups])
    loss = HardNegativeLoss(temperature=0.5, beta=beta, tau_plus=tau_plus)
    _compare(lambda q, k: loss(q, k, groups=labels),
             lambda q, k: naive_hard_negative(q, k, 0.5, beta, tau_plus, groups=labels),
             [query, key])


def test_hard_negative_symmetric_matches_naive():
    query, key = _inputs(6, 4, seed=8)
    loss = HardNegativeLoss(temperature=0.5, beta=1.0, tau_plus=0.1, symmetric=True)
    _compare(loss, lambda q, k: naive_symmetric(naive_hard_negative, q, k, True, t=0.5,
                                                beta=1.0, tau_plus=0.1), [query, key])


def test_hard_negative_floor_is_applied():
    """A large ``tau_plus`` drives the debiased estimate below ``M e^{-1/t}``: the clamp must
    be active (checked on the reference) and the library must follow it."""
    query, key = _inputs(6, 4, seed=9)
    key = query + 0.05 * key  # strong positives
    clamped = naive_hard_negative(query, key, 0.5, 1.0, 0.9)
    unclamped = naive_hard_negative(query, key, 0.5, 1.0, 0.9, clamp=False)
    assert not torch.isclose(clamped, unclamped)
    _compare(HardNegativeLoss(temperature=0.5, beta=1.0, tau_plus=0.9),
             lambda q, k: naive_hard_negative(q, k, 0.5, 1.0, 0.9), [query, key])


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_hard_negative_beta0_tau0_is_nt_xent(temperature):
    query, key = _inputs(9, 6, seed=10)
    _compare(HardNegativeLoss(temperature=temperature, beta=0.0, tau_plus=0.0),
             lambda q, k: naive_nt_xent(q, k, temperature), [query, key])


def test_hard_negative_rejects_bad_tau_plus():
    with pytest.raises(ValueError, match="tau_plus"):
        HardNegativeLoss(tau_plus=1.0)


# --------------------------------------------------------------------------------------------
# 4. MoCHi
# --------------------------------------------------------------------------------------------

def naive_queue_infonce(q, k, t, negative_rows, with_batch_keys=False):
    """MoCo InfoNCE (He et al. CVPR 2020, Eq. 1) with MoCHi's synthetic negatives (Kalantidis
    et al. NeurIPS 2020, Sec. 4): cross-entropy with the positive at index 0 over
    ``[q.k, q.n_1, ..., q.n_M] / t``; the key is a constant (momentum encoder), so are the
    queue and the synthetic negatives. ``negative_rows[b]`` lists anchor ``b``'s negatives
    (normalised float64 rows); ``with_batch_keys``: the other in-batch keys instead."""
    qs = _rows(q)
    ks = _rows(k.detach())
    n = len(qs)
    total = _zero()
    for b in range(n):
        logits = [_dot(qs[b], ks[b])]
        if with_batch_keys:
            logits += [_dot(qs[b], ks[j]) for j in range(n) if j != b]
        else:
            logits += [_dot(qs[b], row) for row in negative_rows[b]]
        denominator = _zero()
        for logit in logits:
            denominator = denominator + torch.exp(logit / t)
        total = total - torch.log(torch.exp(logits[0] / t) / denominator)
    return total / n


def _unit_rows(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, c, generator=g), dim=1)


def test_mochi_queue_is_fifo_of_normalised_detached_keys():
    size, dim = 7, 4
    loss = MoCHiLoss(dim, queue_size=size, n_hard=100, s=0, s_prime=0, max_pairs=None)
    loss.train()
    history = []
    for step, batch in enumerate([3, 3, 3, 2, 5, 9, 7, 1]):
        query, key = _inputs(batch, dim, seed=20 + step, dtype=torch.float32)
        key.requires_grad_(True)
        loss(query.requires_grad_(True), key).backward()
        history += [row / row.norm() for row in key.detach()]
        assert not loss.queue.requires_grad and loss.queue.grad_fn is None
        filled = min(len(history), size)
        assert int(loss.queue_len) == filled
        expected = torch.stack(history[-size:])            # oldest -> newest
        if len(history) < size:
            assert int(loss.queue_ptr) == len(history)
            torch.testing.assert_close(loss.queue[:filled], expected)
            assert torch.all(loss.queue[filled:] == 0)
        else:  # full: the pointer is at the oldest key, next to be overwritten
            torch.testing.assert_close(torch.roll(loss.queue, -int(loss.queue_ptr), 0),
                                       expected)
    # simple wrap-around bookkeeping of the first steps: 3 -> 6 -> 9 % 7
    loss2 = MoCHiLoss(dim, queue_size=size, n_hard=100, s=0, s_prime=0, max_pairs=None)
    ptrs = []
    for step in range(3):
        query, key = _inputs(3, dim, seed=40 + step, dtype=torch.float32)
        loss2(query, key)
        ptrs.append((int(loss2.queue_ptr), int(loss2.queue_len)))
    assert ptrs == [(3, 3), (6, 6), (2, 7)]
    # eval mode does not enqueue
    loss2.eval()
    before = loss2.queue.clone()
    loss2(*_inputs(3, dim, seed=50, dtype=torch.float32))
    assert torch.equal(loss2.queue, before) and int(loss2.queue_ptr) == 2


def test_mochi_empty_queue_uses_in_batch_keys():
    query, key = _inputs(7, 5, seed=11)
    loss = MoCHiLoss(5, queue_size=32, temperature=0.2, n_hard=4, s=3, s_prime=2)
    loss.eval()
    _compare(loss, lambda q, k: naive_queue_infonce(q, k, 0.2, None, with_batch_keys=True),
             [query, key])
    # the key is detached: no gradient reaches it
    k = key.clone().requires_grad_(True)
    loss.train()
    loss(query.clone().requires_grad_(True), k).backward()
    assert k.grad is None


def _filled_mochi(dim, queue_size, fill, seed, **kw):
    """A MoCHi loss whose queue holds ``fill`` keys, enqueued by training-mode forward
    calls of at most 4 rows (below any ``max_pairs`` used here, which also caps the keys
    enqueued per call)."""
    loss = MoCHiLoss(dim, queue_size=queue_size, **kw)
    loss.train()
    _, keys = _inputs(fill, dim, seed=seed, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, fill, 4):
            chunk = keys[start:start + 4]
            loss(chunk + 0.1, chunk)
    assert int(loss.queue_len) == min(fill, queue_size)
    return loss


def test_mochi_queue_below_n_hard_adds_no_synthetic_negative():
    loss = _filled_mochi(6, 16, 5, seed=12, temperature=0.2, n_hard=8, s=4, s_prime=3,
                         max_pairs=None)
    loss.eval()
    queue = [row.to(F64) for row in loss.queue[:5]]
    query, key = _inputs(6, 6, seed=13)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    _compare(lambda q, k: loss(q, k, generator=g),
             lambda q, k: naive_queue_infonce(q, k, 0.2, [queue] * 6), [query, key])
    assert torch.equal(g.get_state(), state)


def _check_mixed_negatives(q, queue, mix, n_hard, s, s_prime, beta_max):
    """Each synthetic negative against MoCHi Eq. 3 / Eq. 4, one by one in float64."""
    batch = q.shape[0]
    assert mix.mixed.shape == (batch, s, q.shape[1])
    assert mix.mixed_query.shape == (batch, s_prime, q.shape[1])
    assert mix.pair_index.shape == (batch, s, 2) and mix.query_index.shape == (batch, s_prime)
    assert not mix.mixed.requires_grad and not mix.mixed_query.requires_grad
    q64, queue64 = q.detach().to(F64), queue.to(F64)
    for b in range(batch):
        sims = [(float(_dot(q64[b], queue64[j])), j) for j in range(len(queue64))]
        hardest = {j for _, j in sorted(sims, reverse=True)[:n_hard]}
        for m in range(s):
            i0, i1 = int(mix.pair_index[b, m, 0]), int(mix.pair_index[b, m, 1])
            assert i0 in hardest and i1 in hardest
            alpha = float(mix.alpha[b, m])
            assert 0.0 <= alpha <= 1.0
            expected = _unit(alpha * queue64[i0] + (1 - alpha) * queue64[i1])
            torch.testing.assert_close(mix.mixed[b, m].to(F64), expected, rtol=1e-5, atol=1e-6)
        for m in range(s_prime):
            j = int(mix.query_index[b, m])
            assert j in hardest
            beta = float(mix.beta[b, m])
            assert 0.0 <= beta <= beta_max
            expected = _unit(beta * q64[b] + (1 - beta) * queue64[j])
            torch.testing.assert_close(mix.mixed_query[b, m].to(F64), expected, rtol=1e-5,
                                       atol=1e-6)


@pytest.mark.parametrize("beta_max", [0.5, 0.3])
def test_mix_hard_negatives_naive(beta_max):
    n_hard, s, s_prime = 5, 6, 4
    q = _unit_rows(7, 6, seed=14).requires_grad_(True)
    queue = _unit_rows(20, 6, seed=15)
    mix = mix_hard_negatives(q, queue, n_hard, s, s_prime, beta_max,
                             generator=torch.Generator().manual_seed(3))
    _check_mixed_negatives(q, queue, mix, n_hard, s, s_prime, beta_max)
    again = mix_hard_negatives(q, queue, n_hard, s, s_prime, beta_max,
                               generator=torch.Generator().manual_seed(3))
    assert torch.equal(mix.mixed, again.mixed) and torch.equal(mix.pair_index, again.pair_index)
    # n_hard larger than the queue: every queue row may be picked
    small = mix_hard_negatives(q, queue[:3], 10, s, s_prime, beta_max,
                               generator=torch.Generator().manual_seed(4))
    _check_mixed_negatives(q, queue[:3], small, 3, s, s_prime, beta_max)


@pytest.mark.parametrize("max_pairs", [None, 9, 6])
def test_mochi_loss_with_mixing_matches_naive(max_pairs):
    n, dim, n_hard, s, s_prime, seed = 9, 6, 5, 4, 3, 77
    loss = _filled_mochi(dim, 24, 20, seed=16, temperature=0.2, n_hard=n_hard, s=s,
                         s_prime=s_prime, max_pairs=max_pairs)
    loss.eval()
    queue = loss.queue[:int(loss.queue_len)].clone()
    query, key = _inputs(n, dim, seed=17)
    # the same draws: sample_pairs (only when N > max_pairs), then the mixing
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(n)
    if max_pairs is not None and n > max_pairs:
        rows = torch.randperm(n, generator=g)[:max_pairs].sort().values
    q32 = F.normalize(query[rows].float(), dim=1)
    mix = mix_hard_negatives(q32, queue, n_hard, s, s_prime, 0.5, generator=g)
    _check_mixed_negatives(q32, queue, mix, n_hard, s, s_prime, 0.5)
    negatives = []
    for b in range(len(rows)):
        negatives.append([row.to(F64) for row in queue]
                         + [row.to(F64) for row in mix.mixed[b]]
                         + [row.to(F64) for row in mix.mixed_query[b]])
    _compare(lambda q, k: loss(q, k, generator=torch.Generator().manual_seed(seed)),
             lambda q, k: naive_queue_infonce(q[rows], k[rows], 0.2, negatives),
             [query, key])


def test_mochi_training_step_backpropagates_and_enqueues():
    """Training mode with a filled queue: the backward pass still works after the keys have
    entered the queue (the logits must not hold a view of the buffer being overwritten), and
    gives the same gradient as the eval-mode forward."""
    n, dim, seed = 6, 5, 5
    loss = _filled_mochi(dim, 16, 12, seed=18, temperature=0.2, n_hard=4, s=3, s_prime=2,
                         max_pairs=None)
    query, key = _inputs(n, dim, seed=19, dtype=torch.float32)
    loss.eval()
    q_eval = query.clone().requires_grad_(True)
    value_eval = loss(q_eval, key, generator=torch.Generator().manual_seed(seed))
    value_eval.backward()
    loss.train()
    q = query.clone().requires_grad_(True)
    k = key.clone().requires_grad_(True)
    value = loss(q, k, generator=torch.Generator().manual_seed(seed))
    value.backward()
    assert int(loss.queue_len) == 16 and int(loss.queue_ptr) == (12 + n) % 16
    torch.testing.assert_close(value, value_eval)
    torch.testing.assert_close(q.grad, q_eval.grad)
    assert k.grad is None and torch.all(q.grad.abs().sum(1) > 0)


# --------------------------------------------------------------------------------------------
# 5. Multi-view losses
# --------------------------------------------------------------------------------------------

def _e(a, b, t):
    return torch.exp(_dot(a, b) / t)


def naive_mv_infonce(views, t):
    """Multi-view InfoNCE (Koromilas et al. 2025, arXiv 2507.06979, authors' code):
    ``mean_n -log [sum_{a != b} e(z_an, z_bn)] / [sum_v sum_{(w,m) != (v,n)} e(z_vn, z_wm)]``
    with ``e(a, b) = exp(<a, b>/t)`` on normalised rows."""
    z = [_rows(v) for v in views]
    num_views, n = len(z), len(z[0])
    total = _zero()
    for i in range(n):
        numerator = _zero()
        for a in range(num_views):
            for b in range(num_views):
                if a != b:
                    numerator = numerator + _e(z[a][i], z[b][i], t)
        denominator = _zero()
        for v in range(num_views):
            for w in range(num_views):
                for m in range(n):
                    if (w, m) != (v, i):
                        denominator = denominator + _e(z[v][i], z[w][m], t)
        total = total - torch.log(numerator / denominator)
    return total / n


def naive_mv_dhel(views, t):
    """Multi-view decoupled hyperspherical energy loss (Koromilas et al. 2025):
    ``mean_n [-log sum_{a < b} e(z_an, z_bn) + sum_v log sum_{m != n} e(z_vn, z_vm)]``."""
    z = [_rows(v) for v in views]
    num_views, n = len(z), len(z[0])
    total = _zero()
    for i in range(n):
        alignment = _zero()
        for a in range(num_views):
            for b in range(a + 1, num_views):
                alignment = alignment + _e(z[a][i], z[b][i], t)
        uniformity = _zero()
        for v in range(num_views):
            inner = _zero()
            for m in range(n):
                if m != i:
                    inner = inner + _e(z[v][i], z[v][m], t)
            uniformity = uniformity + torch.log(inner)
        total = total - torch.log(alignment) + uniformity
    return total / n


def _views(num_views, n, c, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, c, generator=g, dtype=F64)
    return [(base + 0.7 * torch.randn(n, c, generator=g, dtype=F64)).to(dtype)
            for _ in range(num_views)]


MULTIVIEW = [(MVInfoNCELoss, naive_mv_infonce), (MVDHELLoss, naive_mv_dhel)]


@pytest.mark.parametrize("cls,naive", MULTIVIEW, ids=["mv_infonce", "mv_dhel"])
@pytest.mark.parametrize("num_views", [2, 3, 4])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_multiview_matches_naive(cls, naive, num_views, temperature):
    views = _views(num_views, 6, 4, seed=21 + num_views)
    loss = cls(temperature=temperature)
    # separate views as positional arguments
    _compare(lambda *z: loss(*z), lambda *z: naive(z, temperature), views)
    # one stacked (V, N, C) tensor, and a list of views
    _compare(lambda *z: loss(torch.stack(z)), lambda *z: naive(z, temperature), views)
    _compare(lambda *z: loss(list(z)), lambda *z: naive(z, temperature), views)


@pytest.mark.parametrize("cls,naive", MULTIVIEW, ids=["mv_infonce", "mv_dhel"])
def test_multiview_max_pairs(cls, naive):
    n, max_pairs, seed = 10, 6, 8
    views = _views(3, n, 4, seed=30)
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_pairs]
    rows = rows.sort().values
    loss = cls(temperature=0.2, max_pairs=max_pairs)
    _compare(lambda *z: loss(*z, generator=torch.Generator().manual_seed(seed)),
             lambda *z: naive([v[rows] for v in z], 0.2), views)


def _simclr_terms(view0, view1, t):
    """SimCLR NT-Xent (Chen et al. ICML 2020) over the 2N rows of two views: per instance
    ``n`` the positive ``e_n = e(z_0n, z_1n)`` and the two rows' denominators ``D_vn = sum
    over the 2N - 1 other rows``."""
    rows = _rows(view0) + _rows(view1)
    n = view0.shape[0]
    positives, denominators = [], []
    for i in range(n):
        positives.append(_e(rows[i], rows[n + i], t))
        pair = []
        for r in (i, n + i):
            d = _zero()
            for j in range(2 * n):
                if j != r:
                    d = d + _e(rows[r], rows[j], t)
            pair.append(d)
        denominators.append(pair)
    return positives, denominators


def naive_simclr(view0, view1, t):
    """NT-Xent: ``mean over the 2N rows of -log e_n / D_vn``."""
    positives, denominators = _simclr_terms(view0, view1, t)
    total = _zero()
    for e_n, (d0, d1) in zip(positives, denominators):
        total = total - torch.log(e_n / d0) - torch.log(e_n / d1)
    return total / (2 * len(positives))


def test_mv_infonce_two_views_vs_simclr():
    """For V = 2 the MV-InfoNCE term of instance ``n`` is ``-log 2 e_n / (D_0n + D_1n) =
    -log e_n / ((D_0n + D_1n) / 2)``: NT-Xent with the arithmetic mean of the two rows'
    denominators, where SimCLR averages the logs (geometric mean). So MV-InfoNCE >= NT-Xent,
    with equality when ``D_0n = D_1n`` for every ``n``, e.g. when the second view is a
    reflection of the first (``z_1 = z_0 H``, ``H`` symmetric orthogonal)."""
    t = 0.2
    view0, view1 = _views(2, 7, 5, seed=31)
    loss = MVInfoNCELoss(temperature=t)

    def arithmetic(v0, v1):
        positives, denominators = _simclr_terms(v0, v1, t)
        total = _zero()
        for e_n, (d0, d1) in zip(positives, denominators):
            total = total - torch.log(e_n / (0.5 * (d0 + d1)))
        return total / len(positives)

    value = _compare(loss, arithmetic, [view0, view1])
    assert float(value.detach()) >= float(naive_simclr(view0, view1, t)) - 1e-6
    # reflected second view: D_0n == D_1n, MV-InfoNCE == SimCLR NT-Xent exactly
    u = _unit(torch.tensor([1.0, -2.0, 0.5, 0.3, 1.5], dtype=F64))
    householder = torch.eye(5, dtype=F64) - 2 * torch.outer(u, u)
    reflected = view0 @ householder
    _compare(loss, lambda v0, v1: naive_simclr(v0, v1, t), [view0, reflected])


def test_multiview_rejects_bad_views():
    with pytest.raises(ValueError, match="same"):
        MVInfoNCELoss()(torch.randn(5, 4), torch.randn(5, 5))
    with pytest.raises(ValueError, match=r"V >= 2"):
        MVDHELLoss()(torch.randn(1, 5, 4))
    with pytest.raises(ValueError, match=r"V >= 2"):
        MVDHELLoss()(torch.randn(5, 4))
    with pytest.raises(ValueError, match="temperature"):
        MVInfoNCELoss(temperature=-1.0)


# --------------------------------------------------------------------------------------------
# 6. SwAV
# --------------------------------------------------------------------------------------------

def naive_sinkhorn(scores, epsilon, iterations):
    """Sinkhorn-Knopp equal-partition codes (SwAV, Caron et al. NeurIPS 2020, Sec. 3.1 and
    the authors' ``distributed_sinkhorn``) with Python floats: ``Q = exp(scores/eps)^T``
    (K x B) normalised to sum 1, then ``iterations`` of rows ``/= K * row sum``, columns
    ``/= B * column sum``; codes ``(Q B)^T``."""
    b_size, k_size = len(scores), len(scores[0])
    q = [[math.exp(float(scores[b][k]) / epsilon) for b in range(b_size)]
         for k in range(k_size)]
    total = sum(sum(row) for row in q)
    q = [[x / total for x in row] for row in q]
    for _ in range(iterations):
        for k in range(k_size):
            row_sum = sum(q[k])
            q[k] = [x / (k_size * row_sum) for x in q[k]]
        for b in range(b_size):
            col_sum = sum(q[k][b] for k in range(k_size))
            for k in range(k_size):
                q[k][b] = q[k][b] / (b_size * col_sum)
    return [[q[k][b] * b_size for k in range(k_size)] for b in range(b_size)]


@pytest.mark.parametrize("epsilon,iterations", [(0.05, 3), (0.1, 1), (0.05, 10)])
def test_sinkhorn_matches_naive(epsilon, iterations):
    g = torch.Generator().manual_seed(40)
    scores = F.normalize(torch.randn(8, 6, generator=g, dtype=F64), dim=1) \
        @ F.normalize(torch.randn(5, 6, generator=g, dtype=F64), dim=1).t()
    codes = sinkhorn_knopp(scores, epsilon, iterations)
    assert codes.shape == (8, 5) and codes.dtype == torch.float32
    expected = torch.tensor(naive_sinkhorn(scores.tolist(), epsilon, iterations), dtype=F64)
    torch.testing.assert_close(codes.to(F64), expected, rtol=1e-4, atol=1e-6)


def test_sinkhorn_marginals_converge():
    """Each code row sums to 1 (the last step normalises columns of Q); the prototypes are
    used equally after many iterations (code column sums -> B / K)."""
    g = torch.Generator().manual_seed(41)
    b_size, k_size = 12, 4
    scores = torch.rand(b_size, k_size, generator=g) * 2 - 1
    codes = sinkhorn_knopp(scores, 0.5, 300)
    torch.testing.assert_close(codes.sum(1), torch.ones(b_size), rtol=0, atol=1e-5)
    torch.testing.assert_close(codes.sum(0), torch.full((k_size,), b_size / k_size),
                               rtol=0, atol=1e-3)
    assert torch.all(codes >= 0)
    # also true of the naive reference, and they agree
    expected = torch.tensor(naive_sinkhorn(scores.tolist(), 0.5, 300), dtype=F64)
    torch.testing.assert_close(codes.to(F64), expected, rtol=1e-4, atol=1e-6)


def naive_swav(query, key, weight, t, epsilon, iterations):
    """SwAV swapped prediction (Caron et al. 2020, Eq. 1-3): ``p = z_hat C_hat^T`` with
    normalised features and prototype rows, codes of the OTHER view by Sinkhorn without
    gradient, ``0.5 [mean_b -sum_k q_t log softmax(p_s/T) + mean_b -sum_k q_s log
    softmax(p_t/T)]``."""
    prototypes = _rows(weight)

    def scores(z):
        return [[_dot(row, c) for c in prototypes] for row in _rows(z)]

    def cross_entropy(codes, p):
        total = _zero()
        for b in range(len(p)):
            log_norm = _zero()
            for logit in p[b]:
                log_norm = log_norm + torch.exp(logit / t)
            log_norm = torch.log(log_norm)
            for k, logit in enumerate(p[b]):
                total = total - codes[b][k] * (logit / t - log_norm)
        return total / len(p)

    p_s, p_t = scores(query), scores(key)
    q_s = naive_sinkhorn([[float(x.detach()) for x in row] for row in p_s], epsilon,
                         iterations)
    q_t = naive_sinkhorn([[float(x.detach()) for x in row] for row in p_t], epsilon,
                         iterations)
    return 0.5 * (cross_entropy(q_t, p_s) + cross_entropy(q_s, p_t))


@pytest.mark.parametrize("freeze", [False, True])
@pytest.mark.parametrize("temperature,epsilon,iterations", [(0.1, 0.05, 3), (0.2, 0.1, 5)])
def test_swav_matches_naive(freeze, temperature, epsilon, iterations):
    n, dim, num_prototypes = 8, 6, 5
    torch.manual_seed(42)
    loss = SwAVLoss(dim, num_prototypes, temperature=temperature, epsilon=epsilon,
                    sinkhorn_iterations=iterations)
    loss.freeze_prototypes = freeze
    query, key = _inputs(n, dim, seed=43)
    weight = loss.prototypes.weight.detach().to(F64).clone().requires_grad_(True)
    _compare(loss, lambda q, k: naive_swav(q, k, weight, temperature, epsilon, iterations),
             [query, key])
    # prototype gradient: none while frozen, the reference's otherwise
    loss.zero_grad(set_to_none=True)
    loss(query.clone().requires_grad_(True), key).backward()
    expected = naive_swav(query, key, weight, temperature, epsilon, iterations)
    (weight_grad,) = torch.autograd.grad(expected, [weight])
    if freeze:
        assert loss.prototypes.weight.grad is None
    else:
        torch.testing.assert_close(loss.prototypes.weight.grad.to(F64), weight_grad,
                                   **GRAD_TOL)


def test_swav_max_pairs():
    n, dim, max_pairs, seed = 10, 4, 6, 5
    torch.manual_seed(44)
    loss = SwAVLoss(dim, 3, max_pairs=max_pairs)
    weight = loss.prototypes.weight.detach().to(F64)
    query, key = _inputs(n, dim, seed=45)
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_pairs]
    rows = rows.sort().values
    _compare(lambda q, k: loss(q, k, generator=torch.Generator().manual_seed(seed)),
             lambda q, k: naive_swav(q[rows], k[rows], weight, 0.1, 0.05, 3), [query, key])


# --------------------------------------------------------------------------------------------
# 7. Common behaviour
# --------------------------------------------------------------------------------------------

DIM = 6


def _all_losses():
    torch.manual_seed(0)
    return {
        "InfoNCELoss": InfoNCELoss(temperature=0.07),
        "InfoNCELoss_sym_cap": InfoNCELoss(temperature=0.07, symmetric=True, max_pairs=4),
        "DCLLoss": DCLLoss(),
        "DCLWLoss": DCLLoss(weighted=True),
        "HardNegativeLoss": HardNegativeLoss(),
        "MoCHiLoss": MoCHiLoss(DIM, queue_size=16, n_hard=4, s=3, s_prime=2),
        "MVInfoNCELoss": MVInfoNCELoss(temperature=0.07),
        "MVDHELLoss": MVDHELLoss(temperature=0.07),
        "SwAVLoss": SwAVLoss(DIM, 5),
    }


LOSS_NAMES = list(_all_losses())


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_float16_inputs_give_finite_float32_scalar(name):
    loss = _all_losses()[name]
    query, key = _inputs(8, DIM, seed=50, dtype=torch.float16)
    query = (query * 100).requires_grad_(True)  # large norms: exp(1 / 0.07) overflows fp16
    key = key * 100
    for _ in range(2):  # MoCHi: empty queue, then a queue with mixing
        value = loss(query, key, generator=torch.Generator().manual_seed(0))
        assert value.dim() == 0 and value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert query.grad.dtype == torch.float16 and torch.all(torch.isfinite(query.grad))
    # same value as the float32 computation on the same (rounded) inputs
    reference = _all_losses()[name]
    if name == "MoCHiLoss":
        reference(query.detach().float(), key.float())
    expected = reference(query.detach().float(), key.float(),
                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)


PAIRWISE = [name for name in LOSS_NAMES if not name.startswith("MV")]


@pytest.mark.parametrize("name", PAIRWISE)
def test_bad_shapes_raise_value_error_naming_query_and_key(name):
    loss = _all_losses()[name]
    with pytest.raises(ValueError, match=r"query and key.*\(5, 6\) and \(5, 7\)"):
        loss(torch.randn(5, DIM), torch.randn(5, DIM + 1))
    with pytest.raises(ValueError, match="query and key"):
        loss(torch.randn(5, DIM), torch.randn(4, DIM))
    with pytest.raises(ValueError, match="query and key"):
        loss(torch.randn(5), torch.randn(5))
    with pytest.raises(ValueError, match="groups"):
        loss(torch.randn(5, DIM), torch.randn(5, DIM), groups=torch.zeros(4, dtype=torch.int64))


@pytest.mark.parametrize("name", [n for n in LOSS_NAMES if n.startswith("MV")])
def test_multiview_bad_shapes_raise_value_error(name):
    loss = _all_losses()[name]
    with pytest.raises(ValueError, match=r"\(5, 6\).*\(5, 7\)"):
        loss(torch.randn(5, DIM), torch.randn(5, DIM + 1))


@pytest.mark.parametrize("cfg,cls", [
    (dict(type="InfoNCELoss", temperature=0.07), InfoNCELoss),
    (dict(type="DCLLoss", temperature=0.1, weighted=True), DCLLoss),
    (dict(type="HardNegativeLoss", beta=1.0, tau_plus=0.1), HardNegativeLoss),
    (dict(type="MoCHiLoss", dim=DIM, queue_size=32, n_hard=4, s=2, s_prime=1), MoCHiLoss),
    (dict(type="MVInfoNCELoss", temperature=0.2), MVInfoNCELoss),
    (dict(type="MVDHELLoss", temperature=0.2), MVDHELLoss),
    (dict(type="SwAVLoss", dim=DIM, num_prototypes=5), SwAVLoss),
])
def test_registry_builds_every_loss(cfg, cls):
    loss = MODELS.build(cfg)
    assert type(loss) is cls
    value = loss(*_inputs(6, DIM, seed=60, dtype=torch.float32))
    assert value.dim() == 0 and torch.isfinite(value)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_empty_input_gives_backpropagatable_zero(name):
    loss = _all_losses()[name]
    query = torch.zeros(0, DIM, requires_grad=True)
    key = torch.zeros(0, DIM, requires_grad=True)
    value = loss(query, key, generator=torch.Generator().manual_seed(0))
    assert value.dim() == 0 and float(value.detach()) == 0.0 and value.requires_grad
    value.backward()
    assert query.grad is not None and query.grad.shape == (0, DIM)
    if name == "SwAVLoss":
        assert torch.all(loss.prototypes.weight.grad == 0)
    if name == "MoCHiLoss":
        assert int(loss.queue_len) == 0
