# The synth CenterPoint with the residual encoder (VoxelResBackBone8x, the published
# nuScenes CenterPoint's).
_base_ = ["./centerpoint_voxelbackbone8x_synth.py"]
model = dict(backbone=dict(type="VoxelResBackBone8x"))
