# CenterPoint (Yin et al., CVPR 2021), the OpenPCDet / mmdet3d plan on lidarcl's encoders:
# VoxelResBackBone8x at 0.075 x 0.075 x 0.2 m over [-54, -54, -5, 54, 54, 3] (OpenPCDet's
# cbgs_voxel0075_res3d_centerpoint.yaml), SECOND's BEV backbone/neck (5 + 5 layers, 128 / 256
# filters, upsampled to 256 + 256), the center head with nuScenes' six class groups.
# NMS: circle NMS per group (mmdet3d's CenterPoint for nuScenes, min_radius 4, 12, 10, 1,
# 0.85, 0.175 compared with the squared centre distance, 83 boxes kept). OpenPCDet's
# published 59.22 mAP / 66.48 NDS used rotated NMS instead (IoU 0.2, 1000 -> 83):
# --cfg-options model.head.test_cfg.nms.type=rotated model.head.test_cfg.nms.iou_threshold=0.2
# model.head.test_cfg.nms.pre_max_size=1000 selects it.
centerpoint_classes = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone"]
centerpoint_tasks = [["car"], ["truck", "construction_vehicle"], ["bus", "trailer"], ["barrier"],
         ["motorcycle", "bicycle"], ["pedestrian", "traffic_cone"]]
centerpoint_voxel = [0.075, 0.075, 0.2]
centerpoint_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
model = dict(
    type="CenterPoint",
    backbone=dict(type="VoxelResBackBone8x", in_channels=5, voxel_size=centerpoint_voxel,
                  point_range=centerpoint_range),
    bev_backbone=dict(type="SECONDBEVBackbone", layer_nums=[5, 5], layer_strides=[1, 2],
                      num_filters=[128, 256], upsample_strides=[1, 2],
                      num_upsample_filters=[256, 256]),
    head=dict(type="CenterHead", class_names=centerpoint_classes, tasks=centerpoint_tasks,
              feature_map_stride=8, shared_channels=64, num_hm_conv=2, with_velocity=True,
              num_max_objs=500, gaussian_overlap=0.1, min_radius=2, code_weights=[1.0] * 8 + [0.2, 0.2],
              cls_weight=1.0, loc_weight=0.25,
              test_cfg=dict(score_threshold=0.1,
                            post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                            max_per_sample=500,
                            nms=dict(type="circle", min_radius=[4, 12, 10, 1, 0.85, 0.175],
                                     post_max_size=83))),
)
