# PointContrast (Xie et al., ECCV 2020) on Point Transformer V3, generated dataset.
_base_ = ["../_base_/datasets/synthetic_pretrain.py", "../_base_/models/ptv3.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="PointContrast",
             loss=dict(type="InfoNCELoss", temperature=0.07, max_pairs=4096))
