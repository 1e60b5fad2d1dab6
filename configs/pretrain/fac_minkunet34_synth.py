# FAC, foreground-aware feature contrast (CVPR 2023) on MinkUNet34, generated data.
# Sized for short CPU runs: the released code's momentum 0.999 and 65,536-key queue assume
# ~10^5 iterations (an 80-iteration run would keep the key encoder at initialisation), so
# here the momentum follows a cosine from 0.99 to 1 and the queues are smaller; the nuScenes
# config keeps the released values.
_base_ = ["../_base_/datasets/synthetic_pretrain_regions.py", "../_base_/models/minkunet34.py",
          "../_base_/schedules/pretrain_adamw.py", "../_base_/default_runtime.py"]
model = dict(type="ForegroundAwareContrast", num_anchors=2048, foreground_ratio=0.5,
             max_foreground_points=2000, ground_tile=10.0, head_channels=128,
             temperature=0.1, segment_weight=1.0, queue_size=8192, segment_queue_size=512,
             symmetric=False, momentum=dict(base=0.99, final=1.0))
