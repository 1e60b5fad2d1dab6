# SLidR's fine-tuning schedule (config/semseg_nuscenes.yaml of github.com/valeoai/SLidR):
# SGD lr 0.02, momentum 0.9, dampening 0.1, weight decay 1e-4, the head at lr 2.0 (1 % of
# the labels; lr_mult 100), cosine decay over 100 epochs, batches of 16 scans. Validation
# every 10 epochs; the checkpoint with the best val mIoU is kept (best_mIoU_*.pth).
_base_ = ["../default_runtime.py"]
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.02, momentum=0.9, dampening=0.1, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={"head": dict(lr_mult=100.0)}),
)
max_epochs = 100
param_scheduler = [dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs,
                        T_max=max_epochs, eta_min=0.0)]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type="ValLoop")
default_hooks = dict(checkpoint=dict(type="CheckpointHook", by_epoch=True, interval=10,
                                     max_keep_ckpts=2, save_last=True, save_best="mIoU",
                                     rule="greater"))
log_processor = dict(by_epoch=True)
