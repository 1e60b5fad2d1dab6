"""Serialized point transformer after Point Transformer V3 (Wu et al., CVPR 2024, arXiv
2312.10035; layer plan of Pointcept's ``point_transformer_v3m1_base``).

Data flow (``S`` stages, ``O`` serialization orders)::

    voxelize (grid sampling, mean of the points)           lidarcl.ops.voxelize
    serialize: O space-filling-curve keys per voxel         lidarcl.ops.serialize
    embedding  SubM conv k=5 (in -> C0), BN, GELU
    encoder    stage 0: blocks; stage s > 0: grid pooling (stride 2) then blocks
    decoder    stage s = S-2 .. 0: grid unpooling (+ skip of encoder stage s) then blocks
    head       Linear -> out_channels, read back to every input point

    block      x = x + CPE(x)                       CPE = SubM conv k=3 (bias), Linear, LN
               x = x + DropPath(Attn(LN(x)))       Attn = patch attention (below)
               x = x + DropPath(MLP(LN(x)))        MLP = Linear(C, 4C), GELU, Linear(4C, C)

Serialization (paper Sec. 3.1): each voxel's per-sample grid coordinate gets a key
``(batch << 3*depth) | code`` for each order in ``("z", "z-trans", "hilbert",
"hilbert-trans")``; sorting by a key puts the voxels of a sample in that curve's order.
Block ``i`` of a stage uses order ``i mod O``; in training the orders are shuffled at every
level (paper Sec. 3.2, "Shuffle Order").

Patch attention (Sec. 3.2): in the order of its block, each sample's voxels are cut into
patches of ``K`` consecutive voxels (default 1024), and multi-head attention runs inside each
patch (``torch.nn.functional.scaled_dot_product_attention``, or flash-attn's variable-length
kernel on a GPU when it is installed). A sample of ``n > K`` voxels is padded to a multiple of
``K`` by repeating, in its last patch, the voxels just before it (so its last patch is its
last ``K`` voxels); a sample of ``n <= K`` voxels is one patch of ``n``. Patches never mix
samples.

Grid pooling (Sec. 3.3): the voxels whose codes agree after dropping the last ``3 log2
stride`` bits share a parent cell (every curve visits the children of a cell in one run, so
the shifted code *is* the parent's code); ``Linear`` then max over the children, BN, GELU.
Unpooling adds ``Linear+BN+GELU`` of the coarse features, copied to the children, to
``Linear+BN+GELU`` of the encoder's features at that level.

Departures from Pointcept, and why:

* Eval mode never shuffles orders (Pointcept shuffles whenever ``shuffle_orders`` is set), so
  that evaluation is deterministic.
* Grid coordinates are per sample, from the sample's own lowest occupied cell moved down to a
  multiple of ``2**(number of pooling levels)`` cells, and the serialization depth is fixed
  (``serialization_depth``, default 16) instead of being taken from the batch's largest
  coordinate: then a sample's curve order, patches and pooling cells never depend on the
  other samples of its batch (with the batch-wide depth of Pointcept, another sample can
  change the Hilbert order of this one).
* Without flash-attn Pointcept shrinks ``K`` to the smallest sample of the batch; here a
  small sample is one patch with the padded keys masked, so the other samples keep ``K``.
* Drop path is drawn per voxel (row of the ``(N, C)`` features), as timm's ``DropPath``
  does in Pointcept, not per sample.
* A final ``Linear`` head gives ``out_channels`` (the same interface as the sparse U-Nets).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lidarcl.models.backbones.base import (BackboneOutput, biased_subm_conv3d,
                                           check_point_columns, set_conv_algorithm)
from lidarcl.models.backbones.minkunet import _spconv
from lidarcl.ops.serialize import MAX_DEPTH, SERIALIZATION_ORDERS
from lidarcl.ops.voxelize import voxelize
from lidarcl.registry import MODELS

ATTENTION_BACKENDS = ("auto", "sdpa", "flash")


def _load_flash_attn():
    """flash-attn's ``flash_attn_varlen_qkvpacked_func``, or None when not installed."""
    try:
        from flash_attn import flash_attn_varlen_qkvpacked_func
    except ImportError:
        return None
    return flash_attn_varlen_qkvpacked_func


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


@dataclass
class Patches:
    """Patch layout of one level for one patch size ``K`` (``N`` voxels in curve order).

    ``index (P*K,)``: the curve position read at each patch slot; ``valid (P*K,)``: False on
    the masked slots of a sample smaller than ``K``; ``slot (N,)``: the slot whose output a
    curve position takes (its first appearance).
    """

    index: torch.Tensor
    valid: torch.Tensor
    slot: torch.Tensor
    size: int

    @property
    def num_patches(self) -> int:
        return self.index.numel() // self.size if self.size else 0


def build_patches(counts: torch.Tensor, patch_size: int) -> Patches:
    """Patches of ``K = min(patch_size, max(counts))`` slots over samples of ``counts (B,)``
    voxels that lie one after the other in curve order (see the module doc)."""
    device = counts.device
    counts = counts.to(torch.int64)
    total = int(counts.sum())
    if total == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return Patches(empty, empty.bool(), empty, 0)
    size = min(int(patch_size), int(counts.max()))
    full = counts >= size
    padded = torch.where(full, (counts + size - 1) // size * size, torch.full_like(counts, size))
    padded = torch.where(counts == 0, torch.zeros_like(padded), padded)
    start = torch.cumsum(counts, 0) - counts
    pad_start = torch.cumsum(padded, 0) - padded
    sample = torch.repeat_interleave(torch.arange(len(counts), device=device), padded)
    local = torch.arange(int(padded.sum()), device=device) - pad_start[sample]
    n = counts[sample]
    # slots past a sample's end repeat the positions one patch earlier (large samples) or
    # are masked (a sample smaller than K, whose single patch is then partly empty)
    valid = (local < n) | full[sample]
    source = torch.where(local < n, local, local - size)
    source = torch.where(valid, source, torch.zeros_like(source))
    index = start[sample] + source
    point_sample = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    slot = pad_start[point_sample] + torch.arange(total, device=device) - start[point_sample]
    return Patches(index, valid, slot, size)


@dataclass
class Level:
    """Voxels of one resolution: per-sample grid coordinates, serialization, conv indices."""

    coords: torch.Tensor       # (M, 4) int32 [batch, z, y, x], per-sample grid
    codes: torch.Tensor        # (O, M) int64 keys, one row per order
    orders: torch.Tensor       # (O, M) voxel indices sorted by each key
    inverses: torch.Tensor     # (O, M) curve position of each voxel for each key
    order_ids: list            # block i uses row order_ids[i % O]
    counts: torch.Tensor       # (B,) voxels per sample
    depth: int                 # bits per axis left in the codes
    sparse: object             # spconv SparseConvTensor on these voxels (CPE convs)
    cluster: torch.Tensor | None = None  # (M_finer,) parent of each finer voxel
    _cache: dict = field(default_factory=dict)  # patch layouts and gathers, per level

    def patches(self, patch_size: int) -> Patches:
        if patch_size not in self._cache:
            self._cache[patch_size] = build_patches(self.counts, patch_size)
        return self._cache[patch_size]

    def gather(self, patch_size: int, order_row: int):
        """``(rows, slot_of_voxel)`` for one patch size and order, computed once per level
        (every block of a stage that uses this order shares them): the voxel read at each
        patch slot, and the slot each voxel reads its output back from."""
        key = ("gather", patch_size, order_row)
        if key not in self._cache:
            patches = self.patches(patch_size)
            self._cache[key] = (self.orders[order_row][patches.index],
                                patches.slot[self.inverses[order_row]])
        return self._cache[key]


def _order_ids(num_orders: int, shuffle: bool) -> list:
    if shuffle:
        return torch.randperm(num_orders).tolist()
    return list(range(num_orders))


def _sort_codes(codes: torch.Tensor):
    orders = torch.argsort(codes, dim=1)
    inverses = torch.empty_like(orders)
    positions = torch.arange(codes.shape[1], device=codes.device).expand_as(orders)
    inverses.scatter_(1, orders, positions)
    return orders, inverses


def _sparse_tensor(features, coords, batch_size):
    sp = _spconv()
    shape = (coords[:, 1:].amax(0) + 1).tolist() if len(coords) else [1, 1, 1]
    return sp.SparseConvTensor(features, coords.contiguous(), shape, batch_size)


class SerializedAttention(nn.Module):
    """Multi-head self-attention inside the serialized patches of one order."""

    def __init__(self, channels: int, num_heads: int, patch_size: int, qkv_bias: bool = True,
                 attention: str = "auto"):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads "
                             f"({num_heads})")
        if attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention must be one of {ATTENTION_BACKENDS}, got "
                             f"{attention!r}")
        self.channels = channels
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.attention = attention
        self.scale = (channels // num_heads) ** -0.5
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)

    def _backend(self, device: torch.device):
        if self.attention == "sdpa":
            return None
        flash = _load_flash_attn()
        if self.attention == "flash":
            if flash is None:
                raise RuntimeError("attention='flash' needs flash-attn (pip install "
                                   "flash-attn on a CUDA machine)")
            return flash
        return flash if device.type == "cuda" else None

    def forward(self, x: torch.Tensor, level: Level, order_row: int) -> torch.Tensor:
        heads, channels = self.num_heads, self.channels
        patches = level.patches(self.patch_size)
        if patches.size == 0:
            return self.proj(x)
        qkv = self.qkv(x)
        rows, slot_of_voxel = level.gather(self.patch_size, order_row)
        flash = self._backend(x.device)
        if flash is not None:
            out = self._flash(flash, qkv, rows, patches)
            # packed positions of the valid slots
            packed = torch.cumsum(patches.valid.to(torch.int64), 0) - 1
            return self.proj(out[packed[slot_of_voxel]])
        size = patches.size
        q, k, v = qkv[rows].view(-1, size, 3, heads, channels // heads).permute(
            2, 0, 3, 1, 4).unbind(0)                             # (P, H, K, d) each
        mask = None
        if not bool(patches.valid.all()):
            mask = patches.valid.view(-1, 1, 1, size)            # keys of masked slots
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        out = out.transpose(1, 2).reshape(-1, channels)
        return self.proj(out[slot_of_voxel])

    def _flash(self, flash, qkv, rows, patches: Patches) -> torch.Tensor:
        """flash-attn's variable-length kernel on the valid slots only; each patch is one
        sequence (``cu_seqlens``), so a small sample is a shorter sequence, not masked."""
        heads, channels = self.num_heads, self.channels
        valid = patches.valid
        lengths = valid.view(-1, patches.size).sum(1)
        cu_seqlens = F.pad(torch.cumsum(lengths, 0), (1, 0)).to(torch.int32)
        packed = qkv[rows[valid]].view(-1, 3, heads, channels // heads)
        dtype = packed.dtype
        if packed.is_cuda and dtype not in (torch.float16, torch.bfloat16):
            packed = packed.half()  # flash-attn computes in half precision only
        out = flash(packed, cu_seqlens, patches.size, dropout_p=0.0,
                    softmax_scale=self.scale)
        return out.reshape(-1, channels).to(dtype)


def _drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty(x.shape[0], 1).bernoulli_(keep)
    return x * mask / keep


class Block(nn.Module):
    """Pre-norm transformer block with a sparse-conv positional encoding (CPE)."""

    def __init__(self, channels: int, num_heads: int, patch_size: int, order_index: int,
                 cpe_key: str, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, attention: str = "auto"):
        super().__init__()
        self.order_index = order_index
        self.drop_path = drop_path
        self.cpe_conv = biased_subm_conv3d(channels, channels, 3, indice_key=cpe_key)
        self.cpe_linear = nn.Linear(channels, channels)
        self.cpe_norm = nn.LayerNorm(channels)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = SerializedAttention(channels, num_heads, patch_size, qkv_bias, attention)
        self.norm2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(),
                                 nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor, level: Level) -> torch.Tensor:
        cpe = self.cpe_conv(level.sparse.replace_feature(x)).features
        x = x + self.cpe_norm(self.cpe_linear(cpe))
        row = level.order_ids[self.order_index % len(level.order_ids)]
        x = x + _drop_path(self.attn(self.norm1(x), level, row), self.drop_path,
                           self.training)
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class GridPooling(nn.Module):
    """Serialized grid pooling by ``stride`` (a power of 2): Linear, max over children,
    BN, GELU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        if stride < 2 or stride & (stride - 1):
            raise ValueError(f"pooling stride must be a power of 2 >= 2, got {stride}")
        self.shift = stride.bit_length() - 1
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = _bn(out_channels)
        self.act = nn.GELU()

    def coarsen(self, level: Level, shuffle: bool) -> Level:
        shift = self.shift
        parent_code = level.codes[0] >> (3 * shift)
        unique, cluster = torch.unique(parent_code, sorted=True, return_inverse=True)
        num = unique.numel()
        first = torch.full((num,), level.codes.shape[1], dtype=torch.int64,
                           device=cluster.device)
        first.scatter_reduce_(0, cluster, torch.arange(cluster.numel(), device=cluster.device),
                              "amin")
        codes = level.codes[:, first] >> (3 * shift)
        coords = level.coords[first].clone()
        coords[:, 1:] = coords[:, 1:] >> shift
        orders, inverses = _sort_codes(codes)
        counts = torch.bincount(coords[:, 0].long(), minlength=len(level.counts))
        return Level(coords.contiguous(), codes, orders, inverses,
                     _order_ids(len(codes), shuffle), counts,
                     level.depth - shift, None, cluster)

    def forward(self, x: torch.Tensor, coarse: Level) -> torch.Tensor:
        from lidarcl.ops import region_pool

        pooled = region_pool(self.proj(x), coarse.cluster, len(coarse.coords), "max").features
        return self.act(self.norm(pooled))


class GridUnpooling(nn.Module):
    """Coarse features copied to their children plus a projection of the skip features."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_channels, out_channels), _bn(out_channels),
                                  nn.GELU())
        self.proj_skip = nn.Sequential(nn.Linear(skip_channels, out_channels),
                                       _bn(out_channels), nn.GELU())

    def forward(self, coarse_features, skip_features, cluster):
        return self.proj_skip(skip_features) + self.proj(coarse_features)[cluster]


@MODELS.register_module()
class PointTransformerV3(nn.Module):
    """Serialized point transformer (see the module doc). Defaults: Pointcept's PTv3-base.

    Args:
        in_channels: point columns used as input (x, y, z, intensity = 4).
        out_channels: width of the per-point output features.
        voxel_size, point_range, mode: the grid sampling (:func:`lidarcl.ops.voxelize`);
            Pointcept's nuScenes setting is 0.05 m.
        orders: serialization orders, used in turn by the blocks of a stage.
        stride: pooling stride between consecutive encoder stages.
        enc_*, dec_*: blocks, widths, heads and patch sizes per encoder / decoder stage
            (decoder stage ``s`` returns to encoder stage ``s``'s voxels).
        drop_path: largest stochastic-depth rate (linear from 0 over the blocks).
        shuffle_orders: permute the orders at every level in training.
        attention: ``"auto"`` (flash-attn on CUDA when installed, else SDPA), ``"sdpa"`` or
            ``"flash"`` (error when flash-attn is missing).
        serialization_depth: bits per axis of the curves; a sample may span ``2**depth``
            voxels per axis.
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 64, voxel_size=0.05,
                 point_range=None, mode: str = "cartesian",
                 orders: Sequence[str] = ("z", "z-trans", "hilbert", "hilbert-trans"),
                 stride: Sequence[int] = (2, 2, 2, 2),
                 enc_depths: Sequence[int] = (2, 2, 2, 6, 2),
                 enc_channels: Sequence[int] = (32, 64, 128, 256, 512),
                 enc_num_heads: Sequence[int] = (2, 4, 8, 16, 32),
                 enc_patch_size: Sequence[int] = (1024, 1024, 1024, 1024, 1024),
                 dec_depths: Sequence[int] = (2, 2, 2, 2),
                 dec_channels: Sequence[int] = (64, 64, 128, 256),
                 dec_num_heads: Sequence[int] = (4, 4, 8, 16),
                 dec_patch_size: Sequence[int] = (1024, 1024, 1024, 1024),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.3,
                 shuffle_orders: bool = True, attention: str = "auto",
                 serialization_depth: int = 16):
        super().__init__()
        sp = _spconv()
        stages = len(enc_depths)
        orders = (orders,) if isinstance(orders, str) else tuple(orders)
        bad = [o for o in orders if o not in SERIALIZATION_ORDERS]
        if not orders or bad:
            raise ValueError(f"orders must be a non-empty subset of {SERIALIZATION_ORDERS}, "
                             f"got {orders!r}")
        lengths = {"stride": (len(stride), stages - 1),
                   "enc_channels": (len(enc_channels), stages),
                   "enc_num_heads": (len(enc_num_heads), stages),
                   "enc_patch_size": (len(enc_patch_size), stages),
                   "dec_depths": (len(dec_depths), stages - 1),
                   "dec_channels": (len(dec_channels), stages - 1),
                   "dec_num_heads": (len(dec_num_heads), stages - 1),
                   "dec_patch_size": (len(dec_patch_size), stages - 1)}
        wrong = {k: v for k, v in lengths.items() if v[0] != v[1]}
        if stages < 1 or wrong:
            raise ValueError("with len(enc_depths) = %d stages, expected lengths (got, "
                             "expected): %s" % (stages, wrong))
        pool_shift = sum(int(s).bit_length() - 1 for s in stride)
        if not 1 <= serialization_depth <= MAX_DEPTH or serialization_depth <= pool_shift:
            raise ValueError(f"serialization_depth must be in ({pool_shift}, {MAX_DEPTH}], "
                             f"got {serialization_depth}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.voxel_size = voxel_size
        self.point_range = point_range
        self.mode = mode
        self.orders = orders
        self.shuffle_orders = shuffle_orders
        self.serialization_depth = serialization_depth
        self.align = 2 ** pool_shift
        self.embedding = sp.SparseSequential(
            sp.SubMConv3d(in_channels, enc_channels[0], 5, padding=1, bias=False,
                          indice_key="stem"),
            _bn(enc_channels[0]), nn.GELU())
        enc_rates = torch.linspace(0, drop_path, sum(enc_depths)).tolist()
        self.pools = nn.ModuleList()
        self.enc = nn.ModuleList()
        for s in range(stages):
            if s > 0:
                self.pools.append(GridPooling(enc_channels[s - 1], enc_channels[s],
                                              int(stride[s - 1])))
            rates = enc_rates[sum(enc_depths[:s]):sum(enc_depths[:s + 1])]
            self.enc.append(nn.ModuleList([
                Block(enc_channels[s], enc_num_heads[s], enc_patch_size[s], i, f"stage{s}",
                      mlp_ratio, qkv_bias, rates[i], attention)
                for i in range(enc_depths[s])]))
        dec_rates = torch.linspace(0, drop_path, max(sum(dec_depths), 1)).tolist()
        widths = list(dec_channels) + [enc_channels[-1]]
        self.unpools = nn.ModuleList()
        self.dec = nn.ModuleList()
        for s in range(stages - 1):  # index s = decoder stage returning to encoder stage s
            rates = dec_rates[sum(dec_depths[:s]):sum(dec_depths[:s + 1])][::-1]
            self.unpools.append(GridUnpooling(widths[s + 1], enc_channels[s], widths[s]))
            self.dec.append(nn.ModuleList([
                Block(widths[s], dec_num_heads[s], dec_patch_size[s], i, f"stage{s}",
                      mlp_ratio, qkv_bias, rates[i], attention)
                for i in range(dec_depths[s])]))
        self.head = nn.Linear(widths[0], out_channels)

    def _first_level(self, coords: torch.Tensor, batch_size: int, features) -> Level:
        """Per-sample grid (see the module doc) and the serialization of the input voxels."""
        from lidarcl.ops import serialize

        device = coords.device
        batch = coords[:, 0].long()
        xyz = coords[:, 1:].long()
        lowest = torch.full((batch_size, 3), torch.iinfo(torch.int64).max, device=device)
        lowest.scatter_reduce_(0, batch[:, None].expand(-1, 3), xyz, "amin")
        anchor = torch.div(lowest, self.align, rounding_mode="floor") * self.align
        local = xyz - anchor[batch]
        depth = self.serialization_depth
        if len(local) and int(local.max()) >= 2 ** depth:
            raise ValueError(f"a sample spans {int(local.max()) + 1} voxels along an axis, "
                             f"more than 2**serialization_depth = {2 ** depth}; raise "
                             f"serialization_depth (<= {MAX_DEPTH}) or the voxel size")
        grid = torch.cat([batch[:, None], local], 1).to(torch.int32).contiguous()
        xyz_order = local[:, [2, 1, 0]].contiguous()  # serialize takes x, y, z
        codes = torch.stack([serialize(xyz_order, batch, o, depth) for o in self.orders])
        orders, inverses = _sort_codes(codes)
        counts = torch.bincount(batch, minlength=batch_size)
        shuffle = self.training and self.shuffle_orders
        return Level(grid, codes, orders, inverses,
                     _order_ids(len(self.orders), shuffle), counts, depth,
                     _sparse_tensor(features, grid, batch_size))

    def forward(self, points: torch.Tensor, offsets: torch.Tensor) -> BackboneOutput:
        set_conv_algorithm(self, points.device)
        check_point_columns(points, self.in_channels)
        voxels = voxelize(points, offsets, self.voxel_size, self.point_range, self.mode,
                          features=points[:, :self.in_channels], align=self.align)
        level = self._first_level(voxels.coords, voxels.batch_size, voxels.features)
        x = self.embedding(level.sparse).features
        shuffle = self.training and self.shuffle_orders
        levels, skips = [], []
        for s, blocks in enumerate(self.enc):
            if s > 0:
                coarse = self.pools[s - 1].coarsen(level, shuffle)
                x = self.pools[s - 1](x, coarse)
                coarse.sparse = _sparse_tensor(x, coarse.coords, voxels.batch_size)
                level = coarse
            for block in blocks:
                x = block(x, level)
            levels.append(level)
            skips.append(x)
        for s in reversed(range(len(self.dec))):
            x = self.unpools[s](x, skips[s], levels[s + 1].cluster)
            for block in self.dec[s]:
                x = block(x, levels[s])
        voxel_features = self.head(x)
        return BackboneOutput(voxels.point_features(voxel_features), voxel_features, voxels)
