# PointContrast (Xie et al., ECCV 2020) on MinkUNet34, KITTI velodyne scans:
# the generated-data config with this dataset's loader.
_base_ = ["./pointcontrast_minkunet34_synth.py", "../_base_/datasets/kitti_pretrain.py"]
train_dataloader = dict(dataset={{_base_.kitti_pretrain_dataset}})
