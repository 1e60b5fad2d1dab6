# Unlabelled scans from a folder (.bin with 4 float32 columns, .pcd, .ply, .npy) for
# pretraining. A method's generated-data config takes them with
#   _base_ = ["./<method>_minkunet34_synth.py", "../_base_/datasets/folder_pretrain.py"]
#   train_dataloader = dict(dataset={{_base_.folder_pretrain[_regions]_dataset}})
folder_pretrain_dataset = dict(
    _delete_=True, type="FolderDataset", data_root="data/scans/", num_point_features=4,
    pipeline=[
        dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
        dict(type="PointsRangeFilter", point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]),
        dict(type="MultiViewAugment", num_views=2, rot_range=[-3.1415926, 3.1415926],
             flip_ratio=0.5, scale_range=[0.95, 1.05], jitter_std=0.01, jitter_clip=0.05,
             translate=0.1),
        dict(type="PackSample", keys=["points", "views"]),
    ])

# the same with the semantic-less regions PRC and FAC need, cached per scan
folder_pretrain_regions_dataset = dict(
    _delete_=True, type="FolderDataset", data_root="data/scans/", num_point_features=4,
    pipeline=[
        dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
        dict(type="PointsRangeFilter", point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]),
        dict(type="SegmentRegions", cache_dir="regions"),  # under the data root
        dict(type="MultiViewAugment", num_views=2, rot_range=[-3.1415926, 3.1415926],
             flip_ratio=0.5, scale_range=[0.95, 1.05], jitter_std=0.01, jitter_clip=0.05,
             translate=0.1),
        dict(type="PackSample", keys=["points", "views", "regions"]),
    ])
