"""Build checks of the CUDA kernels that run without a GPU (and without a CUDA build of torch).

* every ``csrc/cuda/*.cu`` compiles alone with ``nvcc -c`` (they include no torch header);
* ``projection.cu`` holds no fused multiply-add (the rounding rule of ``csrc/ops.h``);
* the ATen glue ``csrc/cuda/ops_cuda.cpp`` passes ``g++ -fsyntax-only -DWITH_CUDA`` against
  the ATen/c10 CUDA headers shipped in torch's wheel, and compiles to nothing without
  ``WITH_CUDA`` (setup.py compiles every ``.cpp``, CPU builds included);
* host emulation: the kernels, compiled as plain C++ with a few lines of CUDA stand-ins
  (intrinsics, atomics, a sequential grid of 3 x 5 "threads" driving the grid-stride
  loops), run behind the real ``ops_cuda.cpp`` on CPU tensors and are compared with the
  pure-PyTorch references. This checks the kernels' logic (orderings, scans, keys, Hilbert
  curve, clamps, arithmetic), not concurrency; ``tests/test_ops_gpu.py`` checks the real
  thing on a GPU.

Skipped when nvcc / the CUDA headers (or g++) are not found.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sysconfig
import textwrap

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_DIR = os.path.join(ROOT, "csrc", "cuda")
EXPECTED = ["launchers.h", "common.cuh", "ops_cuda.cpp", "projection.cu", "gather.cu",
            "pooling.cu", "serialize.cu"]
CU_FILES = sorted(glob.glob(os.path.join(CUDA_DIR, "*.cu")))


def _nvcc():
    found = shutil.which("nvcc")
    if found is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        found = "/usr/local/cuda/bin/nvcc"
    return found


def _cuda_include():
    """The CUDA toolkit's include folder (the one with cuda_runtime_api.h), or None."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = _nvcc()
    if nvcc is not None:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for root in roots:
        if root and os.path.exists(os.path.join(root, "include", "cuda_runtime_api.h")):
            return os.path.join(root, "include")
    return None


requires_nvcc = pytest.mark.skipif(_nvcc() is None, reason="nvcc not found")
requires_cuda_headers = pytest.mark.skipif(
    _nvcc() is None or _cuda_include() is None, reason="nvcc / CUDA headers not found")
requires_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")


def _run(cmd, cwd=ROOT, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return proc


def test_expected_cuda_sources_exist():
    missing = [name for name in EXPECTED if not os.path.isfile(os.path.join(CUDA_DIR, name))]
    assert not missing, f"missing in csrc/cuda: {missing}"
    assert len(CU_FILES) >= 4, CU_FILES


@pytest.mark.parametrize("path", CU_FILES + sorted(glob.glob(os.path.join(CUDA_DIR, "*.cuh")))
                         + [os.path.join(CUDA_DIR, "launchers.h")],
                         ids=os.path.basename)
def test_kernel_sources_include_no_torch_header(path):
    with open(path) as f:
        text = f.read()
    bad = re.findall(r'#\s*include\s*[<"]((?:torch|ATen|c10|pybind11)/[^>"]*)[>"]', text)
    assert not bad, f"{os.path.basename(path)} includes torch headers: {bad}"


@requires_nvcc
@pytest.mark.parametrize("path", CU_FILES, ids=os.path.basename)
def test_cu_file_compiles_alone(path, tmp_path):
    out = tmp_path / (os.path.basename(path) + ".o")
    proc = _run([_nvcc(), "-c", "-arch=sm_80", "-std=c++17", "-O2", "-o", str(out), path])
    assert proc.returncode == 0, f"nvcc failed on {path}:\n{proc.stderr}\n{proc.stdout}"
    assert out.stat().st_size > 0


@requires_nvcc
def test_projection_ptx_has_no_fused_multiply_add(tmp_path):
    """Projection and visibility arithmetic uses __fmul_rn/__fadd_rn/...: no fma may appear
    (nvcc contracts a*b + c into fma by default, which would change selections)."""
    ptx = tmp_path / "projection.ptx"
    proc = _run([_nvcc(), "-ptx", "-arch=sm_80", "-std=c++17", "-O3", "-o", str(ptx),
                 os.path.join(CUDA_DIR, "projection.cu")])
    assert proc.returncode == 0, proc.stderr
    text = ptx.read_text()
    assert "div.rn.f32" in text and "mul.rn.f64" in text
    assert re.search(r"\bfma\.", text) is None


def _torch_flags():
    from torch.utils.cpp_extension import include_paths
    flags = [f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    for path in include_paths():
        flags += ["-isystem", path]
    flags += ["-I", sysconfig.get_paths()["include"]]
    return flags


@requires_gxx
@requires_cuda_headers
def test_glue_syntax_with_cuda():
    # C10_CUDA_NO_CMAKE_CONFIGURE_FILE: the CPU wheel lacks the generated
    # c10/cuda/impl/cuda_cmake_macros.h (it only defines C10_CUDA_BUILD_SHARED_LIBS, which
    # matters on Windows); a CUDA build of torch ships it.
    cmd = (["g++", "-fsyntax-only", "-std=c++17", "-DWITH_CUDA",
            "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE"] + _torch_flags()
           + ["-isystem", _cuda_include(), "-I", "csrc", "csrc/cuda/ops_cuda.cpp"])
    proc = _run(cmd)
    assert proc.returncode == 0, f"g++ -fsyntax-only failed:\n{proc.stderr}"


@requires_gxx
def test_glue_is_empty_without_with_cuda(tmp_path):
    """setup.py compiles every csrc/**/*.cpp, CPU builds included (no CUDA headers)."""
    out = tmp_path / "ops_cuda.o"
    proc = _run(["g++", "-c", "-std=c++17", "-o", str(out), "csrc/cuda/ops_cuda.cpp"])
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ host emulation
_SHIM = {
    "cuda_runtime_api.h": """
        #pragma once
        #include <cmath>
        #include <cstdint>
        #include <cstring>
        typedef enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1 } cudaError_t;
        typedef struct CUstream_st* cudaStream_t;
        inline const char* cudaGetErrorString(cudaError_t e) {
          return e == cudaSuccess ? "no error" : "invalid value";
        }
        inline cudaError_t cudaGetLastError() { return cudaSuccess; }
        """,
    "cuda_runtime.h": """
        #pragma once
        #include "cuda_runtime_api.h"
        #define __global__
        #define __device__
        #define __host__
        #define __forceinline__ inline
        struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
        inline thread_local emu_dim3 blockIdx, threadIdx, blockDim, gridDim;
        inline float __fmul_rn(float a, float b) { return a * b; }
        inline double __dmul_rn(double a, double b) { return a * b; }
        inline float __fadd_rn(float a, float b) { return a + b; }
        inline double __dadd_rn(double a, double b) { return a + b; }
        inline float __fsub_rn(float a, float b) { return a - b; }
        inline double __dsub_rn(double a, double b) { return a - b; }
        inline float __fdiv_rn(float a, float b) { return a / b; }
        inline double __ddiv_rn(double a, double b) { return a / b; }
        inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
        inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
        inline long long __double_as_longlong(double f) {
          long long u; std::memcpy(&u, &f, 8); return u;
        }
        inline double __longlong_as_double(long long u) {
          double f; std::memcpy(&f, &u, 8); return f;
        }
        inline float atomicAdd(float* a, float v) { float o = *a; *a = o + v; return o; }
        inline double atomicAdd(double* a, double v) { double o = *a; *a = o + v; return o; }
        inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
          unsigned long long o = *a; *a = o + v; return o;
        }
        template <typename K> inline K atomicMin(K* a, K v) {
          K o = *a; if (v < o) *a = v; return o;
        }
        template <typename K> inline K atomicMax(K* a, K v) {
          K o = *a; if (v > o) *a = v; return o;
        }
        """,
    "c10/cuda/CUDAGuard.h": """
        #pragma once
        #include <c10/core/Device.h>
        namespace c10 { namespace cuda {
        struct CUDAGuard { explicit CUDAGuard(c10::Device) {} };
        } }
        """,
    "c10/cuda/CUDAStream.h": """
        #pragma once
        #include <cuda_runtime_api.h>
        namespace c10 { namespace cuda {
        struct CUDAStream { operator cudaStream_t() const { return nullptr; } };
        inline CUDAStream getCurrentCUDAStream(int = -1) { return {}; }
        } }
        """,
    "emu_prelude.h": """
        #pragma once
        #include <cuda_runtime.h>
        #include "common.cuh"
        #undef LIDARCL_CUDA_LAUNCH
        // a sequential grid of 3 blocks x 5 threads runs every kernel's grid-stride loop
        #define LIDARCL_CUDA_LAUNCH(kernel, n, stream, ...)         \\
          do {                                                      \\
            if ((n) > 0) {                                          \\
              gridDim.x = 3; blockDim.x = 5;                        \\
              for (unsigned b_ = 0; b_ < 3; ++b_)                   \\
                for (unsigned t_ = 0; t_ < 5; ++t_) {               \\
                  blockIdx.x = b_; threadIdx.x = t_;                \\
                  kernel(__VA_ARGS__);                              \\
                }                                                   \\
            }                                                       \\
          } while (0)
        """,
    "emu_bind.cpp": """
        #include <torch/extension.h>
        #include "ops.h"
        PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
          m.def("project_points", &lidarcl::project_points_cuda);
          m.def("visibility", &lidarcl::visibility_cuda);
          m.def("gather_forward", &lidarcl::gather_forward_cuda);
          m.def("gather_backward", &lidarcl::gather_backward_cuda);
          m.def("region_pool_forward", &lidarcl::region_pool_forward_cuda);
          m.def("region_pool_backward", &lidarcl::region_pool_backward_cuda);
          m.def("project_pool", &lidarcl::project_pool_cuda);
          m.def("serialize", &lidarcl::serialize_cuda);
        }
        """,
}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The CUDA glue + kernels built for the host (CPU tensors in, CPU tensors out)."""
    from torch.utils.cpp_extension import is_ninja_available, load
    if shutil.which("g++") is None or not is_ninja_available():
        pytest.skip("g++ / ninja not found")
    work = tmp_path_factory.mktemp("cuda_emu")
    shim = work / "shim"
    for name, text in _SHIM.items():
        path = shim / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    sources = [os.path.join(CUDA_DIR, "ops_cuda.cpp"), str(shim / "emu_bind.cpp")]
    for cu in CU_FILES:
        wrapper = shim / ("emu_" + os.path.basename(cu)[:-3] + ".cpp")
        wrapper.write_text(f'#include "emu_prelude.h"\n#include "{cu}"\n')
        sources.append(str(wrapper))
    build = work / "build"
    build.mkdir()
    return load("lidarcl_cuda_emu", sources, build_directory=str(build),
                extra_include_paths=[str(shim), CUDA_DIR, os.path.join(ROOT, "csrc")],
                extra_cflags=["-DWITH_CUDA", "-O1", "-ffp-contract=off", "-std=c++17"],
                verbose=False)


def _cameras(gen, batch, cams, dtype):
    import math
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
        intr[0, 0] = intr[1, 1] = 50 + 30 * float(torch.rand((), generator=gen))
        intr[0, 2], intr[1, 2] = 40, 30
        mats[j] = intr @ l2c
    return mats.reshape(batch, cams, 4, 4).to(dtype)


def _scene(gen, sizes, cams, dtype):
    pts = (torch.randn(sum(sizes), 4, generator=gen, dtype=torch.float64) * 15).to(dtype)
    offsets = torch.tensor(sizes, dtype=torch.int64).cumsum(0)
    hw = torch.stack([torch.randint(40, 70, (len(sizes), cams), generator=gen),
                      torch.randint(60, 90, (len(sizes), cams), generator=gen)], -1).to(dtype)
    return pts, offsets, _cameras(gen, len(sizes), cams, dtype), hw


DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_projection_and_visibility(emu, dtype):
    from lidarcl.ops.projection import project_points_batched_reference, visibility_reference
    gen = torch.Generator().manual_seed(1)
    pts, offsets, l2i, hw = _scene(gen, [400, 0, 600, 1], 5, dtype)
    pts[7] = float("nan")
    for md, mg in ((1.0, 1.0), (0.1, 0.0), (-5.0, -3.0), (0.5, 2.3)):
        ref = project_points_batched_reference(pts, offsets, l2i, hw, md, mg)
        got = emu.project_points(pts, offsets, l2i, hw, md, mg)
        assert ref.point_index.numel() > 100
        for name, r, k in zip(ref._fields, ref, got):
            assert r.dtype == k.dtype and torch.equal(r, k), name  # bit-identical
        image = ref.batch_index * 5 + ref.camera_index
        hw_i = hw.to(torch.int64)
        for window, tol, rel in ((0, 0.3, 0.0), (1, 0.3, 0.0), (3, 0.0, 0.05), (9, 1.0, 0.1)):
            expect = visibility_reference(ref, hw_i, window, tol, rel)
            assert torch.equal(emu.visibility(ref.uv, ref.depth, image, hw_i.reshape(-1, 2),
                                              window, tol, rel), expect)
    empty = emu.project_points(pts[:0], torch.zeros(0, dtype=torch.int64), l2i[:0], hw[:0],
                               1.0, 1.0)
    assert [t.shape[0] for t in empty] == [0] * 5


@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_visibility_ties_and_clamps(emu, dtype):
    from lidarcl.ops.projection import BatchedProjectionResult, visibility_reference
    gen = torch.Generator().manual_seed(2)
    m = 400
    uv = (torch.rand(m, 2, generator=gen, dtype=torch.float64) * 14 - 2).to(dtype)
    depth = torch.randint(-3, 4, (m,), generator=gen).to(dtype) * 0.5  # ties, negatives
    depth[5], depth[6] = -0.0, 0.0
    cam = torch.randint(0, 3, (m,), generator=gen)
    batch = torch.randint(0, 2, (m,), generator=gen)
    hw = torch.tensor([[[5, 7], [10, 3], [1, 1]], [[8, 8], [2, 9], [6, 4]]])
    res = BatchedProjectionResult(torch.arange(m), cam, uv, depth, batch)
    for window in (0, 1, 2, 2 ** 62):
        for tol, rel in ((0.0, 0.0), (0.5, 0.0), (0.2, 0.3), (float("inf"), 0.0)):
            expect = visibility_reference(res, hw, min(window, 20), tol, rel)
            got = emu.visibility(uv, depth, batch * 3 + cam, hw.reshape(-1, 2), window, tol, rel)
            assert torch.equal(got, expect), (window, tol, rel)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (2, 3, 1, 6), (2, 2, 5, 1), (1, 4, 1, 1)])
def test_emulated_gather(emu, dtype, shape):
    from lidarcl.ops.gather import feature_coordinates, gather_pixel_features_reference
    gen = torch.Generator().manual_seed(3)
    num, channels, height, width = shape
    feats = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
    m = 300
    span = torch.tensor([width * 4 + 8, height * 4 + 8], dtype=torch.float64)
    uv = (torch.rand(m, 2, generator=gen, dtype=torch.float64) * span - 4).to(dtype)
    index = torch.randint(0, num, (m,), generator=gen)
    for stride in (1, 2, (2, 3)):
        coords = feature_coordinates(uv, stride).contiguous()
        leaf = feats.clone().requires_grad_(True)
        ref = gather_pixel_features_reference(leaf, index, uv, stride)
        assert torch.equal(emu.gather_forward(feats, index, coords), ref.detach())
        grad_out = torch.randn(m, channels, generator=gen, dtype=torch.float64).to(dtype)
        ref.backward(grad_out)
        got = emu.gather_backward(grad_out, index, coords, num, height, width)
        torch.testing.assert_close(got, leaf.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_emulated_region_pool(emu, dtype, kind):
    from lidarcl.ops.pooling import region_pool_reference
    gen = torch.Generator().manual_seed(4)
    n, channels, regions = 500, 6, 40
    if kind == "random":
        feats = torch.randn(n, channels, generator=gen, dtype=torch.float64).to(dtype)
    else:  # many ties, -0 / +0, a region holding only -inf
        feats = torch.randint(-2, 3, (n, channels), generator=gen).to(dtype)
        zeros = feats == 0
        feats[zeros] = torch.where(torch.rand(int(zeros.sum()), generator=gen) < 0.5,
                                   -0.0, 0.0).to(dtype)
        feats[3] = float("-inf")
    ids = torch.randint(-1, regions - 5, (n,), generator=gen)  # the last regions stay empty
    if kind == "ties":
        ids[ids == regions - 6] = -1
        ids[3] = regions - 6
    for reduce, code in (("mean", 0), ("max", 1), ("sum", 2)):
        leaf = feats.clone().requires_grad_(True)
        ref = region_pool_reference(leaf, ids, regions, reduce)
        pooled, counts, argmax = emu.region_pool_forward(feats, ids, regions, code)
        assert torch.equal(counts, ref.counts)
        if reduce == "max":
            assert torch.equal(pooled, ref.features.detach())
            assert torch.equal(torch.signbit(pooled), torch.signbit(ref.features.detach()))
            expect = torch.full((regions, channels), -1, dtype=torch.int64)
            for r in range(regions):
                rows = torch.nonzero(ids == r).flatten()
                if rows.numel():
                    values = feats[rows]
                    hit = values == values.max(0).values
                    expect[r] = rows[hit.to(torch.int8).argmax(0)]  # first row at the max
            assert torch.equal(argmax, expect)
        else:
            torch.testing.assert_close(pooled, ref.features.detach(), rtol=1e-5, atol=1e-5)
            assert argmax.numel() == 0
        grad = torch.randn(regions, channels, generator=gen, dtype=torch.float64).to(dtype)
        ref.features.backward(grad)
        got = emu.region_pool_backward(grad, ids, counts, argmax, n, code)
        torch.testing.assert_close(got, leaf.grad, rtol=1e-6, atol=1e-6)
    pooled, counts, argmax = emu.region_pool_forward(torch.zeros(0, 3, dtype=dtype),
                                                     torch.zeros(0, dtype=torch.int64), 4, 1)
    assert torch.equal(argmax, torch.full((4, 3), -1)) and not pooled.any() and not counts.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_project_pool(emu, dtype):
    from lidarcl.ops.pooling import project_pool_reference
    gen = torch.Generator().manual_seed(5)
    for sizes, cams in (([500, 0, 700], 4), ([300], 1), ([0, 0], 2)):
        pts, offsets, l2i, hw = _scene(gen, sizes, cams, dtype)
        sp = torch.randint(-1, 7, (len(sizes), cams, 75, 95), generator=gen)
        feats = torch.randn(pts.shape[0], 5, generator=gen, dtype=torch.float64).to(dtype)
        for md, mg in ((1.0, 1.0), (-2.0, -4.0)):
            ref = project_pool_reference(pts, offsets, l2i, hw, sp, 7, feats, md, mg)
            got = emu.project_pool(pts, offsets, l2i, hw, sp, 7, feats, md, mg)
            assert torch.equal(got[1], ref.counts)
            assert torch.equal(got[2], ref.pair_point)
            assert torch.equal(got[3], ref.pair_region)
            torch.testing.assert_close(got[0], ref.features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 10, 16])
def test_emulated_serialize(emu, depth):
    from lidarcl.ops.serialize import SERIALIZATION_ORDERS, serialize_reference
    gen = torch.Generator().manual_seed(6)
    coords = torch.randint(0, 1 << depth, (2000, 3), generator=gen)
    batch = torch.randint(0, 5, (2000,), generator=gen)
    batch[0] = (1 << (63 - 3 * depth)) - 1  # the largest batch index the key holds
    for code, name in enumerate(SERIALIZATION_ORDERS):
        assert torch.equal(emu.serialize(coords, batch, code, depth),
                           serialize_reference(coords, batch, name, depth)), name


def test_emulated_hilbert_is_a_face_adjacent_walk(emu):
    grid = torch.stack(torch.meshgrid(*[torch.arange(8)] * 3, indexing="ij"), -1).reshape(-1, 3)
    keys = emu.serialize(grid, torch.zeros(len(grid), dtype=torch.int64), 2, 3)
    assert torch.equal(keys.sort().values, torch.arange(512))
    walk = grid[keys.argsort()]
    assert bool(((walk[1:] - walk[:-1]).abs().sum(1) == 1).all())
