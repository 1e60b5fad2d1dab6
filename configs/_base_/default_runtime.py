# Runtime shared by every training config: mmengine's Runner with iteration-based loops.
default_scope = "lidarcl"
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10),        # loss, time per iteration, ETA
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=500, max_keep_ckpts=2,
                    save_last=True),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    # iteration, loss and ETA on the terminal when the tools run in their compact terminal
    # mode (the default; --verbose drops it for mmengine's stream): rewritten in place on a
    # TTY, else a line every `interval` iterations (None: about ten lines per run)
    progress=dict(type="TerminalProgressHook", interval=None),
)
# checkpoints hold plain types only, so resume loads them with weights_only=True; the
# momentum hook steps the key encoders of methods that have them (a no-op otherwise)
custom_hooks = [dict(type="WeightsOnlyCheckpointHook"), dict(type="MomentumUpdateHook")]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork"),
               dist_cfg=dict(backend="nccl"))
log_processor = dict(by_epoch=False, window_size=10)
log_level = "INFO"
randomness = dict(seed=0)
load_from = None
resume = False
