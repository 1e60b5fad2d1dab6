# The embedded default (generated scenes in nuScenes' layout) for pretraining.
_base_ = ["./nuscenes_pretrain.py"]
data_root = "data/synthetic/"
train_dataloader = dict(dataset=dict(data_root=data_root))
