# nuScenes LiDAR + six cameras, keyframe plus previous sweeps, 10 detection classes.
# Write the info index first:
#   python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval --out data/nuscenes
_base_ = ["./loaders.py"]

data_root = "data/nuscenes/"
dataset_type = "NuScenesDataset"
class_names = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone"]
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]

train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadSweeps", num_sweeps=9),
    dict(type="LoadImages"),
    dict(type="GlobalRotScaleTrans", rot_range=[-0.3925, 0.3925], scale_range=[0.95, 1.05],
         translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PointShuffle"),
    dict(type="PackSample"),
]
test_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadSweeps", num_sweeps=9),
    dict(type="LoadImages"),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PackSample"),
]

train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file="nuscenes_infos_train.json", classes=class_names,
                 pipeline=train_pipeline, filter_empty_gt=False),
)
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file="nuscenes_infos_val.json", classes=class_names,
                 pipeline=test_pipeline, test_mode=True),
)
