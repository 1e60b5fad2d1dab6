"""Backbones: sparse-voxel U-Nets (spconv), the SECOND / CenterPoint sparse encoder and the
serialized point transformer (PTv3). All take ``(points, offsets)`` of a collated batch and
return a :class:`~lidarcl.models.backbones.base.BackboneOutput`."""
from lidarcl.models.backbones.base import BackboneOutput, set_conv_algorithm
from lidarcl.models.backbones.minkunet import MinkUNet, MinkUNet18, MinkUNet34
from lidarcl.models.backbones.ptv3 import PointTransformerV3
from lidarcl.models.backbones.second import VoxelBackBone8x, VoxelResBackBone8x

__all__ = ["BackboneOutput", "set_conv_algorithm", "MinkUNet", "MinkUNet18", "MinkUNet34",
           "VoxelBackBone8x", "VoxelResBackBone8x", "PointTransformerV3"]
