# BEV map segmentation on LiDAR BEV features (BEVFusion's map head, LiDAR-only): the
# CenterPoint encoder and neck, resampled to 200 x 200 cells of 0.5 m over +-50 m, six
# classes (drivable_area, ped_crossing, walkway, stop_line, carpark_area, divider),
# per-class sigmoid focal loss. BEVFusion's LiDAR-only map segmentation: 48.56 mIoU on
# nuScenes val (mit-han-lab README).
bev_map_classes = ["drivable_area", "ped_crossing", "walkway", "stop_line", "carpark_area",
               "divider"]
model = dict(
    type="BEVMapSegmentor",
    backbone=dict(type="VoxelResBackBone8x", in_channels=5, voxel_size=[0.075, 0.075, 0.2],
                  point_range=[-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]),
    bev_backbone=dict(type="SECONDBEVBackbone", layer_nums=[5, 5], layer_strides=[1, 2],
                      num_filters=[128, 256], upsample_strides=[1, 2],
                      num_upsample_filters=[256, 256]),
    head=dict(type="BEVMapHead", classes=bev_map_classes, xbound=[-50.0, 50.0, 0.5],
              ybound=[-50.0, 50.0, 0.5]),
)
