"""BEV models on the sparse encoders: CenterPoint 3D detection and BEVFusion's map
segmentation head (importing registers them)."""
from lidarcl.models.detectors.bev_backbone import SECONDBEVBackbone
from lidarcl.models.detectors.center_head import CenterHead, circle_nms, gaussian_radius
from lidarcl.models.detectors.centerpoint import CenterPoint, DetPrediction
from lidarcl.models.detectors.map_head import (BEVMapHead, BEVMapSegmentor, MapPrediction,
                                               sigmoid_focal_loss)

__all__ = ["SECONDBEVBackbone", "CenterHead", "CenterPoint", "DetPrediction", "circle_nms",
           "gaussian_radius", "BEVMapHead", "BEVMapSegmentor", "MapPrediction",
           "sigmoid_focal_loss"]
