"""CUDA kernels of lidarcl._C against the pure-PyTorch references run on the CPU (integer
outputs exactly, floats within 1e-5) and against the CPU kernels (every forward op, the
pooling included, bit for bit), plus the determinism contract: each pooling run twice
(and on a non-default stream) gives the same bits, ``voxelize(canonical=True)`` is
bit-identical under permutations of the points, ``torch.use_deterministic_algorithms(True)``
runs the pooling and raises on the atomic gather backward, the opt-in atomic pooling, empty
inputs, and the binding's value checks on CUDA tensors.

Runs only on a machine with a GPU and an extension built with CUDA
(``lidarcl._C.with_cuda()``); skipped everywhere else, unless ``LIDARCL_REQUIRE_GPU=1``
(``tools/gpu_check.sh``), which turns the skip into a failure. Imports only torch, pytest
and lidarcl.ops (the GPU machine has no spconv / open3d / mmengine) and uses no fixture of
conftest.py."""
from __future__ import annotations

import math
import os

import pytest
import torch

import lidarcl.ops as ops
from lidarcl.ops._extension import compiled


def _cuda_kernels() -> bool:
    ext = compiled()
    return torch.cuda.is_available() and ext is not None and bool(ext.with_cuda())


REQUIRED = os.environ.get("LIDARCL_REQUIRE_GPU") == "1"

pytestmark = [
    pytest.mark.skipif(not _cuda_kernels() and not REQUIRED,
                       reason="needs a GPU and lidarcl._C built with CUDA"),
    pytest.mark.filterwarnings("error::RuntimeWarning"),  # no silent reference fallback
]


@pytest.fixture(autouse=True)
def _cuda_present():
    if not _cuda_kernels():  # only reached with LIDARCL_REQUIRE_GPU=1
        pytest.fail(f"LIDARCL_REQUIRE_GPU=1 but no CUDA kernels: torch.cuda.is_available()="
                    f"{torch.cuda.is_available()}, lidarcl._C built="
                    f"{compiled() is not None}, with_cuda="
                    f"{compiled() is not None and bool(compiled().with_cuda())}")

DTYPES = [torch.float32, torch.float64]
DEV = "cuda"


def close(kernel, reference, tol=1e-5):
    torch.testing.assert_close(kernel.cpu(), reference, rtol=tol, atol=tol)


def assert_bits(got, expect, name=""):
    """Same dtype, shape and bits (the sign of zeros included). NaN only has to be NaN in
    the same places: a GPU's arithmetic returns the canonical NaN where x86 propagates the
    operand's payload (IEEE 754 leaves the payload open)."""
    got, expect = got.detach().cpu().contiguous(), expect.detach().cpu().contiguous()
    assert got.dtype == expect.dtype and got.shape == expect.shape, name
    if got.is_floating_point():
        nan = got.isnan()
        assert torch.equal(nan, expect.isnan()), f"{name}: NaN in other places"
        width = {torch.float32: torch.int32, torch.float64: torch.int64}[got.dtype]
        a, b = got.masked_fill(nan, 0).view(width), expect.masked_fill(nan, 0).view(width)
        assert torch.equal(a, b), f"{name}: {int((a != b).sum())} elements differ in bits"
    else:
        assert torch.equal(got, expect), name


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
    else:
        tol = 1e-4 if dtype == torch.float32 and reduce == "sum" else 1e-5
        close(got.features.detach(), ref.features.detach(), tol)
        close(cuda_leaf.grad, leaf.grad)
    # the CPU kernel's bits, forward and backward (same summation order)
    cpu_leaf = feats.clone().requires_grad_(True)
    cpu = ops.region_pool(cpu_leaf, ids, regions, reduce)
    cpu.features.backward(grad)
    assert_bits(got.features.detach(), cpu.features.detach())
    assert_bits(cuda_leaf.grad, cpu_leaf.grad)


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


# ------------------------------------------------------------------ determinism (issue 12)
def pool_case(gen, dtype, n=60000, channels=8, regions=900):
    """Rows of wide magnitudes (sums whose bits depend on the order), ties, -0, NaN, inf,
    rows of no region, empty regions."""
    scale = torch.logspace(-3, 4, n, dtype=torch.float64)[torch.randperm(n, generator=gen)]
    feats = (torch.randn(n, channels, generator=gen, dtype=torch.float64)
             * scale[:, None]).to(dtype)
    feats[::13] = torch.randint(-2, 3, (len(range(0, n, 13)), channels), generator=gen
                                ).to(dtype)
    feats[5, 1], feats[6, 2], feats[7, 0] = -0.0, float("nan"), float("-inf")
    ids = torch.randint(-1, regions - 20, (n,), generator=gen)
    ids[:3000] = 3  # one large region
    return feats, ids, regions


def on_side_stream(fn):
    """fn() run on a new (non-default) CUDA stream, synchronised."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = fn()
    stream.synchronize()
    return out


@pytest.fixture
def deterministic_mode():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce", ["mean", "max", "sum"])
def test_region_pool_bits_twice_side_stream_and_cpu(dtype, reduce):
    gen = torch.Generator().manual_seed(10)
    feats, ids, regions = pool_case(gen, dtype)
    grad = torch.randn(regions, feats.shape[1], generator=gen, dtype=torch.float64).to(dtype)
    cpu_leaf = feats.clone().requires_grad_(True)
    cpu = ops.region_pool(cpu_leaf, ids, regions, reduce)
    cpu.features.backward(grad)
    f, i, g = feats.to(DEV), ids.to(DEV), grad.to(DEV)

    def run():
        leaf = f.clone().requires_grad_(True)
        out = ops.region_pool(leaf, i, regions, reduce)
        out.features.backward(g)
        return out.features.detach(), out.counts, leaf.grad

    first, second, side = run(), run(), on_side_stream(run)
    for outs in (first, second, side):
        for name, a, b in zip(("pooled", "counts", "grad"), outs,
                              (cpu.features, cpu.counts, cpu_leaf.grad)):
            assert_bits(a, b, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_project_pool_bits_id_dtypes_twice_and_cpu(dtype, id_dtype):
    gen = torch.Generator().manual_seed(11)
    pts, offsets, l2i, hw = scene(gen, [20000, 0, 25000], 4, dtype)
    low = 0 if id_dtype == torch.uint8 else -1
    sp = torch.randint(low, 50, (3, 4, 500, 700), generator=gen).to(id_dtype)
    feats = torch.randn(pts.shape[0], 8, generator=gen, dtype=torch.float64).to(dtype)
    grad = torch.randn(3 * 4 * 50, 8, generator=gen, dtype=torch.float64).to(dtype)
    cpu_leaf = feats.clone().requires_grad_(True)
    cpu = ops.project_pool(pts, offsets, l2i, hw, sp, 50, cpu_leaf)
    cpu.features.backward(grad)
    args = [t.to(DEV) for t in (pts, offsets, l2i, hw, sp)]
    f, g = feats.to(DEV), grad.to(DEV)

    def run():
        leaf = f.clone().requires_grad_(True)
        out = ops.project_pool(*args, 50, leaf)
        out.features.backward(g)
        return tuple(out) + (leaf.grad,)

    expect = tuple(cpu) + (cpu_leaf.grad,)
    assert cpu.pair_point.numel() > 1000
    for outs in (run(), run(), on_side_stream(run)):
        for name, a, b in zip(("pooled", "counts", "pair_point", "pair_region", "grad"),
                              outs, expect):
            assert_bits(a, b, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
def test_voxelize_canonical_permutation_bit_identical(dtype, reduce):
    gen = torch.Generator().manual_seed(12)
    n = 200000
    centres = torch.randn(2000, 3, generator=gen, dtype=torch.float64) * 30
    pts = torch.cat([centres[torch.randint(0, 2000, (n,), generator=gen)]
                     + torch.randn(n, 3, generator=gen, dtype=torch.float64),
                     torch.randn(n, 2, generator=gen, dtype=torch.float64) * 1e3], 1).to(dtype)
    offsets = torch.tensor([120000, n])
    cpu = ops.voxelize(pts, offsets, 0.25, reduce=reduce)
    base = ops.voxelize(pts.to(DEV), offsets.to(DEV), 0.25, reduce=reduce)
    assert int(base.counts.max()) > 5
    assert_bits(base.features, cpu.features)
    assert torch.equal(base.coords.cpu(), cpu.coords)
    for trial in range(3):
        perm = torch.cat([torch.randperm(120000, generator=gen),
                          120000 + torch.randperm(n - 120000, generator=gen)]).to(DEV)
        run = lambda: ops.voxelize(pts.to(DEV)[perm], offsets.to(DEV), 0.25,  # noqa: E731
                                   reduce=reduce)
        got = on_side_stream(run) if trial == 2 else run()
        assert torch.equal(got.coords, base.coords)
        assert torch.equal(got.counts, base.counts)
        assert_bits(got.features, base.features, f"trial {trial}")
        # the atomic opt-in does not reach canonical pooling
        with ops.atomic_pooling():
            assert_bits(run().features, base.features, "under atomic_pooling()")


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_mode_pools_and_rejects_atomic_gather_backward(dtype,
                                                                     deterministic_mode):
    gen = torch.Generator().manual_seed(13)
    feats, ids, regions = pool_case(gen, dtype, n=20000)
    f, i = feats.to(DEV), ids.to(DEV)
    for reduce in ops.REDUCTIONS:
        leaf = f.clone().requires_grad_(True)
        with ops.atomic_pooling():  # ignored in deterministic mode
            out = ops.region_pool(leaf, i, regions, reduce)
        out.features.sum().backward()
        assert_bits(out.features, ops.region_pool(feats, ids, regions, reduce).features)
    pts, offsets, l2i, hw = scene(gen, [5000], 2, dtype)
    sp = torch.randint(-1, 30, (1, 2, 500, 700), generator=gen)
    leaf = torch.randn(5000, 4, dtype=dtype, device=DEV, requires_grad=True)
    out = ops.project_pool(pts.to(DEV), offsets.to(DEV), l2i.to(DEV), hw.to(DEV), sp.to(DEV),
                           30, leaf)
    out.features.sum().backward()
    ops.voxelize(pts.to(DEV), offsets.to(DEV), 0.5)
    # the gather backward adds with float atomics: alertNotDeterministic raises
    maps = torch.randn(2, 4, 10, 12, dtype=dtype, device=DEV, requires_grad=True)
    uv = torch.rand(300, 2, dtype=dtype, device=DEV) * 10
    index = torch.randint(0, 2, (300,), device=DEV)
    got = ops.gather_pixel_features(maps, index, uv)  # the forward has no atomics
    with pytest.raises(RuntimeError, match="gather_pixel_features backward"):
        got.sum().backward()


@pytest.mark.parametrize("dtype", DTYPES)
def test_atomic_pooling_opt_in(dtype):
    """Deterministic algorithms off + atomic_pooling(): the float-atomic kernels (last bits
    may vary), same counts, values within rounding of the CPU's."""
    gen = torch.Generator().manual_seed(14)
    _, ids, regions = pool_case(gen, dtype, n=50000)
    feats = torch.randn(50000, 8, generator=gen, dtype=torch.float64).to(dtype)
    for reduce in ops.REDUCTIONS:
        cpu = ops.region_pool(feats, ids, regions, reduce)
        with ops.atomic_pooling():
            got = ops.region_pool(feats.to(DEV), ids.to(DEV), regions, reduce)
        assert torch.equal(got.counts.cpu(), cpu.counts)
        if reduce == "max":
            assert_bits(got.features, cpu.features)
        else:
            close(got.features, cpu.features, 1e-3 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_inputs(dtype):
    z = torch.zeros(0, 3, dtype=dtype, device=DEV)
    none = torch.zeros(0, dtype=torch.int64, device=DEV)
    for reduce in ops.REDUCTIONS:
        out = ops.region_pool(z, none, 4, reduce)
        assert out.features.shape == (4, 3) and not out.features.any() and not out.counts.any()
        out = ops.region_pool(torch.ones(5, 3, dtype=dtype, device=DEV),
                              torch.full((5,), -1, device=DEV), 0, reduce)
        assert out.features.shape == (0, 3) and out.counts.shape == (0,)
    pts = torch.zeros(0, 4, dtype=dtype, device=DEV)
    l2i = torch.eye(4, dtype=dtype, device=DEV).expand(2, 3, 4, 4).contiguous()
    hw = torch.full((2, 3, 2), 50.0, dtype=dtype, device=DEV)
    sp = torch.zeros(2, 3, 50, 50, dtype=torch.int16, device=DEV)
    offsets = torch.zeros(2, dtype=torch.int64, device=DEV)
    res = ops.project_pool(pts, offsets, l2i, hw, sp, 7, torch.zeros(0, 5, dtype=dtype,
                                                                      device=DEV))
    assert res.features.shape == (42, 5) and not res.features.any()
    assert res.pair_point.numel() == 0 and not res.counts.any()
    vox = ops.voxelize(pts, offsets, 0.5)
    assert vox.features.shape == (0, 4) and vox.point_to_voxel.numel() == 0


def test_direct_calls_check_values_on_cuda():
    """lidarcl._C called directly with CUDA tensors: bad offsets, image_hw, indices and ids
    raise a clear error instead of reading out of bounds."""
    ext = compiled()
    pts = torch.rand(10, 3, device=DEV)
    mats = torch.eye(4, device=DEV).expand(1, 2, 4, 4).contiguous()
    hw = torch.full((1, 2, 2), 100.0, device=DEV)
    sp = torch.zeros(1, 2, 100, 100, dtype=torch.int64, device=DEV)
    feats = torch.rand(10, 2, device=DEV)
    for bad in ([11], [9], [-1]):
        offsets = torch.tensor(bad, device=DEV)
        with pytest.raises(RuntimeError, match="offsets"):
            ext.project_points(pts, offsets, mats, hw, 1.0, 1.0)
        with pytest.raises(RuntimeError, match="offsets"):
            ext.project_pool(pts, offsets, mats, hw, sp, 3, feats, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="offsets must be non-negative and non-decreasing"):
        ext.project_points(pts, torch.tensor([8, 4], device=DEV),
                           torch.eye(4, device=DEV).expand(2, 2, 4, 4).contiguous(),
                           torch.full((2, 2, 2), 100.0, device=DEV), 1.0, 1.0)
    uv = torch.rand(4, 2, device=DEV)
    depth = torch.rand(4, device=DEV)
    image = torch.zeros(4, dtype=torch.int64, device=DEV)
    for bad_hw, message in (([[0, 5]], "positive"), ([[-3, 5]], "positive"),
                            ([[2 ** 31, 5]], "below 2\\^31")):
        with pytest.raises(RuntimeError, match=message):
            ext.visibility(uv, depth, image, torch.tensor(bad_hw, device=DEV), 1, 0.3, 0.0)
    with pytest.raises(RuntimeError, match="image_index out of range"):
        ext.visibility(uv, depth, image + 1, torch.tensor([[5, 5]], device=DEV), 1, 0.3, 0.0)
    with pytest.raises(RuntimeError, match="image_index out of range"):
        ext.gather_forward(torch.rand(2, 3, 4, 4, device=DEV),
                           torch.tensor([2], device=DEV), torch.zeros(1, 2, device=DEV))
    with pytest.raises(RuntimeError, match="region_ids out of range"):
        ext.region_pool_forward(torch.rand(3, 2, device=DEV),
                                torch.tensor([0, 5, 1], device=DEV), 5, 0)
    with pytest.raises(RuntimeError, match="argmax out of range"):
        ext.region_pool_backward(torch.ones(1, 2, device=DEV), torch.tensor([0], device=DEV),
                                 torch.tensor([1], device=DEV),
                                 torch.tensor([[5, 0]], device=DEV), 1, 1)
    with pytest.raises(RuntimeError, match="coords out of range"):
        ext.serialize(torch.tensor([[4, 0, 0]], device=DEV), torch.tensor([0], device=DEV), 0,
                      2)


@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int16, torch.uint8])
def test_project_pool_rejects_bad_ids_it_reads(id_dtype):
    cam = torch.tensor([[100.0, 0, 100, 0], [0, 100, 100, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
                       )[None, None]
    one = torch.tensor([[0.0, 0.0, 5.0]])  # lands at the image centre
    bad = torch.full((1, 1, 200, 200), 7).to(id_dtype)
    with pytest.raises(RuntimeError, match="superpixels: id 7"):
        ops.project_pool(one.to(DEV), torch.tensor([1], device=DEV), cam.to(DEV),
                         torch.tensor([[[200, 200]]], device=DEV), bad.to(DEV), 5,
                         torch.rand(1, 2, device=DEV))


# ------------------------------------------------------------------ rotated boxes
def _random_boxes(gen, n, spread=8.0):
    centre = (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1) * spread
    size = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 4.8 + 0.2
    yaw = (torch.rand(n, 1, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    return torch.cat([centre, size, yaw], 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["bev", "3d"])
def test_box_iou_cuda_matches_cpu_and_reference(dtype, mode):
    """Same geometry code in double on both devices; sin / cos may differ in the last bits
    between the GPU's and glibc's libm, so the IoUs agree within 1e-12 (1e-6 in float32
    after the cast), not bit for bit."""
    gen = torch.Generator().manual_seed(0)
    a, b = _random_boxes(gen, 300).to(dtype), _random_boxes(gen, 200).to(dtype)
    on_gpu = ops.box_iou(a.to(DEV), b.to(DEV), mode)
    on_cpu = ops.box_iou(a, b, mode)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=tol)
    close(on_gpu, ops.box_iou_reference(a, b, mode), tol=1e-5)
    assert int((on_cpu > 0).sum()) > 500


@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_bev_cuda_matches_cpu(dtype):
    gen = torch.Generator().manual_seed(1)
    centres = _random_boxes(gen, 200, spread=60)
    boxes = centres.repeat_interleave(10, 0)
    boxes[:, :2] += torch.randn(len(boxes), 2, generator=gen, dtype=torch.float64) * 0.4
    scores = torch.rand(len(boxes), generator=gen, dtype=torch.float64)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    for threshold in (0.1, 0.5, 0.8):
        keep_gpu = ops.nms_bev(boxes.to(DEV), scores.to(DEV), threshold)
        keep_cpu = ops.nms_bev(boxes, scores, threshold)
        assert keep_gpu.device.type == "cuda"
        assert keep_gpu.cpu().tolist() == keep_cpu.tolist()
    # more than one 64-box block, empty input
    assert ops.nms_bev(boxes[:0].to(DEV), scores[:0].to(DEV), 0.5).numel() == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_points_in_boxes_cuda_matches_cpu(dtype):
    gen = torch.Generator().manual_seed(2)
    boxes = _random_boxes(gen, 40).to(dtype)
    points = ((torch.rand(20000, 4, generator=gen, dtype=torch.float64) * 2 - 1) * 10).to(dtype)
    all_gpu = ops.points_in_boxes_all(points.to(DEV), boxes.to(DEV))
    all_cpu = ops.points_in_boxes_all(points, boxes)
    assert torch.equal(all_gpu.cpu(), all_cpu) and int(all_cpu.sum()) > 1000
    assert torch.equal(ops.points_in_boxes_first(points.to(DEV), boxes.to(DEV)).cpu(),
                       ops.points_in_boxes_first(points, boxes))
    # faces count as inside (yaw 0: no rounding in sin / cos)
    box = torch.tensor([[1.0, 2, 0.5, 4, 2, 1, 0]], dtype=dtype)
    face = torch.tensor([[3.0, 2, 0.5], [1, 3, 0.5], [1, 2, 1.0], [3.001, 2, 0.5]], dtype=dtype)
    assert ops.points_in_boxes_all(face.to(DEV), box.to(DEV))[:, 0].tolist() == \
        [True, True, True, False]
