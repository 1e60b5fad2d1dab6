"""Build lidarcl and, when csrc/ holds kernels, the compiled extension ``lidarcl._C``.

CPU kernels (``csrc/**/*.cpp``) are always built; CUDA kernels (``csrc/**/*.cu``) are added
when torch is a CUDA build and a CUDA toolkit is found (or ``LIDARCL_WITH_CUDA=1``).
Build with ``pip install --no-build-isolation -e .`` so the extension links against the
torch already installed (a build-isolated install would fetch another torch).
"""
import glob
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

INSTALL_REQUIRES = [
    "torch>=2.1",
    "spconv-cu120>=2.3.6",
    "open3d>=0.20",  # set_max_threads: one-thread, repeatable RANSAC (regions.py)
    "nuscenes-devkit>=1.1.11",
    "numba>=0.58",
    # mmengine-lite: mmengine's API without opencv-python, which would overwrite the
    # opencv-python-headless that nuscenes-devkit installs into the same cv2/ folder.
    "mmengine-lite>=0.10.4",
    "numpy>=1.24,<2",  # nuscenes-devkit needs numpy < 2
    "pillow",
    "matplotlib",
    "scikit-image",
]


def extension_modules():
    cpp = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cuda = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    if not cpp:
        return [], {}
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    import torch

    with_cuda = os.environ.get("LIDARCL_WITH_CUDA")
    use_cuda = (with_cuda == "1") or (with_cuda is None and torch.version.cuda is not None
                                      and CUDA_HOME is not None)
    # -ffp-contract=off: no fused multiply-add, so the projection selects exactly the points
    # of the pure-PyTorch reference (csrc/ops.h); -fopenmp: at::parallel_for is OpenMP here.
    cxx = ["-O3", "-std=c++20", "-ffp-contract=off", "-fopenmp"]
    link = ["-fopenmp"]
    if use_cuda and cuda:
        ext = CUDAExtension("lidarcl._C", cpp + cuda, define_macros=[("WITH_CUDA", None)],
                            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-std=c++17"]},
                            extra_link_args=link)
    else:
        ext = CppExtension("lidarcl._C", cpp, extra_compile_args={"cxx": cxx},
                           extra_link_args=link)
    import shutil
    import sys

    # ninja compiles the sources in parallel (tools/setup_env.sh installs it into the venv,
    # whose bin/ is not on PATH when pip is run as .venv/bin/python -m pip)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    use_ninja = shutil.which("ninja") is not None
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=use_ninja)}


ext_modules, cmdclass = extension_modules()

setup(
    name="lidarcl",
    version="0.1.0",
    description="Self-supervised pretraining for LiDAR and camera-LiDAR perception",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lidarcl", "lidarcl.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
