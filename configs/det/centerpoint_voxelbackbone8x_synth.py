# CenterPoint on the generated data, sized for the 2-core CPU machine: VoxelBackBone8x (the
# encoder the pretraining configs train, --load-backbone takes their backbone.pth) at
# 0.2 x 0.2 x 0.2 m over [-51.2, -51.2, -5, 51.2, 51.2, 3] (a 64 x 64 BEV map), keyframe points,
# the nuScenes head and circle NMS, 600 iterations at batch 2 in one cycle (lr 1e-3).
_base_ = ["../_base_/datasets/synthetic_det.py", "../_base_/models/centerpoint.py",
          "../_base_/schedules/centerpoint_onecycle.py"]
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
model = dict(backbone=dict(type="VoxelBackBone8x", in_channels=4, voxel_size=[0.2, 0.2, 0.2],
                           point_range=point_cloud_range))
max_iters = 600
param_scheduler = [dict(type="OneCycleLR", eta_max=1e-3, total_steps=max_iters,
                        pct_start=0.4, div_factor=10.0, final_div_factor=1e4,
                        anneal_strategy="cos", by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
