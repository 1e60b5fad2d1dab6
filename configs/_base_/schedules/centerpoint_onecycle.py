# CenterPoint's optimiser (OpenPCDet's adam_onecycle: Adam with decoupled weight decay 0.01,
# lr 1e-3 in one cycle: from lr / 10 up to lr over the first 40 %, then down to
# lr / 10 / 1e4, cosine both ways; gradient norm clipped at 10), 20 epochs of nuScenes'
# 28,130 training samples at 4 per GPU on 8 GPUs = 17,600 iterations. Not reproduced:
# OpenPCDet also cycles Adam's beta1 between 0.95 and 0.85 (mmengine's OneCycleLR moves the
# rate only).
_base_ = ["../default_runtime.py"]
max_iters = 17600
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01),
                     clip_grad=dict(max_norm=10.0))
param_scheduler = [dict(type="OneCycleLR", eta_max=1e-3, total_steps=max_iters,
                        pct_start=0.4, div_factor=10.0, final_div_factor=1e4,
                        anneal_strategy="cos", by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type="ValLoop")
default_hooks = dict(checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=2000,
                                     max_keep_ckpts=2, save_last=True, save_best="NDS",
                                     rule="greater"))
