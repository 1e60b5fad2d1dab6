"""Backbones: sparse-voxel U-Nets (spconv) and, with their issue, the SECOND encoder and the
serialized point transformer. All take ``(points, offsets)`` of a collated batch and
return a :class:`~lidarcl.models.backbones.base.BackboneOutput`."""
from lidarcl.models.backbones.base import BackboneOutput, set_conv_algorithm
from lidarcl.models.backbones.minkunet import MinkUNet, MinkUNet18, MinkUNet34
from lidarcl.models.backbones.second import VoxelBackBone8x, VoxelResBackBone8x

__all__ = ["BackboneOutput", "set_conv_algorithm", "MinkUNet", "MinkUNet18", "MinkUNet34",
           "VoxelBackBone8x", "VoxelResBackBone8x"]
