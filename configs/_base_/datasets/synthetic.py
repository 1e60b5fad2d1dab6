# The embedded default: procedurally generated scenes in nuScenes' layout.
#   python tools/make_synthetic.py --out data/synthetic --scenes 2 --keyframes 10 --seed 0
#   python tools/create_data.py nuscenes --root data/synthetic --version v1.0-synthetic --out data/synthetic
_base_ = ["./nuscenes.py"]
data_root = "data/synthetic/"
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
