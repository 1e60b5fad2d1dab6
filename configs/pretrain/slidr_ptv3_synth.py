# SLidR on Point Transformer V3, generated data: the MinkUNet34 config with the backbone
# swapped (PTv3 gives 64-d point features, the teacher's width).
_base_ = ["./slidr_minkunet34_synth.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.ptv3_backbone}})
