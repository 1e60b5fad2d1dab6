# Masked contrast after Point-CMAE (ACCV 2024), ported to scenes, on MinkUNet34, generated
# data: Point-CMAE's positive-only cosine consistency (weight 1) on doubly masked cells.
_base_ = ["../_base_/datasets/synthetic_pretrain.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="MaskedContrast", mask_size=1.0, mask_ratio=0.6, decoder_channels=64,
             points_per_cell=16, target_points=32, consistency="cosine",
             consistency_weight=1.0)
