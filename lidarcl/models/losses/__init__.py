"""Loss library. Each loss is an ``nn.Module`` registered in ``MODELS``. The contrastive
losses take matched feature rows of two (or more) views, so any of them can be chosen by
config inside any pretraining method; ``LovaszSoftmaxLoss`` takes per-point logits and
labels (segmentation fine-tuning):

=====================  ==========================================================
``InfoNCELoss``        InfoNCE / PointContrast (pair cap, false-negative groups)
``DCLLoss``            decoupled contrastive loss; ``weighted=True`` is DCLW
``HardNegativeLoss``   hard-negative reweighting with debiasing (Robinson et al.)
``MoCHiLoss``          queue of keys + mixed hard negatives (MoCHi)
``MVInfoNCELoss``      multi-view InfoNCE
``MVDHELLoss``         multi-view decoupled hyperspherical energy loss
``SwAVLoss``           swapped prototype prediction with Sinkhorn-Knopp codes
``RegionContrastLoss``     any pairwise loss over two poolings of the same superpixels
                           (SLidR, SuperFlow)
``PointPixelDistillLoss``  ScaLR's L2 distillation at point-pixel pairs (no negatives)
``LovaszSoftmaxLoss``      Lovász-softmax (Berman et al.; SLidR's fine-tuning loss)
=====================  ==========================================================
"""
from lidarcl.models.losses.contrastive import (DCLLoss, HardNegativeLoss, InfoNCELoss,
                                               PairwiseContrastiveLoss)
from lidarcl.models.losses.lovasz import LovaszSoftmaxLoss, lovasz_softmax
from lidarcl.models.losses.mochi import MoCHiLoss, mix_hard_negatives
from lidarcl.models.losses.multiview import MVDHELLoss, MVInfoNCELoss
from lidarcl.models.losses.superpixel import (PointPixelDistillLoss, RegionContrastLoss,
                                              matched_regions)
from lidarcl.models.losses.swav import SwAVLoss, sinkhorn_knopp

__all__ = ["PairwiseContrastiveLoss", "InfoNCELoss", "DCLLoss", "HardNegativeLoss",
           "MoCHiLoss", "mix_hard_negatives", "MVInfoNCELoss", "MVDHELLoss", "SwAVLoss",
           "sinkhorn_knopp", "RegionContrastLoss", "PointPixelDistillLoss", "matched_regions",
           "LovaszSoftmaxLoss", "lovasz_softmax"]
