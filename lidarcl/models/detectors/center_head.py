"""CenterPoint's center head (Yin, Zhou, Krähenbühl, CVPR 2021), the OpenPCDet / mmdet3d
plan: targets, losses, decoding and NMS.

**Head.** A shared 3x3 conv (bias, BN, ReLU) to ``shared_channels`` (64), then one
*separate head* per task (class group): for every output (``hm``: the task's classes,
``center`` 2, ``center_z`` 1, ``dim`` 3, ``rot`` 2, ``vel`` 2) ``num_conv - 1`` 3x3 conv-BN-ReLU
layers and a 3x3 conv to the output; the heatmap branch keeps PyTorch's default init with
its last bias at -2.19 (a prior of 0.1), the other branches' convs get Kaiming-normal
weights and zero biases (OpenPCDet's ``SeparateHead``). nuScenes' six tasks: [car], [truck,
construction_vehicle], [bus, trailer], [barrier], [motorcycle, bicycle], [pedestrian,
traffic_cone].

**Targets** (per task, per box of its classes, OpenPCDet ``assign_target_of_single_head``):
the centre in feature-map cells ``c = ((x - x0) / vx / s, (y - y0) / vy / s)`` (``s`` the
feature map stride, 8), its integer cell ``ci = floor(c)``; a Gaussian of radius
``r = max(min_radius, int(gaussian_radius(l / vx / s, w / vy / s, overlap)))`` (CornerNet's
radius rule as CenterNet / CenterPoint code it, see :func:`gaussian_radius`; overlap 0.1,
min_radius 2), ``sigma = (2r + 1) / 6``, drawn at ``ci`` on the class's channel by an
element-wise max; the regression target at ``ci``: ``[c - ci (2), z, log l, log w, log h,
cos yaw, sin yaw, vx, vy]``. Boxes with ``l <= 0`` or ``w <= 0`` are skipped, and so are
boxes whose centre lies outside the map (OpenPCDet clamps those onto the border; its
pipelines range-filter boxes first, as ours do, so the two agree on their inputs).

**Losses.** Heatmap: CenterNet's penalty-reduced focal loss on ``clamp(sigmoid, 1e-4,
1 - 1e-4)`` (alpha 2, beta 4), normalised by the number of peaks (``gt == 1``).
Regression: L1 at the target cells, NaN targets (unknown velocity) masked out, summed per
code dimension over the batch and divided by the number of targets, weighted by
``code_weights`` (1 x 8, 0.2 x 2 for velocity) and summed. Total per task:
``cls_weight * hm + loc_weight * reg`` (1.0, 0.25).

**Decoding** (``decode_bbox_from_heatmap``): sigmoid heatmap; top-K (``max_per_sample``,
500) cells over the task's classes; ``x = (col + offset_x) * s * vx + x0`` (rows give y);
``l, w, h = exp(dim)``; ``yaw = atan2(sin, cos)``; scores above ``score_threshold`` (0.1)
and centres inside ``post_center_range`` kept; then per task either

* ``nms=dict(type="circle", min_radius=[...])`` (mmdet3d's CenterPoint for nuScenes):
  greedy by score, box ``j`` dropped when the squared xy distance to a kept centre is at
  most ``min_radius[task]`` (the original code compares the squared distance with the
  radius value, and so do we: per task 4, 12, 10, 1, 0.85, 0.175), ``post_max_size`` (83);
* ``nms=dict(type="rotated", iou_threshold=..., pre_max_size=..., post_max_size=...)``
  (OpenPCDet's ``nms_gpu`` class-agnostic NMS per task; KITTI): rotated BEV NMS
  (:func:`lidarcl.ops.nms_bev`) on the top ``pre_max_size`` boxes.
"""
from __future__ import annotations

import math
from typing import Sequence

import numba
import numpy as np
import torch
from torch import nn

from lidarcl.ops import nms_bev
from lidarcl.registry import MODELS

__all__ = ["CenterHead", "gaussian_radius", "gaussian_2d", "draw_gaussian", "circle_nms",
           "NUSCENES_TASKS", "DEFAULT_HEADS"]

NUSCENES_TASKS = (("car",), ("truck", "construction_vehicle"), ("bus", "trailer"),
                  ("barrier",), ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone"))
# output channels and conv layers of the separate heads (heatmap: the task's classes)
DEFAULT_HEADS = {"center": (2, 2), "center_z": (1, 2), "dim": (3, 2), "rot": (2, 2),
                 "vel": (2, 2)}
HEAD_ORDER = ("center", "center_z", "dim", "rot", "vel")


# ------------------------------------------------------------------ targets
def gaussian_radius(height, width, min_overlap: float = 0.5):
    """CornerNet's radius for boxes of ``height x width`` cells, as CenterNet, OpenPCDet and
    mmdet3d code it: the smallest root of three quadratics, each written
    ``r = (b + sqrt(b^2 - 4ac)) / 2`` (the published code divides by 2, not by ``2a``; the
    CenterPoint results use this, so it is kept). Works on floats and tensors."""
    lib = torch if isinstance(height, torch.Tensor) else np
    a1, b1 = 1, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + lib.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + lib.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + lib.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return lib.minimum(lib.minimum(r1, r2), r3)


def gaussian_2d(radius: int, dtype=torch.float32) -> torch.Tensor:
    """``(2r+1, 2r+1)`` Gaussian, ``sigma = (2r+1) / 6``, peak 1, values below
    ``eps * max`` set to 0 (CenterNet's ``gaussian2D``)."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    axis = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma * sigma))
    g[g < torch.finfo(torch.float64).eps * g.max()] = 0
    return g.to(dtype)


def draw_gaussian(heatmap: torch.Tensor, center_x: int, center_y: int, radius: int) -> None:
    """Element-wise max of ``heatmap (H, W)`` with a Gaussian of ``radius`` at cell
    ``(row center_y, column center_x)``, cut at the map's borders (in place)."""
    g = gaussian_2d(radius, heatmap.dtype).to(heatmap.device)
    height, width = heatmap.shape
    left, right = min(center_x, radius), min(width - center_x, radius + 1)
    top, bottom = min(center_y, radius), min(height - center_y, radius + 1)
    region = heatmap[center_y - top:center_y + bottom, center_x - left:center_x + right]
    patch = g[radius - top:radius + bottom, radius - left:radius + right]
    if min(region.shape) > 0 and min(patch.shape) > 0:
        torch.maximum(region, patch, out=region)


@numba.njit(cache=True)
def _circle_nms(x, y, order, threshold):
    suppressed = np.zeros(len(x), dtype=np.bool_)
    keep = []
    for a in range(len(order)):
        i = order[a]
        if suppressed[i]:
            continue
        keep.append(i)
        for b in range(a + 1, len(order)):
            j = order[b]
            if not suppressed[j]:
                dx, dy = x[i] - x[j], y[i] - y[j]
                if dx * dx + dy * dy <= threshold:
                    suppressed[j] = True
    return keep


def circle_nms(centers: torch.Tensor, scores: torch.Tensor, threshold: float,
               post_max_size: int | None = None) -> torch.Tensor:
    """Greedy circle NMS (CenterPoint): indices kept by decreasing score (ties: lower index
    first); ``j`` is dropped when ``(x_i - x_j)^2 + (y_i - y_j)^2 <= threshold`` for a kept
    ``i`` (the squared distance against the threshold, as the original code does)."""
    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices.numpy()
    xy = centers.detach().cpu().double().numpy()
    keep = _circle_nms(np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]),
                       order.astype(np.int64), float(threshold))
    keep = torch.tensor(list(keep), dtype=torch.int64)
    if post_max_size is not None:
        keep = keep[:int(post_max_size)]
    return keep.to(scores.device)


# ------------------------------------------------------------------ the head
def _conv_bn_relu(c_in: int, c_out: int, bias: bool) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias), nn.BatchNorm2d(c_out), nn.ReLU()]


class SeparateHead(nn.Module):
    def __init__(self, channels: int, heads: dict[str, tuple[int, int]], init_bias: float):
        super().__init__()
        self.names = list(heads)
        for name, (out, num_conv) in heads.items():
            layers = []
            for _ in range(num_conv - 1):
                layers += _conv_bn_relu(channels, channels, True)
            layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=True))
            branch = nn.Sequential(*layers)
            if name == "hm":  # PyTorch's default init, the last bias at the prior
                nn.init.constant_(branch[-1].bias, init_bias)
            else:
                for m in branch.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight)
                        nn.init.zeros_(m.bias)
            setattr(self, name, branch)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name)(x) for name in self.names}


@MODELS.register_module()
class CenterHead(nn.Module):
    """CenterPoint's head (module doc).

    Args:
        in_channels: channels of the BEV neck's output.
        class_names: the detector's classes (index = label of ``gt_labels``).
        tasks: class groups, one separate head each (every class in exactly one).
        voxel_size, point_range: the 3D encoder's grid (x, y used).
        feature_map_stride: cells of the input grid per BEV feature cell (8).
        with_velocity: regress ``vx, vy`` (nuScenes) or not (KITTI).
        test_cfg: ``score_threshold``, ``post_center_range`` (6 values), ``max_per_sample``
            (top-K), ``nms`` (``dict(type="circle", min_radius=[...], post_max_size=...)``
            or ``dict(type="rotated", iou_threshold=..., pre_max_size=...,
            post_max_size=...)``).
    """

    def __init__(self, in_channels: int, class_names: Sequence[str],
                 tasks: Sequence[Sequence[str]], voxel_size: Sequence[float],
                 point_range: Sequence[float], feature_map_stride: int = 8,
                 shared_channels: int = 64, num_hm_conv: int = 2, init_bias: float = -2.19,
                 with_velocity: bool = True, num_max_objs: int = 500,
                 gaussian_overlap: float = 0.1, min_radius: int = 2,
                 code_weights: Sequence[float] | None = None, cls_weight: float = 1.0,
                 loc_weight: float = 0.25, test_cfg: dict | None = None):
        super().__init__()
        self.class_names = list(class_names)
        self.tasks = [list(t) for t in tasks]
        flat = [c for t in self.tasks for c in t]
        missing = sorted(set(self.class_names) - set(flat))
        extra = sorted(set(flat) - set(self.class_names))
        if missing or extra or len(flat) != len(set(flat)):
            raise ValueError(f"tasks must hold every class of class_names exactly once; "
                             f"missing {missing}, unknown {extra}, tasks {self.tasks}")
        self.task_labels = [[self.class_names.index(c) for c in t] for t in self.tasks]
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_range = [float(v) for v in point_range]
        self.stride = int(feature_map_stride)
        self.with_velocity = bool(with_velocity)
        self.code_size = 10 if self.with_velocity else 8
        weights = code_weights if code_weights is not None else \
            [1.0] * 8 + [0.2, 0.2][:self.code_size - 8]
        if len(weights) != self.code_size:
            raise ValueError(f"code_weights needs {self.code_size} values, got {len(weights)}")
        self.register_buffer("code_weights", torch.tensor(weights, dtype=torch.float32),
                             persistent=False)
        self.num_max_objs = int(num_max_objs)
        self.gaussian_overlap = float(gaussian_overlap)
        self.min_radius = int(min_radius)
        self.cls_weight, self.loc_weight = float(cls_weight), float(loc_weight)
        self.test_cfg = dict(score_threshold=0.1,
                             post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                             max_per_sample=500,
                             nms=dict(type="rotated", iou_threshold=0.2, pre_max_size=1000,
                                      post_max_size=83))
        self.test_cfg.update(test_cfg or {})
        nms = self.test_cfg["nms"]
        if nms["type"] not in ("circle", "rotated"):
            raise ValueError(f"test_cfg.nms.type must be 'circle' or 'rotated', got "
                             f"{nms['type']!r}")
        if nms["type"] == "circle" and len(nms["min_radius"]) != len(self.tasks):
            raise ValueError(f"circle NMS needs one min_radius per task ({len(self.tasks)}), "
                             f"got {nms['min_radius']}")
        self.shared_conv = nn.Sequential(*_conv_bn_relu(in_channels, shared_channels, True))
        heads = {k: v for k, v in DEFAULT_HEADS.items() if self.with_velocity or k != "vel"}
        self.heads = nn.ModuleList([
            SeparateHead(shared_channels, {"hm": (len(t), num_hm_conv), **heads}, init_bias)
            for t in self.tasks])
        self.head_order = [h for h in HEAD_ORDER if h in heads]

    # -------------------------------------------------------------- forward
    def forward(self, bev: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        x = self.shared_conv(bev)
        return [head(x) for head in self.heads]

    # -------------------------------------------------------------- targets
    def _cell(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cx = (boxes[:, 0] - self.point_range[0]) / self.voxel_size[0] / self.stride
        cy = (boxes[:, 1] - self.point_range[1]) / self.voxel_size[1] / self.stride
        return cx, cy

    def targets(self, gt_boxes: Sequence, gt_labels: Sequence, gt_velocity: Sequence | None,
                height: int, width: int) -> list[dict[str, torch.Tensor]]:
        """Per task: ``heatmap (B, C_t, H, W)``, ``boxes (B, M, code)``, ``index (B, M)``
        (``row * W + col``), ``mask (B, M)`` with ``M = num_max_objs`` (module doc)."""
        batch = len(gt_boxes)
        out = []
        for labels_of_task in self.task_labels:
            heat = torch.zeros(batch, len(labels_of_task), height, width)
            target = torch.zeros(batch, self.num_max_objs, self.code_size)
            index = torch.zeros(batch, self.num_max_objs, dtype=torch.int64)
            mask = torch.zeros(batch, self.num_max_objs, dtype=torch.bool)
            for b in range(batch):
                boxes = torch.as_tensor(np.asarray(gt_boxes[b]), dtype=torch.float32)
                boxes = boxes.reshape(-1, boxes.shape[-1] if boxes.numel() else 7)
                labels = torch.as_tensor(np.asarray(gt_labels[b]), dtype=torch.int64)
                vel = None
                if self.with_velocity:
                    vel = (torch.as_tensor(np.asarray(gt_velocity[b]), dtype=torch.float32)
                           .reshape(-1, 2) if gt_velocity is not None
                           else torch.full((len(boxes), 2), float("nan")))
                cx, cy = self._cell(boxes)
                dx = boxes[:, 3] / self.voxel_size[0] / self.stride
                dy = boxes[:, 4] / self.voxel_size[1] / self.stride
                radius = gaussian_radius(dx, dy, self.gaussian_overlap)
                k = 0
                for i in range(len(boxes)):
                    if int(labels[i]) not in labels_of_task or k >= self.num_max_objs:
                        continue
                    if not (dx[i] > 0 and dy[i] > 0):
                        continue
                    col, row = math.floor(float(cx[i])), math.floor(float(cy[i]))
                    if not (0 <= col < width and 0 <= row < height):
                        continue
                    r = max(self.min_radius, int(radius[i]))
                    draw_gaussian(heat[b, labels_of_task.index(int(labels[i]))], col, row, r)
                    index[b, k] = row * width + col
                    mask[b, k] = True
                    target[b, k, 0] = cx[i] - col
                    target[b, k, 1] = cy[i] - row
                    target[b, k, 2] = boxes[i, 2]
                    target[b, k, 3:6] = boxes[i, 3:6].log()
                    target[b, k, 6] = torch.cos(boxes[i, 6])
                    target[b, k, 7] = torch.sin(boxes[i, 6])
                    if vel is not None:
                        target[b, k, 8:10] = vel[i]
                    k += 1
            out.append({"heatmap": heat, "boxes": target, "index": index, "mask": mask})
        return out

    # -------------------------------------------------------------- losses
    @staticmethod
    def focal_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """CenterNet's penalty-reduced focal loss on probabilities ``pred`` (module doc)."""
        pos = gt.eq(1).float()
        neg = gt.lt(1).float()
        neg_weights = torch.pow(1 - gt, 4)
        pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos).sum()
        neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * neg_weights * neg).sum()
        num_pos = pos.sum()
        if num_pos == 0:
            return -neg_loss
        return -(pos_loss + neg_loss) / num_pos

    @staticmethod
    def gather(feature: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` at flat cells ``index (B, M)`` -> ``(B, M, C)``."""
        b, c = feature.shape[:2]
        flat = feature.view(b, c, -1).permute(0, 2, 1)
        return flat.gather(1, index[..., None].expand(-1, -1, c))

    def regression_loss(self, pred: torch.Tensor, target: torch.Tensor, index: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
        """L1 per code dimension (``(code,)``), NaN targets masked (module doc)."""
        values = self.gather(pred, index)
        num = mask.float().sum()
        weight = mask[..., None].float().expand_as(target) * (~torch.isnan(target)).float()
        diff = (values - torch.nan_to_num(target)).abs() * weight
        return diff.sum(dim=(0, 1)) / (num + 1e-4)

    def loss(self, preds: list[dict], targets: list[dict]) -> dict[str, torch.Tensor]:
        hm_total, loc_total = 0.0, 0.0
        for pred, tgt in zip(preds, targets):
            device = pred["hm"].device
            heat = torch.clamp(pred["hm"].sigmoid(), min=1e-4, max=1 - 1e-4)
            hm_total = hm_total + self.cls_weight * self.focal_loss(heat,
                                                                    tgt["heatmap"].to(device))
            boxes = torch.cat([pred[h] for h in self.head_order], 1)
            reg = self.regression_loss(boxes, tgt["boxes"].to(device), tgt["index"].to(device),
                                       tgt["mask"].to(device))
            loc_total = loc_total + self.loc_weight * (reg * self.code_weights).sum()
        return {"loss_heatmap": hm_total, "loss_bbox": loc_total}

    # -------------------------------------------------------------- decoding
    @torch.no_grad()
    def decode(self, preds: list[dict]) -> list[dict[str, torch.Tensor]]:
        """Per sample ``{"boxes" (K, 7 or 9), "scores" (K,), "labels" (K,)}`` after
        score threshold, centre range and NMS per task (module doc)."""
        cfg = self.test_cfg
        batch = preds[0]["hm"].shape[0]
        results = [{"boxes": [], "scores": [], "labels": []} for _ in range(batch)]
        limit = torch.tensor(cfg["post_center_range"], dtype=torch.float32)
        for t, (pred, labels_of_task) in enumerate(zip(preds, self.task_labels)):
            heat = pred["hm"].sigmoid()
            b, c, h, w = heat.shape
            k = min(int(cfg["max_per_sample"]), c * h * w)
            scores, flat = heat.reshape(b, -1).topk(k, dim=1)
            cls = flat // (h * w)
            cell = flat % (h * w)
            rows, cols = (cell // w).float(), (cell % w).float()
            center = self.gather(pred["center"], cell)
            z = self.gather(pred["center_z"], cell)
            dim = self.gather(pred["dim"], cell).exp()
            rot = self.gather(pred["rot"], cell)
            yaw = torch.atan2(rot[..., 1:2], rot[..., 0:1])
            xs = (cols[..., None] + center[..., 0:1]) * self.stride * self.voxel_size[0] \
                + self.point_range[0]
            ys = (rows[..., None] + center[..., 1:2]) * self.stride * self.voxel_size[1] \
                + self.point_range[1]
            parts = [xs, ys, z, dim, yaw]
            if self.with_velocity:
                parts.append(self.gather(pred["vel"], cell))
            boxes = torch.cat(parts, -1)
            task_labels = torch.tensor(labels_of_task, device=cls.device)[cls]
            lim = limit.to(boxes.device)
            keep = (scores > cfg["score_threshold"]) \
                & (boxes[..., :3] >= lim[:3]).all(-1) & (boxes[..., :3] <= lim[3:]).all(-1)
            for i in range(b):
                bx, sc, lb = boxes[i][keep[i]], scores[i][keep[i]], task_labels[i][keep[i]]
                nms = cfg["nms"]
                if nms["type"] == "circle":
                    idx = circle_nms(bx[:, :2], sc, nms["min_radius"][t],
                                     nms.get("post_max_size"))
                else:
                    idx = nms_bev(bx[:, :7], sc, nms["iou_threshold"],
                                  nms.get("pre_max_size"), nms.get("post_max_size"))
                results[i]["boxes"].append(bx[idx])
                results[i]["scores"].append(sc[idx])
                results[i]["labels"].append(lb[idx])
        out = []
        for r in results:
            out.append({key: torch.cat(v, 0) for key, v in r.items()})
        return out
