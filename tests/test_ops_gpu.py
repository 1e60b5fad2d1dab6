"""CUDA kernels of lidarcl._C against the pure-PyTorch references run on the CPU: integer
outputs exactly, floats within 1e-5. Runs only on a machine with a GPU and an extension
built with CUDA (``lidarcl._C.with_cuda()``); skipped everywhere else."""
from __future__ import annotations

import math

import pytest
import torch

import lidarcl.ops as ops
from lidarcl.ops._extension import compiled


def _cuda_kernels() -> bool:
    ext = compiled()
    return torch.cuda.is_available() and ext is not None and bool(ext.with_cuda())


pytestmark = [
    pytest.mark.skipif(not _cuda_kernels(), reason="needs a GPU and lidarcl._C built with CUDA"),
    pytest.mark.filterwarnings("error::RuntimeWarning"),  # no silent reference fallback
]

DTYPES = [torch.float32, torch.float64]
DEV = "cuda"


def close(kernel, reference, tol=1e-5):
    torch.testing.assert_close(kernel.cpu(), reference, rtol=tol, atol=tol)


def cameras(gen, batch, cams, dtype):
    mats = torch.zeros(batch * cams, 4, 4, dtype=torch.float64)
    for j in range(batch * cams):
        a = float(torch.rand((), generator=gen)) * 2 * math.pi
        rot = torch.tensor([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0],
                            [0, 0, 1.0]], dtype=torch.float64)
        l2c = torch.eye(4, dtype=torch.float64)
        l2c[:3, :3] = torch.tensor([[0, -1, 0], [0, 0, -1], [1, 0, 0.0]],
                                   dtype=torch.float64) @ rot
        l2c[:3, 3] = torch.randn(3, generator=gen, dtype=torch.float64) * 0.3
        intr = torch.eye(4, dtype=torch.float64)
        intr[0, 0] = intr[1, 1] = 400 + 200 * float(torch.rand((), generator=gen))
        intr[0, 2], intr[1, 2] = 320, 240
        mats[j] = intr @ l2c
    return mats.reshape(batch, cams, 4, 4).to(dtype)


def scene(gen, sizes, cams, dtype):
    pts = (torch.randn(sum(sizes), 5, generator=gen, dtype=torch.float64) * 20).to(dtype)
    offsets = torch.tensor(sizes, dtype=torch.int64).cumsum(0)
    hw = torch.stack([torch.randint(400, 500, (len(sizes), cams), generator=gen),
                      torch.randint(600, 700, (len(sizes), cams), generator=gen)], -1)
    return pts, offsets, cameras(gen, len(sizes), cams, dtype), hw.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_projection_and_visibility(dtype):
    gen = torch.Generator().manual_seed(0)
    pts, offsets, l2i, hw = scene(gen, [20000, 0, 30000, 1], 6, dtype)
    pts[3] = float("nan")
    for md, mg in ((1.0, 1.0), (0.1, 0.0), (3.0, 20.5)):
        ref = ops.project_points_batched_reference(pts, offsets, l2i, hw, md, mg)
        got = ops.project_points_batched(pts.to(DEV), offsets.to(DEV), l2i.to(DEV),
                                         hw.to(DEV), md, mg)
        assert ref.point_index.numel() > 1000
        for name, r, k in zip(ref._fields, ref, got):
            assert k.device.type == "cuda" and k.dtype == r.dtype, name
            assert torch.equal(k.cpu(), r), name  # same arithmetic, no FMA: bit-identical
        again = ops.project_points_batched(pts.to(DEV), offsets.to(DEV), l2i.to(DEV),
                                           hw.to(DEV), md, mg)
        assert all(torch.equal(a, b) for a, b in zip(got, again))  # deterministic
        hw_i = hw.to(torch.int64)
        for window, tol, rel in ((0, 0.3, 0.0), (1, 0.3, 0.0), (2, 0.0, 0.05)):
            expect = ops.visibility_reference(ref, hw_i, window, tol, rel)
            vis = ops.visibility(got, hw_i.to(DEV), window, tol, rel)
            assert torch.equal(vis.cpu(), expect), (window, tol, rel)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_forward_backward(dtype):
    gen = torch.Generator().manual_seed(1)
    num, channels, height, width = 6, 16, 30, 50
    feats = torch.randn(num, channels, height, width, generator=gen,
                        dtype=torch.float64).to(dtype)
    m = 20000
    uv = (torch.rand(m, 2, generator=gen, dtype=torch.float64)
          * torch.tensor([width * 4 + 16.0, height * 4 + 16.0]) - 8).to(dtype)
    index = torch.randint(0, num, (m,), generator=gen)
    grad_out = torch.randn(m, channels, generator=gen, dtype=torch.float64).to(dtype)
    for stride in (1, 4, (4, 2)):
        leaf = feats.clone().requires_grad_(True)
        ref = ops.gather_pixel_features_reference(leaf, index, uv, stride)
        ref.backward(grad_out)
        cuda_leaf = feats.to(DEV, copy=True).requires_grad_(True)
        got = ops.gather_pixel_features(cuda_leaf, index.to(DEV), uv.to(DEV), stride)
        got.backward(grad_out.to(DEV))
        close(got.detach(), ref.detach())
        # border cells sum hundreds of clamped reads: float32 atomics reorder those sums
        close(cuda_leaf.grad, leaf.grad, 1e-4 if dtype == torch.float32 else 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce", ["mean", "max", "sum"])
def test_region_pool(dtype, reduce):
    gen = torch.Generator().manual_seed(2)
    n, channels, regions = 50000, 8, 700
    feats = torch.randn(n, channels, generator=gen, dtype=torch.float64).to(dtype)
    feats[::7] = torch.randint(-2, 3, (len(range(0, n, 7)), channels), generator=gen).to(dtype)
    ids = torch.randint(-1, regions - 10, (n,), generator=gen)  # the last regions stay empty
    grad = torch.randn(regions, channels, generator=gen, dtype=torch.float64).to(dtype)
    leaf = feats.clone().requires_grad_(True)
    ref = ops.region_pool_reference(leaf, ids, regions, reduce)
    ref.features.backward(grad)
    cuda_leaf = feats.to(DEV, copy=True).requires_grad_(True)
    got = ops.region_pool(cuda_leaf, ids.to(DEV), regions, reduce)
    got.features.backward(grad.to(DEV))
    assert torch.equal(got.counts.cpu(), ref.counts)
    if reduce == "max":  # the value (and the row that gets the gradient) is exact
        assert torch.equal(got.features.detach().cpu(), ref.features.detach())
        assert torch.equal(cuda_leaf.grad.cpu(), leaf.grad)
    else:  # float32 sums of ~70 rows: atomics reorder them (ops.h: last-bit differences)
        tol = 1e-4 if dtype == torch.float32 and reduce == "sum" else 1e-5
        close(got.features.detach(), ref.features.detach(), tol)
        close(cuda_leaf.grad, leaf.grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_pool(dtype):
    gen = torch.Generator().manual_seed(3)
    pts, offsets, l2i, hw = scene(gen, [20000, 0, 25000], 4, dtype)
    sp = torch.randint(-1, 50, (3, 4, 500, 700), generator=gen)
    feats = torch.randn(pts.shape[0], 8, generator=gen, dtype=torch.float64).to(dtype)
    ref = ops.project_pool_reference(pts, offsets, l2i, hw, sp, 50, feats)
    got = ops.project_pool(pts.to(DEV), offsets.to(DEV), l2i.to(DEV), hw.to(DEV), sp.to(DEV),
                           50, feats.to(DEV))
    assert ref.pair_point.numel() > 1000
    assert torch.equal(got.counts.cpu(), ref.counts)
    assert torch.equal(got.pair_point.cpu(), ref.pair_point)
    assert torch.equal(got.pair_region.cpu(), ref.pair_region)
    close(got.features, ref.features)


@pytest.mark.parametrize("depth", [1, 4, 10, 16])
def test_serialize(depth):
    gen = torch.Generator().manual_seed(4)
    coords = torch.randint(0, 1 << depth, (100000, 3), generator=gen)
    batch = torch.randint(0, 8, (100000,), generator=gen)
    batch[0] = (1 << (63 - 3 * depth)) - 1
    for order in ops.SERIALIZATION_ORDERS:
        got = ops.serialize(coords.to(DEV), batch.to(DEV), order, depth)
        assert got.device.type == "cuda"
        assert torch.equal(got.cpu(), ops.serialize_reference(coords, batch, order, depth)), order
