# The masked contrast with this toolkit's earlier consistency term: InfoNCE between the two
# decoders' features of doubly masked cells through a shared head, weight 0.1 (compared with
# Point-CMAE's cosine form in the README study).
_base_ = ["./cmae_minkunet34_synth.py"]
model = dict(consistency="contrastive", head_channels=64, consistency_weight=0.1,
             consistency_loss=dict(type="InfoNCELoss", temperature=0.07, max_pairs=4096,
                                   symmetric=True))
