# The generated dataset with pretraining views and cached semantic-less regions.
_base_ = ["./nuscenes_pretrain_regions.py"]
data_root = "data/synthetic/"
train_dataloader = dict(dataset=dict(data_root=data_root))
