# ptv3 fine-tuned on nuScenes-lidarseg with 10 % of the training scenes' labels,
# SLidR's schedule; the split: python tools/make_splits.py data/nuscenes/nuscenes_infos_train.json
# SLidR's yaml sets lr_head 2.0 for the 1 % setting; the other fractions keep it here.
_base_ = ["../_base_/datasets/nuscenes_seg.py", "../_base_/models/segmentor.py",
          "../_base_/schedules/finetune_slidr.py"]
model = dict(backbone={{_base_.ptv3_backbone}})
train_dataloader = dict(batch_size=16, dataset=dict(
    split_file="data/nuscenes/splits/nuscenes_infos_train_10pct_seed0.json"))
