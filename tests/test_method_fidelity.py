"""Method fidelity: momentum (EMA) key encoders and their hook, key queues, MoCHi keys from
the key encoder, FAC's attention confined to one scan and one view, SwAV's frozen prototypes
and queue, four views through a pretrainer, PRC's and Point-CMAE's terms. Each is checked
against a hand computation or a loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from test_pretrain import BACKBONES, REPO, small_options, train_steps, two_view_batch

from lidarcl.models.momentum import KeyQueue, cosine_momentum, ema_update
from lidarcl.registry import HOOKS, MODELS
from lidarcl.utils.setup_env import register_all_modules


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_all_modules()


def _set_iteration(iteration: int) -> None:
    MessageHub.get_current_instance().update_info("iter", iteration)


# ----------------------------------------------------------------------- EMA and queue

def test_cosine_momentum_schedule_by_hand():
    assert cosine_momentum(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert cosine_momentum(25, 100, 0.99, 1.0) == pytest.approx(
        1.0 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    assert cosine_momentum(100, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(7, 100, 0.999, 0.999) == pytest.approx(0.999)  # MoCo: constant
    with pytest.raises(ValueError):
        cosine_momentum(0, 10, 1.0, 0.9)


def test_ema_update_by_hand():
    torch.manual_seed(0)
    online = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    target = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    online[1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, online, 0.9)
    for name, param in online.named_parameters():
        expected = 0.9 * before[name] + 0.1 * param.detach()
        torch.testing.assert_close(dict(target.named_parameters())[name], expected)
    assert torch.equal(target[1].running_mean, online[1].running_mean)  # buffers copied


def test_key_queue_is_fifo():
    queue = KeyQueue(2, size=5)
    history = []
    for step in range(4):
        keys = torch.arange(6 * step, 6 * step + 2 * (step + 1), dtype=torch.float32)
        keys = keys.view(-1, 2)
        queue.enqueue(keys)
        history.extend(keys)
        expected = torch.stack(history[-5:])
        torch.testing.assert_close(queue.ordered(), expected)
        assert len(queue) == min(5, len(history))
    normalised = KeyQueue(2, size=3)
    normalised.enqueue(torch.tensor([[3.0, 4.0]]), normalize=True)
    torch.testing.assert_close(normalised.keys(), torch.tensor([[0.6, 0.8]]))


class KeyBeforeHook(Hook):
    """Test hook, run before the momentum hook: after iteration k's optimiser step, the key
    encoder's and the online backbone's first parameter."""

    priority = "HIGHEST"
    records: list = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model
        KeyBeforeHook.records.append({
            "iter": runner.iter,
            "key": next(model.backbone_key.parameters()).detach().clone(),
            "online": next(model.backbone.parameters()).detach().clone()})


HOOKS.register_module(module=KeyBeforeHook, force=True)


def _mochi_options(data_root, iters, **extra):
    options = small_options(data_root, iters, **extra)
    options.pop("model.loss.max_pairs")
    return options


def _pointcontrast_mochi(tmp_path, data_root, iters, resume=False):
    from lidarcl.engine import build_pretrain_config, run_pretraining

    options = _mochi_options(data_root, iters)
    cfg = build_pretrain_config(str(REPO / "configs/pretrain/pointcontrast_minkunet34_synth.py"),
                                str(tmp_path / "work"), resume, options)
    cfg.model.loss = dict(type="MoCHiLoss", dim=64, queue_size=512, n_hard=64, s=16,
                          s_prime=8, max_pairs=128)
    cfg.model.momentum = dict(base=0.9, final=1.0)
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type="KeyBeforeHook")]
    KeyBeforeHook.records = []
    return run_pretraining(cfg)


def test_momentum_hook_steps_ema_each_iteration_and_resumes(tiny_dataset, tmp_path):
    """Inside mmengine's Runner: after iteration k the key weights are m_k key + (1 - m_k)
    online (hand computation, m_k of the cosine schedule); checkpoints hold the key encoder
    and the queue, and a resumed run continues from them."""
    runner = _pointcontrast_mochi(tmp_path, tiny_dataset, 2)
    records = list(KeyBeforeHook.records)
    assert [r["iter"] for r in records] == [0, 1]
    model = runner.model
    # after iteration 1: key = m_1 * key_before + (1 - m_1) * online
    m1 = cosine_momentum(1, 2, 0.9, 1.0)
    expected = m1 * records[1]["key"] + (1 - m1) * records[1]["online"]
    torch.testing.assert_close(next(model.backbone_key.parameters()).detach(), expected)
    assert runner.message_hub.get_scalar("train/momentum").current() == pytest.approx(m1)
    # the key encoder never gets a gradient, and the queue filled
    assert all(p.grad is None for p in model.backbone_key.parameters())
    assert int(model.loss_point.queue_len) > 0
    checkpoint = torch.load(tmp_path / "work" / "iter_2.pth", weights_only=True)
    state = checkpoint["state_dict"]
    assert any(k.startswith("backbone_key.") for k in state)
    assert "loss_point.key_queue.queue" in state
    saved_key = state[next(k for k in state if k.startswith("backbone_key."))].clone()
    saved_queue_len = int(state["loss_point.key_queue.queue_len"])
    # resume to iteration 3: the first step after resume starts from the saved key encoder
    runner = _pointcontrast_mochi(tmp_path, tiny_dataset, 3, resume=True)
    records = list(KeyBeforeHook.records)
    assert [r["iter"] for r in records] == [2]
    torch.testing.assert_close(records[0]["key"], saved_key)
    m2 = cosine_momentum(2, 3, 0.9, 1.0)
    torch.testing.assert_close(next(runner.model.backbone_key.parameters()).detach(),
                               m2 * saved_key + (1 - m2) * records[0]["online"])
    assert int(runner.model.loss_point.queue_len) > saved_queue_len


def test_a_key_encoder_without_its_hook_refuses_to_train(tiny_dataset, tmp_path):
    from lidarcl.engine import build_pretrain_config, run_pretraining

    options = _mochi_options(tiny_dataset, 1)
    cfg = build_pretrain_config(str(REPO / "configs/pretrain/pointcontrast_minkunet34_synth.py"),
                                str(tmp_path / "work"), False, options)
    cfg.model.loss = dict(type="MoCHiLoss", dim=64, queue_size=64, max_pairs=64)
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h["type"] != "MomentumUpdateHook"]
    with pytest.raises(RuntimeError, match="MomentumUpdateHook"):
        run_pretraining(cfg)


# -------------------------------------------------------------------------------- MoCHi

def test_mochi_keys_come_from_the_momentum_encoder():
    torch.manual_seed(0)
    model = MODELS.build(dict(type="PointContrast", backbone=BACKBONES["MinkUNet34"],
                              head_channels=8, loss=dict(type="MoCHiLoss", dim=8,
                                                         queue_size=4096, n_hard=16, s=4,
                                                         s_prime=2, max_pairs=None)))
    assert {k for _, k in model.momentum_pairs} == {"backbone_key", "head_key"}
    batch = two_view_batch()
    _set_iteration(0)
    out = model(mode="loss", **batch)
    out["loss_point"].backward()
    assert all(p.grad is None for p in model.backbone_key.parameters())
    assert any(p.grad is not None for p in model.backbone.parameters())
    first_keys = model.loss_point.key_queue.ordered()
    # the keys are head_key(backbone_key(view 2)) on the matched rows
    first, second, rows_a, rows_b = model.matched_views(batch)
    with torch.no_grad():
        (key_view,) = model.encode_views(batch, backbone=model.backbone_key,
                                         view_slice=slice(1, 2))
        expected = torch.nn.functional.normalize(model.head_key(key_view.features[rows_b]))
    torch.testing.assert_close(first_keys, expected)
    # changing the online encoder leaves the keys alone
    model.loss_point.key_queue.queue_len.zero_()
    model.loss_point.key_queue.queue_ptr.zero_()
    with torch.no_grad():
        for param in model.backbone.parameters():
            param.add_(0.1)
    model(mode="loss", **batch)
    torch.testing.assert_close(model.loss_point.key_queue.ordered(), first_keys)


# ---------------------------------------------------------------------------------- FAC

def _fac(**extra):
    return MODELS.build(dict(type="ForegroundAwareContrast", backbone=BACKBONES["MinkUNet34"],
                             num_anchors=256, max_foreground_points=400, head_channels=16,
                             queue_size=64, segment_queue_size=16, **extra))


def test_fac_attention_stays_inside_one_scan():
    """Changing scan 2's anchors leaves scan 1's refined features and loss terms unchanged;
    changing them in scan 1 changes its own."""
    torch.manual_seed(0)
    model = _fac()
    gen = torch.Generator().manual_seed(0)
    channels = model.feature_channels
    anchors_q = torch.randn(40, channels, generator=gen)
    anchors_k = torch.randn(40, channels, generator=gen)
    scan = torch.tensor([0] * 25 + [1] * 15)
    segment = torch.randint(0, 6, (40,), generator=gen) + 6 * scan
    foreground = segment % 2 == 0
    model.point_queue.enqueue(torch.randn(8, 16, generator=gen), normalize=True)
    terms, _ = model.point_terms(anchors_q, anchors_k, segment, foreground, scan)
    refined = model.correspondence(anchors_q, scan)
    changed_q, changed_k = anchors_q.clone(), anchors_k.clone()
    changed_q[25:] += torch.randn(15, channels, generator=gen)
    changed_k[25:] *= -2.0
    terms2, _ = model.point_terms(changed_q, changed_k, segment, foreground, scan)
    torch.testing.assert_close(terms2[:25], terms[:25])
    torch.testing.assert_close(model.correspondence(changed_q, scan)[:25], refined[:25])
    assert not torch.allclose(terms2[25:], terms[25:])
    changed_q[:25] += 1.0
    assert not torch.allclose(model.correspondence(changed_q, scan)[:25], refined[:25])


def test_fac_queries_and_keys_come_from_different_views_and_encoders():
    """The query branch runs the online modules on view 1 only, the key branch their momentum
    copies on view 2 (no gradient, enqueued after the step)."""
    torch.manual_seed(0)
    model = _fac()
    assert {k for _, k in model.momentum_pairs} == {
        "backbone_key", "correspondence_key", "segment_head_key"}
    _set_iteration(0)
    out = model(mode="loss", **two_view_batch(regions=True))
    sum(out.values()).backward()
    assert all(p.grad is None for p in model.backbone_key.parameters())
    assert all(p.grad is None for p in model.correspondence_key.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.correspondence.parameters())
    assert len(model.point_queue) == 64 and len(model.segment_queue) > 0


# --------------------------------------------------------------------------------- SwAV

def test_swav_prototypes_frozen_before_freeze_iters_and_trained_after():
    loss = MODELS.build(dict(type="SwAVLoss", dim=8, num_prototypes=10, freeze_iters=3))
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(0)
    projection = torch.nn.Linear(8, 8)
    optimizer.add_param_group({"params": projection.parameters()})
    weights = []
    for iteration in range(5):
        _set_iteration(iteration)
        x = torch.randn(32, 8, generator=gen)
        value = loss(projection(x), projection(x + 0.1 * torch.randn(32, 8, generator=gen)))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        weights.append(loss.prototypes.weight.detach().clone())
    initial = weights[0]
    assert torch.equal(weights[1], initial) and torch.equal(weights[2], initial)
    assert not torch.equal(weights[3], weights[2]) and not torch.equal(weights[4], weights[3])


def test_swav_queue_codes_are_sinkhorn_over_queue_and_batch():
    from lidarcl.models.losses import sinkhorn_knopp

    loss = MODELS.build(dict(type="SwAVLoss", dim=4, num_prototypes=6, queue_size=16))
    gen = torch.Generator().manual_seed(0)
    _set_iteration(0)
    first = torch.randn(10, 4, generator=gen), torch.randn(10, 4, generator=gen)
    loss(*first)  # fills the queues with the normalised features
    torch.testing.assert_close(loss.queues[0].ordered(),
                               torch.nn.functional.normalize(first[0], dim=1))
    scores = loss.scores(torch.randn(5, 4, generator=gen))
    expected = sinkhorn_knopp(torch.cat([loss.scores(loss.queues[0].keys()), scores]))[-5:]
    torch.testing.assert_close(loss.codes(scores, 0), expected)
    assert not torch.allclose(loss.codes(scores, 0), sinkhorn_knopp(scores))


# ------------------------------------------------------------------------ four views

def four_view_batch(seed=0):
    from lidarcl.datasets.collate import collate_samples
    from lidarcl.datasets.transforms import MultiViewAugment, PackSample

    rng = np.random.default_rng(seed)
    samples = []
    for n in (1500, 1100):
        pts = np.concatenate([rng.uniform([-8, -8, -2], [8, 8, 2], (n, 3)),
                              rng.uniform(0, 1, (n, 1))], 1).astype(np.float32)
        sample = MultiViewAugment(num_views=4, translate=0.2, seed=seed + n)(
            {"points": pts, "token": f"scan{n}"})
        samples.append(PackSample(keys=["points", "views"], meta_keys=["token"])(sample))
    return collate_samples(samples)


def test_four_views_flow_through_pointcontrast_with_mv_dhel():
    from lidarcl.models.pretrainers.base import match_views

    torch.manual_seed(0)
    model = MODELS.build(dict(type="PointContrast", backbone=BACKBONES["MinkUNet34"],
                              loss=dict(type="MVDHELLoss", temperature=0.4, max_pairs=None)))
    batch = four_view_batch()
    assert all(len(v) == 4 for v in batch["views"])
    views = model.encode_views(batch)
    assert len(views) == 4
    rows = match_views(views, len(batch["points"]))
    anchors = views[0].index[rows[0]]
    for view, r in zip(views, rows):
        assert torch.equal(view.index[r], anchors) and bool(view.valid[r].all())
    assert len(anchors) > 0.5 * len(views[0].index)
    model.eval()  # the same BatchNorm statistics for the loss and the check
    _set_iteration(0)
    with torch.no_grad():
        got = model(mode="loss", **batch)["loss_point"]
        views = model.encode_views(batch)
        stacked = torch.stack([v.features[r] for v, r in zip(views, rows)])
        expected = MODELS.build(dict(type="MVDHELLoss", temperature=0.4))(stacked)
    torch.testing.assert_close(got, expected)
    model.train()
    outs, totals = train_steps(model, batch, 2)
    assert totals[1] < totals[0]


def test_the_four_view_config_builds_a_four_view_pipeline():
    from mmengine.config import Config

    cfg = Config.fromfile(str(REPO / "configs/pretrain/pointcontrast-mv4_minkunet34_synth.py"))
    views = [t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "MultiViewAugment"]
    assert views[0]["num_views"] == 4 and cfg.model.loss.type == "MVDHELLoss"


# ------------------------------------------------------------------- Point-CMAE's term

def test_cmae_cosine_consistency_matches_a_loop():
    from lidarcl.models.pretrainers.cmae import cosine_consistency

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 5, generator=gen), torch.randn(7, 5, generator=gen)
    expected = np.mean([1 - float(a[i] @ b[i] / (a[i].norm() * b[i].norm()))
                        for i in range(7)])
    assert float(cosine_consistency(a, b)) == pytest.approx(expected, rel=1e-5)
    # positive-only: no other row enters a row's term
    b2 = b.clone()
    b2[3] = 5 * b[3]
    assert float(cosine_consistency(a, b2)) == pytest.approx(expected, rel=1e-5)


def test_pointcontrast_default_temperature_is_the_launch_scripts():
    model = MODELS.build(dict(type="PointContrast", backbone=BACKBONES["MinkUNet34"]))
    assert model.loss_point.temperature == 0.4 and model.loss_point.max_pairs == 4096
