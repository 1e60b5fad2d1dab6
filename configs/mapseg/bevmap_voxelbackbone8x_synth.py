# BEV map segmentation on the generated data (its map expansion), sized for the CPU machine:
# VoxelBackBone8x at 0.2 m (the synth CenterPoint's encoder), keyframe points, 600 iterations.
_base_ = ["./bevmap_voxel0075_nuscenes.py"]
data_root = "data/synthetic_seg/"
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
model = dict(backbone=dict(type="VoxelBackBone8x", in_channels=4, voxel_size=[0.2, 0.2, 0.2],
                           point_range=point_cloud_range))
map_classes = ["drivable_area", "ped_crossing", "walkway", "stop_line", "carpark_area",
               "divider"]
map_meta_keys = ["sample_idx", "token", "timestamp", "scene_token", "lidar_path"]
train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="GlobalRotScaleTrans", rot_range=[-0.3925, 0.3925], scale_range=[0.9, 1.1],
         translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="LoadBEVMapMask", classes=map_classes, xbound=[-50.0, 50.0, 0.5],
         ybound=[-50.0, 50.0, 0.5]),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PointShuffle"),
    dict(type="PackSample", keys=["points", "gt_masks_bev"], meta_keys=map_meta_keys),
]
test_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadBEVMapMask", classes=map_classes, xbound=[-50.0, 50.0, 0.5],
         ybound=[-50.0, 50.0, 0.5]),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PackSample", keys=["points", "gt_masks_bev"], meta_keys=map_meta_keys,
         skip_empty=False),
]
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root,
                                                   pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
max_iters = 600
param_scheduler = [dict(type="OneCycleLR", eta_max=1e-3, total_steps=max_iters,
                        pct_start=0.4, div_factor=10.0, final_div_factor=1e4,
                        anneal_strategy="cos", by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
