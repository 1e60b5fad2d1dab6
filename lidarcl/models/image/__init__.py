"""Image side of the camera-LiDAR pretrainers: ResNet and DINOv2-layout ViT encoders, their
checkpoint layouts, and the frozen teacher with a trainable head. Importing this package
registers :class:`ImageTeacher` and :class:`MoCoV2` in ``lidarcl.registry.MODELS``."""
from lidarcl.models.image.checkpoints import IMAGE_LAYOUTS, load_image_encoder
from lidarcl.models.image.moco import MoCoV2
from lidarcl.models.image.resnet import ResNet
from lidarcl.models.image.teacher import ImageTeacher, build_image_encoder
from lidarcl.models.image.vit import VisionTransformer

__all__ = ["IMAGE_LAYOUTS", "ImageTeacher", "MoCoV2", "ResNet", "VisionTransformer",
           "build_image_encoder", "load_image_encoder"]
