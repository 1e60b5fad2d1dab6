# 3D detection on the generated data (nuScenes layout, so the devkit's detection evaluation
# scores it), keyframe points only (x, y, z, intensity) at the synth configs' size. The
# fine-tuning study's dataset (README, "Fine-tuning study"; the same as the segmentation
# study's):
#   python tools/make_synthetic.py --out data/synthetic_seg --scenes 60 --keyframes 4 --val-scenes 10 --image-size 160 90
#   python tools/create_data.py nuscenes --root data/synthetic_seg --version v1.0-synthetic --out data/synthetic_seg --superpixels none --gt-database --gt-database-sweeps none
#   python tools/make_splits.py data/synthetic_seg/nuscenes_infos_train.json
# A label fraction pastes only objects of its own scans: build its database with
#   python tools/create_data.py gt-database --index data/synthetic_seg/nuscenes_infos_train.json --split-file data/synthetic_seg/splits/nuscenes_infos_train_10pct_seed0.json --sweeps none
_base_ = ["./nuscenes_det.py"]
data_root = "data/synthetic_seg/"
version = "v1.0-synthetic"
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
det_meta_keys = ["sample_idx", "token", "timestamp", "scene_token", "lidar_path",
                 "lidar2ego", "ego2global"]
sample_groups = {"car": 2, "truck": 3, "construction_vehicle": 7, "bus": 4, "trailer": 6,
                 "barrier": 2, "motorcycle": 6, "bicycle": 6, "pedestrian": 2,
                 "traffic_cone": 2}
train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="ObjectSample", db_file=data_root + "nuscenes_dbinfos_train.json",
         sample_groups=sample_groups, classes={{_base_.class_names}}, min_points=5),
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
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PackSample", keys=["points"], meta_keys=det_meta_keys, skip_empty=False),
]
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root,
                                                   pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
val_evaluator = dict(data_root=data_root, version=version)
