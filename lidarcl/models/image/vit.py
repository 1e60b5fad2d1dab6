"""Vision transformers in DINOv2's parameter layout (Oquab et al., TMLR 2024; ViT of
Dosovitskiy et al., ICLR 2021, with LayerScale of Touvron et al., ICCV 2021), patch 14.

Names and shapes follow the official ``dinov2_vit{s,b,l}14_pretrain.pth`` files: ``cls_token``
(1, 1, D), ``pos_embed`` (1, 1 + 37 * 37, D) for the 518-pixel training size, ``mask_token``
(1, D), ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
mlp.fc1, mlp.fc2, ls2.gamma}`` and ``norm``. LayerNorm eps 1e-6, GELU, MLP ratio 4, biases
everywhere. timm's ``vit_*_patch14_dinov2`` uses the same names (without ``mask_token``).

Other image sizes interpolate the position embeddings as DINOv2's own model does: bicubic
from the 37 x 37 grid with scale factors ``(n + 0.1) / 37`` per axis, no antialiasing (timm
resizes to the target size with antialiasing; the two differ in the last digits).

Camera-LiDAR methods take the output of the last block *before* the final norm (ScaLR,
Puy et al. CVPR 2024; SuperFlow, Xu et al. ECCV 2024), without the class token, as a
``(B, D, H/14, W/14)`` map: :meth:`VisionTransformer.forward`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VisionTransformer", "VIT_SIZES", "PATCH_SIZE"]

PATCH_SIZE = 14
# name -> (embed dim, depth, heads)
VIT_SIZES = {"vit_s": (384, 12, 6), "vit_b": (768, 12, 12), "vit_l": (1024, 24, 16)}
_TRAIN_GRID = 37  # 518 / 14: the grid DINOv2's position embeddings were trained on


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int = PATCH_SIZE):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)  # (B, h * w, D)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head dim)
        attention = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
        out = attention.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """DINOv2-layout ViT; ``size`` is ``vit_s`` / ``vit_b`` / ``vit_l`` or ``(dim, depth,
    heads)`` for a smaller model (the self-supervised teacher of ``tools/pretrain_image.py``).
    """

    def __init__(self, size="vit_s", grid: int = _TRAIN_GRID):
        super().__init__()
        dim, depth, heads = VIT_SIZES[size] if isinstance(size, str) else tuple(size)
        if dim % heads:
            raise ValueError(f"embed dim {dim} is not divisible by {heads} heads")
        self.embed_dim, self.out_channels, self.stride = dim, dim, PATCH_SIZE
        self.grid = grid
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # DINOv2's iBOT token; unused
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """``(1, 1 + rows * cols, D)``: the trained grid resized as DINOv2 does."""
        if rows == cols == self.grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = patch_pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        scale = ((rows + 0.1) / self.grid, (cols + 0.1) / self.grid)
        resized = F.interpolate(grid.float(), scale_factor=scale, mode="bicubic",
                                antialias=False)
        if resized.shape[-2:] != (rows, cols):  # the +0.1 makes floor() land on the size
            raise RuntimeError(f"position embedding resized to {tuple(resized.shape[-2:])}, "
                               f"expected {(rows, cols)}")
        patch_pos = resized.to(patch_pos.dtype).permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """The last block's tokens ``(B, 1 + rows * cols, D)`` (class token first), rows, cols.
        H and W must be multiples of 14."""
        height, width = images.shape[-2:]
        if height % PATCH_SIZE or width % PATCH_SIZE:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch "
                             f"size {PATCH_SIZE}; resize or crop to a multiple")
        rows, cols = height // PATCH_SIZE, width // PATCH_SIZE
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = x + self.position_embedding(rows, cols)
        for block in self.blocks:
            x = block(x)
        return x, rows, cols

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, D, H/14, W/14)``: the last block's patch tokens before
        the final norm."""
        x, rows, cols = self.tokens(images)
        return x[:, 1:].transpose(1, 2).reshape(len(x), -1, rows, cols)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Class token after the final norm ``(B, D)``: the image embedding that DINO-style
        self-supervision trains (``tools/pretrain_image.py``)."""
        return self.norm(self.tokens(images)[0])[:, 0]
