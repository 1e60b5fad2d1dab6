# ScaLR-style distillation on VoxelBackBone8x (SECOND), generated data.
_base_ = ["./scalr_minkunet34_synth.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.voxelbackbone8x_backbone}})
