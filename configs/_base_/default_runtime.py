# Runtime shared by every training config: mmengine's Runner with iteration-based loops.
default_scope = "lidarcl"
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10),        # loss, time per iteration, ETA
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=500, max_keep_ckpts=2,
                    save_last=True),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
# checkpoints hold plain types only, so resume loads them with weights_only=True
custom_hooks = [dict(type="WeightsOnlyCheckpointHook")]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork"),
               dist_cfg=dict(backend="nccl"))
log_processor = dict(by_epoch=False, window_size=10)
log_level = "INFO"
randomness = dict(seed=0)
load_from = None
resume = False
