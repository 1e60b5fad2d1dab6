# SuperFlow (Xu et al., ECCV 2024) with SuperFlow++'s training terms on MinkUNet34, generated
# data: view-consistent spatial contrast at t-1, t, t+1, dense-to-sparse consistency and the
# temporal contrast, InfoNCE tau 0.07 on semantic superpixels (lidarcl/models/pretrainers/
# superflow.py). The teacher is the ResNet-18 trunk of the SLidR config (stride 8) with a
# trained 1x1 head to 64 channels, randomly initialised unless a checkpoint is given, e.g.
#   --cfg-options model.image_teacher.checkpoint=outputs/image_teacher/encoder.pth
# The semantic maps must come from the same teacher (tools/superpixels.py semantic THIS
# CONFIG --checkpoint ...). The paper's ViT-B/14 DINOv2 setting is in the nuScenes config.
_base_ = ["../_base_/datasets/synthetic_pretrain_superflow.py",
          "../_base_/models/minkunet34.py", "../_base_/schedules/pretrain_adamw.py",
          "../_base_/default_runtime.py"]
model = dict(type="SuperFlow", head_channels=64, num_superpixels=17,
             image_teacher=dict(type="ImageTeacher",
                                encoder=dict(type="resnet", depth=18, dilate=[False, True, True]),
                                checkpoint=None, layout="lidarcl", head=64),
             loss=dict(type="InfoNCELoss", temperature=0.07, normalize=False),
             spatial_weight=1.0, d2s_weight=1.0, temporal_weight=1.0)
