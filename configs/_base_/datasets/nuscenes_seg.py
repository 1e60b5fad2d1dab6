# nuScenes-lidarseg semantic segmentation: keyframe points (no sweeps), the 16 challenge
# classes (training labels 0..15, ignored 255) through the dataset's own learning map.
# Fine-tuning on a label fraction: set train_dataloader.dataset.split_file to a split of
# tools/make_splits.py (the configs under configs/seg/ do).
_base_ = ["./loaders.py"]

data_root = "data/nuscenes/"
dataset_type = "NuScenesDataset"
lidarseg_classes = ["barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle",
                    "pedestrian", "traffic_cone", "trailer", "truck", "driveable_surface",
                    "other_flat", "sidewalk", "terrain", "manmade", "vegetation"]
seg_meta_keys = ["sample_idx", "token", "timestamp", "scene_token", "prev", "next",
                 "lidar_path", "lidar_token", "lidarseg_path", "lidar2ego", "ego2global",
                 "valid_point_mask"]

# SLidR's fine-tuning augmentation: a rotation about z by an angle in [0, 2 pi), x and y
# each flipped with probability 0.5 (its utils/transforms.py); scaling as Pointcept's
train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadLidarsegLabels", label_mapping="dataset", ignore_index=255),
    dict(type="GlobalRotScaleTrans", rot_range=[-3.14159265, 3.14159265],
         scale_range=[0.95, 1.05], translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="PackSample", keys=["points", "pts_semantic_mask"], meta_keys=seg_meta_keys),
]
# every point of the scan, in file order (the submission format needs all of them)
test_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadLidarsegLabels", label_mapping="dataset", ignore_index=255),
    dict(type="PackSample", keys=["points", "pts_semantic_mask"], meta_keys=seg_meta_keys),
]

train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="nuscenes_infos_train.json",
                 pipeline=train_pipeline, filter_empty_gt=False, split_file=None),
)
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file="nuscenes_infos_val.json",
                 pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type="SegMetric", num_classes=16, class_names=lidarseg_classes,
                     rule="nuscenes")
