# SuperFlow on Point Transformer V3, generated data: the MinkUNet34 config with the backbone
# swapped.
_base_ = ["./superflow_minkunet34_synth.py", "../_base_/models/backbones.py"]
model = dict(backbone={{_base_.ptv3_backbone}})
