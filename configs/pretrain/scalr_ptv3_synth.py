# ScaLR-style distillation on Point Transformer V3, generated data.
_base_ = ["./scalr_minkunet34_synth.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.ptv3_backbone}})
