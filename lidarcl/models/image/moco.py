"""MoCo v2 (Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive
Learning", arXiv 2003.04297; MoCo: He et al., CVPR 2020): self-supervised pretraining of an
image encoder, so that the camera-LiDAR methods have a teacher the embedded default can
produce offline (``tools/pretrain_image.py``). It is the family of SLidR's own teacher (a
MoCo v2 ResNet-50), trains a ResNet on a CPU with one crop size, and its query encoder is
what :class:`~lidarcl.models.image.teacher.ImageTeacher` loads.

For a batch of images, two augmented crops ``x_q, x_k`` (``MoCoV2Crops``):

    q = normalize(g(f(x_q)))            f: the encoder, global average pooled; g: MLP head
    k = normalize(g_k(f_k(x_k)))        the key copies, no gradient
    L = -log exp(q.k / tau) / (exp(q.k / tau) + sum_{n in queue} exp(q.n / tau))

(MoCo Eq. 1 with the v2 MLP head, 2048 hidden units -> 128, and tau 0.2). After each step
``theta_k <- m theta_k + (1 - m) theta_q`` (Eq. 2; ``MomentumUpdateHook``) and the batch's
keys enter the FIFO queue of negatives (65,536 in the paper). Images are normalised with
the ImageNet mean and standard deviation, as the teacher does at use.

Shuffling BN (MoCo Sec. 3.3): with batch statistics shared by a query and its own key, the
encoder can tell the positive from the batch statistics. On one device the batch is cut
into ``bn_splits`` groups that are normalised apart (the MoCo authors' single-GPU
"SplitBatchNorm" recipe), and the keys are permuted before the split, so a query and its
key are normalised with different images.

Departures, for the small CPU budget (see the configs): ResNet-18 instead of ResNet-50,
smaller crops, a shorter queue and a lower momentum (the paper's 0.999 moves the key
encoder over about a thousand iterations, longer than the whole run here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from lidarcl.models.image.teacher import IMAGENET_MEAN, IMAGENET_STD, build_image_encoder
from lidarcl.models.momentum import KeyQueue, MomentumMixin
from lidarcl.registry import MODELS

__all__ = ["MoCoV2", "moco_infonce"]


def moco_infonce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE (Eq. 1) of unit ``query`` (B, D) against its ``key`` (B, D) and the
    ``queue`` (K, D) of negatives, averaged over the batch."""
    positive = (query * key).sum(1, keepdim=True)
    negatives = query @ queue.t()
    logits = torch.cat([positive, negatives], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long,
                                               device=query.device))


@MODELS.register_module()
class MoCoV2(MomentumMixin, BaseModel):
    """MoCo v2 on ``backbone`` (an image encoder config: ``dict(type="resnet", depth=18)``;
    module doc). The batch holds ``views`` ``(B, 2, 3, H, W)`` float in [0, 1]."""

    def __init__(self, backbone: dict, dim: int = 128, hidden: int = 2048,
                 queue_size: int = 65536, temperature: float = 0.2, bn_splits: int = 1,
                 momentum: dict | None = None, seed: int = 0,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if bn_splits < 1:
            raise ValueError(f"bn_splits must be >= 1, got {bn_splits}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.backbone = build_image_encoder(backbone)
        width = self.backbone.out_channels
        self.neck = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, dim))
        self.add_momentum_copy("backbone")
        self.add_momentum_copy("neck")
        self.momentum_schedule = dict(momentum or dict(base=0.999, final=0.999))
        self.momentum_hooked = False
        self.queue = KeyQueue(dim, queue_size)
        # MoCo starts from a full queue of random unit keys (main_moco.py), so the first
        # steps have negatives too
        self.queue.enqueue(torch.randn(queue_size, dim), normalize=True)
        self.temperature = float(temperature)
        self.bn_splits = int(bn_splits)
        self.seed = int(seed)
        # steps taken (a checkpointed buffer): seeds the key shuffle, so a resumed run
        # shuffles as the uninterrupted one did
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def embed(self, images: torch.Tensor, encoder: nn.Module, neck: nn.Module
              ) -> torch.Tensor:
        """Unit embeddings ``(B, dim)``; the batch normalised in ``bn_splits`` groups."""
        images = (images - self.pixel_mean) / self.pixel_std
        groups = images.chunk(min(self.bn_splits, len(images)))
        pooled = torch.cat([encoder(g).mean((2, 3)) for g in groups])
        return F.normalize(neck(pooled), dim=1)

    def loss(self, batch: dict) -> dict:
        views = batch["views"]
        if views.ndim != 5 or views.shape[1] < 2:
            raise ValueError(f"MoCoV2 needs views (B, 2, 3, H, W), got {tuple(views.shape)}")
        query = self.embed(views[:, 0], self.backbone, self.neck)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(self.seed * 1_000_003
                                                      + int(self.steps))
            order = torch.randperm(len(views), generator=generator).to(views.device)
            key = torch.empty_like(query)
            key[order] = self.embed(views[order, 1], self.backbone_key, self.neck_key)
        loss = moco_infonce(query, key, self.queue.keys().to(query), self.temperature)
        self.queue.enqueue(key)
        self.steps += 1
        return {"loss_moco": loss}

    def train_step(self, data, optim_wrapper):
        if not self.momentum_hooked:
            raise RuntimeError("MoCoV2 has momentum key encoders but no hook updates them: "
                               "add dict(type='MomentumUpdateHook') to custom_hooks")
        return super().train_step(data, optim_wrapper)

    def forward(self, mode: str = "loss", **batch):
        if mode == "loss":
            losses = self.loss(batch)
            if not all(bool(torch.isfinite(v)) for v in losses.values()):
                raise FloatingPointError(f"non-finite MoCo loss {losses}; samples "
                                         f"{batch.get('meta')}")
            return losses
        if mode == "tensor":
            return self.embed(batch["views"][:, 0], self.backbone, self.neck)
        raise ValueError(f"MoCoV2 supports mode 'loss' and 'tensor', got {mode!r}")
