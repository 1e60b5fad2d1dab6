# SemanticKITTI semantic segmentation: 19 classes (training labels 0..18, ignored 255)
# through the official learning map. Write the index and the splits first:
#   python tools/create_data.py semantickitti --root data/semantickitti/dataset --out data/semantickitti
#   python tools/make_splits.py data/semantickitti/semantickitti_infos_train.json --level frame
_base_ = ["./loaders.py"]

data_root = "data/semantickitti/"
dataset_type = "SemanticKITTIDataset"
seg_classes = ["car", "bicycle", "motorcycle", "truck", "other-vehicle", "person",
               "bicyclist", "motorcyclist", "road", "parking", "sidewalk", "other-ground",
               "building", "fence", "vegetation", "trunk", "terrain", "pole", "traffic-sign"]
seg_meta_keys = ["sample_idx", "token", "timestamp", "scene_token", "prev", "next",
                 "lidar_path", "lidar_token", "lidarseg_path", "lidar2ego", "ego2global",
                 "valid_point_mask"]

train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadSemanticKITTILabels", ignore_index=255),
    dict(type="GlobalRotScaleTrans", rot_range=[-3.14159265, 3.14159265],
         scale_range=[0.95, 1.05], translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="PackSample", keys=["points", "pts_semantic_mask"], meta_keys=seg_meta_keys),
]
test_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="LoadSemanticKITTILabels", ignore_index=255),
    dict(type="PackSample", keys=["points", "pts_semantic_mask"], meta_keys=seg_meta_keys),
]

train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file="semantickitti_infos_train.json", pipeline=train_pipeline,
                 split_file=None),
)
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file="semantickitti_infos_val.json", pipeline=test_pipeline,
                 test_mode=True),
)
val_evaluator = dict(type="SegMetric", num_classes=19, class_names=seg_classes,
                     rule="semantickitti")
