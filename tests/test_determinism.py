"""Repeatable runs (docs/reproducibility.md): each source of run-to-run variation found on
CPU, isolated, with the path that removes it; and whole seeded pretraining runs in the
deterministic mode, bit for bit, for a sparse U-Net method with regions and for PTv3."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REAL_DATA

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def deterministic_flag():
    """Restore PyTorch's deterministic-algorithms flag after the test."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


# ------------------------------------------------ source 1: advanced indexing backward (CPU)

def _indexing_gradient():
    """Gradient of ``(x[index] * w).sum()``: the backward of ``x[index]`` adds many rows into
    few (``index_put_`` with ``accumulate=True``), as every gather by a point -> voxel map
    in the models does."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 64, generator=generator, requires_grad=True)
    index = torch.randint(0, 16, (200_000,), generator=generator)
    weight = torch.randn(200_000, 64, generator=generator)
    (x[index] * weight).sum().backward()
    return x.grad


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs two or more CPU threads")
def test_indexing_backward_varies_unless_deterministic(deterministic_flag):
    """PyTorch's CPU kernel adds the rows with atomic float additions on its threads, so the
    order (and the last bits) depend on thread timing; under
    ``torch.use_deterministic_algorithms(True)``, which the deterministic mode sets, it sorts
    the indices and adds in a fixed order. A numpy float64 sum is the reference value."""
    torch.use_deterministic_algorithms(False)
    first = _indexing_gradient()
    varied = sum(not torch.equal(first, _indexing_gradient()) for _ in range(10))
    assert varied > 0, "the default kernel repeated 10 times: the source is not provoked"

    torch.use_deterministic_algorithms(True)
    first = _indexing_gradient()
    assert all(torch.equal(first, _indexing_gradient()) for _ in range(10))

    generator = torch.Generator().manual_seed(0)
    torch.randn(16, 64, generator=generator)
    index = torch.randint(0, 16, (200_000,), generator=generator).numpy()
    weight = torch.randn(200_000, 64, generator=generator).numpy().astype(np.float64)
    reference = np.zeros((16, 64))
    np.add.at(reference, index, weight)
    np.testing.assert_allclose(first.numpy(), reference, rtol=1e-4, atol=1e-3)


def test_other_scatter_ops_of_the_models_repeat_in_the_default_mode(deterministic_flag):
    """The scatter-type ops the models also use are deterministic on CPU without the mode
    (measured: none varied in 10 repeats), so the mode need not touch them."""
    torch.use_deterministic_algorithms(False)
    generator = torch.Generator().manual_seed(1)
    index = torch.randint(0, 16, (200_000,), generator=generator)
    source = torch.randn(200_000, 64, generator=generator)
    wide = index[:, None].expand(-1, 64)
    ops = {
        "index_add_": lambda: torch.zeros(16, 64).index_add_(0, index, source),
        "scatter_add_": lambda: torch.zeros(16, 64).scatter_add_(0, wide, source),
        "scatter_reduce_ mean": lambda: torch.zeros(16, 64).scatter_reduce_(0, wide, source,
                                                                           "mean"),
    }
    for name, op in ops.items():
        first = op()
        assert all(torch.equal(first, op()) for _ in range(5)), name


# ------------------------------------------------------------ source 2: open3d's RANSAC

@pytest.fixture(scope="module")
def real_low_points():
    path = sorted(glob.glob(os.path.join(REAL_DATA.nuscenes_root, "samples", "LIDAR_TOP",
                                         "*.bin")))
    if not path:
        pytest.skip(f"no real nuScenes frame under {REAL_DATA.nuscenes_root}")
    xyz = np.fromfile(path[0], np.float32).reshape(-1, 5)[:, :3].astype(np.float64)
    return xyz


def _plane_digest(plane, inliers) -> str:
    return hashlib.sha1(np.asarray(plane).tobytes() + np.asarray(inliers).tobytes()).hexdigest()


def _seeded_ransac(real_low_points):
    import open3d as o3d

    low = real_low_points[(real_low_points[:, 2] >= -3.0) & (real_low_points[:, 2] <= -0.5)]
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(low))

    def seeded_fit():
        o3d.utility.random.seed(0)
        return _plane_digest(*cloud.segment_plane(distance_threshold=0.2, ransac_n=3,
                                                  num_iterations=200))
    return seeded_fit


def test_open3d_threaded_ransac_varies_from_call_to_call(real_low_points):
    """The source this isolates: open3d's seeded RANSAC on its TBB threads returned
    different planes from call to call (issue 13). Whether 60 calls show it depends on the
    machine's thread timing: on one where they all agree, the test says so and skips (it
    cannot show the source there); the single-thread path below is tested everywhere."""
    import open3d as o3d

    if o3d.utility.get_max_threads() < 2:
        pytest.skip("open3d has one thread here: its RANSAC cannot vary by thread timing")
    seen = {_seeded_ransac(real_low_points)() for _ in range(60)}
    if len(seen) == 1:
        pytest.skip("open3d's threaded RANSAC gave one plane in 60 calls on this machine "
                    "(its thread timing did not vary them); the one-thread path is tested "
                    "by test_open3d_ransac_repeats_on_one_thread")
    assert len(seen) > 1


def test_open3d_ransac_repeats_on_one_thread(real_low_points):
    """``fit_ground_plane`` runs open3d's RANSAC on one thread and returns one plane, also
    in another process (the region cache must not depend on the run that filled it)."""
    import open3d as o3d

    from lidarcl.datasets.regions import fit_ground_plane, open3d_single_thread

    seeded_fit = _seeded_ransac(real_low_points)
    with open3d_single_thread(o3d):
        assert o3d.utility.get_max_threads() == 1
        assert len({seeded_fit() for _ in range(20)}) == 1
    assert o3d.utility.get_max_threads() >= 1  # the limit is lifted again

    planes = {_plane_digest(*fit_ground_plane(real_low_points)) for _ in range(10)}
    assert len(planes) == 1
    code = ("import sys, numpy as np, hashlib; sys.path.insert(0, sys.argv[1]);"
            "from lidarcl.datasets.regions import fit_ground_plane;"
            "xyz = np.load(sys.argv[2]); p, m = fit_ground_plane(xyz);"
            "print(hashlib.sha1(np.asarray(p).tobytes() + np.asarray(m).tobytes()).hexdigest())")
    np.save(os.path.join(os.environ.get("TMPDIR", "/tmp"), "lidarcl_real_xyz.npy"),
            real_low_points)
    other = subprocess.run([sys.executable, "-c", code, str(REPO),
                            os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                         "lidarcl_real_xyz.npy")],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert {other} == planes


# --------------------------------------------------------------------- the trace

def test_first_divergence_names_the_first_differing_part():
    from lidarcl.engine.determinism import first_divergence, tensor_digest

    a = torch.arange(6.0)
    b = a.clone()
    b[3] = float(np.nextafter(np.float32(3.0), np.float32(4.0)))  # one ulp
    assert tensor_digest(a) == tensor_digest(a.clone()) != tensor_digest(b)
    assert tensor_digest(a) != tensor_digest(a.double())  # the dtype is part of it
    names = np.array(["car", "pedestrian"], dtype=object)  # values, not their addresses
    assert tensor_digest(names) == tensor_digest(np.array(["car", "pedestrian"], dtype=object))
    assert tensor_digest(names) != tensor_digest(np.array(["car", "truck"], dtype=object))
    base = {"batch": {"points": "p"}, "grads": {"w": "g", "v": "h"}, "outputs": {"loss": 1.0},
            "state": {"w": "s"}}
    first = [dict(base, iter=0), dict(base, iter=1)]
    second = [dict(base, iter=0), dict(base, iter=1, grads={"w": "G", "v": "h"},
                                        state={"w": "S"})]
    assert first_divergence(first, first) is None
    assert first_divergence(first, second) == {"iter": 1, "part": "grads", "names": ["w"],
                                               "count": 1, "of": 2}


# ----------------------------------------------------- whole runs in the deterministic mode

def _pretrain(config: str, data_root: str, work_dir: Path, extra: list[str]):
    """Start ``tools/pretrain.py --deterministic --trace`` with its own region cache."""
    options = [f"train_dataloader.dataset.data_root={data_root}/",
               "train_cfg.max_iters=2", "train_dataloader.batch_size=2",
               "default_hooks.checkpoint.interval=2", "model.backbone.voxel_size=0.6",
               f"train_dataloader.dataset.pipeline.2.cache_dir={work_dir / 'regions'}",
               *extra]
    return subprocess.Popen([sys.executable, str(REPO / "tools" / "pretrain.py"),
                             str(REPO / "configs" / "pretrain" / f"{config}.py"),
                             "--work-dir", str(work_dir), "--deterministic", "--trace",
                             "--allow-new-keys", "--cfg-options", *options],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("config, extra", [
    ("fac_minkunet34_synth", ["model.num_anchors=256", "model.backbone.stem_channels=16",
                              "model.backbone.planes=[16,32,64,64,64,64,48,48]"]),
    ("prc_ptv3_synth", ["model.backbone.enc_patch_size=[128,128,128,128,128]",
                        "model.backbone.dec_patch_size=[128,128,128,128]",
                        "model.backbone.enc_depths=[1,1,1,1,1]",
                        "model.backbone.enc_channels=[32,64,64,128,128]",
                        "model.backbone.enc_num_heads=[2,4,4,8,8]",
                        "model.backbone.dec_depths=[1,1,1,1]",
                        "model.backbone.dec_channels=[64,64,64,128]",
                        "model.backbone.dec_num_heads=[4,4,4,8]"]),
])
def test_deterministic_runs_write_identical_checkpoints(config, extra, tiny_dataset, tmp_path):
    """Two seeded runs at once (so that they load the CPU as a shared machine does), each
    computing its own regions, write bit-identical checkpoints; their traces agree at every
    iteration (data batch, gradients, weights). The backbones are narrowed (every block
    type and stage kept, fewer channels and blocks; the same code paths): a FAC / PTv3 run
    alone takes 15 / 22 s instead of 22 / 32 s and writes a 72 / 36 MB checkpoint instead
    of 0.6 GB."""
    sys.path.insert(0, str(REPO / "tools"))
    import compare_runs

    runs = [_pretrain(config, tiny_dataset, tmp_path / name, extra) for name in "ab"]
    for run in runs:
        output = run.communicate(timeout=900)[0]
        assert run.returncode == 0, output[-3000:]
    for name in "ab":
        records = [json.loads(line) for line in (tmp_path / name / "trace.jsonl").open()]
        assert [r["iter"] for r in records] == [0, 1]
        assert records[0]["grads"] and records[0]["state"] and records[0]["batch"]
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
