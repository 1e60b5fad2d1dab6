# KITTI 3D detection (CenterPoint / SECOND data settings, OpenPCDet's kitti_dataset.yaml):
# keyframe points (x, y, z, intensity), Car / Pedestrian / Cyclist, ground-truth sampling
# (Car 20, Pedestrian 15, Cyclist 15, at least 5 points, difficulty -1 removed), rotation
# +-pi/4, scaling 0.95-1.05, x flip, the SECOND range [0, -40, -3, 70.4, 40, 1].
#   python tools/create_data.py kitti --root data/kitti --out data/kitti --gt-database
_base_ = ["./loaders.py"]

data_root = "data/kitti/"
dataset_type = "KittiDataset"
class_names = ["Car", "Pedestrian", "Cyclist"]
point_cloud_range = [0.0, -40.0, -3.0, 70.4, 40.0, 1.0]
det_meta_keys = ["sample_idx", "token", "lidar_path", "lidar2ego", "ego2global"]

train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="ObjectSample", db_file=data_root + "kitti_dbinfos_train.json",
         sample_groups={"Car": 20, "Pedestrian": 15, "Cyclist": 15}, classes=class_names,
         min_points=5, remove_difficulty=[-1]),
    dict(type="GlobalRotScaleTrans", rot_range=[-0.78539816, 0.78539816],
         scale_range=[0.95, 1.05], translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PointShuffle"),
    dict(type="PackSample", keys=["points", "gt_boxes", "gt_labels"], meta_keys=det_meta_keys),
]
test_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PackSample", keys=["points"], meta_keys=det_meta_keys, skip_empty=False),
]

# InfiniteSampler: see nuscenes_det.py
train_dataloader = dict(
    batch_size=4,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="kitti_infos_train.json",
                 classes=class_names, pipeline=train_pipeline, filter_empty_gt=True),
)
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="kitti_infos_val.json",
                 classes=class_names, pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type="KittiDetMetric", data_root=data_root, class_names=class_names)
