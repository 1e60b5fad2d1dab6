# PRC, point-region contrast (CALICO stage 1, arXiv 2306.00349) on MinkUNet34, nuScenes.
_base_ = ["../_base_/datasets/nuscenes_pretrain_regions.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="PointRegionContrast", head_channels=128, head_hidden=256,
             point_loss=dict(type="InfoNCELoss", temperature=0.07, max_pairs=4096,
                             symmetric=True),
             region_loss=dict(type="InfoNCELoss", temperature=0.07, symmetric=True),
             region_weight=1.0, min_region_points=5)
max_iters = 20000
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=500, end=max_iters, eta_min=1e-5),
]
