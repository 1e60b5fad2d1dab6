# SuperFlow (Xu et al., ECCV 2024) on MinkUNet34, nuScenes, as released
# (Xiangxu-0103/SuperFlow configs): frozen DINOv2 ViT-B/14 (last block before its norm) with
# a trained 1x1 head to 64 channels and x14 bilinear upsampling; 3 of 6 cameras at 224 x 448;
# keyframes t-1, t, t+1, dense cloud of 3 scans; 17 semantic classes; AdamW lr 0.01, weight
# decay 0.01, one-cycle schedule (20% warm-up, div 25, final div 100), 100 epochs, batch 4
# per GPU on 8 GPUs (here: batch 4 on one device, 100 epochs of the 28,130 training
# keyframes = 703,250 iterations). Put DINOv2's file at
# checkpoints/dinov2_vitb14_pretrain.pth (nothing is downloaded). The paper's semantic maps
# come from OpenSeeD; register them with tools/superpixels.py register --tag openseed17 and
# set superpixel_tag, or derive k-means maps from this teacher (tools/superpixels.py
# semantic).
_base_ = ["./superflow_minkunet34_synth.py"]
train_dataloader = dict(batch_size=4,
                        dataset=dict(dataset=dict(data_root="data/nuscenes/")))
model = dict(image_teacher=dict(encoder=dict(_delete_=True, type="vit", size="vit_b"),
                                checkpoint="checkpoints/dinov2_vitb14_pretrain.pth",
                                layout="dinov2"))
max_iters = 703250
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(_delete_=True, type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=0.01, weight_decay=0.01, eps=1e-6))
param_scheduler = [dict(type="OneCycleLR", eta_max=0.01, total_steps=max_iters,
                        pct_start=0.2, div_factor=25.0, final_div_factor=100.0,
                        by_epoch=False)]
