# nuScenes multi-frame samples for SuperFlow (Xu et al., ECCV 2024): the keyframe t with its
# dense cloud (t and its 2 newest sweeps) and the keyframes t-1, t+1 (MultiFrameDataset),
# 3 of the 6 cameras (the same at t-1 and t+1), images resized to 224 x 448 and flipped
# left-right half of the time, semantic superpixels shared by cameras and frames. Each
# frame draws its own rotation, scale and flips, as in the released code. Compute the
# semantic maps first (17 k-means classes of the teacher's features), or register a VFM's:
#   python tools/superpixels.py semantic configs/pretrain/superflow_minkunet34_nuscenes.py \
#       --index data/nuscenes/nuscenes_infos_train.json --root data/nuscenes
_base_ = ["./nuscenes.py"]
superpixel_tag = "kmeans17"
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
_frame_steps = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="LoadImages"),
    dict(type="LoadSuperpixels", tag=superpixel_tag),
]
_augment = [
    dict(type="GlobalRotScaleTrans", rot_range=[-3.1415926, 3.1415926],
         scale_range=[0.95, 1.05], translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="ResizeImages", size=[224, 448]),
    dict(type="RandomFlipImages", prob=0.5),
]
_pack = ["points", "images", "superpixels", "lidar2img", "img_shape", "img_aug_matrix",
         "lidar_aug_matrix"]
superflow_key_pipeline = _frame_steps + [dict(type="SelectCameras", num=3)] + _augment + [
    dict(type="LoadDenseCloud", num_sweeps=2, point_cloud_range=point_cloud_range),
    dict(type="PackSample", keys=_pack + ["dense_points"]),
]
superflow_frame_pipeline = _frame_steps + _augment + [dict(type="PackSample", keys=_pack)]
train_dataloader = dict(
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(_delete_=True, type="MultiFrameDataset",
                 dataset=dict(type="NuScenesDataset", data_root="data/nuscenes/",
                              ann_file="nuscenes_infos_train.json",
                              pipeline=superflow_key_pipeline, filter_empty_gt=False),
                 frame_pipeline=superflow_frame_pipeline, frame_offsets=[-1, 1]))
val_dataloader = None  # pretraining has no validation loop; the linear probe evaluates
