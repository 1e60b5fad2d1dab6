"""3D detectors: CenterPoint on the sparse BEV encoders (importing registers them)."""
from lidarcl.models.detectors.bev_backbone import SECONDBEVBackbone
from lidarcl.models.detectors.center_head import CenterHead, circle_nms, gaussian_radius
from lidarcl.models.detectors.centerpoint import CenterPoint, DetPrediction

__all__ = ["SECONDBEVBackbone", "CenterHead", "CenterPoint", "DetPrediction", "circle_nms",
           "gaussian_radius"]
