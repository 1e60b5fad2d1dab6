"""SuperFlow (Xu et al., "4D Contrastive Superflows are Dense 3D Representation Learners",
ECCV 2024) with the training side of SuperFlow++ (arXiv 2503.19912): spatiotemporal
image-to-LiDAR contrast on semantic superpixels over the keyframes ``t-1, t, t+1``.

Inputs (``MultiFrameDataset``): per sample the keyframe ``t`` with its cameras, semantic
superpixel ids ``s`` that mean one class in every camera and frame
(:mod:`lidarcl.datasets.semantic_superpixels`, or a user's VFM maps), the dense cloud
(``LoadDenseCloud``: ``t`` and its newest sweeps) and the neighbours ``t-1, t+1`` with
their own cameras, maps and ``lidar2img``.

Features: ``f_p`` the unit 3D feature of point ``p`` after a linear head to 64 channels;
``g_x`` the unit 64-d pixel feature of the frozen teacher with its trained 1x1 head and
bilinear upsampling (DINOv2 ViT-B/14 in the paper).

1. **View consistency alignment.** A superpixel is a class of a *sample*, not of an
   image: every camera's pixels and points with id ``s`` pool into one region
   ``(b, s)``, so a class cut by two cameras is one positive, never its own negative:

       k^f_{b,s} = mean over the (point, camera) pairs of frame f landing on id s of f_p
       q^f_{b,s} = mean over the pixels of frame f with id s of g_x

   (means of unit vectors, not normalised again).
2. **Spatial contrast** at every frame, InfoNCE (tau 0.07) from each non-empty 3D region to
   its 2D region against every other region of the batch:
   ``L_sc = 1/3 sum_{f in t-1, t, t+1} InfoNCE(k^f, q^f)``.
3. **Dense-to-sparse consistency**: the dense cloud (keyframe and 2 sweeps) through the
   same backbone and head, pooled on the keyframe's maps, ``k^d``;
   ``L_d2s = InfoNCE(k^t, k^d)`` over the regions non-empty in both.
4. **Flow-based temporal contrast** (3D to 3D; regions matched across time by class id,
   as the frames are not registered): ``L_tc = 1/2 [InfoNCE(k^t, k^{t-1}) +
   InfoNCE(k^t, k^{t+1})]`` over the regions non-empty in both frames.

``L = w_sc L_sc + w_d2s L_d2s + w_tc L_tc`` (1 : 1 : 1). The pairwise loss is any of the
library's (``loss=dict(type="InfoNCELoss"|"DCLLoss"|...)``), as in SLidR.

SuperFlow++'s other addition, temporal voting, runs at inference: it belongs to the
segmentation fine-tuning (issue 15). The SuperFlow++ paper's training-side changes beyond
these three terms could not be read here (only its abstract was available); what it names
for training (view consistency, D2S, flow-based contrast) is what is implemented.

Departures from the released code (Xiangxu-0103/SuperFlow): frames at a scene's end repeat
the keyframe under new augmentation (as the released code does) but count in ``L_tc`` only
when they are a real neighbour (``frame_offset != 0``); the dense cloud shares the
keyframe's augmentation (``LoadDenseCloud``); voxels are the backbone's (the paper's
cylindrical 0.1 m x 1 deg x 0.1 m voxels are a backbone option). Hyper-parameters of the
paper: AdamW lr 0.01, weight decay 0.01, one-cycle, 100 epochs (config), batch 4 x 8 GPUs,
images 224 x 448 from 3 of the 6 cameras, 17 OpenSeeD classes.
"""
from __future__ import annotations

import torch

from lidarcl.datasets.collate import collate_samples, offsets_to_batch_index
from lidarcl.models.losses.superpixel import matched_regions
from lidarcl.models.pretrainers.camera import pixel_regions, stack_cameras
from lidarcl.models.pretrainers.slidr import SLidR
from lidarcl.ops import region_pool
from lidarcl.registry import MODELS

__all__ = ["SuperFlow"]


@MODELS.register_module()
class SuperFlow(SLidR):
    """SuperFlow (module doc). Arguments as :class:`SLidR`, plus the weights of the three
    terms; ``num_superpixels`` (the classes of the semantic maps, 17 in the paper) fixes
    the region ids shared by the frames."""

    def __init__(self, backbone: dict, image_teacher: dict, num_superpixels: int = 17,
                 spatial_weight: float = 1.0, d2s_weight: float = 1.0,
                 temporal_weight: float = 1.0, **kwargs):
        super().__init__(backbone, image_teacher, num_superpixels=num_superpixels, **kwargs)
        self.weights = {"spatial": float(spatial_weight), "d2s": float(d2s_weight),
                        "temporal": float(temporal_weight)}

    def _frame(self, batch: dict):
        """3D and 2D region means of one frame of the batch, and its cameras."""
        images, superpixels, lidar2img, image_hw = stack_cameras(batch)
        count = self.superpixel_count(superpixels)
        features, rows = self.point_features(batch)
        points = self.pool_points(features, rows, batch, lidar2img, image_hw, superpixels,
                                  count, shared_across_cameras=True)
        pixels = self.teacher(images.flatten(0, 1))
        pixel_means = region_pool(pixels.permute(0, 2, 3, 1).reshape(-1, pixels.shape[1]),
                                  pixel_regions(superpixels, count, shared_across_cameras=True),
                                  superpixels.shape[0] * count)
        return points, pixel_means, (superpixels, lidar2img, image_hw, count)

    def _dense(self, batch: dict, cameras) -> torch.Tensor:
        """3D region means of the dense cloud on the keyframe's maps."""
        if batch.get("dense_points") is None:
            raise KeyError("SuperFlow needs 'dense_points': add LoadDenseCloud to the "
                           "keyframe pipeline and keep it in PackSample")
        dense = [torch.as_tensor(p) for p in batch["dense_points"]]
        offsets = torch.cumsum(torch.tensor([len(p) for p in dense]), 0).to(
            batch["offsets"].device)
        dense_batch = {"points": torch.cat(dense).to(batch["points"]), "offsets": offsets}
        dense_batch["batch_idx"] = offsets_to_batch_index(offsets)
        superpixels, lidar2img, image_hw, count = cameras
        features, rows = self.point_features(dense_batch)
        return self.pool_points(features, rows, dense_batch, lidar2img, image_hw,
                                superpixels, count, shared_across_cameras=True)

    def neighbour_batches(self, batch: dict) -> list[tuple[dict, torch.Tensor]]:
        """Each neighbour offset's frames collated like a batch, with a per-sample flag of
        the real neighbours (``frame_offset != 0``)."""
        frames = batch.get("frames")
        if not frames or frames[0] is None:
            raise KeyError("SuperFlow needs 'frames': wrap the dataset in MultiFrameDataset")
        out = []
        for position in range(min(len(f) for f in frames)):
            parts = [sample_frames[position] for sample_frames in frames]
            collated = collate_samples(parts)
            collated = {k: (v.to(batch["points"].device) if isinstance(v, torch.Tensor)
                            else v) for k, v in collated.items()}
            real = torch.tensor([int(p["frame_offset"]) != 0 for p in parts])
            out.append((collated, real))
        return out

    def loss(self, batch: dict) -> dict:
        key_points, key_pixels, cameras = self._frame(batch)
        spatial = [self.loss_superpixel(key_points, key_pixels)]
        temporal = []
        count = cameras[3]
        for frame_batch, real in self.neighbour_batches(batch):
            points, pixels, frame_cameras = self._frame(frame_batch)
            if frame_cameras[3] != count:
                raise ValueError(f"frames have {frame_cameras[3]} and {count} superpixel ids: "
                                 "set num_superpixels")
            spatial.append(self.loss_superpixel(points, pixels))
            # a stand-in frame (scene end) is no temporal positive: empty its regions
            keep = real.to(points.counts.device).repeat_interleave(count)
            points = type(points)(points.features, torch.where(keep, points.counts,
                                                               torch.zeros_like(points.counts)))
            if int(matched_regions(key_points, points)[2].numel()) >= \
                    self.loss_superpixel.min_regions:  # no real neighbour: no term
                temporal.append(self.loss_superpixel(key_points, points))
        dense = self._dense(batch, cameras)
        losses = {"loss_spatial": self.weights["spatial"] * torch.stack(spatial).mean(),
                  "loss_d2s": self.weights["d2s"] * self.loss_superpixel(key_points, dense)}
        # over the offsets that had real neighbours (a zero with a gradient path otherwise)
        losses["loss_temporal"] = self.weights["temporal"] * (
            torch.stack(temporal).mean() if temporal else key_points.features.sum() * 0.0)
        return losses
