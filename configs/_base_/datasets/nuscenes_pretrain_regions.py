# nuScenes pretraining views plus semantic-less regions (RANSAC ground + DBSCAN, open3d),
# cached per sample under <data_root>/regions/ (PRC, FAC).
_base_ = ["./nuscenes_pretrain.py"]

pretrain_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="PointsRangeFilter", point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]),
    dict(type="SegmentRegions", cache_dir="regions"),  # under the data root
    dict(type="MultiViewAugment", num_views=2, rot_range=[-3.1415926, 3.1415926],
         flip_ratio=0.5, scale_range=[0.95, 1.05], jitter_std=0.01, jitter_clip=0.05,
         translate=0.1),
    # where the sample lists sweeps: view 1 from one of the 3 newest, half of the time
    dict(type="TemporalViews", view_ids=[1], prob=0.5, max_sweeps=3, match_radius=0.2),
    dict(type="PackSample", keys=["points", "views", "regions"]),
]
train_dataloader = dict(dataset=dict(pipeline=pretrain_pipeline))
