"""Dispatch of the public ops: the compiled kernels when lidarcl._C is built, otherwise the
reference with one warning per op."""
import warnings

import pytest
import torch

import lidarcl.ops as ops
from lidarcl.ops._extension import compiled


def test_public_ops_fall_back_to_reference_with_one_warning(monkeypatch):
    monkeypatch.setattr(ops, "compiled", lambda: None)  # as if the extension were not built
    points = torch.tensor([[10.0, 0.0, 0.0], [20.0, 1.0, 0.5]])
    lidar2cam = torch.tensor([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    cam2img = torch.tensor([[100, 0, 50, 0], [0, 100, 40, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    lidar2img = (cam2img @ lidar2cam)[None]
    hw = torch.tensor([[80, 100]])
    ops._extension.warn_reference_fallback.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ops.project_points(points, lidar2img, hw)
        second = ops.project_points(points, lidar2img, hw)
    assert sum("project_points" in str(w.message) for w in caught) == 1
    # hand-computed: (10, 0, 0) -> (50, 40); (20, 1, 0.5) -> (50 - 5, 40 - 2.5)
    assert first.point_index.tolist() == [0, 1] == second.point_index.tolist()
    torch.testing.assert_close(first.uv, torch.tensor([[50.0, 40.0], [45.0, 37.5]]))
    torch.testing.assert_close(first.depth, torch.tensor([10.0, 20.0]))


@pytest.mark.skipif(compiled() is None, reason="lidarcl._C not built")
def test_kernels_run_without_fallback_warning():
    points = torch.tensor([[10.0, 0.0, 0.0], [20.0, 1.0, 0.5]])
    lidar2cam = torch.tensor([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    cam2img = torch.tensor([[100, 0, 50, 0], [0, 100, 40, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    lidar2img = (cam2img @ lidar2cam)[None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ops.project_points(points, lidar2img, torch.tensor([[80, 100]]))
        pooled = ops.region_pool(torch.ones(3, 2), torch.tensor([0, 0, 1]), 3)
        keys = ops.serialize(torch.tensor([[1, 2, 3]]), torch.tensor([0]), "z", 2)
    assert res.point_index.tolist() == [0, 1]
    torch.testing.assert_close(res.uv, torch.tensor([[50.0, 40.0], [45.0, 37.5]]))
    assert pooled.counts.tolist() == [2, 1, 0]
    assert keys.tolist() == [29]  # hand-computed in tests/test_ops_serialize.py


def test_half_precision_falls_back_to_reference(monkeypatch):
    ops._extension.warn_reference_fallback.cache_clear()
    features = torch.arange(6, dtype=torch.float16).reshape(3, 2)
    with pytest.warns(RuntimeWarning, match="region_pool"):
        out = ops.region_pool(features, torch.tensor([1, 1, -1]), 2)
    assert out.features.dtype == torch.float16
    assert out.features.tolist() == [[0.0, 0.0], [1.0, 2.0]]


def test_extension_is_built():
    """The README install builds lidarcl._C; without it the kernel tests would skip and only
    the references would run."""
    ext = compiled()
    assert ext is not None, "lidarcl._C missing: run `pip install --no-build-isolation -e .`"
    assert ext.with_cuda() in (True, False)
