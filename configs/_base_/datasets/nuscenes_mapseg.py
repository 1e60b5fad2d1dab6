# nuScenes BEV map segmentation (BEVFusion's protocol): the keyframe and 9 sweeps, labels from
# the map expansion (nuScenes-map-expansion-v1.3 unpacked into <data_root>/maps/) around the
# augmented LiDAR frame, rotation +-22.5 degrees, scaling 0.9-1.1, x / y flips.
_base_ = ["./loaders.py"]
data_root = "data/nuscenes/"
dataset_type = "NuScenesDataset"
point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
map_classes = ["drivable_area", "ped_crossing", "walkway", "stop_line", "carpark_area",
               "divider"]
map_meta_keys = ["sample_idx", "token", "timestamp", "scene_token", "lidar_path"]
train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadSweeps", num_sweeps=9),
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
    dict(type="LoadSweeps", num_sweeps=9),
    dict(type="LoadBEVMapMask", classes=map_classes, xbound=[-50.0, 50.0, 0.5],
         ybound=[-50.0, 50.0, 0.5]),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PackSample", keys=["points", "gt_masks_bev"], meta_keys=map_meta_keys,
         skip_empty=False),
]
# InfiniteSampler: see nuscenes_det.py
train_dataloader = dict(
    batch_size=4,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="nuscenes_infos_train.json",
                 pipeline=train_pipeline, filter_empty_gt=False, split_file=None))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="nuscenes_infos_val.json",
                 pipeline=test_pipeline, test_mode=True))
val_evaluator = dict(type="BEVMapMetric", classes=map_classes)
