# Other backbones for configs/pretrain/<method>_<backbone>_<dataset>.py: a config built on a
# method's MinkUNet34 config (models/minkunet34.py) swaps the backbone with
#   _base_ = ["./<method>_minkunet34_<dataset>.py", "../_base_/models/backbones.py"]
#   model = dict(backbone={{_base_.<name>_backbone}})
# (each carries _delete_=True, so no MinkUNet34 argument is left behind).

# SECOND's sparse encoder (OpenPCDet), nuScenes grid: 0.075 x 0.075 x 0.2 m over
# [-54, -54, -5, 54, 54, 3]; per-point features from its first stage (16 channels).
# Stated explicitly (they are the class defaults) so --cfg-options can address them.
voxelbackbone8x_backbone = dict(_delete_=True, type="VoxelBackBone8x", in_channels=4,
                                voxel_size=[0.075, 0.075, 0.2],
                                point_range=[-54.0, -54.0, -5.0, 54.0, 54.0, 3.0])
# Point Transformer V3 (PTv3-base plan), 0.1 m grid sampling, 64-d per-point output.
ptv3_backbone = dict(_delete_=True, type="PointTransformerV3", in_channels=4,
                     out_channels=64, voxel_size=0.1)
