# nuScenes keyframes with their six cameras and cached superpixels, for image-to-LiDAR
# pretraining (SLidR's augmentations): the LiDAR frame rotated about z and flipped (every
# lidar2img follows exactly), the points of one random cuboid dropped, each image cropped
# (area 30-100%, aspect 14/9-17/9) and resized to 224 x 416, then flipped left-right half of
# the time (lidar2img follows again).
# Write the superpixels beside the index first:
#   python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval \
#       --out data/nuscenes --superpixels slic
_base_ = ["./nuscenes.py"]

camera_pretrain_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="PointsRangeFilter", point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]),
    dict(type="LoadImages"),
    dict(type="LoadSuperpixels"),
    dict(type="GlobalRotScaleTrans", rot_range=[-3.1415926, 3.1415926], scale_range=[1.0, 1.0],
         translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="DropCuboids", max_fraction=0.2, min_pairs=1024),
    dict(type="RandomResizedCropImages", size=[224, 416], scale=[0.3, 1.0],
         ratio=[14 / 9, 17 / 9], min_points=1024, min_share=0.75),
    dict(type="RandomFlipImages", prob=0.5),
    dict(type="PackSample", keys=["points", "images", "superpixels", "lidar2img", "img_shape",
                                  "img_aug_matrix", "lidar_aug_matrix"]),
]
train_dataloader = dict(sampler=dict(type="InfiniteSampler", shuffle=True),
                        dataset=dict(pipeline=camera_pretrain_pipeline, filter_empty_gt=False))
val_dataloader = None  # pretraining has no validation loop; the linear probe evaluates
