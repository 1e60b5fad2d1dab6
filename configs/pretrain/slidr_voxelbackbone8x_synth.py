# SLidR on VoxelBackBone8x (SECOND), generated data: its 16-d point features go through a
# Linear head to the teacher's 64 channels.
_base_ = ["./slidr_minkunet34_synth.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.voxelbackbone8x_backbone}}, head_channels=64)
