"""Linear probing of a pretrained backbone on per-point semantic labels (SLidR's protocol,
Sautier et al. CVPR 2022, Sec. 4.2: the backbone is frozen and only a linear per-point
classifier is trained; mIoU on the validation split).

1. Features: the frozen backbone (eval mode, no gradient) runs once over every training scan;
   up to ``points_per_scan`` labelled points per scan (drawn uniformly with a seeded
   generator) and their features are kept.
2. Head: ``nn.Linear(C, num_classes)`` trained with AdamW and cross-entropy on those cached
   features for ``epochs`` passes in shuffled mini-batches (seeded), labels equal to
   ``ignore_index`` skipped.
3. Evaluation: backbone + head over every point of every validation scan; confusion matrix,
   IoU per class and mIoU (:mod:`lidarcl.evaluation.segmentation`). Points outside the
   backbone's voxel grid count as predicted class 0 (they cannot be left out silently).

``linear_probe_study`` runs it for the pretrained checkpoint and for the same architecture
randomly initialised (same seed for the head and the point draws), in one call.

Departure from SLidR: SLidR trains the head with SGD (lr 0.05) for 50 epochs on the full
scans with the backbone in the loop; caching a capped number of points per scan keeps the
probe to minutes on a CPU. Labels come from nuScenes-lidarseg files through
``LoadLidarsegLabels`` and the index's category table (16 classes).
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from lidarcl.errors import DataError
from lidarcl.evaluation.segmentation import confusion_matrix, iou_per_class, mean_iou

__all__ = ["probe_pipeline", "build_probe_loader", "extract_features", "train_linear_head",
           "evaluate_probe", "run_linear_probe", "linear_probe_study"]

IGNORE = 255


def probe_pipeline(point_cloud_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)) -> list:
    return [dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
            dict(type="LoadLidarsegLabels"),
            dict(type="PointsRangeFilter", point_cloud_range=list(point_cloud_range)),
            dict(type="PackSample", keys=["points", "pts_semantic_mask"])]


def build_probe_loader(dataset_cfg: dict, ann_file: str, data_root: str | None = None,
                       point_cloud_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)):
    """``(loader, lut, class names)`` over ``ann_file`` with the probe pipeline; ``lut``
    maps raw lidarseg indices to training labels (255 = ignored)."""
    from torch.utils.data import DataLoader

    from lidarcl.datasets.collate import collate_samples
    from lidarcl.registry import DATASETS, register_all_modules

    register_all_modules()
    cfg = copy.deepcopy(dict(dataset_cfg))
    cfg.update(ann_file=ann_file, pipeline=probe_pipeline(point_cloud_range),
               filter_empty_gt=False, test_mode=True)
    if data_root is not None:
        cfg["data_root"] = data_root
    dataset = DATASETS.build(cfg)
    if not hasattr(dataset, "lidarseg_learning_map"):
        raise DataError(ann_file, f"{type(dataset).__name__} has no lidarseg labels; the "
                                  "linear probe needs nuScenes-lidarseg (or the generated "
                                  "dataset)")
    lut = torch.as_tensor(dataset.lidarseg_learning_map, dtype=torch.int64)
    names = list(getattr(dataset, "LIDARSEG_CLASSES", ()))
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0,
                        collate_fn=collate_samples)
    return loader, lut, names


def _index_file(loader):
    """The info index a loader reads (named in errors), or None for a plain data source."""
    return getattr(getattr(loader, "dataset", None), "ann_file", None)


def _check_not_empty(loader, split: str) -> None:
    """An empty split would give ``torch.cat([])`` (train) or an mIoU of NaN that reads like
    a result (val): refuse it, naming its index file."""
    dataset = getattr(loader, "dataset", loader)
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise DataError(_index_file(loader), f"the {split} split is empty (no samples); the "
                                             "linear probe needs scans in both splits")


def _labels(batch, lut):
    raw = batch["pts_semantic_mask"].to(torch.int64)
    inside = (raw >= 0) & (raw < len(lut))
    return torch.where(inside, lut[raw.clamp(0, len(lut) - 1)], torch.full_like(raw, IGNORE))


@torch.no_grad()
def extract_features(backbone: nn.Module, loader, lut, points_per_scan: int | None = 20000,
                     seed: int = 0, device="cpu"):
    """Cached ``(features (P, C) float32, labels (P,) int64)`` of the labelled points
    inside the grid (module doc, step 1)."""
    backbone.eval()
    generator = torch.Generator().manual_seed(seed)
    feats, labels = [], []
    for batch in loader:
        points = batch["points"].to(device)
        out = backbone(points, batch["offsets"].to(device))
        label = _labels(batch, lut)
        keep = torch.nonzero((label != IGNORE) & (out.voxels.point_to_voxel.cpu() >= 0),
                             as_tuple=True)[0]
        if points_per_scan is not None and len(keep) > points_per_scan:
            keep = keep[torch.randperm(len(keep), generator=generator)[:points_per_scan]]
        feats.append(out.point_features[keep.to(device)].float().cpu())
        labels.append(label[keep])
    if not sum(len(x) for x in labels):
        raise DataError(_index_file(loader), "no labelled point inside the backbone's grid in "
                                             "this split: nothing to train the probe on")
    return torch.cat(feats), torch.cat(labels)


def train_linear_head(features, labels, num_classes: int, epochs: int = 30,
                      lr: float = 1e-2, weight_decay: float = 1e-4, batch_size: int = 4096,
                      seed: int = 0) -> nn.Linear:
    """A linear classifier on cached features (module doc, step 2)."""
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():  # seeded initialisation, independent of the global RNG
        bound = 1.0 / np.sqrt(features.shape[1])
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(head(features[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head


@torch.no_grad()
def evaluate_probe(backbone: nn.Module, head: nn.Module, loader, lut, num_classes: int,
                   device="cpu") -> np.ndarray:
    """Confusion matrix over every labelled validation point (module doc, step 3)."""
    backbone.eval()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for batch in loader:
        out = backbone(batch["points"].to(device), batch["offsets"].to(device))
        pred = head(out.point_features.float().cpu()).argmax(1)
        pred[out.voxels.point_to_voxel.cpu() < 0] = 0
        cm += confusion_matrix(pred.numpy(), _labels(batch, lut).numpy(), num_classes,
                               ignore_index=IGNORE)
    return cm


def run_linear_probe(backbone: nn.Module, train_loader, val_loader, lut, num_classes: int,
                     points_per_scan: int | None = 20000, epochs: int = 30, lr: float = 1e-2,
                     seed: int = 0, device="cpu") -> dict:
    """Steps 1-3 of the module doc. Raises :class:`DataError` naming the index file of an
    empty split or of one without labelled points (no NaN mIoU)."""
    _check_not_empty(train_loader, "training")
    _check_not_empty(val_loader, "validation")
    start = time.perf_counter()
    features, labels = extract_features(backbone, train_loader, lut, points_per_scan, seed,
                                        device)
    head = train_linear_head(features, labels, num_classes, epochs, lr, seed=seed)
    cm = evaluate_probe(backbone, head, val_loader, lut, num_classes, device)
    if cm.sum() == 0:
        raise DataError(_index_file(val_loader), "no labelled point in the validation split: "
                                                 "the mIoU would be undefined")
    return {"miou": mean_iou(cm), "iou": iou_per_class(cm).tolist(),
            "train_points": int(len(labels)), "val_points": int(cm.sum()),
            "seconds": time.perf_counter() - start}


def linear_probe_study(backbone_cfg: dict, checkpoint: str | None, train_loader, val_loader,
                       lut, num_classes: int, seed: int = 0, **probe_kwargs) -> dict:
    """The probe for the pretrained weights (``checkpoint``) and for random initialisation
    of the same architecture (``torch.manual_seed(seed)`` before building)."""
    from lidarcl.engine.checkpoint import load_backbone
    from lidarcl.registry import MODELS

    _check_not_empty(train_loader, "training")  # before building and loading any backbone
    _check_not_empty(val_loader, "validation")

    results = {}
    for name in (["pretrained"] if checkpoint else []) + ["random"]:
        torch.manual_seed(seed)
        backbone = MODELS.build(copy.deepcopy(dict(backbone_cfg)))
        if name == "pretrained":
            load_backbone(backbone, checkpoint)
        results[name] = run_linear_probe(backbone, train_loader, val_loader, lut,
                                         num_classes, seed=seed, **probe_kwargs)
    return results
