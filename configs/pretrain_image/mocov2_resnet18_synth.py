# MoCo v2 (Chen et al., arXiv 2003.04297) on the generated dataset's camera images: the
# image teacher the camera-LiDAR configs (slidr_*, superflow_*, scalr_*_synth) can load,
# trained here in under ten minutes on two CPU cores:
#   python tools/pretrain_image.py configs/pretrain_image/mocov2_resnet18_synth.py \
#       --work-dir outputs/image_teacher        # -> outputs/image_teacher/encoder.pth
# Sized for the CPU: ResNet-18 (the teachers of the *_synth configs) without dilation
# (the weights are the same with it), 112-pixel crops of images shrunk to 400 pixels,
# batch 32, a 1,024-key queue, momentum 0.99, AdamW with warm-up and cosine decay as the
# other CPU schedules of lidarcl. The paper's ResNet-50 schedule (SGD lr 0.03, batch 256,
# 200-800 epochs, queue 65,536, momentum 0.999, 224-pixel crops) is in
# mocov2_resnet50_nuscenes.py.
_base_ = ["../_base_/default_runtime.py"]
data_root = "data/synthetic/"
image_pipeline = [dict(type="MoCoV2Crops", size=[112, 112])]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="collate_image_views"),
    dataset=dict(type="CameraImageDataset", data_root=data_root,
                 ann_file="nuscenes_infos_train.json", max_side=400, cache=True,
                 pipeline=image_pipeline))
model = dict(type="MoCoV2", backbone=dict(type="resnet", depth=18), dim=128, hidden=2048,
             queue_size=1024, temperature=0.2, bn_splits=4,
             momentum=dict(base=0.99, final=0.99))
max_iters = 300
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=20, end=max_iters, eta_min=1e-5),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=100))
