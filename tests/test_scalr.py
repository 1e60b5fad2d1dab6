"""ScaLR's distillation loss against a naive loop: every (point, camera) pair found by
projecting each point through its own sample's cameras (the devkit's rule), the teacher map
of that sample and camera read bilinearly at the pixel by hand (pixel centres, border
clamp), and the L2 distance of the unit vectors averaged over the pairs of the batch. The
two samples have different cameras and images, so a mix-up of sample, camera or point rows
changes the value."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

B, K, H, W, D = 2, 2, 16, 24, 6
STRIDE = 4  # ResNet-18 with every stride replaced by dilation
YAWS = [(-0.5, 0.5), (0.3, -0.7)]  # per sample: its two cameras' headings


def _camera(yaw: float) -> np.ndarray:
    """lidar2img of a pinhole camera looking along the LiDAR's x axis turned by ``yaw``."""
    intrinsics = np.array([[10.0, 0, W / 2, 0], [0, 10.0, H / 2, 0], [0, 0, 1, 0],
                           [0, 0, 0, 1]])
    c, s = math.cos(yaw), math.sin(yaw)
    lidar2cam = np.eye(4)
    lidar2cam[:3, :3] = [[s, -c, 0], [0, 0, -1], [c, s, 0]]  # z forward, x right, y down
    return intrinsics @ lidar2cam


PIXEL_MAP = torch.randn(3, D, generator=torch.Generator().manual_seed(5))
POINT_MAP = torch.randn(4, D, generator=torch.Generator().manual_seed(6))


def teacher_map(images: torch.Tensor) -> torch.Tensor:
    """Stand-in for the frozen encoder: ``(N, 3, H, W)`` -> ``(N, D, H / 4, W / 4)``."""
    pooled = F.avg_pool2d(images.double(), STRIDE)
    return torch.cos(torch.einsum("nchw,cd->ndhw", pooled, PIXEL_MAP.double()) * 3.0)


def point_feature(points: torch.Tensor) -> torch.Tensor:
    """Stand-in for backbone + head, not unit length (ScaLR normalises in the loss)."""
    raw = torch.sin(points.double() @ POINT_MAP.double())
    return raw * (1.0 + points[:, :1].double().abs())


def bilinear(feature_map: np.ndarray, u: float, v: float) -> np.ndarray:
    """``feature_map (D, h, w)`` at input pixel ``(u, v)``: cell j centred at (j + 0.5) * 4."""
    _, h, w = feature_map.shape
    x = min(max((u + 0.5) / STRIDE - 0.5, 0.0), w - 1.0)
    y = min(max((v + 0.5) / STRIDE - 0.5, 0.0), h - 1.0)
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    return ((1 - ay) * ((1 - ax) * feature_map[:, y0, x0] + ax * feature_map[:, y0, x1])
            + ay * ((1 - ax) * feature_map[:, y1, x0] + ax * feature_map[:, y1, x1]))


@pytest.fixture(scope="module")
def model():
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    built = MODELS.build(dict(
        type="ScaLR",
        backbone=dict(type="MinkUNet34", in_channels=4, out_channels=8, voxel_size=1.0),
        image_teacher=dict(type="ImageTeacher", head=None,
                           encoder=dict(type="resnet", depth=18, dilate=[True, True, True]))))
    assert built.teacher.stride == STRIDE
    return built


def test_scalr_loss_equals_a_naive_loop_over_point_pixel_pairs(model):
    rng = np.random.default_rng(0)
    per_sample = 150
    clouds = []
    for _ in range(B):
        angle = rng.uniform(-1.5, 1.5, per_sample)
        reach = rng.uniform(2.0, 15.0, per_sample)
        xyz = np.stack([reach * np.cos(angle), reach * np.sin(angle),
                        rng.uniform(-1.5, 1.5, per_sample)], 1)
        xyz[:10, 0] = -np.abs(xyz[:10, 0])  # behind both cameras
        clouds.append(np.concatenate([xyz, rng.uniform(0, 1, (per_sample, 1))], 1))
    points = torch.tensor(np.concatenate(clouds), dtype=torch.float32)
    owner = np.repeat(np.arange(B), per_sample)
    lidar2img = torch.tensor(np.stack([[_camera(y) for y in yaws] for yaws in YAWS]),
                             dtype=torch.float32)
    images = [torch.tensor(rng.uniform(0, 255, (K, 3, H, W)), dtype=torch.float32)
              for _ in range(B)]
    batch = {"points": points, "offsets": torch.tensor([per_sample, 2 * per_sample]),
             "batch_idx": torch.tensor(owner), "images": images,
             "lidar2img": list(lidar2img), "img_shape": [torch.tensor([[H, W]] * K)] * B}
    # rows the backbone keeps (the others fall outside its grid): every point but each 5th
    kept = torch.tensor([i for i in range(len(points)) if i % 5])
    model.point_features = lambda batch, normalize=True: (
        point_feature(batch["points"][kept]).float(), kept)
    model.teacher.encode = lambda flat: teacher_map(flat).float()
    loss = float(model.loss(batch)["loss_distill"])

    maps = [teacher_map(images[b] / 255.0).numpy() for b in range(B)]  # (K, D, h, w) each
    features = point_feature(points).numpy()
    distances, cameras_of_point = [], {}
    for i in kept.tolist():
        b = owner[i]
        for k in range(K):
            q = lidar2img[b, k].double().numpy() @ np.append(points[i, :3].double().numpy(), 1)
            if q[2] <= 1.0:
                continue
            u, v = q[0] / q[2], q[1] / q[2]
            if not (1.0 < u < W - 1.0 and 1.0 < v < H - 1.0):
                continue
            target = bilinear(maps[b][k], u, v)
            diff = features[i] / np.linalg.norm(features[i]) - target / np.linalg.norm(target)
            distances.append(float(np.linalg.norm(diff)))
            cameras_of_point.setdefault(i, []).append(k)
    assert len(distances) > 100
    assert any(len(c) == 2 for c in cameras_of_point.values())  # a point seen twice: 2 pairs
    assert {owner[i] for i in cameras_of_point} == {0, 1}
    assert loss == pytest.approx(np.mean(distances), rel=1e-5)
