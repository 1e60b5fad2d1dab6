# MoCo v2 (Chen et al., arXiv 2003.04297; main_moco.py --mlp --moco-t 0.2 --aug-plus --cos)
# on nuScenes' camera images, ResNet-50: the paper's recipe (SGD lr 0.03 at batch 256,
# momentum 0.9, weight decay 1e-4, cosine decay, queue 65,536, key momentum 0.999,
# 224-pixel crops). SLidR uses the ImageNet MoCo v2 (800 epochs) file instead; load it
# with layout="moco_v2". 200 epochs of the 204,894 training images at batch 256 is
# about 160,000 iterations.
_base_ = ["./mocov2_resnet18_synth.py"]
data_root = "data/nuscenes/"
train_dataloader = dict(
    batch_size=256, num_workers=8,
    dataset=dict(data_root=data_root, max_side=None, cache=False,
                 pipeline=[dict(type="MoCoV2Crops", size=[224, 224])]))
model = dict(backbone=dict(type="resnet", depth=50), queue_size=65536, bn_splits=8,
             momentum=dict(base=0.999, final=0.999))
max_iters = 160000
optim_wrapper = dict(optimizer=dict(_delete_=True, type="SGD", lr=0.03, momentum=0.9,
                                    weight_decay=1e-4))
param_scheduler = [dict(type="CosineAnnealingLR", by_epoch=False, begin=0,
                        end=max_iters, eta_min=0.0)]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=5000))
