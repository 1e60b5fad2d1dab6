"""SuperFlow's three terms against naive loops: per-point, per-camera projection with the
devkit's rule, class-of-a-sample pooling across cameras, InfoNCE written out row by row;
a stand-in frame at a scene's end takes no part in the temporal term."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

B, K, H, W, S, C = 2, 2, 12, 16, 5, 8
TAU = 0.07


def _camera(yaw: float) -> np.ndarray:
    """lidar2img of a pinhole camera looking along the LiDAR's x axis turned by ``yaw``."""
    intrinsics = np.array([[8.0, 0, W / 2, 0], [0, 8.0, H / 2, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    c, s = math.cos(yaw), math.sin(yaw)
    # camera z forward = LiDAR (c, s, 0); camera x right = (s, -c, 0); camera y down = -z
    rotation = np.array([[s, -c, 0], [0, 0, -1], [c, s, 0]])
    lidar2cam = np.eye(4)
    lidar2cam[:3, :3] = rotation
    return intrinsics @ lidar2cam


def _frame(rng, offset: int, points_per_sample: int = 120) -> dict:
    clouds = []
    for _ in range(B):
        angle = rng.uniform(-1.2, 1.2, points_per_sample)
        rng_xy = rng.uniform(2.0, 12.0, points_per_sample)
        xyz = np.stack([rng_xy * np.cos(angle), rng_xy * np.sin(angle),
                        rng.uniform(-1.0, 1.0, points_per_sample)], 1)
        xyz[:5, 0] = -xyz[:5, 0]  # some behind every camera
        clouds.append(np.concatenate([xyz, rng.uniform(0, 1, (points_per_sample, 1))], 1))
    points = torch.tensor(np.concatenate(clouds), dtype=torch.float32)
    offsets = torch.tensor([points_per_sample * (b + 1) for b in range(B)])
    superpixels = torch.tensor(rng.integers(-1, S, (B, K, H, W)), dtype=torch.int64)
    lidar2img = torch.tensor(np.stack([np.stack([_camera(-0.5), _camera(0.5)])] * B),
                             dtype=torch.float32)
    return {"points": points, "offsets": offsets,
            "batch_idx": torch.repeat_interleave(torch.arange(B), points_per_sample),
            "images": [255.0 * torch.rand(K, 3, H, W, generator=torch.Generator().manual_seed(
                int(rng.integers(1 << 30)))) for _ in range(B)],  # LoadImages' 0..255
            "superpixels": list(superpixels), "lidar2img": list(lidar2img),
            "img_shape": [torch.tensor([[H, W]] * K) for _ in range(B)],
            "frame_offset": offset}


FEATURE_MAP = torch.randn(4, C, generator=torch.Generator().manual_seed(3))
PIXEL_MAP = torch.randn(3, C, generator=torch.Generator().manual_seed(4))


def point_feature(points: torch.Tensor) -> torch.Tensor:
    return F.normalize(torch.sin(points.double() @ FEATURE_MAP.double() * 3.0), dim=1)


def pixel_feature(images: torch.Tensor) -> torch.Tensor:
    out = torch.einsum("nchw,cd->ndhw", images.double(), PIXEL_MAP.double())
    return F.normalize(torch.cos(out * 5.0), dim=1)


def naive_pairs(frame, points, owner) -> list[tuple]:
    """``(point, sample, camera, row, column, depth)`` of every point in front of a camera
    (depth > 1 m) and inside its image by more than a pixel (the devkit's rule)."""
    pairs = []
    for i, p in enumerate(points.double().numpy()):
        b = owner[i]
        for k in range(K):
            q = frame["lidar2img"][b][k].double().numpy() @ np.append(p[:3], 1.0)
            if q[2] <= 1.0:
                continue
            u, v = q[0] / q[2], q[1] / q[2]
            if 1.0 < u < W - 1.0 and 1.0 < v < H - 1.0:
                pairs.append((i, b, k, int(math.floor(v)), int(math.floor(u)), q[2]))
    return pairs


def pooled_points(frame, points, owner) -> tuple[np.ndarray, np.ndarray]:
    """3D means per (sample, class) over every (point, camera) pair, and their counts."""
    feats = point_feature(points).numpy()
    sums, counts = np.zeros((B * S, C)), np.zeros(B * S, dtype=int)
    for i, b, k, row, col, _ in naive_pairs(frame, points, owner):
        s = int(frame["superpixels"][b][k][row, col])
        if s >= 0:
            sums[b * S + s] += feats[i]
            counts[b * S + s] += 1
    return sums / np.maximum(counts, 1)[:, None], counts


def pooled_pixels(frame) -> np.ndarray:
    sums, counts = np.zeros((B * S, C)), np.zeros(B * S)
    for b in range(B):
        feats = pixel_feature(frame["images"][b].float() / 255.0).numpy()
        for k in range(K):
            for y in range(H):
                for x in range(W):
                    s = int(frame["superpixels"][b][k][y, x])
                    if s >= 0:
                        sums[b * S + s] += feats[k, :, y, x]
                        counts[b * S + s] += 1
    return sums / np.maximum(counts, 1)[:, None]


def naive_infonce(anchor, positive, valid) -> float:
    rows = [i for i in range(len(anchor)) if valid[i]]
    total = 0.0
    for i in rows:
        logits = [float(anchor[i] @ positive[j]) / TAU for j in rows]
        top = max(logits)
        log_sum = top + math.log(sum(math.exp(v - top) for v in logits))
        total += log_sum - float(anchor[i] @ positive[i]) / TAU
    return total / len(rows)


@pytest.fixture(scope="module")
def model():
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    built = MODELS.build(dict(
        type="SuperFlow", num_superpixels=S, head_channels=None,
        backbone=dict(type="MinkUNet34", in_channels=4, out_channels=C, voxel_size=1.0),
        image_teacher=dict(type="ImageTeacher", encoder=dict(type="resnet", depth=18),
                           head=C),
        loss=dict(type="InfoNCELoss", temperature=TAU, normalize=False)))
    # the loss math is under test: fixed point and pixel features in place of the networks
    built.point_features = lambda batch, normalize=True: (
        point_feature(batch["points"]).float(), torch.arange(len(batch["points"])))
    built.teacher.forward = lambda images: pixel_feature(images).float()
    return built


def test_each_superflow_term_equals_a_naive_loop(model):
    rng = np.random.default_rng(0)
    key = _frame(rng, 0)
    frames = [_frame(rng, -1), _frame(rng, 1)]
    frames[1]["frame_offset"] = 0  # sample 1's t+1 below is a stand-in (scene end)
    dense_extra = [torch.tensor(rng.uniform(-12, 12, (60, 4)), dtype=torch.float32)
                   for _ in range(B)]
    key_points = [key["points"][:120], key["points"][120:]]
    batch = dict(key)
    batch["dense_points"] = [torch.cat([key_points[b], dense_extra[b]]) for b in range(B)]
    packed = []
    for b in range(B):
        per_sample = []
        for f, frame in enumerate(frames):
            rows = slice(120 * b, 120 * (b + 1))
            offset = frame["frame_offset"] if not (f == 1 and b == 0) else 1
            per_sample.append({"points": frame["points"][rows],
                               "images": frame["images"][b],
                               "superpixels": frame["superpixels"][b],
                               "lidar2img": frame["lidar2img"][b],
                               "img_shape": frame["img_shape"][b],
                               "frame_offset": torch.tensor(offset)})
        packed.append(per_sample)
    batch["frames"] = packed
    losses = model.loss(batch)

    owner = np.repeat(np.arange(B), 120)
    key_means, key_counts = pooled_points(key, key["points"], owner)
    spatial = [naive_infonce(key_means, pooled_pixels(key), key_counts > 0)]
    temporal = []
    for f, frame in enumerate(frames):
        means, counts = pooled_points(frame, frame["points"], owner)
        spatial.append(naive_infonce(means, pooled_pixels(frame), counts > 0))
        real = np.ones(B * S, dtype=bool)
        if f == 1:
            real[S:] = False  # sample 1's t+1 is the stand-in
        temporal.append(naive_infonce(key_means, means, (key_counts > 0) & (counts > 0)
                                      & real))
    dense = torch.cat(batch["dense_points"])
    dense_owner = np.repeat(np.arange(B), [len(d) for d in batch["dense_points"]])
    dense_means, dense_counts = pooled_points(key, dense, dense_owner)
    d2s = naive_infonce(key_means, dense_means, (key_counts > 0) & (dense_counts > 0))

    assert float(losses["loss_spatial"]) == pytest.approx(np.mean(spatial), rel=1e-4)
    assert float(losses["loss_temporal"]) == pytest.approx(np.mean(temporal), rel=1e-4)
    assert float(losses["loss_d2s"]) == pytest.approx(d2s, rel=1e-4)
    # the cameras share ids: some class of a sample gathers pairs from both its cameras
    pairs = naive_pairs(key, key["points"], owner)
    cameras_of = {}
    for _, b, k, row, col, _ in pairs:
        s = int(key["superpixels"][b][k][row, col])
        if s >= 0:
            cameras_of.setdefault((b, s), set()).add(k)
    assert any(len(c) == K for c in cameras_of.values())


def test_occlusion_aware_pairing_drops_hidden_points_as_a_depth_buffer_loop(model):
    """SLidR / SuperFlow with ``occlusion``: a (point, camera) pair pools only when no
    nearer pair lies within one pixel by more than 0.3 m (a naive depth buffer)."""
    rng = np.random.default_rng(3)
    frame = _frame(rng, 0, points_per_sample=300)
    points = frame["points"]
    owner = np.repeat(np.arange(B), 300)
    images, superpixels, lidar2img, image_hw = (None, torch.stack(frame["superpixels"]),
                                                torch.stack(frame["lidar2img"]),
                                                torch.stack(frame["img_shape"]))
    features = point_feature(points).float()
    rows = torch.arange(len(points))
    model.occlusion = dict(window=1, depth_tolerance=0.3)
    try:
        pooled = model.pool_points(features, rows, frame, lidar2img, image_hw, superpixels, S,
                                   shared_across_cameras=True)
    finally:
        model.occlusion = None
    plain = model.pool_points(features, rows, frame, lidar2img, image_hw, superpixels, S,
                              shared_across_cameras=True)
    pairs = naive_pairs(frame, points, owner)
    nearest = {}
    for _, b, k, row, col, depth in pairs:
        nearest[(b, k, row, col)] = min(depth, nearest.get((b, k, row, col), np.inf))
    sums, counts = np.zeros((B * S, C)), np.zeros(B * S, dtype=int)
    feats = features.double().numpy()
    hidden = 0
    for i, b, k, row, col, depth in pairs:
        around = min(nearest.get((b, k, row + dy, col + dx), np.inf)
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        if depth > around + 0.3:
            hidden += 1
            continue
        s = int(frame["superpixels"][b][k][row, col])
        if s >= 0:
            sums[b * S + s] += feats[i]
            counts[b * S + s] += 1
    assert hidden > 0  # the case has occluded pairs
    np.testing.assert_array_equal(pooled.counts.numpy(), counts)
    np.testing.assert_allclose(pooled.features.numpy(),
                               sums / np.maximum(counts, 1)[:, None], atol=1e-6)
    assert int(plain.counts.sum()) > int(pooled.counts.sum())
