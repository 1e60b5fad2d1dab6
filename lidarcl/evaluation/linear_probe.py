"""Linear probing of a pretrained backbone on per-point semantic labels: the backbone is
frozen (eval mode, no gradient) and only a linear classifier ``nn.Linear(C, num_classes)``
on its per-point features is trained; the result is the mIoU on the validation split.
Two protocols (``run_linear_probe(..., protocol=...)``, ``tools/linear_probe.py
--protocol``):

``"cached"`` (default; fast, a CPU runs it in minutes)
    1. Features: the frozen backbone runs once over every training scan, without
       augmentation; up to ``points_per_scan`` labelled points per scan inside the grid
       (drawn uniformly with a seeded generator) and their features are kept.
    2. Head: trained with AdamW (lr 1e-2, weight decay 1e-4, 30 epochs, mini-batches of
       4096 cached points, shuffled with a seeded generator) and cross-entropy.

``"slidr"`` (SLidR's linear probing, Sautier et al. CVPR 2022, github.com/valeoai/SLidR)
    Hyper-parameters: ``config/semseg_nuscenes.yaml`` with the linear-probing changes of
    SLidR's README (l. 73: ``lr=0.05``, ``lr_head=null``, ``freeze_layers=True``,
    ``dataset_skip_step=1``, i.e. the whole training split). ``SLIDR_PROTOCOL`` holds them:
    SGD (yaml l. 10; lr 0.05 from the README, the yaml's l. 12-13 being fine-tuning's;
    l. 14-16: momentum 0.9, dampening 0.1, weight decay 1e-4), cosine schedule
    ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch (yaml l. 11,
    ``downstream/lightning_trainer.py`` l. 76-84 SGD, l. 92-95 cosine), 100 epochs (yaml
    l. 18), batches of 16 scans (yaml l. 8) shuffled each epoch with the last incomplete
    batch dropped (``downstream/lightning_datamodule.py`` l. 53-60; here a split smaller
    than one batch is one batch), loss cross-entropy + Lovász-softmax over the classes
    present (yaml l. 27-28, ``downstream/criterion.py`` l. 162-185, 216-245), backbone
    frozen in eval mode and only the last layer trained (``downstream/model_builder.py``
    l. 79-81, ``lightning_trainer.py`` l. 106-107). Augmentation of the training scans only (yaml
    l. 32, ``downstream/dataloader_nuscenes.py`` l. 219-222, ``utils/transforms.py``
    l. 23-54): a rotation around z by an angle uniform in ``[0, 2 pi)``, then x and y each
    negated with probability 0.5, drawn per scan. Since every epoch sees new augmentations,
    the backbone's features are recomputed for every batch (under ``torch.no_grad``); as in
    SLidR the loss is computed per voxel (SLidR's head is the last 1x1 layer of its U-Net
    on the voxels), each voxel labelled by one of its points (here its first point in scan
    order; SLidR keeps the point ``sparse_quantize`` returns). ``epochs``, ``lr`` and
    ``batch_size`` can be overridden (e.g. a short run); the rest is fixed. Not
    reproduced: SLidR's own backbone and input (MinkUNet on cylindrical 0.1 m voxels of the
    intensity) -- the probe uses the configured backbone as it is.

Evaluation (both): backbone + head over every point of every validation scan, without
augmentation; confusion matrix, IoU per class and mIoU
(:mod:`lidarcl.evaluation.segmentation`). A labelled point outside the backbone's voxel
grid has no feature and so no prediction: it counts as a false negative of its true class
(the last column of the ``(K, K + 1)`` confusion matrix), never as a prediction of any
class, and the results report how many there are per split (``train_outside_points`` /
``train_outside_share`` of the labelled training points, the same for ``val``). Training
skips such points (cached: over the scans once; slidr: summed over every epoch's augmented
scans).

``linear_probe_study`` runs it for the pretrained checkpoint and for the same architecture
randomly initialised (same seed for the head, the point draws and the augmentations), in
one call. Labels come from nuScenes-lidarseg files through ``LoadLidarsegLabels`` and the
index's category table (16 classes).
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from lidarcl.errors import DataError
from lidarcl.evaluation.segmentation import confusion_matrix, iou_per_class, mean_iou
from lidarcl.models.losses.lovasz import lovasz_softmax

__all__ = ["probe_pipeline", "build_probe_loader", "extract_features", "train_linear_head",
           "augment_slidr", "lovasz_softmax", "train_linear_head_slidr", "evaluate_probe",
           "run_linear_probe", "linear_probe_study", "PROTOCOLS", "CACHED_PROTOCOL",
           "SLIDR_PROTOCOL"]

IGNORE = 255
NO_PREDICTION = -1  # the prediction of a point outside the voxel grid (no class)

PROTOCOLS = ("cached", "slidr")
# defaults of the cached-features protocol (module doc)
CACHED_PROTOCOL = dict(epochs=30, lr=1e-2, weight_decay=1e-4, batch_size=4096)
# SLidR's linear probing (module doc: config/semseg_nuscenes.yaml + README l. 73);
# batch_size counts scans
SLIDR_PROTOCOL = dict(epochs=100, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-4,
                      batch_size=16, loss="ce+lovasz", flip_p=0.5)


def probe_pipeline(point_cloud_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)) -> list:
    return [dict(type="LoadPoints", use_dims=[0, 1, 2, 3]),
            dict(type="LoadLidarsegLabels"),
            dict(type="PointsRangeFilter", point_cloud_range=list(point_cloud_range)),
            dict(type="PackSample", keys=["points", "pts_semantic_mask"])]


def build_probe_loader(dataset_cfg: dict, ann_file: str, data_root: str | None = None,
                       point_cloud_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0),
                       pipeline: list | None = None):
    """``(loader, lut, class names)`` over ``ann_file`` with the probe pipeline (or
    ``pipeline``), batches of one scan; ``lut`` maps raw lidarseg indices to training
    labels (255 = ignored)."""
    from torch.utils.data import DataLoader

    from lidarcl.datasets.collate import collate_samples
    from lidarcl.registry import DATASETS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    cfg = copy.deepcopy(dict(dataset_cfg))
    cfg.update(ann_file=ann_file,
               pipeline=pipeline if pipeline is not None else probe_pipeline(point_cloud_range),
               filter_empty_gt=False, test_mode=True)
    if data_root is not None:
        cfg["data_root"] = data_root
    dataset = DATASETS.build(cfg)
    if not hasattr(dataset, "lidarseg_learning_map"):
        raise DataError(ann_file, f"{type(dataset).__name__} has no lidarseg labels; a "
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


def _seeded_head(channels: int, num_classes: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear``'s default initialisation drawn from ``generator`` (not the global RNG)."""
    head = nn.Linear(channels, num_classes)
    with torch.no_grad():
        bound = 1.0 / np.sqrt(channels)
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    return head


def _add_outside(stats: dict | None, split: str, label, point_to_voxel) -> None:
    """Adds the labelled points of a scan (batch) and those outside the grid to ``stats``."""
    if stats is None:
        return
    labelled = label != IGNORE
    stats[f"{split}_labelled_points"] = stats.get(f"{split}_labelled_points", 0) + int(
        labelled.sum())
    stats[f"{split}_outside_points"] = stats.get(f"{split}_outside_points", 0) + int(
        (labelled & (point_to_voxel < 0)).sum())


@torch.no_grad()
def extract_features(backbone: nn.Module, loader, lut, points_per_scan: int | None = 20000,
                     seed: int = 0, device="cpu", stats: dict | None = None):
    """Cached ``(features (P, C) float32, labels (P,) int64)`` of the labelled points
    inside the grid (module doc, cached protocol step 1). ``stats``, when given, receives
    ``train_labelled_points`` and ``train_outside_points`` (labelled, outside the grid)."""
    backbone.eval()
    generator = torch.Generator().manual_seed(seed)
    feats, labels = [], []
    for batch in loader:
        points = batch["points"].to(device)
        out = backbone(points, batch["offsets"].to(device))
        label = _labels(batch, lut)
        point_to_voxel = out.voxels.point_to_voxel.cpu()
        _add_outside(stats, "train", label, point_to_voxel)
        keep = torch.nonzero((label != IGNORE) & (point_to_voxel >= 0), as_tuple=True)[0]
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
    """A linear classifier on cached features (module doc, cached protocol step 2)."""
    generator = torch.Generator().manual_seed(seed)
    head = _seeded_head(features.shape[1], num_classes, generator)
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


def augment_slidr(points: torch.Tensor, offsets: torch.Tensor, generator: torch.Generator,
                  flip_p: float = 0.5) -> torch.Tensor:
    """SLidR's training augmentation of every scan of a batch (a new tensor): a rotation
    around z by an angle uniform in ``[0, 2 pi)``, then x and y each negated with
    probability ``flip_p`` (SLidR's ``Rotation_z`` then ``FlipAxis``). Other columns (e.g.
    intensity) are left as they are."""
    out = points.clone()
    start = 0
    for end in offsets.tolist():
        angle = float(torch.rand((), generator=generator, dtype=torch.float64)) * 2 * np.pi
        c, s = np.cos(angle), np.sin(angle)
        x, y = points[start:end, 0], points[start:end, 1]
        out[start:end, 0] = c * x - s * y
        out[start:end, 1] = s * x + c * y
        for axis in (0, 1):
            if float(torch.rand((), generator=generator)) < flip_p:
                out[start:end, axis] = -out[start:end, axis]
        start = end
    return out


def _voxel_labels(point_to_voxel: torch.Tensor, labels: torch.Tensor, num_voxels: int):
    """The label of every voxel: that of its first point in scan order (IGNORE if none)."""
    n = len(labels)
    inside = point_to_voxel >= 0
    first = torch.full((num_voxels,), n, dtype=torch.int64)
    first.scatter_reduce_(0, point_to_voxel[inside], torch.arange(n)[inside], reduce="amin")
    padded = torch.cat([labels, labels.new_full((1,), IGNORE)])
    return padded[first]


def _scan_source(loader):
    """``(dataset, collate)`` of a loader, to draw SLidR's shuffled batches of scans."""
    from lidarcl.datasets.collate import collate_samples

    dataset = getattr(loader, "dataset", loader)
    return dataset, getattr(loader, "collate_fn", None) or collate_samples


def train_linear_head_slidr(backbone: nn.Module, loader, lut, num_classes: int,
                            epochs: int = SLIDR_PROTOCOL["epochs"],
                            lr: float = SLIDR_PROTOCOL["lr"],
                            batch_size: int = SLIDR_PROTOCOL["batch_size"],
                            loss: str = SLIDR_PROTOCOL["loss"], seed: int = 0, device="cpu",
                            stats: dict | None = None, log: dict | None = None) -> nn.Linear:
    """SLidR's linear probing on the training split of ``loader`` (a DataLoader of packed
    samples, or a sequence of them; module doc, ``"slidr"``): every epoch shuffles the
    scans, batches ``batch_size`` of them, augments each scan (:func:`augment_slidr`), runs
    the frozen backbone under ``no_grad`` and takes one SGD step of the head on the
    labelled voxels. ``loss``: ``"ce+lovasz"`` (SLidR's) or ``"ce"``. ``stats`` receives
    the labelled / outside-the-grid point counts summed over the epochs; ``log`` (a dict)
    receives ``lr`` and ``epoch`` per step, ``optimizer``, ``scheduler`` and
    ``initial_head`` (the head's state before the first step). Returns the head on the
    CPU."""
    if loss not in ("ce+lovasz", "ce"):
        raise ValueError(f"loss must be 'ce+lovasz' or 'ce', got {loss!r}")
    p = SLIDR_PROTOCOL
    dataset, collate = _scan_source(loader)
    n = len(dataset)
    per_batch = min(int(batch_size), n)
    steps = n // per_batch  # SLidR drops the last incomplete batch
    generator = torch.Generator().manual_seed(seed)
    backbone.eval()
    head = optimizer = scheduler = None
    trained_voxels = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).tolist()
        for step in range(steps):
            batch = collate([dataset[i] for i in order[step * per_batch:(step + 1) * per_batch]])
            points = augment_slidr(batch["points"], batch["offsets"], generator, p["flip_p"])
            with torch.no_grad():
                out = backbone(points.to(device), batch["offsets"].to(device))
            label = _labels(batch, lut)
            point_to_voxel = out.voxels.point_to_voxel.cpu()
            _add_outside(stats, "train", label, point_to_voxel)
            voxel_features = out.voxel_features.detach().float()
            if head is None:  # the feature width is known at the first batch
                head = _seeded_head(voxel_features.shape[1], num_classes, generator).to(device)
                optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=p["momentum"],
                                            dampening=p["dampening"],
                                            weight_decay=p["weight_decay"])
                scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
                if log is not None:
                    log.update(optimizer=optimizer, scheduler=scheduler, initial_head={
                        k: v.detach().clone() for k, v in head.state_dict().items()})
            target = _voxel_labels(point_to_voxel, label, len(voxel_features))
            keep = torch.nonzero(target != IGNORE, as_tuple=True)[0]
            if not len(keep):
                continue
            logits = head(voxel_features[keep.to(device)])
            target = target[keep].to(device)
            value = nn.functional.cross_entropy(logits, target)
            if loss == "ce+lovasz":
                value = value + lovasz_softmax(logits.softmax(1), target)
            if log is not None:
                log.setdefault("lr", []).append(optimizer.param_groups[0]["lr"])
                log.setdefault("epoch", []).append(epoch)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            trained_voxels += len(keep)
        if scheduler is not None:
            scheduler.step()
    if not trained_voxels:
        raise DataError(_index_file(loader), "no labelled point inside the backbone's grid in "
                                             "this split: nothing to train the probe on")
    return head.cpu()


@torch.no_grad()
def evaluate_probe(backbone: nn.Module, head: nn.Module, loader, lut, num_classes: int,
                   device="cpu", stats: dict | None = None,
                   per_batch: list | None = None) -> np.ndarray:
    """Confusion matrix ``(K, K + 1)`` over every labelled validation point (module doc):
    ``cm[t, p]`` for the points inside the grid, ``cm[t, K]`` for those outside it (no
    prediction: a false negative of ``t``). ``stats`` receives ``val_labelled_points`` and
    ``val_outside_points``; ``per_batch`` receives each batch's own matrix (one per scan
    with :func:`build_probe_loader`'s batches of one)."""
    backbone.eval()
    head = head.cpu()
    cm = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    for batch in loader:
        out = backbone(batch["points"].to(device), batch["offsets"].to(device))
        pred = head(out.point_features.float().cpu()).argmax(1)
        point_to_voxel = out.voxels.point_to_voxel.cpu()
        pred[point_to_voxel < 0] = NO_PREDICTION
        label = _labels(batch, lut)
        _add_outside(stats, "val", label, point_to_voxel)
        batch_cm = confusion_matrix(pred.numpy(), label.numpy(), num_classes,
                                    ignore_index=IGNORE, no_prediction=NO_PREDICTION)
        cm += batch_cm
        if per_batch is not None:
            per_batch.append(batch_cm)
    return cm


def _share(stats: dict, split: str) -> float:
    labelled = stats.get(f"{split}_labelled_points", 0)
    return stats.get(f"{split}_outside_points", 0) / labelled if labelled else 0.0


def run_linear_probe(backbone: nn.Module, train_loader, val_loader, lut, num_classes: int,
                     points_per_scan: int | None = 20000, epochs: int | None = None,
                     lr: float | None = None, seed: int = 0, device="cpu",
                     protocol: str = "cached", batch_size: int | None = None,
                     val_per_batch: list | None = None) -> dict:
    """Train and evaluate with ``protocol`` (module doc): ``epochs``, ``lr`` and
    ``batch_size`` default to the protocol's (``CACHED_PROTOCOL`` / ``SLIDR_PROTOCOL``);
    ``points_per_scan`` is the cached protocol's. Returns ``miou``, ``iou``,
    ``confusion_matrix`` (``(K, K + 1)``), ``train_points`` (cached: points the head was
    trained on; slidr: labelled points inside the grid summed over the epochs),
    ``val_points`` (labelled validation points, inside the grid or not),
    ``{train,val}_outside_points`` / ``_share``, the hyper-parameters used and ``seconds``.
    ``val_per_batch`` receives each validation batch's confusion matrix
    (:func:`evaluate_probe`). Raises :class:`DataError` naming the index file of an empty
    split or of one without labelled points (no NaN mIoU)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    _check_not_empty(train_loader, "training")
    _check_not_empty(val_loader, "validation")
    defaults = CACHED_PROTOCOL if protocol == "cached" else SLIDR_PROTOCOL
    epochs = defaults["epochs"] if epochs is None else int(epochs)
    lr = defaults["lr"] if lr is None else float(lr)
    batch_size = defaults["batch_size"] if batch_size is None else int(batch_size)
    start = time.perf_counter()
    stats: dict = {}
    if protocol == "cached":
        features, labels = extract_features(backbone, train_loader, lut, points_per_scan,
                                            seed, device, stats=stats)
        head = train_linear_head(features, labels, num_classes, epochs, lr,
                                 batch_size=batch_size, seed=seed)
        train_points = int(len(labels))
    else:
        head = train_linear_head_slidr(backbone, train_loader, lut, num_classes, epochs, lr,
                                       batch_size, seed=seed, device=device, stats=stats)
        train_points = stats["train_labelled_points"] - stats["train_outside_points"]
    cm = evaluate_probe(backbone, head, val_loader, lut, num_classes, device, stats=stats,
                        per_batch=val_per_batch)
    if cm.sum() == 0:
        raise DataError(_index_file(val_loader), "no labelled point in the validation split: "
                                                 "the mIoU would be undefined")
    return {"miou": mean_iou(cm), "iou": iou_per_class(cm).tolist(),
            "confusion_matrix": cm.tolist(),
            "train_points": int(train_points), "val_points": int(cm.sum()),
            "train_outside_points": int(stats.get("train_outside_points", 0)),
            "train_outside_share": _share(stats, "train"),
            "val_outside_points": int(stats.get("val_outside_points", 0)),
            "val_outside_share": _share(stats, "val"),
            "protocol": protocol, "epochs": epochs, "lr": lr, "batch_size": batch_size,
            "seconds": time.perf_counter() - start}


def linear_probe_study(backbone_cfg: dict, checkpoint: str | None, train_loader, val_loader,
                       lut, num_classes: int, seed: int = 0, include_random: bool = True,
                       **probe_kwargs) -> dict:
    """The probe for the pretrained weights (``checkpoint``) and, with ``include_random``,
    for random initialisation of the same architecture (``torch.manual_seed(seed)`` before
    building; a caller that already has it for this seed and split skips it);
    ``probe_kwargs`` go to :func:`run_linear_probe` (e.g. ``protocol="slidr"``)."""
    from lidarcl.engine.checkpoint import load_backbone
    from lidarcl.registry import MODELS

    _check_not_empty(train_loader, "training")  # before building and loading any backbone
    _check_not_empty(val_loader, "validation")

    results = {}
    for name in (["pretrained"] if checkpoint else []) + (["random"] if include_random
                                                          else []):
        torch.manual_seed(seed)
        backbone = MODELS.build(copy.deepcopy(dict(backbone_cfg)))
        if name == "pretrained":
            load_backbone(backbone, checkpoint)
        results[name] = run_linear_probe(backbone, train_loader, val_loader, lut,
                                         num_classes, seed=seed, **probe_kwargs)
    return results
