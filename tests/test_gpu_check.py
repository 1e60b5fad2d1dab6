"""tools/gpu_check.sh (the one-shot GPU check of issue 12) without a GPU: its dry run checks
the prerequisites, prints the steps, runs the GPU tests (collected, skipped here) and a tiny
CPU benchmark, and writes its report; a full run on a machine without a GPU stops at the
prerequisites with a clear message and a non-zero exit, before building anything."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not found")


def run_check(*args, env=None, timeout=400):
    full_env = dict(os.environ, PYTHON=sys.executable)
    full_env.update(env or {})
    return subprocess.run(["bash", SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "out"
    proc = run_check("--dry-run", str(out))
    return proc, out


def test_dry_run_passes_and_writes_its_report(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(os.listdir(out))
    assert names == sorted(["summary.txt", "env.txt", "build.log", "pytest.txt", "junit.xml",
                            "benchmark.txt", "benchmark.json"])
    # what the device tool brings back: at most 8 plain files with plain names
    assert len(names) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    summary = (out / "summary.txt").read_text()
    assert "dry run" in summary and "RESULT: PASS" in summary
    for step in ("prerequisites PASS", "build         DRY", "tests         PASS",
                 "benchmark     PASS"):
        assert step in summary, summary
    # the build it would run: CUDA forced, arch limited to the GPU, parallel jobs, in place
    build = (out / "build.log").read_text()
    for part in ("LIDARCL_WITH_CUDA=1", "TORCH_CUDA_ARCH_LIST=", "MAX_JOBS=",
                 "setup.py build_ext --inplace"):
        assert part in build and part in summary
    env = (out / "env.txt").read_text()
    assert f"torch {torch.__version__}" in env and "nvidia-smi" in env and "nvcc" in env


def test_dry_run_collects_the_gpu_and_determinism_tests(dry_run):
    proc, out = dry_run
    root = ET.parse(out / "junit.xml").getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = sum(int(s.get("tests")) for s in suites)
    skipped = sum(int(s.get("skipped")) for s in suites)
    failures = sum(int(s.get("failures")) + int(s.get("errors")) for s in suites)
    assert tests >= 40 and failures == 0
    if not torch.cuda.is_available():
        assert skipped == tests
    names = {case.get("name").split("[")[0] for case in root.iter("testcase")}
    for name in ("test_region_pool_bits_twice_side_stream_and_cpu",
                 "test_project_pool_bits_id_dtypes_twice_and_cpu",
                 "test_voxelize_canonical_permutation_bit_identical",
                 "test_deterministic_mode_pools_and_rejects_atomic_gather_backward",
                 "test_atomic_pooling_opt_in", "test_empty_inputs",
                 "test_direct_calls_check_values_on_cuda"):
        assert name in names
        assert name in (out / "pytest.txt").read_text()


def test_dry_run_benchmark_times_both_pooling_modes_without_heavy_imports(dry_run):
    proc, out = dry_run
    text = (out / "benchmark.txt").read_text()
    assert "imports blocked" in text and "blocked import" not in text
    assert "deterministic (default) vs atomic opt-in" in text
    report = json.loads((out / "benchmark.json").read_text())
    assert report["workload"] == "synthetic" and report["size"] == "tiny"
    for workload in report["workloads"].values():
        modes = workload["pooling_modes"]
        assert {"region_pool mean (pixel rows)", "region_pool sum (pixel rows)",
                "project_pool (point pool)", "voxelize 0.1 m, canonical=True"} <= set(modes)
        for row in modes.values():
            assert row["deterministic_ms"] > 0 and row["atomic_ms"] > 0
            assert row["deterministic_repeat_identical"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the full run would run")
def test_full_run_without_gpu_fails_fast_and_clearly(tmp_path):
    proc = run_check(str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 1
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "prerequisites FAIL" in summary and "RESULT: FAIL" in summary
    assert "no CUDA GPU visible" in summary or "not a CUDA build" in summary
    assert "not building or testing" in summary
    assert not (tmp_path / "out" / "build.log").exists()


def test_usage_errors_and_missing_python(tmp_path):
    assert run_check(timeout=30).returncode == 2
    assert run_check("--bogus", str(tmp_path), timeout=30).returncode == 2
    proc = run_check("--dry-run", str(tmp_path / "out"), env={"PYTHON": "/nonexistent/python"},
                     timeout=30)
    assert proc.returncode == 1
    assert "python '/nonexistent/python' not found" in (tmp_path / "out" / "summary.txt"
                                                         ).read_text()
