# Fine-tuning sized for the 2-core CPU machine (the study's schedule): SLidR's optimiser
# (SGD, momentum 0.9, dampening 0.1, weight decay 1e-4, head at 100x the backbone's lr) with
# iterations instead of epochs: linear warm-up, cosine decay, validation at the end, best
# checkpoint kept. SLidR's rate (0.02, head 2.0) is for batches of 16 scans: here it is
# scaled linearly to the synth configs' batch of 4 (0.005, head 0.5); unscaled at batch 2,
# every run of the first fine-tuning study jumped from a loss of 2.5 to 20-880.
_base_ = ["../default_runtime.py"]
max_iters = 300
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.005, momentum=0.9, dampening=0.1, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={"head": dict(lr_mult=100.0)}),
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=20, end=max_iters, eta_min=0.0),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type="ValLoop")
default_hooks = dict(checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=max_iters,
                                     max_keep_ckpts=1, save_last=True, save_best="mIoU",
                                     rule="greater"))
