"""Superpixel contrast and point-pixel distillation (lidarcl.models.losses.superpixel)
against naive per-superpixel loops in numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lidarcl.models.losses import PointPixelDistillLoss, RegionContrastLoss
from lidarcl.ops import region_pool


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _naive_superpixel_infonce(f, f_ids, g, g_ids, num, tau, normalise_means=False):
    """SLidR's loss by hand: means per superpixel, superpixels reached by both sides, one
    cross-entropy row per 3D superpixel against every 2D superpixel."""
    kept, f_means, g_means = [], [], []
    for s in range(num):
        if (f_ids == s).any() and (g_ids == s).any():
            kept.append(s)
            f_means.append(f[f_ids == s].mean(0))
            g_means.append(g[g_ids == s].mean(0))
    f_means, g_means = np.array(f_means), np.array(g_means)
    if normalise_means:
        f_means, g_means = _unit(f_means), _unit(g_means)
    total = 0.0
    for i in range(len(kept)):
        logits = [float(f_means[i] @ g_means[j]) / tau for j in range(len(kept))]
        top = max(logits)
        total += -(logits[i] - top) + np.log(sum(np.exp(x - top) for x in logits))
    return total / len(kept), kept


@pytest.mark.parametrize("normalize", [False, True])
def test_superpixel_infonce_matches_the_loop(normalize):
    rng = np.random.default_rng(0)
    num = 40
    f = _unit(rng.normal(size=(500, 16)))
    g = _unit(rng.normal(size=(3000, 16)))
    f_ids = rng.integers(-1, num, 500)
    f_ids[np.isin(f_ids, [3, 7, 11])] = -1       # superpixels no point reaches
    g_ids = rng.integers(-1, num, 3000)
    g_ids[g_ids == 20] = 21                      # one no pixel holds
    expected, kept = _naive_superpixel_infonce(f, f_ids, g, g_ids, num, 0.07, normalize)
    assert 3 not in kept and 20 not in kept and len(kept) == num - 4

    f_t = torch.tensor(f, dtype=torch.float32, requires_grad=True)
    g_t = torch.tensor(g, dtype=torch.float32)
    loss_fn = RegionContrastLoss(loss=dict(normalize=normalize))
    loss = loss_fn(region_pool(f_t, torch.tensor(f_ids), num),
                   region_pool(g_t, torch.tensor(g_ids), num))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert f_t.grad[f_ids == 3].abs().sum() == 0 and f_t.grad[f_ids == 0].abs().sum() > 0


def test_region_contrast_swaps_its_pairwise_loss_by_config():
    rng = np.random.default_rng(1)
    f = torch.tensor(_unit(rng.normal(size=(200, 8))), dtype=torch.float32)
    ids = torch.tensor(rng.integers(0, 12, 200))
    a, b = region_pool(f, ids, 12), region_pool(f.flip(0), ids.flip(0), 12)
    info = RegionContrastLoss()(a, b)
    dcl = RegionContrastLoss(loss=dict(type="DCLLoss", temperature=0.07))(a, b)
    assert info.item() != pytest.approx(dcl.item())
    # identical poolings: the positive is the largest logit of every row -> small loss
    assert RegionContrastLoss(loss=dict(normalize=True))(a, a) < info + 1e-6
    empty = region_pool(f[:1], torch.tensor([5]), 12)
    assert RegionContrastLoss()(empty, empty).item() == 0.0  # one region: no negative
    with pytest.raises(ValueError, match="share the region ids"):
        RegionContrastLoss()(a, region_pool(f, ids, 13))


@pytest.mark.parametrize("squared", [False, True])
def test_point_pixel_distillation_matches_the_loop(squared):
    rng = np.random.default_rng(2)
    f, g = rng.normal(size=(300, 12)), rng.normal(size=(300, 12)) * 5
    distances = [np.linalg.norm(_unit(f[i:i + 1])[0] - _unit(g[i:i + 1])[0]) for i in range(300)]
    expected = np.mean(np.square(distances)) if squared else np.mean(distances)
    loss = PointPixelDistillLoss(squared=squared)(torch.tensor(f, dtype=torch.float32),
                                                  torch.tensor(g, dtype=torch.float32))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    same = torch.tensor(f, dtype=torch.float32)
    assert PointPixelDistillLoss()(same, 3 * same).item() < 1e-4
    with pytest.raises(ValueError, match="of one shape"):
        PointPixelDistillLoss()(same, same[:, :5])
