# PointContrast with four views and the multi-view MV-DHEL loss (Koromilas et al., arXiv
# 2507.06979) on MinkUNet34, generated dataset: every view through the backbone, the points
# that all four views kept are the instances, tau 0.4 as in the two-view config.
_base_ = ["./pointcontrast_minkunet34_synth.py"]
model = dict(loss=dict(_delete_=True, type="MVDHELLoss", temperature=0.4, max_pairs=4096))
pretrain_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="PointsRangeFilter", point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]),
    dict(type="MultiViewAugment", num_views=4, rot_range=[-3.1415926, 3.1415926],
         flip_ratio=0.5, scale_range=[0.95, 1.05], jitter_std=0.01, jitter_clip=0.05,
         translate=0.1),
    dict(type="TemporalViews", view_ids=[1], prob=0.5, max_sweeps=3, match_radius=0.2),
    dict(type="PackSample", keys=["points", "views"]),
]
train_dataloader = dict(dataset=dict(pipeline=pretrain_pipeline))
