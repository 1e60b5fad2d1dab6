# PointContrast (Xie et al., ECCV 2020) on MinkUNet34, generated dataset: InfoNCE at the
# temperature of the authors' launch script (misc.nceT=0.4, npos=4096), no projection head.
_base_ = ["../_base_/datasets/synthetic_pretrain.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="PointContrast",
             loss=dict(type="InfoNCELoss", temperature=0.4, max_pairs=4096))
