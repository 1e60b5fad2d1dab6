# The generated data (nuScenes layout, with lidarseg) for segmentation fine-tuning; the
# study's dataset (README, "Fine-tuning study"):
#   python tools/make_synthetic.py --out data/synthetic_seg --scenes 60 --keyframes 4 --val-scenes 10 --image-size 160 90
#   python tools/create_data.py nuscenes --root data/synthetic_seg --version v1.0-synthetic --out data/synthetic_seg --superpixels none
#   python tools/make_splits.py data/synthetic_seg/nuscenes_infos_train.json
_base_ = ["./nuscenes_seg.py"]
data_root = "data/synthetic_seg/"
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
