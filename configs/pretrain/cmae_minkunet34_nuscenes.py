# Masked contrast after Point-CMAE (ACCV 2024), ported to scenes, on MinkUNet34, nuScenes.
_base_ = ["../_base_/datasets/nuscenes_pretrain.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="MaskedContrast", mask_size=1.0, mask_ratio=0.6, decoder_channels=64,
             points_per_cell=16, target_points=32, head_channels=64,
             consistency_loss=dict(type="InfoNCELoss", temperature=0.07, max_pairs=4096,
                                   symmetric=True),
             consistency_weight=1.0)
max_iters = 20000
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=500, end=max_iters, eta_min=1e-5),
]
