# The generated dataset with cameras and SLIC superpixels for image-to-LiDAR pretraining
# (tools/create_data.py ... --superpixels slic writes the maps).
_base_ = ["./nuscenes_pretrain_camera.py"]
data_root = "data/synthetic/"
train_dataloader = dict(dataset=dict(data_root=data_root))
