# Segmentor: backbone + per-point linear head, CE + Lovasz-softmax (SLidR's fine-tuning
# loss). The backbone is the one the pretraining configs use (MinkUNet34, 0.1 m, 64-d), so
# tools/train.py --load-backbone takes their backbone.pth as it is.
model = dict(
    type="Segmentor",
    backbone=dict(type="MinkUNet34", in_channels=4, out_channels=64, voxel_size=0.1),
    num_classes=16,
    ignore_index=255,
    loss_weights=dict(ce=1.0, lovasz=1.0),
)
# the backbones of configs/seg/<backbone>_*.py (model = dict(backbone=...))
minkunet18_backbone = dict(_delete_=True, type="MinkUNet18", in_channels=4, out_channels=64,
                           voxel_size=0.1)
minkunet34_backbone = dict(_delete_=True, type="MinkUNet34", in_channels=4, out_channels=64,
                           voxel_size=0.1)
ptv3_backbone = dict(_delete_=True, type="PointTransformerV3", in_channels=4, out_channels=64,
                     voxel_size=0.1)
