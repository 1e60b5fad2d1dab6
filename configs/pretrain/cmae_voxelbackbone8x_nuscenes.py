# Masked contrast after Point-CMAE (ACCV 2024) on VoxelBackBone8x (SECOND), nuScenes keyframes:
# the MinkUNet34 config with the backbone swapped.
_base_ = ["./cmae_minkunet34_nuscenes.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.voxelbackbone8x_backbone}})
