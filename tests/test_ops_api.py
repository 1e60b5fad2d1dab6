"""The public ops run the reference, with one warning per op, while lidarcl._C is absent."""
import warnings

import pytest
import torch

import lidarcl.ops as ops
from lidarcl.ops._extension import compiled


@pytest.mark.skipif(compiled() is not None, reason="compiled kernels present")
def test_public_ops_fall_back_to_reference_with_one_warning():
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
