# SLidR (Sautier et al., CVPR 2022) on MinkUNet34, nuScenes keyframes, as in the paper:
# the MoCo v2 ResNet-50 (800 epochs, strides of layers 2-4 replaced by dilation, frozen)
# with a trained 1x1 head to 64 channels; SGD lr 0.5, momentum 0.9, dampening 0.1, weight
# decay 1e-4, cosine schedule, batch 4 (valeoai/SLidR config/slidr_minkunet.yaml; 50 epochs
# of the 28,130 training keyframes are about 350k iterations at batch 4).
# Departure: the 3D input is x, y, z and intensity (SLidR: intensity alone).
# Put MoCo's file at checkpoints/moco_v2_800ep_pretrain.pth.tar (nothing is downloaded).
_base_ = ["./slidr_minkunet34_synth.py"]
data_root = "data/nuscenes/"
train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root))
model = dict(image_teacher=dict(
    encoder=dict(type="resnet", depth=50, dilate=[True, True, True]),
    checkpoint="checkpoints/moco_v2_800ep_pretrain.pth.tar", layout="moco_v2"))
max_iters = 351625
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(_delete_=True, type="OptimWrapper",
                     optimizer=dict(type="SGD", lr=0.5, momentum=0.9, dampening=0.1,
                                    weight_decay=1e-4))
param_scheduler = [dict(type="CosineAnnealingLR", by_epoch=False, begin=0, end=max_iters,
                        eta_min=0.0)]  # a list replaces the base's warm-up + cosine
