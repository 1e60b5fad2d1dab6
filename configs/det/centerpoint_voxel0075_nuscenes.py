# CenterPoint, VoxelResBackBone8x at 0.075 m on nuScenes (OpenPCDet's
# cbgs_voxel0075_res3d_centerpoint.yaml). Reference: OpenPCDet reports 59.22 mAP / 66.48 NDS
# on nuScenes val (mATE 0.288, mASE 0.254, mAOE 0.373, mAVE 0.216, mAAE 0.182), trained with
# CBGS and rotated NMS; mmdet3d's circle-NMS CenterPoint at 0.075 m: 56.54 / 65.17.
_base_ = ["../_base_/datasets/nuscenes_det.py", "../_base_/models/centerpoint.py",
          "../_base_/schedules/centerpoint_onecycle.py"]
