# FAC, foreground-aware feature contrast (CVPR 2023) on MinkUNet34, nuScenes keyframes:
# the generated-data config with the nuScenes root and a 20k-iteration schedule.
_base_ = ["./fac_minkunet34_synth.py"]
data_root = "data/nuscenes/"
train_dataloader = dict(dataset=dict(data_root=data_root))
max_iters = 20000
train_cfg = dict(max_iters=max_iters)
# the released code's key encoder and queue (DepthContrast's MoCo: m = 0.999, 65,536 keys)
model = dict(queue_size=65536, segment_queue_size=4096, momentum=dict(base=0.999, final=0.999))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=500, end=max_iters, eta_min=1e-5),
]
