# KITTI object detection, raw layout (velodyne, image_2, calib, label_2, ImageSets).
#   python tools/create_data.py kitti --root data/kitti --out data/kitti
_base_ = ["./loaders.py"]

data_root = "data/kitti/"
dataset_type = "KittiDataset"
class_names = ["Pedestrian", "Cyclist", "Car"]
point_cloud_range = [0, -40, -3, 70.4, 40, 1]

train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadImages"),
    dict(type="ObjectNameFilter", classes=class_names),
    dict(type="GlobalRotScaleTrans", rot_range=[-0.78539816, 0.78539816],
         scale_range=[0.95, 1.05], translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PointShuffle"),
    dict(type="PackSample"),
]
test_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadImages"),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PackSample"),
]

train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="kitti_infos_train.json",
                 classes=class_names, pipeline=train_pipeline, filter_empty_gt=True),
)
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="kitti_infos_val.json",
                 classes=class_names, pipeline=test_pipeline, test_mode=True),
)
