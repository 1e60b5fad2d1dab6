# BEV map segmentation on nuScenes with the CenterPoint encoder at 0.075 m (BEVFusion's
# LiDAR-only map segmentation: 48.56 mIoU@max on val), CenterPoint's one-cycle schedule with
# the best checkpoint by mIoU@max.
_base_ = ["../_base_/datasets/nuscenes_mapseg.py", "../_base_/models/bev_map_segmentor.py",
          "../_base_/schedules/centerpoint_onecycle.py"]
default_hooks = dict(checkpoint=dict(save_best="mIoU@max"))
