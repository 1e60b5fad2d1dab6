# The generated dataset as SuperFlow's multi-frame samples (generate it with sweeps, e.g.
# tools/make_synthetic.py --sweeps-per-keyframe 2, and compute the semantic superpixels with
# tools/superpixels.py semantic).
_base_ = ["./nuscenes_pretrain_superflow.py"]
train_dataloader = dict(dataset=dict(dataset=dict(data_root="data/synthetic/")))
