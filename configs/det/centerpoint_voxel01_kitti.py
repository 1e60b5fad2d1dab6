# CenterPoint on KITTI: VoxelBackBone8x at 0.1 x 0.1 x 0.1 m over [0, -40, -3, 70.4, 40, 1]
# (41 x 800 x 704 grid, a 100 x 88 BEV map), one head for Car / Pedestrian / Cyclist without
# velocity, rotated BEV NMS (IoU 0.01, 4096 -> 500), as the community CenterPoint KITTI
# configs of OpenPCDet. Reference (EVALUATION.md): Car 3D AP R40 90.16 / 81.24 / 78.58
# (OpenPCDet PR #1455, voxel 0.05). 80 epochs of 3,712 frames at 4 x 8 = 9,280 iterations.
_base_ = ["../_base_/datasets/kitti_det.py", "../_base_/models/centerpoint.py",
          "../_base_/schedules/centerpoint_onecycle.py"]
class_names = ["Car", "Pedestrian", "Cyclist"]
point_cloud_range = [0.0, -40.0, -3.0, 70.4, 40.0, 1.0]
model = dict(
    backbone=dict(type="VoxelBackBone8x", in_channels=4, voxel_size=[0.1, 0.1, 0.1],
                  point_range=point_cloud_range),
    head=dict(class_names=class_names, tasks=[class_names], with_velocity=False,
              code_weights=[1.0] * 8,
              test_cfg=dict(post_center_range=[-10.0, -50.0, -10.0, 80.4, 50.0, 10.0],
                            nms=dict(_delete_=True, type="rotated", iou_threshold=0.01,
                                     pre_max_size=4096, post_max_size=500))))
max_iters = 9280
param_scheduler = [dict(type="OneCycleLR", eta_max=1e-3, total_steps=max_iters,
                        pct_start=0.4, div_factor=10.0, final_div_factor=1e4,
                        anneal_strategy="cos", by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(save_best="mAP_3d_moderate_R40"))
