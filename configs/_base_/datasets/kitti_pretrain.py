# KITTI velodyne scans for pretraining (no boxes needed; no sweeps, so no temporal views).
# A method's generated-data config takes them with
#   _base_ = ["./<method>_minkunet34_synth.py", "../_base_/datasets/kitti_pretrain.py"]
#   train_dataloader = dict(dataset={{_base_.kitti_pretrain[_regions]_dataset}})
# Write the info index first: python tools/create_data.py kitti --root data/kitti --out data/kitti
kitti_pretrain_dataset = dict(
    _delete_=True, type="KittiDataset", data_root="data/kitti/", ann_file="kitti_infos_train.json",
    filter_empty_gt=False,
    pipeline=[
        dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
        dict(type="PointsRangeFilter", point_cloud_range=[0, -40, -3, 70.4, 40, 1]),
        dict(type="MultiViewAugment", num_views=2, rot_range=[-3.1415926, 3.1415926],
             flip_ratio=0.5, scale_range=[0.95, 1.05], jitter_std=0.01, jitter_clip=0.05,
             translate=0.1),
        dict(type="PackSample", keys=["points", "views"]),
    ])

# the same with the semantic-less regions PRC and FAC need, cached per scan
kitti_pretrain_regions_dataset = dict(
    _delete_=True, type="KittiDataset", data_root="data/kitti/", ann_file="kitti_infos_train.json",
    filter_empty_gt=False,
    pipeline=[
        dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
        dict(type="PointsRangeFilter", point_cloud_range=[0, -40, -3, 70.4, 40, 1]),
        dict(type="SegmentRegions", cache_dir="regions"),  # under the data root
        dict(type="MultiViewAugment", num_views=2, rot_range=[-3.1415926, 3.1415926],
             flip_ratio=0.5, scale_range=[0.95, 1.05], jitter_std=0.01, jitter_clip=0.05,
             translate=0.1),
        dict(type="PackSample", keys=["points", "views", "regions"]),
    ])
