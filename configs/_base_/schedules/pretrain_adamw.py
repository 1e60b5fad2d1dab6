# AdamW with linear warm-up and cosine decay, iteration-based (sized for small CPU runs;
# the papers' GPU schedules are in each method config's notes).
max_iters = 1000
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-2),
                     clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=50, end=max_iters, eta_min=1e-5),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters)
