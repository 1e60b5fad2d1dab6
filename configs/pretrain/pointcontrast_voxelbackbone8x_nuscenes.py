# PointContrast (Xie et al., ECCV 2020) on VoxelBackBone8x (SECOND), nuScenes keyframes:
# the MinkUNet34 config with the backbone swapped.
_base_ = ["./pointcontrast_minkunet34_nuscenes.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.voxelbackbone8x_backbone}})
