"""Lovász-softmax against an independent reference: the Lovász extension as the integral
``integral_0^1 Delta_c({i : m_i >= t}) dt`` of the Jaccard loss of threshold sets, each set's
loss counted directly from its members (no sorting, no cumulative sums), the integral taken
exactly over the pieces between consecutive error values. Gradients against central finite
differences of that reference."""
import numpy as np
import pytest
import torch

from lidarcl.evaluation.segmentation import confusion_matrix, iou_per_class
from lidarcl.models.losses.lovasz import LovaszSoftmaxLoss, lovasz_softmax


def jaccard_loss_of_set(mispredicted: np.ndarray, foreground: np.ndarray) -> float:
    """Delta_c(M) = |M| / |{y = c} U M| (Berman et al. Eq. 5), counted directly."""
    union = np.logical_or(foreground, mispredicted).sum()
    return mispredicted.sum() / union if union else 0.0


def lovasz_reference(probs: np.ndarray, labels: np.ndarray, classes="present",
                     ignore_index=None) -> float:
    if ignore_index is not None:
        keep = labels != ignore_index
        probs, labels = probs[keep], labels[keep]
    ids = np.unique(labels) if classes == "present" else range(probs.shape[1])
    losses = []
    for c in ids:
        foreground = labels == c
        errors = np.abs(foreground.astype(np.float64) - probs[:, c])
        # Delta({m >= t}) is constant for t in (v_k, v_{k+1}] between sorted error values
        breaks = np.concatenate([[0.0], np.unique(errors)])
        value = 0.0
        for low, high in zip(breaks[:-1], breaks[1:]):
            value += (high - low) * jaccard_loss_of_set(errors >= high, foreground)
        losses.append(value)
    return float(np.mean(losses))


def random_case(seed, points=40, num_classes=5, ignore=None):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(points, num_classes, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, num_classes - 1, (points,), generator=gen)  # class 4 absent
    if ignore is not None:
        labels[torch.randperm(points, generator=gen)[:points // 4]] = ignore
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_value_equals_the_integral_of_threshold_set_losses(seed, classes):
    logits, labels = random_case(seed)
    probs = logits.softmax(1)
    value = float(lovasz_softmax(probs, labels, classes=classes))
    assert value == pytest.approx(lovasz_reference(probs.numpy(), labels.numpy(), classes),
                                  rel=1e-12, abs=1e-12)


def test_lovasz_drops_the_ignored_points():
    logits, labels = random_case(3, ignore=255)
    probs = logits.softmax(1)
    value = float(lovasz_softmax(probs, labels, ignore_index=255))
    assert value == pytest.approx(lovasz_reference(probs.numpy(), labels.numpy(),
                                                   ignore_index=255), rel=1e-12)
    assert float(LovaszSoftmaxLoss(ignore_index=255, loss_weight=2.0)(logits, labels)) == \
        pytest.approx(2 * value, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 4])
def test_lovasz_gradient_matches_finite_differences_of_the_reference(seed):
    logits, labels = random_case(seed, points=24)
    logits.requires_grad_(True)
    LovaszSoftmaxLoss(ignore_index=None)(logits, labels).backward()

    def reference(x):
        return lovasz_reference(torch.from_numpy(x).softmax(1).numpy(), labels.numpy())

    x = logits.detach().numpy().copy()
    step = 1e-6  # far below the gaps between errors, so no piece boundary is crossed
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (reference(plus) - reference(minus)) / (2 * step)
    np.testing.assert_allclose(logits.grad.numpy(), numeric, rtol=1e-5, atol=1e-8)


def test_lovasz_at_one_hot_probabilities_is_one_minus_iou():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 0, 2])
    pred = torch.tensor([0, 1, 1, 1, 3, 2, 2, 2])
    probs = torch.nn.functional.one_hot(pred, 4).double()
    iou = iou_per_class(confusion_matrix(pred.numpy(), labels.numpy(), 4))
    assert float(lovasz_softmax(probs, labels)) == pytest.approx(
        np.mean([1 - iou[c] for c in (0, 1, 2)]))


def test_lovasz_without_points_is_zero_and_rejects_bad_shapes():
    probs = torch.rand(3, 4, requires_grad=True)
    labels = torch.full((3,), 255)
    loss = lovasz_softmax(probs, labels, ignore_index=255)
    assert float(loss.detach()) == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="classes"):
        lovasz_softmax(probs, torch.zeros(3, dtype=torch.long), classes="some")
    with pytest.raises(ValueError, match=r"\(P, K\)"):
        lovasz_softmax(probs, torch.zeros(4, dtype=torch.long))
