"""Image encoders as frozen teachers with a trainable head: the 2D side of the camera-LiDAR
pretrainers (SLidR, SuperFlow, ScaLR).

``ImageTeacher(encoder=dict(type="resnet", depth=50, dilate=(True, True, True)), head=64)``
is SLidR's image branch (Sautier et al., CVPR 2022): a frozen dilated ResNet-50, a trained
1x1 convolution to 64 channels, bilinear upsampling by the encoder's stride
(``align_corners=True``) to pixel resolution and an L2 normalisation per pixel.
``encoder=dict(type="vit", size="vit_b")`` is SuperFlow's (Xu et al., ECCV 2024): the last
block of a frozen DINOv2 ViT before its norm, a 1x1 convolution to 64 channels and x14
bilinear upsampling. ``head=None`` returns the encoder's own features, upsampled and
normalised: ScaLR's distillation target (Puy et al., CVPR 2024).

Images enter as float RGB in [0, 1], ``(B, 3, H, W)``; the teacher subtracts the ImageNet
mean and divides by its standard deviation, as every supported checkpoint was trained.
The encoder stays in eval mode (BatchNorm statistics frozen) whatever ``train()`` says; with
``frozen=False`` it trains too.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from lidarcl.models.image.checkpoints import load_image_encoder
from lidarcl.models.image.resnet import ResNet
from lidarcl.models.image.vit import VisionTransformer
from lidarcl.registry import MODELS

__all__ = ["ImageTeacher", "build_image_encoder", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_image_encoder(cfg: dict) -> nn.Module:
    """``dict(type="resnet", depth=50, dilate=(...))`` or ``dict(type="vit", size=...)``."""
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind == "resnet":
        return ResNet(**cfg)
    if kind == "vit":
        return VisionTransformer(**cfg)
    raise ValueError(f"image encoder type {kind!r} is not 'resnet' or 'vit'")


@MODELS.register_module()
class ImageTeacher(nn.Module):
    """Frozen image encoder + head -> per-pixel features ``(B, C, H, W)``, unit length."""

    def __init__(self, encoder: dict, checkpoint: str | None = None,
                 layout: str | None = None, head: int | None = 64, frozen: bool = True):
        super().__init__()
        self.encoder_cfg = dict(encoder)
        self.encoder = build_image_encoder(encoder)
        self.checkpoint_meta: dict = {}
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        if checkpoint is not None:
            if layout is None:
                raise ValueError(f"{checkpoint}: say which layout the file has (layout=...)")
            self.checkpoint_meta = load_image_encoder(self.encoder, checkpoint, layout)
        self.head = None if head is None else nn.Conv2d(self.encoder.out_channels, head, 1)
        self.out_channels = self.encoder.out_channels if head is None else head
        self.stride = self.encoder.stride
        self.frozen = frozen
        if frozen:
            self.encoder.requires_grad_(False)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's map ``(B, D, H / stride, W / stride)`` (no gradient when frozen)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        normalised = (images - self.pixel_mean) / self.pixel_std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.encoder(normalised)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encode(images)
        if self.head is not None:
            features = self.head(features)
        if features.shape[-2:] != images.shape[-2:]:  # x stride, to the pixels exactly
            features = F.interpolate(features, size=images.shape[-2:], mode="bilinear",
                                     align_corners=True)
        return F.normalize(features, dim=1)
