# minkunet18 fine-tuned on SemanticKITTI with 1 % of the training scans' labels (frame
# level), SLidR's schedule; the split:
#   python tools/make_splits.py data/semantickitti/semantickitti_infos_train.json --percents 1 --level frame
_base_ = ["../_base_/datasets/semantickitti_seg.py", "../_base_/models/segmentor.py",
          "../_base_/schedules/finetune_slidr.py"]
model = dict(backbone={{_base_.minkunet18_backbone}}, num_classes=19)
train_dataloader = dict(batch_size=16, dataset=dict(
    split_file="data/semantickitti/splits/semantickitti_infos_train_1pct_seed0.json"))
