# SLidR (Sautier et al., CVPR 2022) on MinkUNet34, generated data: superpixel-pooled
# InfoNCE (tau 0.07) between the 3D features and a frozen image teacher's 64-d pixel
# features. The teacher here is a ResNet-18 trunk (stride 8: layers 3-4 dilated), randomly
# initialised unless a checkpoint is given, e.g. the one tools/pretrain_image.py writes:
#   --cfg-options model.image_teacher.checkpoint=outputs/image_teacher/encoder.pth
# (layout "lidarcl"). The paper's teacher, a MoCo v2 ResNet-50, is in the nuScenes config.
_base_ = ["../_base_/datasets/synthetic_pretrain_camera.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="SLidR",
             image_teacher=dict(type="ImageTeacher",
                                encoder=dict(type="resnet", depth=18, dilate=[False, True, True]),
                                checkpoint=None, layout="lidarcl", head=64),
             loss=dict(type="InfoNCELoss", temperature=0.07, normalize=False))
