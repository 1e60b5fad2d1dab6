# Unlabelled scans from a folder (.bin with num_point_features float32 columns, .pcd, .ply, .npy).
_base_ = ["./loaders.py"]

data_root = "data/scans/"
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
train_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="GlobalRotScaleTrans", rot_range=[-3.1415926, 3.1415926],
         scale_range=[0.95, 1.05], translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="PackSample"),
]
train_dataloader = dict(
    dataset=dict(type="FolderDataset", data_root=data_root, num_point_features=4,
                 pipeline=train_pipeline),
)
