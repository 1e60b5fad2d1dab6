# ScaLR-style distillation (Puy et al., CVPR 2024) on MinkUNet34, generated data: a Linear
# head regresses the frozen teacher's own features at each point's pixel (L2 between unit
# vectors, no negatives). One random camera per scan and the points it sees, images resized
# to 224 x 448, as in ScaLR; ScaLR's point augmentation (valeoai/ScaLR
# datasets/im_pc_dataset.py): rotation about z, x or y negated with probability 2/3 (after a
# uniform rotation, negating y is the same mirror as negating x), scale 0.9-1.1. The
# teacher here is the ResNet-18 trunk of the SLidR config (512-d, stride 8), randomly
# initialised unless a checkpoint is given (see slidr_*_synth).
_base_ = ["../_base_/datasets/synthetic_pretrain_camera.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
scalr_pipeline = [
    dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
    dict(type="PointsRangeFilter", point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]),
    dict(type="LoadImages"),
    dict(type="SelectCameras", num=1),
    dict(type="PointsInCameraFOV"),
    dict(type="GlobalRotScaleTrans", rot_range=[-3.1415926, 3.1415926], scale_range=[0.9, 1.1],
         translation_std=[0.0, 0.0, 0.0]),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=2 / 3, flip_ratio_bev_vertical=0.0),
    dict(type="ResizeImages", size=[224, 448]),
    dict(type="PackSample", keys=["points", "images", "lidar2img", "img_shape",
                                  "img_aug_matrix", "lidar_aug_matrix"]),
]
train_dataloader = dict(dataset=dict(pipeline=scalr_pipeline))
model = dict(type="ScaLR",
             image_teacher=dict(type="ImageTeacher",
                                encoder=dict(type="resnet", depth=18, dilate=[False, True, True]),
                                checkpoint=None, layout="lidarcl", head=None),
             loss=dict(type="PointPixelDistillLoss"))
