"""Geometry shared by every stage: rigid transforms, 3D boxes, camera projection."""
from lidarcl.structures.boxes import (
    BOX_DIM,
    box_corners,
    points_in_boxes,
    rotation_z,
    yaw_from_matrix,
)
from lidarcl.structures.transforms import (
    inverse_rigid,
    quaternion_to_matrix,
    transform_points,
    transform_from_pose,
)

__all__ = [
    "BOX_DIM", "box_corners", "points_in_boxes", "rotation_z", "yaw_from_matrix",
    "inverse_rigid", "quaternion_to_matrix", "transform_points", "transform_from_pose",
]
