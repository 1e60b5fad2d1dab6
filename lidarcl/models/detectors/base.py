"""What CenterPoint and the BEV map segmentor share: a BEV encoder (``VoxelBackBone8x``,
``VoxelResBackBone8x``), SECOND's BEV backbone/neck fed with the encoder's height-compressed
map (``128 x`` its BEV height channels), a head built with the neck's width and the encoder's
grid, the pretrained encoder loaded at ``init_weights`` and mmengine's ``loss`` /
``predict`` dispatch."""
from __future__ import annotations

import torch
from mmengine.model import BaseModel

from lidarcl.registry import MODELS

__all__ = ["BEVModel"]


class BEVModel(BaseModel):
    """Base of the BEV models. Subclasses set ``head_grid`` (the encoder attributes their
    head takes: ``point_range``, ``voxel_size``) and define ``loss`` and ``predict``.

    Args:
        backbone: a BEV encoder config.
        bev_backbone: a :class:`SECONDBEVBackbone` config without ``in_channels``.
        head: the head config without ``in_channels`` and the ``head_grid`` attributes.
        backbone_checkpoint, allow_partial: pretrained encoder weights
            (:func:`lidarcl.engine.checkpoint.load_pretrained_backbone`).
    """

    progress_verb = "training"
    head_grid: tuple[str, ...] = ("point_range",)

    def __init__(self, backbone: dict, bev_backbone: dict, head: dict,
                 backbone_checkpoint: str | None = None, allow_partial: bool = False,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        if not hasattr(self.backbone, "bev_height"):
            raise ValueError(f"{type(self).__name__} needs a BEV encoder (VoxelBackBone8x, "
                             f"VoxelResBackBone8x), got {backbone.get('type')}")
        self.bev_backbone = MODELS.build(dict(bev_backbone,
                                              in_channels=128 * self.backbone.bev_height()))
        grid = {name: list(getattr(self.backbone, name)) for name in self.head_grid}
        self.head = MODELS.build(dict(head, in_channels=self.bev_backbone.out_channels, **grid))
        self.backbone_checkpoint = backbone_checkpoint
        self.allow_partial = allow_partial

    def init_weights(self) -> None:
        from lidarcl.engine.checkpoint import load_pretrained_backbone

        super().init_weights()
        load_pretrained_backbone(self)

    def bev_features(self, points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The neck's BEV map ``(B, C, H, W)`` of a batch."""
        return self.bev_backbone(self.backbone(points, offsets).bev)

    def forward(self, mode: str = "loss", **batch):
        if mode == "loss":
            return self.loss(batch)
        if mode == "predict":
            return self.predict(batch)
        raise ValueError(f"{type(self).__name__}.forward: unknown mode {mode!r} "
                         "(loss, predict)")
