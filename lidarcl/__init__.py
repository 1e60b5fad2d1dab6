"""lidarcl: self-supervised pretraining for LiDAR and camera-LiDAR perception."""

__version__ = "0.1.0"
