"""White-box adversarial attacks on point clouds, against a model's own training loss
(``model.loss(batch)``: cross-entropy + Lovasz for a :class:`Segmentor`, the CenterPoint
heatmap and box losses for a detector), on a collated batch after the data preprocessor.

* :func:`pgd_coordinates`: projected gradient ascent on the x, y, z of every point (Madry et
  al., ICLR 2018; on point clouds as in Xiang et al., CVPR 2019 and the LiDAR segmentation
  attacks of Xu et al., "Adversarial attacks on 3D point cloud semantic segmentation"):
  ``delta <- Proj(delta + alpha * sign(grad_delta L))`` in the L-infinity ball of radius
  ``epsilon`` (metres), ``alpha = 2.5 epsilon / steps`` by default, from a uniform random
  point of the ball (Madry et al.'s start; ``random_start=False``: from the clean points).
  A voxel backbone sees the coordinates through the voxel means, which the gradient
  follows, and through the voxel each point falls in, which it does not, so a sign step
  can lower the loss: as in Croce and Hein's APGD (ICML 2020), the ascent continues from
  the best point so far and a step that does not raise the loss halves the step size; the
  best iterate is returned (the unattacked points among the candidates). Measured on
  models fitted to a generated scan: the random start alone raised a MinkUNet18's loss
  from 0.82 to 1.25 and a small CenterPoint's from 2.90 to 4.09 at 5 and 20 cm, more
  than the first sign steps from the clean points did (to 1.30 after five, and to 3.06
  after three halvings at 5 cm): uniform noise inside the budget is already a strong
  attack on a voxel network.
* :func:`spoof_cluster`: point addition, a cluster of ``num_points`` points spoofed in front of
  the sensor (the LiDAR spoofing of Cao et al., CCS 2019, which injects up to ~60-200
  points at one spot); their positions are then optimised by the same PGD inside the
  cluster's box. Added points carry the ignore label.
* :func:`saliency_removal`: point removal, dropping in ``rounds`` rounds the object points
  with the largest loss gradient ``||dL/dxyz||`` (the gradient saliency of Zheng et al.,
  ICCV 2019, restricted to points on objects: inside ground-truth boxes, or of the thing
  classes).

Physical plausibility (every attack): no attacked point is farther from the sensor (the
LiDAR frame's origin) than ``range_limit`` metres, or than its clean range if that is
larger; coordinates only move (the intensity and other columns are kept), so the point
format is unchanged. PGD's projection keeps both the budget and the range exactly: the
step is clipped to the box, then shortened along itself until the point is inside the
range (the box is convex and holds the clean point, so the budget still holds).

Scores: :func:`segmentation_attack_success` (the fraction of labelled points predicted
correctly on the clean scan that are wrong under attack) and
:func:`detection_attack_success` (the fraction of ground-truth boxes detected on the clean
scan, a prediction of the same class within 2 m of its centre above a score threshold, that
are missed under attack).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["ATTACKS", "AttackOutput", "attack_loss", "pgd_coordinates", "spoof_cluster",
           "saliency_removal", "project_to_budget", "object_mask",
           "segmentation_attack_success", "detection_attack_success", "THING_CLASSES"]

ATTACKS = ("pgd", "spoof", "remove")
# nuScenes-lidarseg's 16-class objects (the "things"; the rest is stuff)
THING_CLASSES = ("barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle",
                 "pedestrian", "traffic_cone", "trailer", "truck")


@dataclass
class AttackOutput:
    """An attacked batch: ``points`` (N', C), ``offsets`` (B,), ``source_rows`` (N',) the row
    of each point in the clean batch (-1 for an added point), ``losses`` the attack loss on
    the unattacked points first (for spoofing: with the cluster at its initial place), then
    at every iterate (PGD: the random start if any and every step's candidate; removal:
    after each round)."""
    points: torch.Tensor
    offsets: torch.Tensor
    source_rows: torch.Tensor
    losses: list = field(default_factory=list)

    def batch(self, clean: dict, ignore_index: int = 255) -> dict:
        """``clean`` with the attacked points (per-point labels follow their rows; added
        points get ``ignore_index``)."""
        out = dict(clean, points=self.points, offsets=self.offsets)
        labels = clean.get("pts_semantic_mask")
        if labels is not None:
            rows = self.source_rows.to(labels.device)
            new = torch.full((len(rows),), ignore_index, dtype=labels.dtype,
                             device=labels.device)
            new[rows >= 0] = labels[rows[rows >= 0]]
            out["pts_semantic_mask"] = new
        return out


def attack_loss(model, batch: dict) -> torch.Tensor:
    """The sum of the model's training losses on ``batch``."""
    losses = model.loss(batch)
    return sum(v for v in losses.values() if torch.is_tensor(v))


def _ranges_limit(xyz0: torch.Tensor, range_limit: float | None) -> torch.Tensor | None:
    if range_limit is None:
        return None
    return torch.clamp(xyz0.double().norm(dim=1), min=float(range_limit))


def project_to_budget(xyz0: torch.Tensor, delta: torch.Tensor, epsilon: float,
                      limit: torch.Tensor | None) -> torch.Tensor:
    """``delta`` clipped to ``[-epsilon, epsilon]`` per coordinate, then, for a point whose
    ``|xyz0 + delta|`` exceeds its ``limit``, shortened to ``t * delta`` with the largest ``t``
    in [0, 1] that reaches the limit (module doc)."""
    delta = delta.clamp(-epsilon, epsilon)
    if limit is None:
        return delta
    x, d = xyz0.double(), delta.double()
    outside = (x + d).norm(dim=1) > limit
    if outside.any():
        # aim a millionth inside the limit, so float32 coordinates round inside too
        x, d, r = x[outside], d[outside], limit[outside] * (1 - 1e-6)
        a = (d * d).sum(1)
        b = 2 * (x * d).sum(1)
        c = (x * x).sum(1) - r * r  # < 0: the clean point is inside its limit
        t = torch.clamp((-b + torch.sqrt(torch.clamp(b * b - 4 * a * c, min=0))) / (2 * a),
                        0, 1)
        delta = delta.clone()
        delta[outside] = (d * t[:, None]).to(delta.dtype)
    return delta


def _pgd(model, batch: dict, xyz0: torch.Tensor, delta: torch.Tensor, movable: torch.Tensor,
         steps: int, step_size: float, project) -> tuple[torch.Tensor, list]:
    """Sign-gradient ascent on ``delta`` (rows ``movable`` only) with ``project`` (module
    doc): a step that does not raise the loss above the best so far is undone and the step
    size halved. Returns the best iterate (the unperturbed points included) and the loss of
    the unperturbed points, the start and every step."""
    rest = batch["points"][:, 3:].detach()

    def loss_and_grad(d):
        d = d.detach().requires_grad_(True)
        loss = attack_loss(model, dict(batch, points=torch.cat([xyz0 + d, rest], 1)))
        grad, = torch.autograd.grad(loss, d)
        return float(loss.detach()), grad

    zero = torch.zeros_like(delta)
    best_loss, best_grad = loss_and_grad(zero)
    best, losses = zero, [best_loss]
    if len(delta) and bool(delta.abs().max() > 0):  # a random start
        loss, grad = loss_and_grad(delta)
        losses.append(loss)
        if loss > best_loss:
            best, best_loss, best_grad = delta.detach(), loss, grad
    for _ in range(steps):
        candidate = project(best + step_size * best_grad.sign() * movable[:, None])
        loss, grad = loss_and_grad(candidate)
        losses.append(loss)
        if loss > best_loss:
            best, best_loss, best_grad = candidate.detach(), loss, grad
        else:
            step_size /= 2
    return best.detach(), losses


def pgd_coordinates(model, batch: dict, epsilon: float, steps: int = 10,
                    step_size: float | None = None, range_limit: float | None = 70.0,
                    random_start: bool = True, seed: int = 0) -> AttackOutput:
    """PGD on every point's x, y, z under the L-infinity budget ``epsilon`` metres
    (module doc)."""
    if epsilon <= 0 or steps < 1:
        raise ValueError(f"PGD needs epsilon > 0 and steps >= 1, got {epsilon}, {steps}")
    step_size = 2.5 * epsilon / steps if step_size is None else float(step_size)
    points = batch["points"].detach()
    xyz0 = points[:, :3]
    limit = _ranges_limit(xyz0, range_limit)
    generator = torch.Generator().manual_seed(int(seed))
    delta = torch.zeros_like(xyz0)
    if random_start:
        delta = ((torch.rand(xyz0.shape, generator=generator, dtype=torch.float64) * 2 - 1)
                 * epsilon).to(xyz0)
    project = lambda d: project_to_budget(xyz0, d, epsilon, limit)  # noqa: E731
    delta, losses = _pgd(model, batch, xyz0, project(delta),
                         torch.ones(len(xyz0), dtype=xyz0.dtype), steps, step_size, project)
    return AttackOutput(torch.cat([xyz0 + delta, points[:, 3:]], 1), batch["offsets"],
                        torch.arange(len(points)), losses)


def _forward_direction(meta: dict) -> np.ndarray:
    """The ego vehicle's forward axis in the LiDAR frame (``lidar2ego``'s inverse rotation of
    ego x), horizontal and unit length; the LiDAR's x without a calibration."""
    lidar2ego = (meta or {}).get("lidar2ego")
    if lidar2ego is None:
        return np.array([1.0, 0.0, 0.0])
    forward = np.asarray(lidar2ego, dtype=np.float64)[:3, :3].T @ np.array([1.0, 0.0, 0.0])
    forward[2] = 0.0
    return forward / np.linalg.norm(forward)


def spoof_cluster(model, batch: dict, num_points: int = 60, distance: float = 8.0,
                  size: tuple = (1.0, 1.0, 1.5), steps: int = 10,
                  step_size: float | None = None, range_limit: float | None = 70.0,
                  seed: int = 0) -> AttackOutput:
    """Add ``num_points`` points per scan in a box of ``size`` (m) centred ``distance`` m in
    front of the sensor on the ground (the lowest 10 % of the scan's points within 3 m of the
    spot; 1.8 m below the sensor when there are none), then optimise their positions by PGD
    inside the box and the range limit. The added points take the scan's median value of
    every other column."""
    if num_points < 1 or distance <= 0:
        raise ValueError(f"spoofing needs num_points >= 1 and distance > 0, got "
                         f"{num_points}, {distance}")
    generator = np.random.default_rng(int(seed))
    points = batch["points"].detach()
    offsets = batch["offsets"].tolist()
    if not offsets or offsets[-1] != len(points):
        raise ValueError(f"the batch's offsets {offsets[-3:]} do not end at its {len(points)} "
                         "points")
    metas = batch.get("meta") or [{}] * len(offsets)
    half = np.asarray(size, dtype=np.float64) / 2
    rows, parts, lows, highs, new_offsets, start = [], [], [], [], [], 0
    for scan, end in enumerate(offsets):
        cloud = points[start:end]
        xyz = cloud[:, :3].double().numpy()
        spot = _forward_direction(metas[scan]) * distance
        near = np.hypot(xyz[:, 0] - spot[0], xyz[:, 1] - spot[1]) < 3.0
        ground = np.quantile(xyz[near, 2], 0.1) if near.sum() >= 5 else -1.8
        centre = np.array([spot[0], spot[1], ground + half[2]])
        added = centre + generator.uniform(-1, 1, (num_points, 3)) * half
        extra = torch.median(cloud[:, 3:], 0).values if cloud.shape[1] > 3 and len(cloud) \
            else torch.zeros(cloud.shape[1] - 3)
        fake = torch.cat([torch.from_numpy(added).to(points.dtype),
                          extra.expand(num_points, -1)], 1)
        parts += [cloud, fake]
        rows += [torch.arange(start, end), torch.full((num_points,), -1)]
        lows.append(torch.from_numpy(np.tile(centre - half, (num_points, 1))))
        highs.append(torch.from_numpy(np.tile(centre + half, (num_points, 1))))
        new_offsets.append((new_offsets[-1] if new_offsets else 0) + (end - start)
                           + num_points)
        start = end
    merged = torch.cat(parts)
    source_rows = torch.cat(rows)
    out_offsets = torch.tensor(new_offsets, dtype=batch["offsets"].dtype)
    added_rows = source_rows < 0
    low = torch.zeros(len(merged), 3, dtype=torch.float64)
    high = torch.zeros(len(merged), 3, dtype=torch.float64)
    low[added_rows], high[added_rows] = torch.cat(lows), torch.cat(highs)
    xyz0 = merged[:, :3].detach()
    limit = _ranges_limit(xyz0, range_limit)

    def project(delta):
        moved = (xyz0.double() + delta.double())
        moved = torch.where(added_rows[:, None], torch.maximum(torch.minimum(moved, high), low),
                            xyz0.double())
        delta = (moved - xyz0.double()).to(xyz0.dtype)
        if limit is not None:  # the box may reach beyond the range: shorten towards the start
            delta = project_to_budget(xyz0, delta, float("inf"), limit)
        return delta

    attacked = AttackOutput(merged, out_offsets, source_rows)
    clean = attacked.batch(batch, _ignore_index(model))
    step_size = 2.5 * float(half.max()) / max(steps, 1) if step_size is None else step_size
    delta, losses = _pgd(model, clean, xyz0, torch.zeros_like(xyz0),
                         added_rows.to(xyz0.dtype), steps, step_size, project)
    attacked.points = torch.cat([xyz0 + delta, merged[:, 3:]], 1)
    attacked.losses = losses
    return attacked


def _ignore_index(model) -> int:
    return int(getattr(model, "ignore_index", 255))


def object_mask(batch: dict, class_names=None, thing_classes=THING_CLASSES) -> torch.Tensor:
    """``(N,)`` bool: points on objects. Inside a ground-truth box when the batch has
    ``gt_boxes`` (a list of per-scan tensors), else of a thing class by
    ``pts_semantic_mask`` (``class_names`` names the labels)."""
    points = batch["points"]
    if batch.get("gt_boxes") is not None:
        from lidarcl.ops import points_in_boxes_all

        mask, start = torch.zeros(len(points), dtype=torch.bool), 0
        for boxes, end in zip(batch["gt_boxes"], batch["offsets"].tolist()):
            boxes = torch.as_tensor(boxes)
            if len(boxes):
                inside = points_in_boxes_all(points[start:end, :3].detach().float().cpu(),
                                             boxes[:, :7].float().cpu())
                mask[start:end] = inside.any(1)
            start = end
        return mask
    labels = batch.get("pts_semantic_mask")
    if labels is None or class_names is None:
        raise ValueError("point removal needs the objects: gt_boxes, or pts_semantic_mask "
                         "with the class names")
    things = [i for i, name in enumerate(class_names) if name in thing_classes]
    return torch.isin(labels.cpu().long(), torch.tensor(things, dtype=torch.long))


def saliency_removal(model, batch: dict, num_points: int = 200, rounds: int = 4,
                     objects: torch.Tensor | None = None, class_names=None) -> AttackOutput:
    """Remove up to ``num_points`` object points per scan, the most salient first, in
    ``rounds`` rounds that recompute the gradient (module doc)."""
    if num_points < 1 or rounds < 1:
        raise ValueError(f"point removal needs num_points >= 1 and rounds >= 1, got "
                         f"{num_points}, {rounds}")
    points = batch["points"].detach()
    objects = object_mask(batch, class_names) if objects is None else objects.cpu().bool()
    ends = batch["offsets"].tolist()
    scan = torch.repeat_interleave(torch.arange(len(ends)),
                                   torch.diff(torch.tensor([0] + ends)))
    keep = torch.ones(len(points), dtype=torch.bool)
    per_round = [num_points // rounds + (r < num_points % rounds) for r in range(rounds)]
    losses = []
    for count in per_round + [0]:
        rows = torch.nonzero(keep).squeeze(1)
        current = _subset(batch, rows, scan, len(ends))
        xyz = current["points"][:, :3].detach().requires_grad_(True)
        loss = attack_loss(model, dict(current, points=torch.cat(
            [xyz, current["points"][:, 3:]], 1)))
        losses.append(float(loss.detach()))
        if count == 0:
            break
        grad, = torch.autograd.grad(loss, xyz)
        saliency = grad.norm(dim=1).masked_fill(~objects[rows], -1.0)
        for s in range(len(ends)):
            mine = torch.nonzero((scan[rows] == s) & objects[rows]).squeeze(1)
            if len(mine):
                top = mine[torch.argsort(saliency[mine], descending=True, stable=True)[:count]]
                keep[rows[top]] = False
    rows = torch.nonzero(keep).squeeze(1)
    current = _subset(batch, rows, scan, len(ends))
    return AttackOutput(current["points"], current["offsets"], rows, losses)


def _subset(batch: dict, rows: torch.Tensor, scan: torch.Tensor, scans: int) -> dict:
    counts = torch.bincount(scan[rows], minlength=scans)
    out = dict(batch, points=batch["points"][rows],
               offsets=torch.cumsum(counts, 0).to(batch["offsets"].dtype))
    if batch.get("pts_semantic_mask") is not None:
        out["pts_semantic_mask"] = batch["pts_semantic_mask"][rows.to(
            batch["pts_semantic_mask"].device)]
    return out


def segmentation_attack_success(clean_pred: torch.Tensor, attacked_pred: torch.Tensor,
                                target: torch.Tensor, source_rows: torch.Tensor,
                                ignore_index: int = 255) -> tuple[int, int]:
    """``(flipped, correct)``: of the labelled points that the clean prediction gets right
    and that the attacked scan still holds, how many the attacked prediction gets wrong
    (a removed point is not counted: it has no prediction). The rate is their ratio."""
    kept = source_rows >= 0
    rows = source_rows[kept]
    clean_right = (clean_pred[rows] == target[rows]) & (target[rows] != ignore_index)
    wrong_now = attacked_pred[kept] != target[rows]
    return int((clean_right & wrong_now).sum()), int(clean_right.sum())


def _detected(gt_boxes, gt_labels, boxes, scores, labels, threshold: float,
              distance: float = 2.0) -> np.ndarray:
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 7)[:, :2]
    gl = np.asarray(gt_labels).reshape(-1)
    keep = np.asarray(scores) >= threshold
    pb = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)[keep][:, :2]
    pl = np.asarray(labels).reshape(-1)[keep]
    if not len(gt) or not len(pb):
        return np.zeros(len(gt), dtype=bool)
    close = np.linalg.norm(gt[:, None] - pb[None], axis=2) <= distance
    return (close & (gl[:, None] == pl[None])).any(1)


def detection_attack_success(gt_boxes, gt_labels, clean, attacked,
                             score_threshold: float = 0.3) -> tuple[int, int]:
    """``(missed, detected)``: of the ground-truth boxes detected on the clean scan (a
    prediction of the same class, score >= ``score_threshold``, centre within 2 m: the
    nuScenes matching distance), how many the attacked scan's predictions miss. ``clean`` and
    ``attacked`` are ``(boxes, scores, labels)``."""
    before = _detected(gt_boxes, gt_labels, *clean, score_threshold)
    after = _detected(gt_boxes, gt_labels, *attacked, score_threshold)
    return int((before & ~after).sum()), int(before.sum())
