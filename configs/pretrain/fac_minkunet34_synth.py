# FAC, foreground-aware feature contrast (CVPR 2023) on MinkUNet34, generated data.
_base_ = ["../_base_/datasets/synthetic_pretrain_regions.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="ForegroundAwareContrast", num_anchors=2048, foreground_ratio=0.5,
             max_foreground_points=2000, ground_tile=10.0, head_channels=128,
             temperature=0.07, segment_weight=1.0)
