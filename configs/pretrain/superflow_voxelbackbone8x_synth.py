# SuperFlow on VoxelBackBone8x (SECOND), generated data: its 16-d point features go through
# the Linear head to the teacher's 64 channels.
_base_ = ["./superflow_minkunet34_synth.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.voxelbackbone8x_backbone}})
