# FAC, foreground-aware feature contrast (CVPR 2023) on MinkUNet34, KITTI velodyne scans:
# the generated-data config with this dataset's loader.
_base_ = ["./fac_minkunet34_synth.py", "../_base_/datasets/kitti_pretrain.py"]
train_dataloader = dict(dataset={{_base_.kitti_pretrain_regions_dataset}})
