# nuScenes LiDAR keyframes for pretraining: two augmented views per scan with exact point
# correspondences (MultiViewAugment), the second one from a neighbouring sweep half of the
# time (TemporalViews); no boxes needed.
_base_ = ["./nuscenes.py"]

pretrain_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="PointsRangeFilter", point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]),
    dict(type="MultiViewAugment", num_views=2, rot_range=[-3.1415926, 3.1415926],
         flip_ratio=0.5, scale_range=[0.95, 1.05], jitter_std=0.01, jitter_clip=0.05,
         translate=0.1),
    # where the sample lists sweeps: view 1 from one of the 3 newest, half of the time
    dict(type="TemporalViews", view_ids=[1], prob=0.5, max_sweeps=3, match_radius=0.2),
    dict(type="PackSample", keys=["points", "views"]),
]
# iteration-based training: the sampler never runs dry
train_dataloader = dict(sampler=dict(type="InfiniteSampler", shuffle=True),
                        dataset=dict(pipeline=pretrain_pipeline, filter_empty_gt=False))
val_dataloader = None  # pretraining has no validation loop; the linear probe evaluates
