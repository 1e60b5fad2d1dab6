"""Compiled CPU kernels of lidarcl._C against the pure-PyTorch references (integer outputs
exactly, floats within 1e-5), on random inputs, constructed scenes and the real nuScenes
frame; gradcheck of the differentiable ops through the kernels; thread-count invariance;
argument checks of the binding layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lidarcl.ops as ops
from lidarcl.ops._extension import compiled
from test_ops_projection import (CHANNELS, _front_camera, _wall, random_cameras,  # noqa: F401
                                 real_frame)

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # no silent fallback


requires_ext = pytest.mark.skipif(compiled() is None, reason="lidarcl._C not built")
pytestmark = [pytestmark, requires_ext]


def assert_same(kernel, reference, exact_float=False):
    assert type(kernel) is type(reference)
    for name, k, r in zip(reference._fields, kernel, reference):
        assert k.dtype == r.dtype, name
        assert k.shape == r.shape, name
        if k.is_floating_point() and not exact_float:
            torch.testing.assert_close(k, r, rtol=0, atol=1e-5, msg=name)
        else:
            assert torch.equal(k, r), name


def random_batch(rng, sizes, num_cams, dtype, extra_cols=2):
    points = [rng.normal(scale=20.0, size=(n, 3 + extra_cols)) for n in sizes]
    cams = [random_cameras(rng, num_cams) for _ in sizes]
    pts = torch.from_numpy(np.concatenate(points)).to(dtype)
    offsets = torch.tensor(np.cumsum(sizes), dtype=torch.int64)
    lidar2img = torch.from_numpy(np.stack([c[0] for c in cams])).to(dtype)
    hw = torch.from_numpy(np.stack([c[1] for c in cams]))
    return pts, offsets, lidar2img, hw


# ------------------------------------------------------------------ projection
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("min_depth,margin", [(1.0, 1.0), (0.1, 0.0), (3.0, 20.5)])
def test_projection_random_batches(dtype, min_depth, margin):
    rng = np.random.default_rng(7)
    pts, offsets, lidar2img, hw = random_batch(rng, [5000, 0, 9000, 1], 4, dtype)
    pts[3] = float("nan")  # non-finite points never project
    pts[4, 0] = float("inf")
    kern = ops.project_points_batched(pts, offsets, lidar2img, hw, min_depth, margin)
    ref = ops.project_points_batched_reference(pts, offsets, lidar2img, hw, min_depth, margin)
    assert kern.point_index.numel() > 1000
    assert_same(kern, ref, exact_float=True)  # same arithmetic, no FMA: bit-identical
    assert not ((kern.point_index == 3) | (kern.point_index == 4)).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_projection_real_frame(real_frame, dtype):
    points, lidar2img, image_hw, devkit = real_frame
    pts = torch.from_numpy(points).to(dtype)
    kern = ops.project_points(pts, torch.from_numpy(lidar2img), torch.from_numpy(image_hw))
    ref = ops.project_points_reference(pts, torch.from_numpy(lidar2img),
                                       torch.from_numpy(image_hw))
    assert_same(kern, ref, exact_float=True)
    for k, ch in enumerate(CHANNELS):  # and therefore nuscenes-devkit's selection
        sel = kern.camera_index == k
        dev_uv, dev_depth = devkit[ch]
        assert int(sel.sum()) == len(dev_uv), ch
        np.testing.assert_array_less(np.abs(kern.uv[sel].double().numpy() - dev_uv), 0.5)
        np.testing.assert_allclose(kern.depth[sel].double().numpy(), dev_depth, atol=1e-3)


def test_projection_edge_cases():
    mats = torch.from_numpy(np.stack([_front_camera(), _front_camera()]))
    hw = torch.tensor([[200, 200], [200, 200]])
    behind = torch.tensor([[-5.0, 0.0, 0.0], [-1.0, 0.1, 0.1], [0.5, 0.0, 0.0],
                           [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert ops.project_points(behind, mats, hw).point_index.numel() == 0
    empty = ops.project_points(torch.zeros(0, 3), mats.float(), hw)
    assert_same(empty, ops.project_points_reference(torch.zeros(0, 3), mats.float(), hw))
    no_cams = ops.project_points(torch.rand(5, 3), torch.zeros(0, 4, 4), torch.zeros(0, 2))
    assert no_cams.point_index.numel() == 0
    base = torch.tensor([[5.0, 0.3, -0.2], [8.0, -1.0, 0.5]])
    dup = torch.cat([base, base, base[:1]])
    res = ops.project_points(dup, mats[:1].float(), hw[:1])
    assert res.point_index.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(res.uv[0], res.uv[4])
    # float image sizes and half points are accepted like the reference (half -> float32)
    half = ops.project_points(base.half(), mats[:1].float(), hw[:1].double())
    assert half.uv.dtype == torch.float32


# ------------------------------------------------------------------ visibility
@pytest.mark.parametrize("window,tol,rel", [(0, 0.0, 0.0), (1, 0.3, 0.0), (2, 0.5, 0.05),
                                            (3, float("inf"), 0.0)])
def test_visibility_real_frame(real_frame, window, tol, rel):
    points, lidar2img, image_hw, _ = real_frame
    hw = torch.from_numpy(image_hw)
    res = ops.project_points(torch.from_numpy(points), torch.from_numpy(lidar2img), hw)
    kern = ops.visibility(res, hw, window, tol, rel)
    ref = ops.visibility_reference(res, hw, window, tol, rel)
    assert torch.equal(kern, ref)
    if window == 2:
        assert 0.5 * len(kern) < int(kern.sum()) < len(kern)


def test_visibility_random_batched():
    rng = np.random.default_rng(3)
    pts, offsets, lidar2img, hw = random_batch(rng, [8000, 3000], 3, torch.float32)
    res = ops.project_points_batched(pts, offsets, lidar2img, hw)
    for window in (0, 1, 4):
        assert torch.equal(ops.visibility(res, hw, window, 0.2, 0.01),
                           ops.visibility_reference(res, hw, window, 0.2, 0.01))


def test_visibility_wall_in_front_of_wall():
    cam0 = _front_camera(f=100.0, size=200, position=(-0.3, 0.0, 0.2))
    mats = torch.from_numpy(cam0[None])
    hw = torch.tensor([[200, 200]])
    near = _wall(5.0, np.arange(-0.5, 0.5001, 0.02), np.arange(-0.3, 0.7001, 0.02))
    far = _wall(10.0, np.arange(-3.0, 3.0001, 0.05), np.arange(-0.3, 0.7001, 0.05))
    res = ops.project_points(torch.from_numpy(np.concatenate([near, far])), mats, hw)
    keep = ops.visibility(res, hw, window=1, depth_tolerance=0.3)
    assert keep[:len(near)].all()
    half_shadow = 0.5 * 10.3 / 5.3
    hidden = np.abs(far[:, 1]) < half_shadow - 0.1
    visible = np.abs(far[:, 1]) > half_shadow + 0.25
    assert not keep[len(near):].numpy()[hidden].any()
    assert keep[len(near):].numpy()[visible].all()
    assert torch.equal(keep, ops.visibility_reference(res, hw, window=1, depth_tolerance=0.3))


# ------------------------------------------------------------------ pixel gather
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("stride,shape", [(1, (30, 40)), (4, (8, 10)), ((8, 4), (4, 10)),
                                          (16, (1, 1)), (2.5, (12, 1))])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gather_matches_reference(dtype, stride, shape, layout):
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(5, 7, *shape, generator=gen, dtype=dtype)
    features = features.to(memory_format=layout).requires_grad_(True)
    m = 600
    image_index = torch.randint(0, 5, (m,), generator=gen)
    uv = torch.rand(m, 2, generator=gen, dtype=dtype) * torch.tensor([44.0, 34.0],
                                                                     dtype=dtype) - 2
    kern = ops.gather_pixel_features(features, image_index, uv, stride)
    ref = ops.gather_pixel_features_reference(features, image_index, uv, stride)
    torch.testing.assert_close(kern, ref, rtol=0, atol=1e-5)
    grad = torch.randn(m, 7, generator=gen, dtype=dtype)
    (gk,) = torch.autograd.grad(kern, features, grad)
    (gr,) = torch.autograd.grad(ref, features, grad)
    torch.testing.assert_close(gk, gr, rtol=0, atol=1e-5)


def test_gather_gradcheck_and_empty():
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    image_index = torch.tensor([0, 1, 1, 0, 1])
    uv = torch.tensor([[0.3, 0.2], [5.7, 4.9], [2.5, 2.5], [-1.0, 9.0], [3.25, 1.75]],
                      dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda f: ops.gather_pixel_features(f, image_index, uv, 1), (features,))
    out = ops.gather_pixel_features(features, image_index[:0], uv[:0])
    assert out.shape == (0, 3)
    # uv requiring a gradient is served by the reference (the kernels give none for uv)
    uv_grad = uv.clone().requires_grad_(True)
    out = ops.gather_pixel_features(features, image_index, uv_grad)
    out.sum().backward()
    assert uv_grad.grad is not None


# ------------------------------------------------------------------ region pooling
@pytest.mark.parametrize("reduce", ["mean", "max", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_region_pool_matches_reference(reduce, dtype):
    gen = torch.Generator().manual_seed(2)
    n, c, r = 20000, 16, 300
    features = torch.randn(n, c, generator=gen, dtype=dtype)
    features[::7] = features[::7].round()  # ties for max
    ids = torch.randint(-1, r - 20, (n,), generator=gen)  # -1 ignored, last 20 empty
    f1 = features.clone().requires_grad_(True)
    f2 = features.clone().requires_grad_(True)
    kern = ops.region_pool(f1, ids, r, reduce)
    ref = ops.region_pool_reference(f2, ids, r, reduce)
    assert torch.equal(kern.counts, ref.counts)
    assert (kern.counts[-20:] == 0).all() and (kern.features[-20:] == 0).all()
    torch.testing.assert_close(kern.features, ref.features, rtol=0, atol=1e-5)
    grad = torch.randn(r, c, generator=gen, dtype=dtype)
    (gk,) = torch.autograd.grad(kern.features, f1, grad)
    (gr,) = torch.autograd.grad(ref.features, f2, grad)
    torch.testing.assert_close(gk, gr, rtol=0, atol=1e-5)
    if reduce == "max":  # the gradient goes to one row per (region, channel): equal exactly
        assert torch.equal(gk != 0, gr != 0)


def test_region_pool_max_ties_go_to_smallest_index():
    features = torch.tensor([[1.0, 5.0], [3.0, 5.0], [3.0, 2.0], [0.0, 9.0]],
                            requires_grad=True)
    ids = torch.tensor([0, 0, 0, -1])
    out = ops.region_pool(features, ids, 2, "max")
    assert out.features.tolist() == [[3.0, 5.0], [0.0, 0.0]]
    assert out.counts.tolist() == [3, 0]
    out.features.sum().backward()
    assert features.grad.tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]


def test_region_pool_max_nan_propagates_like_amax():
    features = torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [3.0, float("nan")],
                             [float("nan"), 1.0]], requires_grad=True)
    ids = torch.tensor([0, 0, 0, 0])
    for fn in (ops.region_pool, ops.region_pool_reference):
        out = fn(features, ids, 1, "max")
        assert out.features.isnan().tolist() == [[True, True]]
        (grad,) = torch.autograd.grad(out.features.sum(), features)
        # the first NaN row of each channel gets the gradient
        assert grad.tolist() == [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize("reduce", ["mean", "max", "sum"])
def test_region_pool_gradcheck_and_edge_cases(reduce):
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(40, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(-1, 6, (40,), generator=gen)
    assert torch.autograd.gradcheck(lambda f: ops.region_pool(f, ids, 8, reduce).features,
                                    (features,))
    one = ops.region_pool(features, torch.zeros(40, dtype=torch.int64), 1, reduce)
    ref = ops.region_pool_reference(features, torch.zeros(40, dtype=torch.int64), 1, reduce)
    torch.testing.assert_close(one.features, ref.features, rtol=0, atol=1e-12)
    none = ops.region_pool(features, torch.full((40,), -1), 3, reduce)
    assert (none.features == 0).all() and (none.counts == 0).all()
    empty = ops.region_pool(features[:0], torch.zeros(0, dtype=torch.int64), 4, reduce)
    assert empty.features.shape == (4, 3) and (empty.features == 0).all()


def test_region_pool_pixel_features_by_superpixel():
    """Pixel side of SLidR: (B*K, C, H, W) maps pooled by (B*K, H, W) superpixel ids."""
    gen = torch.Generator().manual_seed(4)
    maps = torch.randn(3, 8, 18, 32, generator=gen)
    sp = torch.randint(0, 20, (3, 18, 32), generator=gen)
    region = (torch.arange(3)[:, None, None] * 20 + sp).reshape(-1)
    flat = maps.permute(0, 2, 3, 1).reshape(-1, 8)
    kern = ops.region_pool(flat, region, 60)
    ref = ops.region_pool_reference(flat, region, 60)
    torch.testing.assert_close(kern.features, ref.features, rtol=0, atol=1e-5)
    loop = torch.stack([flat[region == r].mean(0) for r in range(60)])
    torch.testing.assert_close(kern.features, loop, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ fused project + pool
def grid_superpixels(hw, cell=25, num=150):
    """Blocky superpixel maps (B, K, H, W) with a -1 band, ids < num."""
    batch, cams = hw.shape[:2]
    height, width = int(hw[..., 0].max()), int(hw[..., 1].max())
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ids = ((yy // cell) * 7 + xx // cell) % num
    ids[:, : min(width, 13)] = -1
    maps = ids.expand(batch, cams, height, width).clone()
    maps += torch.arange(batch * cams).reshape(batch, cams, 1, 1) * 3
    maps[maps >= num] = -1
    return maps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int32, torch.int16])
def test_project_pool_matches_unfused(dtype, id_dtype):
    rng = np.random.default_rng(5)
    pts, offsets, lidar2img, hw = random_batch(rng, [7000, 4000], 3, dtype)
    sp = grid_superpixels(hw)
    gen = torch.Generator().manual_seed(6)
    feats = torch.randn(len(pts), 5, generator=gen, dtype=dtype)
    f1 = feats.clone().requires_grad_(True)
    f2 = feats.clone().requires_grad_(True)
    kern = ops.project_pool(pts, offsets, lidar2img, hw, sp.to(id_dtype), 150, f1)
    ref = ops.project_pool_reference(pts, offsets, lidar2img, hw, sp, 150, f2)
    assert kern.pair_point.numel() > 500
    assert torch.equal(kern.pair_point, ref.pair_point)
    assert torch.equal(kern.pair_region, ref.pair_region)
    assert torch.equal(kern.counts, ref.counts)
    torch.testing.assert_close(kern.features, ref.features, rtol=0, atol=1e-5)
    grad = torch.randn(kern.features.shape, generator=gen, dtype=dtype)
    (gk,) = torch.autograd.grad(kern.features, f1, grad)
    (gr,) = torch.autograd.grad(ref.features, f2, grad)
    torch.testing.assert_close(gk, gr, rtol=0, atol=1e-5)


def test_project_pool_real_frame_and_gradcheck(real_frame):
    points, lidar2img, image_hw, _ = real_frame
    pts = torch.from_numpy(points)
    offsets = torch.tensor([len(pts)])
    mats = torch.from_numpy(lidar2img)[None].float()
    hw = torch.from_numpy(image_hw)[None]
    sp = grid_superpixels(hw, cell=90)
    feats = torch.from_numpy(points[:, 3:5].copy())
    kern = ops.project_pool(pts, offsets, mats, hw, sp, 150, feats)
    ref = ops.project_pool_reference(pts, offsets, mats, hw, sp, 150, feats)
    assert_same(kern, ref)
    assert int(kern.counts.sum()) == kern.pair_point.numel() > 10000


def test_project_pool_gradcheck():
    rng = np.random.default_rng(8)
    pts, offsets, lidar2img, hw = random_batch(rng, [600, 400], 2, torch.float64)
    sp = grid_superpixels(hw, cell=30, num=40)
    seen = ops.project_pool(pts, offsets, lidar2img, hw, sp, 40, torch.zeros(len(pts), 1))
    # keep 60 points with pairs (some seen by two cameras) and 20 without, per sample
    picks, sizes, start = [], [], 0
    for stop in offsets.tolist():
        pair = seen.pair_point[(seen.pair_point >= start) & (seen.pair_point < stop)]
        unseen = torch.tensor(sorted(set(range(start, stop)) - set(pair.tolist()))[:20])
        pick = torch.cat([torch.unique(pair)[:60], unseen]).sort().values
        picks.append(pick)
        sizes.append(len(pick))
        start = stop
    pick = torch.cat(picks)
    small, small_offsets = pts[pick], torch.tensor(np.cumsum(sizes))
    assert seen.pair_point.numel() > 100
    f = torch.randn(len(pick), 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: ops.project_pool(small, small_offsets, lidar2img, hw, sp, 40, x).features,
        (f,))


# ------------------------------------------------------------------ serialization
@pytest.mark.parametrize("order", ops.SERIALIZATION_ORDERS)
@pytest.mark.parametrize("depth", [1, 2, 5, 11, 16])
def test_serialize_matches_reference(order, depth):
    gen = torch.Generator().manual_seed(depth)
    coords = torch.randint(0, 2 ** depth, (5000, 3), generator=gen)
    batch = torch.randint(0, 4, (5000,), generator=gen)
    assert torch.equal(ops.serialize(coords, batch, order, depth),
                       ops.serialize_reference(coords, batch, order, depth))


def test_serialize_hand_values_and_edge_cases():
    one = torch.tensor([[1, 2, 3]])
    got = [int(ops.serialize(one, torch.tensor([1]), o, 2)) for o in ops.SERIALIZATION_ORDERS]
    assert got == [(1 << 6) | 29, (1 << 6) | 43, (1 << 6) | 22, (1 << 6) | 50]
    assert ops.serialize(torch.zeros(0, 3, dtype=torch.int64),
                         torch.zeros(0, dtype=torch.int64)).numel() == 0
    top = torch.full((1, 3), 2 ** 16 - 1)
    for order in ops.SERIALIZATION_ORDERS:
        assert torch.equal(ops.serialize(top, torch.tensor([2 ** 15 - 1]), order),
                           ops.serialize_reference(top, torch.tensor([2 ** 15 - 1]), order))


# ------------------------------------------------------------------ threads and bindings
def test_results_do_not_depend_on_thread_count(real_frame):
    points, lidar2img, image_hw, _ = real_frame
    pts = torch.from_numpy(points)
    hw = torch.from_numpy(image_hw)
    mats = torch.from_numpy(lidar2img)
    feats = torch.randn(len(pts), 4, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(-1, 500, (len(pts),), generator=torch.Generator().manual_seed(1))
    maps = torch.randn(6, 4, 20, 30, generator=torch.Generator().manual_seed(2))
    outputs = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert compiled().get_num_threads() == threads
            res = ops.project_points(pts, mats, hw)
            outputs.append([*res, ops.visibility(res, hw),
                            ops.region_pool(feats, ids, 500, "mean").features,
                            ops.region_pool(feats, ids, 500, "max").features,
                            ops.gather_pixel_features(maps, res.camera_index, res.uv, 64)])
    finally:
        torch.set_num_threads(previous)
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other):
            assert torch.equal(a, b)


def test_binding_checks_name_the_argument():
    ext = compiled()
    pts = torch.rand(10, 3)
    offsets = torch.tensor([10])
    mats = torch.eye(4).expand(1, 2, 4, 4).contiguous()
    hw = torch.full((1, 2, 2), 100.0)
    with pytest.raises(RuntimeError, match="offsets must be int64|offsets must be Long"):
        ext.project_points(pts, offsets.int(), mats, hw, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="lidar2img"):
        ext.project_points(pts, offsets, mats.double(), hw, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="points must be contiguous"):
        ext.project_points(torch.rand(3, 10).t(), offsets, mats, hw, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="offsets\\[-1\\]"):
        ext.project_points(pts, torch.tensor([9]), mats, hw, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="region_ids out of range"):
        ext.region_pool_forward(torch.rand(3, 2), torch.tensor([0, 5, 1]), 5, 0)
    with pytest.raises(RuntimeError, match="coords out of range"):
        ext.serialize(torch.tensor([[4, 0, 0]]), torch.tensor([0]), 0, 2)
    with pytest.raises(RuntimeError, match="image_index out of range"):
        ext.gather_forward(torch.rand(2, 3, 4, 4), torch.tensor([2]), torch.zeros(1, 2))


def test_public_api_validation_messages():
    with pytest.raises(ValueError, match="region_ids must lie in"):
        ops.region_pool(torch.rand(3, 2), torch.tensor([0, 3, -1]), 3)
    with pytest.raises(ValueError, match="reduce must be one of"):
        ops.region_pool(torch.rand(3, 2), torch.tensor([0, 1, -1]), 3, "median")
    with pytest.raises(TypeError, match="region_ids must be an int64"):
        ops.region_pool(torch.rand(3, 2), torch.tensor([0.0, 1.0, 2.0]), 3)
    with pytest.raises(ValueError, match="region_ids must have shape"):
        ops.region_pool(torch.rand(3, 2), torch.tensor([0, 1]), 3)
    pts = torch.rand(4, 3)
    mats = torch.eye(4).expand(1, 1, 4, 4)
    # a point at the image centre reads id 7 of 5: the kernel checks the ids it reads,
    # the reference the whole map
    cam = torch.from_numpy(_front_camera(f=100.0, size=200)[None, None]).float()
    one = torch.tensor([[5.0, 0.0, 0.0]])
    bad = torch.full((1, 1, 200, 200), 7)
    for id_dtype in (torch.int64, torch.int16, torch.uint8):
        with pytest.raises(RuntimeError, match="superpixels: id 7"):
            ops.project_pool(one, torch.tensor([1]), cam, torch.tensor([[[200, 200]]]),
                             bad.to(id_dtype), 5, torch.rand(1, 2))
    with pytest.raises(ValueError, match="superpixels ids must lie in"):
        ops.project_pool_reference(one, torch.tensor([1]), cam, torch.tensor([[[200, 200]]]),
                                   bad, 5, torch.rand(1, 2))
    with pytest.raises(ValueError, match="superpixels must have shape"):
        ops.project_pool(pts, torch.tensor([4]), mats, torch.tensor([[[10, 10]]]),
                         torch.zeros(1, 10, 10, dtype=torch.int64), 5, torch.rand(4, 2))
    with pytest.raises(ValueError, match="features must have shape"):
        ops.project_pool(pts, torch.tensor([4]), mats, torch.tensor([[[10, 10]]]),
                         torch.zeros(1, 1, 10, 10, dtype=torch.int64), 5, torch.rand(3, 2))
    with pytest.raises(ValueError, match="offsets"):
        ops.project_points_batched(pts, torch.tensor([3]), mats, torch.tensor([[[10, 10]]]))


def test_real_frame_gather_pool_serialize(real_frame):
    """The remaining ops on the real keyframe's pairs and points."""
    points, lidar2img, image_hw, _ = real_frame
    pts = torch.from_numpy(points)
    hw = torch.from_numpy(image_hw)
    res = ops.project_points(pts, torch.from_numpy(lidar2img), hw)
    gen = torch.Generator().manual_seed(9)
    maps = torch.randn(6, 16, 900 // 8, 1600 // 8, generator=gen)
    kern = ops.gather_pixel_features(maps, res.camera_index, res.uv, 8)
    ref = ops.gather_pixel_features_reference(maps, res.camera_index, res.uv, 8)
    torch.testing.assert_close(kern, ref, rtol=0, atol=1e-5)
    # pool the gathered pixel features by 90-pixel cells of each camera
    cell = (res.camera_index * 200 + (res.uv[:, 1] // 90).long() * 18
            + (res.uv[:, 0] // 90).long())
    for reduce in ops.REDUCTIONS:
        a = ops.region_pool(kern, cell, 1200, reduce)
        b = ops.region_pool_reference(kern, cell, 1200, reduce)
        assert torch.equal(a.counts, b.counts)
        torch.testing.assert_close(a.features, b.features, rtol=0, atol=1e-5)
    # serialization of the points voxelised at 0.1 m, duplicates (same voxel) included
    voxels = torch.floor((pts[:, :3] - pts[:, :3].min(0).values) / 0.1).long()
    voxels = torch.cat([voxels, voxels[:100]])
    batch = torch.zeros(len(voxels), dtype=torch.int64)
    for order in ops.SERIALIZATION_ORDERS:
        keys = ops.serialize(voxels, batch, order)
        assert torch.equal(keys, ops.serialize_reference(voxels, batch, order))
        assert torch.equal(keys[-100:], keys[:100])


# ------------------------------------------------------------------ review regressions
def test_project_pool_rejects_empty_maps_and_index_overflow():
    pts = torch.tensor([[0.5, 0.5, 2.0]])
    with pytest.raises(ValueError, match="smaller than the images"):  # 0.9 px rounds up
        ops.project_pool(pts, torch.tensor([1]), torch.eye(4)[None, None],
                         torch.tensor([[[0.9, 0.9]]]), torch.zeros(1, 1, 0, 0, dtype=torch.long),
                         3, torch.ones(1, 2), 1.0, 0.0)
    with pytest.raises(ValueError, match="overflow"):
        ops.project_pool(pts, torch.tensor([1]), torch.eye(4).expand(1, 8, 4, 4),
                         torch.full((1, 8, 2), 8.0), torch.zeros(1, 8, 8, 8, dtype=torch.long),
                         2 ** 61, torch.ones(1, 4))
    with pytest.raises(RuntimeError, match="empty superpixel maps"):  # direct call
        compiled().project_pool(pts, torch.tensor([1]), torch.eye(4)[None, None],
                                torch.tensor([[[0.9, 0.9]]]),
                                torch.zeros(1, 1, 0, 0, dtype=torch.long), 3, torch.ones(1, 2),
                                1.0, 0.0)


def test_project_pool_pools_in_the_features_dtype():
    pts = torch.tensor([[0.0, 0.0, 5.0], [0.01, 0.0, 5.0]])  # float32 points
    mats = torch.eye(4).reshape(1, 1, 4, 4)
    mats[0, 0, 0, 3] = 2
    mats[0, 0, 1, 3] = 2
    hw = torch.tensor([[[8.0, 8.0]]])
    sp = torch.zeros(1, 1, 8, 8, dtype=torch.int64)
    feats = torch.tensor([[16777217.0], [-16777216.0]], dtype=torch.float64)  # not float32
    kern = ops.project_pool(pts, torch.tensor([2]), mats, hw, sp, 1, feats, 0.1, 0.0)
    ref = ops.project_pool_reference(pts, torch.tensor([2]), mats, hw, sp, 1, feats, 0.1, 0.0)
    assert kern.features.dtype == torch.float64
    assert kern.features.tolist() == ref.features.tolist() == [[0.5]]


def test_visibility_rejects_huge_sizes_and_keeps_mixed_dtypes_exact():
    res = ops.ProjectionResult(torch.tensor([0, 1]), torch.tensor([0, 0]),
                               torch.tensor([[100.0, 10.0], [5.0, 7.0]]),
                               torch.tensor([3.0, 4.0]))
    with pytest.raises(ValueError, match="below 2\\^31"):
        ops.visibility(res, [[2 ** 32, 2 ** 32]])
    uv = torch.tensor([[0.99999999, 0.5], [1.5, 0.5]], dtype=torch.float64)
    mixed = ops.ProjectionResult(torch.tensor([0, 1]), torch.tensor([0, 0]), uv,
                                 torch.tensor([10.0, 5.0]))
    assert ops.visibility(mixed, [[4, 4]], 0, 0.0).tolist() == [True, True]
    with pytest.raises(ValueError, match="result fields"):
        ops.visibility(mixed._replace(camera_index=torch.tensor([0, 0], dtype=torch.int32)),
                       [[4, 4]])


def test_gather_rejects_non_finite_uv_and_empty_output_stays_in_graph():
    maps = torch.randn(1, 3, 4, 4, requires_grad=True)
    with pytest.raises(ValueError, match="uv must be finite"):
        ops.gather_pixel_features(maps, torch.tensor([0]), torch.tensor([[float("nan"), 1.0]]))
    for fn in (ops.gather_pixel_features, ops.gather_pixel_features_reference):
        out = fn(maps, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 2))
        (grad,) = torch.autograd.grad(out.sum(), maps)
        assert out.shape == (0, 3) and (grad == 0).all()


def test_projection_with_gradients_takes_the_differentiable_path():
    points = torch.tensor([[10.0, 0.5, 0.2]], requires_grad=True)
    mats = torch.from_numpy(_front_camera()[None]).float()
    res = ops.project_points(points, mats, torch.tensor([[200, 200]]))
    (grad,) = torch.autograd.grad(res.uv.sum(), points)
    assert grad.abs().sum() > 0


def test_reference_max_pool_of_no_rows_and_direct_call_bounds():
    out = ops.region_pool_reference(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), 2,
                                    "max")
    assert out.features.shape == (2, 3) and (out.features == 0).all()
    ext = compiled()
    with pytest.raises(RuntimeError, match="image_index out of range"):
        ext.gather_backward(torch.ones(1, 4), torch.tensor([10 ** 6]), torch.zeros(1, 2), 1, 4,
                            4, False)
    with pytest.raises(RuntimeError, match="argmax out of range"):
        ext.region_pool_backward(torch.ones(1, 2), torch.tensor([0]), torch.tensor([1]),
                                 torch.tensor([[5, 0]]), 1, 1)
