"""Build checks of the CUDA kernels that run without a GPU (and without a CUDA build of torch).

* every ``csrc/cuda/*.cu`` compiles alone with ``nvcc -c`` (they include no torch header);
* ``projection.cu`` holds no fused multiply-add (the rounding rule of ``csrc/ops.h``);
* the ATen glue ``csrc/cuda/ops_cuda.cpp`` passes ``g++ -fsyntax-only -DWITH_CUDA`` against
  the ATen/c10 CUDA headers shipped in torch's wheel, and compiles to nothing without
  ``WITH_CUDA`` (setup.py compiles every ``.cpp``, CPU builds included);
* link: ``ops_cuda.cpp`` compiled to an object (g++ -c against those headers) needs no
  ``lidarcl::cuda`` launcher that the ``.cu`` objects do not define, and the ``.cu``
  objects link into one shared object with ``nvcc -shared``;
* host emulation: the kernels, compiled as plain C++ with a few lines of CUDA stand-ins
  (intrinsics, atomics, a sequential grid of 3 x 5 "threads" driving the grid-stride
  loops), run behind the real ``ops_cuda.cpp`` on CPU tensors and are compared with the
  pure-PyTorch references and, for the deterministic pooling, bit for bit with the CPU
  kernels of ``lidarcl._C`` (also under permutations of the rows and through
  ``voxelize(canonical=True)``). This checks the kernels' logic (orderings, scans, sorts,
  keys, Hilbert curve, clamps, arithmetic, summation order), not concurrency; the grid's
  schedule does reorder the opt-in atomic sums, which the tests use to show they would
  see an order change. ``tests/test_ops_gpu.py`` checks the real thing on a GPU.

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
            "pooling.cu", "serialize.cu", "boxes.cu"]
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


@pytest.fixture(scope="module")
def cu_objects(tmp_path_factory):
    """Every .cu compiled once with nvcc -c (position-independent, for the link test):
    {path: (returncode, output, object path)}."""
    if _nvcc() is None:
        pytest.skip("nvcc not found")
    work = tmp_path_factory.mktemp("cu_objects")
    out = {}
    for path in CU_FILES:
        obj = work / (os.path.basename(path) + ".o")
        proc = _run([_nvcc(), "-c", "-arch=sm_80", "-std=c++17", "-O2", "-Xcompiler", "-fPIC",
                     "-o", str(obj), path])
        out[path] = (proc.returncode, proc.stderr + proc.stdout, obj)
    return out


@requires_nvcc
@pytest.mark.parametrize("path", CU_FILES, ids=os.path.basename)
def test_cu_file_compiles_alone(path, cu_objects):
    code, output, obj = cu_objects[path]
    assert code == 0, f"nvcc failed on {path}:\n{output}"
    assert obj.stat().st_size > 0


@requires_nvcc
@pytest.mark.parametrize("name", ["projection.cu", "pooling.cu"])
def test_ptx_has_no_fused_multiply_add(tmp_path, name):
    """Projection, visibility and pooling arithmetic uses __fmul_rn/__fadd_rn/...: no fma
    may appear (nvcc contracts a*b + c into fma by default, which would change selections
    and the pooled sums' bits)."""
    ptx = tmp_path / (name + ".ptx")
    proc = _run([_nvcc(), "-ptx", "-arch=sm_80", "-std=c++17", "-O3", "-o", str(ptx),
                 os.path.join(CUDA_DIR, name)])
    assert proc.returncode == 0, proc.stderr
    text = ptx.read_text()
    assert "div.rn.f32" in text and "div.rn.f64" in text
    if name == "projection.cu":
        assert "mul.rn.f64" in text
    else:  # the segmented sums: one rounded add per row
        assert "add.rn.f32" in text and "add.rn.f64" in text
    assert re.search(r"\bfma\.", text) is None


def _torch_flags():
    from torch.utils.cpp_extension import include_paths
    flags = [f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    for path in include_paths():
        flags += ["-isystem", path]
    flags += ["-I", sysconfig.get_paths()["include"]]
    return flags


@pytest.fixture(scope="module")
def glue_object(tmp_path_factory):
    """ops_cuda.cpp compiled with -DWITH_CUDA against torch's shipped ATen/c10 CUDA headers
    (g++ -c -O0): (returncode, stderr, object path)."""
    if shutil.which("g++") is None or _nvcc() is None or _cuda_include() is None:
        pytest.skip("g++ / nvcc / CUDA headers not found")
    obj = tmp_path_factory.mktemp("glue") / "ops_cuda.o"
    # C10_CUDA_NO_CMAKE_CONFIGURE_FILE: the CPU wheel lacks the generated
    # c10/cuda/impl/cuda_cmake_macros.h (it only defines C10_CUDA_BUILD_SHARED_LIBS, which
    # matters on Windows); a CUDA build of torch ships it.
    cmd = (["g++", "-c", "-O0", "-fPIC", "-std=c++17", "-DWITH_CUDA",
            "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE"] + _torch_flags()
           + ["-isystem", _cuda_include(), "-I", "csrc", "-o", str(obj),
              "csrc/cuda/ops_cuda.cpp"])
    proc = _run(cmd)
    return proc.returncode, proc.stderr, obj


@requires_gxx
@requires_cuda_headers
def test_glue_compiles_with_cuda(glue_object):
    code, err, obj = glue_object
    assert code == 0, f"g++ -c -DWITH_CUDA ops_cuda.cpp failed:\n{err}"
    assert obj.stat().st_size > 0


def _symbols(obj, defined: bool) -> set[str]:
    flag = "--defined-only" if defined else "--undefined-only"
    proc = _run(["nm", "-C", flag, str(obj)])
    assert proc.returncode == 0, proc.stderr
    names = set()
    for line in proc.stdout.splitlines():
        parts = line.split(None, 2) if defined else line.split(None, 1)
        if parts:
            names.add(parts[-1].strip())
    return names


@requires_gxx
@requires_cuda_headers
@pytest.mark.skipif(shutil.which("nm") is None, reason="nm not found")
def test_glue_links_against_the_kernels(glue_object, cu_objects, tmp_path):
    """Every lidarcl::cuda launcher the glue calls (the new segment_pool / scatter_pool /
    id-templated project_pool ones included) is defined by exactly the .cu objects, and the
    .cu objects link together."""
    code, err, glue = glue_object
    assert code == 0, err
    objects = [obj for rc, _, obj in cu_objects.values()]
    assert all(rc == 0 for rc, _, _ in cu_objects.values())
    needed = {name for name in _symbols(glue, defined=False)
              if name.startswith("lidarcl::cuda::") or "lidarcl::cuda::" in name}
    for expected in ("segment_pool<float>", "segment_pool<double>", "scatter_pool<float>",
                     "region_pool_max_atomic<double>", "project_pool_flags<float, short>",
                     "project_pool_compact<double, unsigned char>",
                     "project_pool_flags<double, long>", "project_pool_compact<float, int>"):
        assert any(expected in name for name in needed), (expected, sorted(needed))
    defined = set().union(*(_symbols(obj, defined=True) for obj in objects))
    missing = sorted(needed - defined)
    assert not missing, f"launchers the glue needs but no .cu defines: {missing}"
    lib = tmp_path / "libkernels.so"
    proc = _run([_nvcc(), "-shared", "-arch=sm_80", "-o", str(lib)] + [str(o) for o in objects])
    assert proc.returncode == 0, proc.stderr


@requires_gxx
def test_bindings_syntax_with_cuda():
    """bindings.cpp as a CUDA build compiles it (-DWITH_CUDA: the CUDA dispatch, the
    `atomic` arguments of region_pool_forward / project_pool)."""
    cmd = (["g++", "-fsyntax-only", "-std=c++17", "-DWITH_CUDA", "-DTORCH_EXTENSION_NAME=_C"]
           + _torch_flags() + ["csrc/bindings.cpp"])
    proc = _run(cmd)
    assert proc.returncode == 0, f"g++ -DWITH_CUDA bindings.cpp failed:\n{proc.stderr}"


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
        namespace py = pybind11;
        PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
          m.def("project_points", &lidarcl::project_points_cuda);
          m.def("visibility", &lidarcl::visibility_cuda);
          m.def("gather_forward", &lidarcl::gather_forward_cuda);
          m.def("gather_backward", &lidarcl::gather_backward_cuda);
          m.def("region_pool_forward", &lidarcl::region_pool_forward_cuda, py::arg("features"),
                py::arg("region_ids"), py::arg("num_regions"), py::arg("reduce"),
                py::arg("atomic") = false);
          m.def("region_pool_backward", &lidarcl::region_pool_backward_cuda);
          m.def("project_pool", &lidarcl::project_pool_cuda, py::arg("points"),
                py::arg("offsets"), py::arg("lidar2img"), py::arg("image_hw"),
                py::arg("superpixels"), py::arg("num_superpixels"), py::arg("features"),
                py::arg("min_depth"), py::arg("margin"), py::arg("atomic") = false);
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
        cpu = _cpu_kernels().region_pool_forward(feats, ids, regions, code)
        assert_bits(pooled, cpu[0])  # the deterministic segmented reduction: the CPU's bits
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
            cpu = _cpu_kernels().project_pool(pts, offsets, l2i, hw, sp, 7, feats, md, mg)
            for name, a, b in zip(("pooled", "counts", "pair_point", "pair_region"), got, cpu):
                assert_bits(a, b, name)


def _cpu_kernels():
    from lidarcl.ops._extension import compiled
    ext = compiled()
    if ext is None:
        pytest.skip("lidarcl._C (CPU kernels) not built")
    return ext


def assert_bits(got, expect, name=""):
    """Same dtype, shape and bits (NaN payloads and the sign of zeros included)."""
    assert got.dtype == expect.dtype and got.shape == expect.shape, name
    if got.is_floating_point():
        width = {torch.float32: torch.int32, torch.float64: torch.int64}[got.dtype]
        assert torch.equal(got.contiguous().view(width), expect.contiguous().view(width)), name
    else:
        assert torch.equal(got, expect), name


def _pool_case(gen, dtype, n=600, channels=5, regions=37):
    """Rows with wide magnitudes (the sums' bits depend on the order), ties, -0 / +0, NaN,
    inf, rows of no region and regions left empty."""
    feats = (torch.randn(n, channels, generator=gen, dtype=torch.float64)
             * torch.logspace(-3, 4, n, dtype=torch.float64)[torch.randperm(n, generator=gen)
                                                            ][:, None]).to(dtype)
    feats[::11] = torch.randint(-2, 3, (len(range(0, n, 11)), channels), generator=gen
                                ).to(dtype)
    feats[5, 1], feats[6, 2], feats[7, 0] = -0.0, float("nan"), float("-inf")
    ids = torch.randint(-1, regions - 4, (n,), generator=gen)
    return feats, ids, regions


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce", [0, 1, 2], ids=["mean", "max", "sum"])
def test_emulated_deterministic_pool_is_bit_identical_to_cpu(emu, dtype, reduce):
    """The default CUDA pooling adds each region's rows in ascending row order from 0, like
    csrc/cpu/region_pool.cpp: same bits, for the rows in any order (each permutation
    compared with the CPU kernel on the same permuted input)."""
    cpu = _cpu_kernels()
    gen = torch.Generator().manual_seed(11)
    feats, ids, regions = _pool_case(gen, dtype)
    for trial in range(4):
        perm = torch.randperm(len(ids), generator=gen) if trial else torch.arange(len(ids))
        f, i = feats[perm].contiguous(), ids[perm].contiguous()
        got = emu.region_pool_forward(f, i, regions, reduce)
        expect = cpu.region_pool_forward(f, i, regions, reduce)
        for name, a, b in zip(("pooled", "counts", "argmax"), got, expect):
            assert_bits(a, b, f"{name}, trial {trial}")
        again = emu.region_pool_forward(f, i, regions, reduce)
        for a, b in zip(got, again):
            assert_bits(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_atomic_pool_is_opt_in_and_only_without_deterministic_mode(emu, dtype):
    """atomic=True takes the float-atomic kernels, whose additions follow the (emulated)
    schedule: close to the CPU but, for float32 sums, not its bits (which shows that the
    bit-identity checks above would see a change of summation order). Under
    torch.use_deterministic_algorithms(True) the request is ignored: the CPU's bits again."""
    cpu = _cpu_kernels()
    gen = torch.Generator().manual_seed(12)
    feats = torch.randn(2000, 4, generator=gen, dtype=torch.float64).to(dtype)
    ids = torch.randint(-1, 9, (2000,), generator=gen)
    expect = cpu.region_pool_forward(feats, ids, 9, 2)[0]
    atomic = emu.region_pool_forward(feats, ids, 9, 2, atomic=True)[0]
    torch.testing.assert_close(atomic, expect, rtol=1e-5, atol=1e-4)
    if dtype == torch.float32:
        assert not torch.equal(atomic, expect)
    for code in (0, 1):
        a = emu.region_pool_forward(feats, ids, 9, code, atomic=True)
        b = cpu.region_pool_forward(feats, ids, 9, code)
        assert torch.equal(a[1], b[1])
        torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)
        if code == 1:  # max: integer atomics on ordered keys, exact
            assert_bits(a[0], b[0])
            assert torch.equal(a[2], b[2])
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        for code in (0, 2):
            got = emu.region_pool_forward(feats, ids, 9, code, atomic=True)
            assert_bits(got[0], cpu.region_pool_forward(feats, ids, 9, code)[0])
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_pool_empty_inputs(emu, dtype):
    cpu = _cpu_kernels()
    long = torch.int64
    cases = [(torch.zeros(0, 3, dtype=dtype), torch.zeros(0, dtype=long), 4),  # no rows
             (torch.ones(5, 3, dtype=dtype), torch.full((5,), -1), 4),        # no members
             (torch.ones(5, 3, dtype=dtype), torch.full((5,), -1), 0),        # no regions
             (torch.ones(5, 0, dtype=dtype), torch.tensor([0, 1, -1, 1, 0]), 3)]  # no channel
    for feats, ids, regions in cases:
        for code in (0, 1, 2):
            for atomic in (False, True):
                got = emu.region_pool_forward(feats, ids, regions, code, atomic=atomic)
                expect = cpu.region_pool_forward(feats, ids, regions, code)
                for a, b in zip(got, expect):
                    assert_bits(a, b, (tuple(feats.shape), regions, code, atomic))
            grad = torch.ones(regions, feats.shape[1], dtype=dtype)
            got = emu.region_pool_backward(grad, ids, expect[1], expect[2], len(ids), code)
            assert_bits(got, cpu.region_pool_backward(grad, ids, expect[1], expect[2],
                                                      len(ids), code))


class _EmulatedExtension:
    """lidarcl._C with region pooling served by the emulated CUDA kernels (CPU tensors)."""

    def __init__(self, emu, cpu):
        self._emu, self._cpu = emu, cpu

    def __getattr__(self, name):
        return getattr(self._cpu, name)

    def with_cuda(self):
        return True

    def region_pool_forward(self, *args, **kwargs):
        return self._emu.region_pool_forward(*args, **kwargs)

    def region_pool_backward(self, *args):
        return self._emu.region_pool_backward(*args)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
def test_emulated_voxelize_canonical_is_permutation_invariant(emu, monkeypatch, dtype, reduce):
    """voxelize(canonical=True) with its pooling on the emulated CUDA kernels: the same bits
    for any permutation of the input points, and the CPU kernels' bits. With
    canonical=False the order of the points does change the sums (the check is sensitive)."""
    import lidarcl.ops as ops
    cpu = _cpu_kernels()
    gen = torch.Generator().manual_seed(13)
    n = 3000
    centres = torch.randn(40, 3, generator=gen, dtype=torch.float64) * 4
    points = torch.cat([centres[torch.randint(0, 40, (n,), generator=gen)]
                        + torch.randn(n, 3, generator=gen, dtype=torch.float64) * 0.3,
                        torch.randn(n, 2, generator=gen, dtype=torch.float64) * 1e3], 1)
    points = points.to(dtype)
    offsets = torch.tensor([1800, n])
    expect = ops.voxelize(points, offsets, 0.5, reduce=reduce)  # CPU kernels
    monkeypatch.setattr(ops, "compiled", lambda: _EmulatedExtension(emu, cpu))
    base = ops.voxelize(points, offsets, 0.5, reduce=reduce)
    assert int(base.counts.max()) > 5 and len(base.counts) > 50
    assert_bits(base.features, expect.features)
    assert torch.equal(base.coords, expect.coords)
    plain_differs = False
    for _ in range(3):
        # permute within each sample (offsets unchanged)
        perm = torch.cat([torch.randperm(1800, generator=gen),
                          1800 + torch.randperm(n - 1800, generator=gen)])
        got = ops.voxelize(points[perm], offsets, 0.5, reduce=reduce)
        assert torch.equal(got.coords, base.coords)
        assert torch.equal(got.counts, base.counts)
        assert_bits(got.features, base.features)
        assert torch.equal(got.point_to_voxel[torch.argsort(perm)], base.point_to_voxel)
        plain = ops.voxelize(points[perm], offsets, 0.5, reduce=reduce, canonical=False)
        plain_differs |= not torch.equal(plain.features, base.features)
    if reduce != "max":
        assert plain_differs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_emulated_project_pool_id_dtypes_and_bad_ids(emu, dtype, id_dtype):
    """Superpixel maps read in their own integer type: the CPU kernel's bits for each id
    dtype; an invalid id under a projected point raises like the CPU kernel."""
    cpu = _cpu_kernels()
    gen = torch.Generator().manual_seed(14)
    pts, offsets, l2i, hw = _scene(gen, [2000, 1200], 3, dtype)
    low = 0 if id_dtype == torch.uint8 else -1
    sp = torch.randint(low, 9, (2, 3, 75, 95), generator=gen).to(id_dtype)
    feats = torch.randn(pts.shape[0], 6, generator=gen, dtype=torch.float64).to(dtype)
    got = emu.project_pool(pts, offsets, l2i, hw, sp, 9, feats, 1.0, 1.0)
    expect = cpu.project_pool(pts, offsets, l2i, hw, sp, 9, feats, 1.0, 1.0)
    assert got[2].numel() > 300
    for name, a, b in zip(("pooled", "counts", "pair_point", "pair_region"), got, expect):
        assert_bits(a, b, name)
    atomic = emu.project_pool(pts, offsets, l2i, hw, sp, 9, feats, 1.0, 1.0, atomic=True)
    assert torch.equal(atomic[1], expect[1]) and torch.equal(atomic[3], expect[3])
    torch.testing.assert_close(atomic[0], expect[0], rtol=1e-5, atol=1e-5)
    bad_values = [9, 200] + ([] if id_dtype == torch.uint8 else [-2, -7])
    for bad in bad_values:
        bad_map = sp.clone()
        bad_map[:, :, 20:60, 20:80] = bad  # under many projected points
        with pytest.raises(RuntimeError, match=f"superpixels: id {bad} read under"):
            emu.project_pool(pts, offsets, l2i, hw, bad_map, 9, feats, 1.0, 1.0)
        with pytest.raises(RuntimeError, match=f"superpixels: id {bad} read under"):
            cpu.project_pool(pts, offsets, l2i, hw, bad_map, 9, feats, 1.0, 1.0)
    # no points, no pairs: zeros and empty pairs
    none = emu.project_pool(pts[:0], torch.zeros(2, dtype=torch.int64), l2i, hw, sp, 9,
                            feats[:0], 1.0, 1.0)
    assert none[0].shape == (2 * 3 * 9, 6) and not none[0].any() and not none[1].any()
    assert none[2].numel() == 0 and none[3].numel() == 0


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
