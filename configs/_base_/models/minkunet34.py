# MinkUNet34 on 0.1 m cartesian voxels, 64-d per-point output (SLidR / SuperFlow width).
model = dict(backbone=dict(type="MinkUNet34", in_channels=4, out_channels=64, voxel_size=0.1))
