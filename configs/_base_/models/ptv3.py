# Point Transformer V3 (PTv3-base plan), 0.1 m grid sampling, 64-d per-point output.
model = dict(backbone=dict(type="PointTransformerV3", in_channels=4, out_channels=64,
                           voxel_size=0.1))
