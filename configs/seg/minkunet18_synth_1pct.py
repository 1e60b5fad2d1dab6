# minkunet18 fine-tuned on the generated data (configs/_base_/datasets/synthetic_seg.py) with
# 1 % of the training scenes' labels, at 0.2 m voxels, sized for the CPU machine.
_base_ = ["../_base_/datasets/synthetic_seg.py", "../_base_/models/segmentor.py",
          "../_base_/schedules/finetune_synth.py"]
model = dict(backbone=dict(_delete_=True, type="MinkUNet18", in_channels=4, out_channels=64,
                           voxel_size=0.2))
train_dataloader = dict(batch_size=4, dataset=dict(
    split_file="data/synthetic_seg/splits/nuscenes_infos_train_1pct_seed0.json"))
