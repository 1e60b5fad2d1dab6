"""Serialized point transformer (lidarcl/models/backbones/ptv3.py): patch layout by hand,
patch attention against a naive per-patch softmax, the flash-attn packing against a
variable-length reference, grid pooling against a per-cell loop, parameter counts against
Pointcept's PTv3-base layer plan worked out by hand, and the backbone contract (real frame,
gradients, order invariance, sample independence, determinism, state_dict)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lidarcl.models.backbones import PointTransformerV3
from lidarcl.models.backbones import ptv3
from lidarcl.models.backbones.ptv3 import SerializedAttention, build_patches
from conftest import REAL_DATA
from lidarcl.registry import MODELS

# a small PTv3 (3 stages, patches of 64) so that several patches, padding and masking all
# occur on a few thousand voxels
SMALL = dict(in_channels=4, out_channels=8, voxel_size=0.3, enc_depths=(1, 1, 2),
             enc_channels=(16, 32, 32), enc_num_heads=(2, 2, 4), enc_patch_size=(64, 64, 64),
             dec_depths=(1, 1), dec_channels=(16, 16), dec_num_heads=(2, 2),
             dec_patch_size=(64, 64), stride=(2, 2), drop_path=0.0)


def small_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(1500, 4, generator=gen) * torch.tensor([8.0, 8.0, 2.0, 1.0])
    b = torch.rand(1000, 4, generator=gen) * torch.tensor([6.0, 6.0, 2.0, 1.0])
    return torch.cat([a, b]), torch.tensor([1500, 2500])


# ----------------------------------------------------------------------------- patches

def test_patch_layout_by_hand():
    # sample 0: 3 voxels < K = 4 -> one patch, its 4th slot masked; sample 1: 7 voxels ->
    # 2 patches, the last slot repeats curve position 6 (the last patch = last 4 voxels)
    p = build_patches(torch.tensor([3, 7]), 4)
    assert p.size == 4 and p.num_patches == 3
    assert p.index.tolist() == [0, 1, 2, 0, 3, 4, 5, 6, 7, 8, 9, 6]
    assert p.valid.tolist() == [True] * 3 + [False] + [True] * 8
    assert p.slot.tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]
    # every sample smaller than the patch size: K shrinks to the largest sample
    p = build_patches(torch.tensor([3, 2]), 1024)
    assert p.size == 3
    assert p.index.tolist() == [0, 1, 2, 3, 4, 3]
    assert p.valid.tolist() == [True] * 5 + [False]
    # an empty sample takes no slot
    p = build_patches(torch.tensor([0, 5, 0]), 4)
    assert p.index.tolist() == [0, 1, 2, 3, 4, 1, 2, 3]


def test_patches_never_mix_samples_and_read_every_voxel_once():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        counts = torch.randint(0, 300, (int(torch.randint(1, 5, (1,), generator=gen)),),
                               generator=gen)
        if counts.sum() == 0:
            continue
        size = int(torch.randint(1, 200, (1,), generator=gen))
        p = build_patches(counts, size)
        owner = torch.repeat_interleave(torch.arange(len(counts)), counts)
        patch_owner = owner[p.index].view(-1, p.size)
        valid = p.valid.view(-1, p.size)
        for row, ok in zip(patch_owner, valid):
            assert len(set(row[ok].tolist())) == 1
        # each voxel reads back from a valid slot holding itself
        assert torch.equal(p.index[p.slot], torch.arange(int(counts.sum())))
        assert bool(p.valid[p.slot].all())
        # a patch holds distinct voxels
        for row, ok in zip(p.index.view(-1, p.size), valid):
            assert len(set(row[ok].tolist())) == int(ok.sum())


# --------------------------------------------------------------------------- attention

def naive_patch_attention(attn: SerializedAttention, x, order, counts):
    """Per sample: walk the curve order in chunks of K (the last chunk = the last K
    voxels), softmax(q k^T / sqrt(d)) v per head, each voxel's output from the first chunk
    that holds it; a sample of n <= K voxels is one chunk of n."""
    heads, channels = attn.num_heads, attn.channels
    d = channels // heads
    qkv = attn.qkv(x).double()
    out = torch.zeros(len(x), channels, dtype=torch.float64)
    size = min(attn.patch_size, int(counts.max()))
    start = 0
    for n in counts.tolist():
        seq = order[start:start + n].tolist()
        start += n
        chunks = [seq] if n <= size else [
            seq[i:i + size] if i + size <= n else seq[n - size:] for i in range(0, n, size)]
        done = set()
        for chunk in chunks:
            q, k, v = qkv[chunk].view(len(chunk), 3, heads, d).unbind(1)
            w = torch.softmax(torch.einsum("ihd,jhd->hij", q, k) * d ** -0.5, dim=-1)
            o = torch.einsum("hij,jhd->ihd", w, v).reshape(len(chunk), channels)
            for row, voxel in enumerate(chunk):
                if voxel not in done:
                    out[voxel] = o[row]
                    done.add(voxel)
    return attn.proj(out.float())


def fake_level(counts, seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(counts.sum())
    batch = torch.repeat_interleave(torch.arange(len(counts)), counts)
    codes = (batch << 40) | torch.randperm(n, generator=gen)  # a random curve per sample
    orders, inverses = ptv3._sort_codes(codes[None])
    return ptv3.Level(None, codes[None], orders, inverses, [0], counts, 16, None)


@pytest.mark.parametrize("counts,patch", [((300, 130), 64), ((40, 25), 64), ((64, 128), 64),
                                          ((1, 70), 32)])
def test_patch_attention_matches_naive_reference(counts, patch):
    torch.manual_seed(0)
    counts = torch.tensor(counts)
    attn = SerializedAttention(16, 4, patch, attention="sdpa")
    x = torch.randn(int(counts.sum()), 16)
    level = fake_level(counts, 1)
    with torch.no_grad():
        got = attn(x, level, 0)
        want = naive_patch_attention(attn, x, level.orders[0], counts)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def varlen_reference(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None):
    """flash_attn_varlen_qkvpacked_func's contract: one attention per [cu[i], cu[i+1])."""
    assert dropout_p == 0.0 and cu_seqlens.dtype == torch.int32
    out = torch.empty(qkv.shape[0], qkv.shape[2], qkv.shape[3], dtype=qkv.dtype)
    for a, b in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
        assert 0 < b - a <= max_seqlen
        q, k, v = qkv[a:b].unbind(1)
        w = torch.softmax(torch.einsum("ihd,jhd->hij", q, k) * softmax_scale, dim=-1)
        out[a:b] = torch.einsum("hij,jhd->ihd", w, v)
    return out


def test_flash_packing_matches_sdpa(monkeypatch):
    """The flash-attn path (variable-length sequences, no masks) gives the SDPA path's
    result; the kernel itself is replaced by a loop that follows its documented contract,
    since flash-attn runs on CUDA only."""
    monkeypatch.setattr(ptv3, "_load_flash_attn", lambda: varlen_reference)
    torch.manual_seed(0)
    for counts in ((300, 130), (40, 25), (0, 90, 5)):
        counts = torch.tensor(counts)
        sdpa = SerializedAttention(16, 4, 64, attention="sdpa")
        flash = SerializedAttention(16, 4, 64, attention="flash")
        flash.load_state_dict(sdpa.state_dict())
        x = torch.randn(int(counts.sum()), 16)
        level = fake_level(counts, 2)
        with torch.no_grad():
            torch.testing.assert_close(flash(x, level, 0), sdpa(x, level, 0),
                                       rtol=1e-4, atol=1e-5)


def test_flash_requested_without_flash_attn_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ptv3, "_load_flash_attn", lambda: None)
    attn = SerializedAttention(8, 2, 16, attention="flash")
    with pytest.raises(RuntimeError, match="flash-attn"):
        attn(torch.randn(20, 8), fake_level(torch.tensor([20]), 0), 0)
    auto = SerializedAttention(8, 2, 16, attention="auto")
    assert auto._backend(torch.device("cpu")) is None  # CPU always takes SDPA


# ----------------------------------------------------------------------------- pooling

def test_grid_pooling_matches_a_loop_over_parent_cells():
    torch.manual_seed(0)
    model = PointTransformerV3(**SMALL).eval()
    points, offsets = small_batch()
    from lidarcl.ops.voxelize import voxelize
    voxels = voxelize(points, offsets, 0.3, features=points[:, :4], align=model.align)
    level = model._first_level(voxels.coords, 2, voxels.features)
    pool = model.pools[0]
    coarse = pool.coarsen(level, shuffle=False)
    # parents: same sample, coordinates halved; every order's code drops its last 3 bits
    assert torch.equal(coarse.coords[coarse.cluster, 0], level.coords[:, 0])
    assert torch.equal(coarse.coords[coarse.cluster, 1:], level.coords[:, 1:] >> 1)
    assert torch.equal(coarse.codes[:, coarse.cluster], level.codes >> 3)
    assert len(torch.unique(coarse.coords, dim=0)) == len(coarse.coords)
    x = torch.randn(len(level.coords), 16)
    with torch.no_grad():
        got = pool(x, coarse)
        projected = pool.proj(x)
        want = torch.stack([projected[coarse.cluster == c].amax(0)
                            for c in range(len(coarse.coords))])
        want = pool.act(pool.norm(want))
    torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------- the model

def block_params(c, mlp_ratio=4):
    hidden = c * mlp_ratio
    cpe = 27 * c * c + c + c * c + c + 2 * c         # SubM k=3 (bias), Linear, LayerNorm
    attn = 2 * c + c * 3 * c + 3 * c + c * c + c      # norm1, qkv, proj
    mlp = 2 * c + c * hidden + hidden + hidden * c + c  # norm2, fc1, fc2
    return cpe + attn + mlp


def test_parameter_count_matches_the_ptv3_base_layer_plan():
    """Pointcept's point_transformer_v3m1_base plan, counted by hand: embedding SubM k=5
    (no bias) + BN; encoder widths 32-64-128-256-512 with 2-2-2-6-2 blocks; pooling Linear +
    BN; decoder widths 256-128-64-64, 2 blocks each; unpooling two Linear + BN; plus our
    Linear head."""
    def count(in_channels, out_channels):
        enc_c, enc_d = (32, 64, 128, 256, 512), (2, 2, 2, 6, 2)
        dec_c, dec_d = (64, 64, 128, 256), (2, 2, 2, 2)
        total = 125 * in_channels * 32 + 2 * 32
        for s in range(5):
            if s:
                total += enc_c[s - 1] * enc_c[s] + enc_c[s] + 2 * enc_c[s]
            total += enc_d[s] * block_params(enc_c[s])
        widths = list(dec_c) + [512]
        for s in range(4):
            out = widths[s]
            total += (widths[s + 1] + 1) * out + 2 * out + (enc_c[s] + 1) * out + 2 * out
            total += dec_d[s] * block_params(out)
        return total + 64 * out_channels + out_channels

    assert count(4, 64) == 46_162_432
    assert count(6, 64) - (64 * 64 + 64) == 46_166_272  # Pointcept's in_channels=6, no head
    for cin in (4, 6):
        model = PointTransformerV3(in_channels=cin, out_channels=64)
        assert sum(p.numel() for p in model.parameters()) == count(cin, 64)
    assert isinstance(MODELS.build(dict(type="PointTransformerV3", **SMALL)),
                      PointTransformerV3)


@pytest.fixture(scope="module")
def real_points():
    path = REAL_DATA.nuscenes_lidar_file()  # a keyframe of any nuScenes copy (conftest)
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, 5)
    near = np.linalg.norm(pts[:, :2], axis=1) < 20
    return torch.from_numpy(pts[near].copy())


def test_real_frame_forward_backward_every_parameter(real_points):
    """The full PTv3-base plan (patches of 1024) on the real frame at 0.4 m."""
    torch.manual_seed(0)
    model = MODELS.build(dict(type="PointTransformerV3", in_channels=4, out_channels=16,
                              voxel_size=0.4, drop_path=0.0))
    out = model(real_points, torch.tensor([len(real_points)]))
    assert out.point_features.shape == (len(real_points), 16)
    assert 1024 < len(out.voxels.coords) < 6000  # more than one patch at the first level
    assert torch.isfinite(out.point_features).all()
    out.point_features.square().mean().backward()
    bad = [n for n, p in model.named_parameters()
           if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not bad, bad


def test_generated_batch_gradients_with_drop_path_and_shuffled_orders():
    torch.manual_seed(1)
    model = PointTransformerV3(**{**SMALL, "drop_path": 0.3}).train()
    points, offsets = small_batch(3)
    out = model(points, offsets)
    out.point_features.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        level = model._first_level(out.voxels.coords, 2, out.voxels.features)
        seen.add(tuple(level.order_ids))
    assert len(seen) > 1  # training shuffles the orders
    model.eval()
    assert model._first_level(out.voxels.coords, 2, out.voxels.features).order_ids == \
        [0, 1, 2, 3]


def test_point_order_invariance_in_eval():
    torch.manual_seed(2)
    model = PointTransformerV3(**SMALL).eval()
    points, offsets = small_batch()
    gen = torch.Generator().manual_seed(2)
    perm = torch.cat([torch.randperm(1500, generator=gen),
                      1500 + torch.randperm(1000, generator=gen)])
    with torch.no_grad():
        a = model(points, offsets).point_features
        b = model(points[perm], offsets).point_features
    torch.testing.assert_close(a[perm], b, rtol=1e-5, atol=1e-6)


def test_samples_are_independent_and_eval_is_deterministic():
    torch.manual_seed(3)
    model = PointTransformerV3(**SMALL).eval()
    points, offsets = small_batch()
    changed = points.clone()
    changed[1500:, :2] = changed[1500:, :2] * 0.5 - 3.0  # moves sample 1 and the batch box
    fewer = points[:1600]  # sample 1 keeps 100 points
    with torch.no_grad():
        first = model(points, offsets)
        second = model(changed, offsets)
        third = model(fewer, torch.tensor([1500, 1600]))  # sample 1 below the patch size
        again = model(points, offsets).point_features
    a, b, c = first.point_features, second.point_features, third.point_features
    torch.testing.assert_close(a[:1500], b[:1500], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[:1500], c[:1500], rtol=1e-5, atol=1e-5)
    assert (a[1500:] - b[1500:]).abs().max() > 1e-3
    assert torch.equal(a, again)


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(4)
    model = PointTransformerV3(**SMALL)
    points, offsets = small_batch(5)
    model.train()
    model(points, offsets)  # moves the BN running statistics
    model.eval()
    torch.save(model.state_dict(), tmp_path / "m.pth")
    other = PointTransformerV3(**SMALL)
    other.load_state_dict(torch.load(tmp_path / "m.pth", weights_only=True))
    other.eval()
    with torch.no_grad():
        assert torch.equal(model(points, offsets).point_features,
                           other(points, offsets).point_features)


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="orders"):
        PointTransformerV3(orders=("z", "peano"))
    with pytest.raises(ValueError, match="enc_channels"):
        PointTransformerV3(enc_channels=(32, 64))
    with pytest.raises(ValueError, match="divisible"):
        PointTransformerV3(enc_num_heads=(3, 4, 8, 16, 32))
    with pytest.raises(ValueError, match="power of 2"):
        PointTransformerV3(stride=(2, 3, 2, 2))
    with pytest.raises(ValueError, match="attention"):
        PointTransformerV3(attention="xformers")
    model = PointTransformerV3(**{**SMALL, "serialization_depth": 4, "voxel_size": 0.05})
    with pytest.raises(ValueError, match="serialization_depth"):
        model(*small_batch())
    with pytest.raises(ValueError, match="columns"):
        model(torch.rand(10, 3), torch.tensor([10]))
