# Masked contrast after Point-CMAE (ACCV 2024), ported to scenes, on MinkUNet34, generated
# data: InfoNCE consistency between the two decoders' features of doubly masked cells
# through a shared head, weight 0.1 (cmae-cosine_* has Point-CMAE's own cosine form).
_base_ = ["../_base_/datasets/synthetic_pretrain.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="MaskedContrast", mask_size=1.0, mask_ratio=0.6, decoder_channels=64,
             points_per_cell=16, target_points=32, head_channels=64,
             consistency="contrastive",
             consistency_loss=dict(type="InfoNCELoss", temperature=0.07, max_pairs=4096,
                                   symmetric=True),
             consistency_weight=0.1)
