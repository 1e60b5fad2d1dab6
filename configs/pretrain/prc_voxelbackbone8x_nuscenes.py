# PRC, point-region contrast (CALICO stage 1) on VoxelBackBone8x (SECOND), nuScenes keyframes:
# the MinkUNet34 config with the backbone swapped.
_base_ = ["./prc_minkunet34_nuscenes.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.voxelbackbone8x_backbone}})
