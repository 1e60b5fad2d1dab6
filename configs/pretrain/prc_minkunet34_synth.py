# PRC, point-region contrast (CALICO stage 1, arXiv 2306.00349) on MinkUNet34, generated
# data: PLRC + RAPC on 1,024 region and 1,024 region-less points per scan, alpha 0.5, tau 0.1.
_base_ = ["../_base_/datasets/synthetic_pretrain_regions.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="PointRegionContrast", head_channels=128, head_hidden=256,
             num_region_points=1024, num_regionless_points=1024, temperature=0.1, alpha=0.5)
