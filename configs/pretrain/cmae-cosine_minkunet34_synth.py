# The masked contrast with Point-CMAE's own consistency term (Amazingren/Point-CMAE,
# models/Point_CMAE.py): 1 - cos between the two decoders' normalised features of doubly
# masked cells, no negatives, no temperature, weight 1.
_base_ = ["./cmae_minkunet34_synth.py"]
model = dict(consistency="cosine", consistency_loss=None, consistency_weight=1.0)
