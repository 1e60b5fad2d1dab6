# nuScenes 3D detection (CenterPoint, OpenPCDet's cbgs_voxel0075_res3d_centerpoint.yaml data
# settings): the keyframe and 9 sweeps with a time column (x, y, z, intensity, time), the 10
# detection classes, ground-truth sampling with OpenPCDet's groups, rotation +-pi/4, scaling
# 0.95-1.05, translation noise 0.5 m, x / y flips. Not done: CBGS' class-balanced
# resampling of the samples (OpenPCDet's BALANCED_RESAMPLING).
# Write the index and the object database first:
#   python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval --out data/nuscenes --gt-database
_base_ = ["./loaders.py"]

data_root = "data/nuscenes/"
dataset_type = "NuScenesDataset"
version = "v1.0-trainval"
class_names = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone"]
point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
det_meta_keys = ["sample_idx", "token", "timestamp", "scene_token", "lidar_path",
                 "lidar2ego", "ego2global"]
sample_groups = {"car": 2, "truck": 3, "construction_vehicle": 7, "bus": 4, "trailer": 6,
                 "barrier": 2, "motorcycle": 6, "bicycle": 6, "pedestrian": 2,
                 "traffic_cone": 2}

train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadSweeps", num_sweeps=9),
    dict(type="ObjectSample", db_file=data_root + "nuscenes_dbinfos_train.json",
         sample_groups=sample_groups, classes=class_names, min_points=5),
    dict(type="GlobalRotScaleTrans", rot_range=[-0.78539816, 0.78539816],
         scale_range=[0.95, 1.05], translation_std=[0.5, 0.5, 0.5]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PointShuffle"),
    dict(type="PackSample", keys=["points", "gt_boxes", "gt_labels", "gt_velocity"],
         meta_keys=det_meta_keys),
]
test_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadSweeps", num_sweeps=9),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PackSample", keys=["points"], meta_keys=det_meta_keys, skip_empty=False),
]

# The BEV models train by iterations: an endless shuffled stream (InfiniteSampler). With
# DefaultSampler, mmengine's IterBasedTrainLoop restarts the loader at every pass over the
# data and sleeps 2 s there (mmengine 0.10.7, runner/loops.py): 0.2 s per iteration on a
# 20-scan label split at batch 2.
train_dataloader = dict(
    batch_size=4,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="nuscenes_infos_train.json",
                 classes=class_names, pipeline=train_pipeline, filter_empty_gt=False,
                 split_file=None),
)
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="nuscenes_infos_val.json",
                 classes=class_names, pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type="NuScenesDetMetric", data_root=data_root, version=version,
                     class_names=class_names, eval_set="val")
