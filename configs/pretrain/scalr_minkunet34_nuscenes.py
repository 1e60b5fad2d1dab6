# ScaLR-style distillation on MinkUNet34, nuScenes keyframes, with ScaLR's teacher and
# schedule: frozen DINOv2 ViT-L/14 (last block before the norm, 1024-d), images 224 x 448;
# AdamW lr 2e-3, weight decay 0.03, 3,500 warm-up iterations, cosine decay to 1e-5, batch 8,
# 25 epochs (valeoai/ScaLR; there on three merged datasets, here on nuScenes' 28,130
# training keyframes: about 88k iterations), no gradient clipping (ScaLR's Distiller has
# none). ScaLR's WaffleIron backbone is not in lidarcl; ScaLR may train with fp16 autocast
# (its --fp16 flag), here fp32 (mmengine's AmpOptimWrapper would add it on a GPU).
# Put the official file at checkpoints/dinov2_vitl14_pretrain.pth (nothing is downloaded).
_base_ = ["./scalr_minkunet34_synth.py"]
data_root = "data/nuscenes/"
train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root))
model = dict(image_teacher=dict(encoder=dict(_delete_=True, type="vit", size="vit_l"),
                                checkpoint="checkpoints/dinov2_vitl14_pretrain.pth",
                                layout="dinov2"))
max_iters = 87906
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(_delete_=True, type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.03))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=3500),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=3500, end=max_iters, eta_min=1e-5),
]
