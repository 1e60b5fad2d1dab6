"""Pure-PyTorch references of the point-pixel ops (lidarcl/ops/projection.py, gather.py),
checked against independent references: nuscenes-devkit's ``map_pointcloud_to_image`` on
the real keyframe, the numpy ``lidarcl.structures.camera.points_to_image``, hand-computed
bilinear values and ``torch.nn.functional.grid_sample``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REAL_DATA
from lidarcl.ops.gather import gather_pixel_features_reference
from lidarcl.ops.projection import (BatchedProjectionResult, ProjectionResult,
                                    project_points_batched_reference,
                                    project_points_reference, visibility_reference)
from lidarcl.structures.camera import points_to_image

NUS_ROOT = REAL_DATA.nuscenes_root
VERSION = "v1.0-mini"
CHANNELS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
            "CAM_BACK_RIGHT")


# ------------------------------------------------------------------ helpers
def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def random_cameras(rng, num_cams: int):
    """(lidar2img (K, 4, 4), image_hw (K, 2)) with random poses and intrinsics."""
    mats, sizes = [], []
    for _ in range(num_cams):
        h, w = int(rng.integers(50, 400)), int(rng.integers(50, 600))
        f = rng.uniform(0.5, 1.5) * w
        intr = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
        lidar2cam = np.eye(4)
        lidar2cam[:3, :3] = _rotation(rng)
        lidar2cam[:3, 3] = rng.normal(scale=1.0, size=3)
        cam2img = np.eye(4)
        cam2img[:3, :3] = intr
        mats.append(cam2img @ lidar2cam)
        sizes.append((h, w))
    return np.stack(mats), np.array(sizes, dtype=np.int64)


def numpy_reference(points, lidar2img, image_hw, min_depth=1.0, margin=1.0):
    """Pairs ordered by camera then point from the numpy per-camera helper."""
    out = {"point_index": [], "camera_index": [], "uv": [], "depth": []}
    for k in range(len(lidar2img)):
        idx, uv, depth = points_to_image(points, lidar2img[k], tuple(image_hw[k]),
                                         min_depth, margin)
        out["point_index"].append(idx)
        out["camera_index"].append(np.full(len(idx), k))
        out["uv"].append(uv.reshape(-1, 2))
        out["depth"].append(depth)
    return {key: np.concatenate(val) if val else np.zeros(0) for key, val in out.items()}


def assert_results_equal(a, b):
    assert type(a) is type(b)
    for name, x, y in zip(a._fields, a, b):
        assert x.dtype == y.dtype, name
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


# ------------------------------------------------------------------ real nuScenes frame
@pytest.fixture(scope="module")
def real_frame(tmp_path_factory):
    REAL_DATA.require_nuscenes(shipped=True)  # frame.json and 34,688 points
    pytest.importorskip("nuscenes", reason="nuscenes-devkit is not installed")
    from nuscenes.nuscenes import NuScenes, NuScenesExplorer

    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    out = tmp_path_factory.mktemp("ops_infos")
    paths = create_nuscenes_infos(str(NUS_ROOT), VERSION, str(out))
    infos = []
    for path in paths:
        infos += read_info_index(path, dataset="nuscenes")[0]
    info = infos[0]
    frame = json.loads((NUS_ROOT / "frame.json").read_text())
    points = np.fromfile(NUS_ROOT / frame["lidar_file"], dtype=np.float32).reshape(-1, 5)
    nusc = NuScenes(version=VERSION, dataroot=str(NUS_ROOT), verbose=False)
    explorer = NuScenesExplorer(nusc)
    devkit = {}
    for ch in CHANNELS:
        pts, depth, _ = explorer.map_pointcloud_to_image(info["nuscenes"]["lidar_token"],
                                                         info["cams"][ch]["sample_data_token"])
        devkit[ch] = (pts[:2].T, depth)
    lidar2img = np.stack([np.array(info["cams"][ch]["lidar2img"]) for ch in CHANNELS])
    image_hw = np.array([(info["cams"][ch]["height"], info["cams"][ch]["width"])
                         for ch in CHANNELS])
    return points, lidar2img, image_hw, devkit


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_real_frame_matches_devkit(real_frame, dtype):
    points, lidar2img, image_hw, devkit = real_frame
    res = project_points_reference(torch.from_numpy(points).to(dtype),
                                   torch.from_numpy(lidar2img), torch.from_numpy(image_hw))
    assert res.uv.dtype == dtype and res.depth.dtype == dtype
    assert len(points) == 34688
    for k, ch in enumerate(CHANNELS):
        sel = res.camera_index == k
        dev_uv, dev_depth = devkit[ch]
        # the devkit keeps points in file order; so do we within a camera: the i-th kept
        # point must be the same point on both sides (same pixel, same depth)
        assert int(sel.sum()) == len(dev_uv), ch
        np.testing.assert_array_less(np.abs(res.uv[sel].double().numpy() - dev_uv), 0.5)
        np.testing.assert_allclose(res.depth[sel].double().numpy(), dev_depth, atol=1e-3)
        # and the indices are those of the numpy reference (which reproduces the devkit)
        idx, _, _ = points_to_image(points, lidar2img[k], tuple(image_hw[k]))
        np.testing.assert_array_equal(res.point_index[sel].numpy(), idx)
    assert (torch.diff(res.camera_index) >= 0).all()
    counts = {ch: len(devkit[ch][0]) for ch in CHANNELS}
    assert counts["CAM_FRONT"] == 3053 and counts["CAM_BACK"] == 4820


def test_real_frame_visibility_drops_some(real_frame):
    points, lidar2img, image_hw, _ = real_frame
    hw = torch.from_numpy(image_hw)
    res = project_points_reference(torch.from_numpy(points), torch.from_numpy(lidar2img), hw)
    keep = visibility_reference(res, hw, window=2, depth_tolerance=0.5)
    assert keep.dtype == torch.bool and keep.shape == res.depth.shape
    assert 0.5 * len(keep) < int(keep.sum()) < len(keep)
    assert visibility_reference(res, hw, depth_tolerance=float("inf")).all()


# ------------------------------------------------------------------ random vs numpy
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("min_depth,margin", [(1.0, 1.0), (0.1, 0.0), (3.0, 20.0)])
def test_matches_numpy_points_to_image(dtype, min_depth, margin):
    rng = np.random.default_rng(0)
    points = rng.uniform(-30, 30, size=(3000, 4)).astype(np.float32 if dtype == torch.float32
                                                         else np.float64)
    lidar2img, image_hw = random_cameras(rng, 4)
    res = project_points_reference(torch.from_numpy(points), torch.from_numpy(lidar2img),
                                   torch.from_numpy(image_hw), min_depth, margin)
    ref = numpy_reference(points, lidar2img, image_hw, min_depth, margin)
    assert len(ref["point_index"]) > 100
    np.testing.assert_array_equal(res.point_index.numpy(), ref["point_index"])
    np.testing.assert_array_equal(res.camera_index.numpy(), ref["camera_index"])
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(res.uv.numpy(), ref["uv"], rtol=tol, atol=tol * 100)
    np.testing.assert_allclose(res.depth.numpy(), ref["depth"], rtol=tol, atol=tol)
    assert res.point_index.dtype == torch.int64 and res.camera_index.dtype == torch.int64


def test_float_image_hw_and_list_inputs():
    rng = np.random.default_rng(1)
    points = torch.from_numpy(rng.uniform(-20, 20, size=(500, 3)))
    lidar2img, image_hw = random_cameras(rng, 2)
    a = project_points_reference(points, torch.from_numpy(lidar2img), torch.from_numpy(image_hw))
    b = project_points_reference(points, torch.from_numpy(lidar2img),
                                 torch.from_numpy(image_hw).double())
    c = project_points_reference(points, torch.from_numpy(lidar2img), image_hw.tolist())
    assert_results_equal(a, b)
    assert_results_equal(a, c)


def test_batched_equals_per_sample():
    rng = np.random.default_rng(2)
    counts = [700, 0, 1200, 300]
    lidar2img, image_hw = zip(*(random_cameras(rng, 3) for _ in counts))
    lidar2img = torch.from_numpy(np.stack(lidar2img)).float()
    image_hw = torch.from_numpy(np.stack(image_hw))
    clouds = [torch.from_numpy(rng.uniform(-25, 25, size=(n, 5))).float() for n in counts]
    points = torch.cat(clouds)
    offsets = torch.cumsum(torch.tensor(counts), 0)
    res = project_points_batched_reference(points, offsets, lidar2img, image_hw)
    assert isinstance(res, BatchedProjectionResult)
    start = 0
    for b, cloud in enumerate(clouds):
        single = project_points_reference(cloud, lidar2img[b], image_hw[b])
        sel = res.batch_index == b
        torch.testing.assert_close(res.point_index[sel], single.point_index + start)
        torch.testing.assert_close(res.camera_index[sel], single.camera_index)
        torch.testing.assert_close(res.uv[sel], single.uv, rtol=0, atol=0)
        torch.testing.assert_close(res.depth[sel], single.depth, rtol=0, atol=0)
        start += len(cloud)
    assert (torch.diff(res.batch_index) >= 0).all()  # ordered by sample
    assert len(res.depth) > 100
    # global point index refers to the concatenated points
    torch.testing.assert_close(res.depth, project_points_batched_reference(
        points.double(), offsets, lidar2img, image_hw).depth.float(), rtol=1e-5, atol=1e-4)
    # visibility: batched result == per-sample results concatenated
    keep = visibility_reference(res, image_hw, window=1, depth_tolerance=0.2)
    per = torch.cat([visibility_reference(
        project_points_reference(c, lidar2img[b], image_hw[b]), image_hw[b], window=1,
        depth_tolerance=0.2) for b, c in enumerate(clouds)])
    torch.testing.assert_close(keep, per)


def test_empty_inputs():
    mats = torch.eye(4).repeat(2, 1, 1)
    hw = torch.tensor([[100, 100], [50, 80]])
    res = project_points_reference(torch.zeros(0, 4), mats, hw)
    assert isinstance(res, ProjectionResult)
    assert res.point_index.shape == (0,) and res.uv.shape == (0, 2) and res.depth.shape == (0,)
    assert res.uv.dtype == torch.float32 and res.point_index.dtype == torch.int64
    res = project_points_reference(torch.ones(10, 3), torch.zeros(0, 4, 4), torch.zeros(0, 2))
    assert res.point_index.numel() == 0
    assert visibility_reference(res, torch.zeros(0, 2)).shape == (0,)
    # an empty batch and a batch of empty samples
    res = project_points_batched_reference(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64),
                                           torch.zeros(0, 2, 4, 4), torch.zeros(0, 2, 2))
    assert res.batch_index.shape == (0,) and res.uv.shape == (0, 2)
    res = project_points_batched_reference(torch.zeros(0, 3), torch.tensor([0, 0]),
                                           mats[None].repeat(2, 1, 1, 1), hw[None].repeat(2, 1, 1))
    assert res.point_index.numel() == 0
    out = gather_pixel_features_reference(torch.rand(2, 3, 4, 4), torch.zeros(0, dtype=torch.int64),
                                          torch.zeros(0, 2), 4)
    assert out.shape == (0, 3)


def _front_camera(f=100.0, size=200, position=(0.0, 0.0, 0.0)):
    """A camera looking along LiDAR +x (cam z = x, cam x = -y, cam y = -z)."""
    rot = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=np.float64)
    lidar2cam = np.eye(4)
    lidar2cam[:3, :3] = rot
    lidar2cam[:3, 3] = -rot @ np.asarray(position)
    cam2img = np.eye(4)
    cam2img[:3, :3] = [[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]]
    return cam2img @ lidar2cam


def test_points_behind_all_cameras():
    mats = torch.from_numpy(np.stack([_front_camera(), _front_camera()]))
    hw = torch.tensor([[200, 200], [200, 200]])
    points = torch.tensor([[-5.0, 0.0, 0.0], [-1.0, 0.1, 0.1], [0.5, 0.0, 0.0],
                           [1.0, 0.0, 0.0]], dtype=torch.float64)  # behind / at min_depth
    res = project_points_reference(points, mats, hw)
    assert res.point_index.numel() == 0
    # min_depth is strict: exactly 1.0 is dropped, just above it is kept
    res = project_points_reference(points + torch.tensor([1e-6, 0, 0], dtype=torch.float64),
                                   mats, hw)
    assert res.point_index.tolist() == [3, 3] and res.camera_index.tolist() == [0, 1]


def test_duplicated_points():
    mats = torch.from_numpy(_front_camera()[None])
    hw = torch.tensor([[200, 200]])
    base = torch.tensor([[5.0, 0.3, -0.2, 1.0], [8.0, -1.0, 0.5, 0.0]])
    points = torch.cat([base, base, base[:1]])  # indices 0, 2, 4 identical; 1, 3 identical
    res = project_points_reference(points, mats, hw)
    assert res.point_index.tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(res.uv[[0, 2, 4]], res.uv[[0]].expand(3, 2), rtol=0, atol=0)
    torch.testing.assert_close(res.uv[1], res.uv[3], rtol=0, atol=0)
    # duplicates have equal depths: none hides the other
    assert visibility_reference(res, hw, window=1, depth_tolerance=0.0).all()


def test_pixel_convention_and_strict_margin():
    mats = torch.from_numpy(_front_camera(f=100.0, size=200)[None])
    hw = torch.tensor([[200, 200]])
    # u = 100 - 100 * y / x, v = 100 - 100 * z / x; x = 10
    points = torch.tensor([[10.0, 0.0, 0.0], [10.0, 9.9, 0.0], [10.0, -9.9, 0.0],
                           [10.0, 10.0, 0.0], [10.0, -9.8, 9.8]], dtype=torch.float64)
    res = project_points_reference(points, mats, hw, margin=1.0)
    # u = 100, 1, 199, 0, 198 (v = 2): u == 1 and u == 199 fail the strict margin
    assert res.point_index.tolist() == [0, 4]
    torch.testing.assert_close(res.uv, torch.tensor([[100.0, 100.0], [198.0, 2.0]],
                                                    dtype=torch.float64))
    torch.testing.assert_close(res.depth, torch.tensor([10.0, 10.0], dtype=torch.float64))
    res = project_points_reference(points, mats, hw, margin=0.5)
    assert res.point_index.tolist() == [0, 1, 2, 4]


# ------------------------------------------------------------------ visibility
def _wall(x, ys, zs):
    y, z = np.meshgrid(ys, zs, indexing="ij")
    return np.stack([np.full(y.size, x), y.ravel(), z.ravel()], 1)


def test_visibility_wall_in_front_of_wall():
    # camera 0 looks along +x from 0.3 m behind and above the LiDAR; camera 1 looks away
    cam0 = _front_camera(f=100.0, size=200, position=(-0.3, 0.0, 0.2))
    cam1 = _front_camera(f=100.0, size=200) @ np.diag([-1.0, -1.0, 1.0, 1.0])  # looks at -x
    mats = torch.from_numpy(np.stack([cam0, cam1]))
    hw = torch.tensor([[200, 200], [200, 200]])
    near = _wall(5.0, np.arange(-0.5, 0.5001, 0.02), np.arange(-0.3, 0.7001, 0.02))
    far = _wall(10.0, np.arange(-3.0, 3.0001, 0.05), np.arange(-0.3, 0.7001, 0.05))
    points = torch.from_numpy(np.concatenate([near, far]))
    num_near = len(near)
    res = project_points_reference(points, mats, hw)
    # visibility off: every point of both walls is projected, all by camera 0
    assert res.point_index.tolist() == list(range(len(points)))
    assert (res.camera_index == 0).all()
    keep = visibility_reference(res, hw, window=1, depth_tolerance=0.3)
    assert visibility_reference(res, hw, window=1, depth_tolerance=float("inf")).all()
    assert keep[:num_near].all()  # the near wall is in front of everything
    # far-wall points, in camera 0's frame: lateral offset as seen from the camera
    # camera at x = -0.3: the near wall (|y| <= 0.5 at 5.3 m) shadows |y| < 0.97 at 10.3 m
    far_y = far[:, 1]
    half_shadow = 0.5 * 10.3 / 5.3
    far_keep = keep[num_near:].numpy()
    hidden = np.abs(far_y) < half_shadow - 0.1
    visible = np.abs(far_y) > half_shadow + 0.25  # > 1 pixel + window away from the edge
    assert hidden.sum() > 100 and visible.sum() > 100
    assert not far_keep[hidden].any()
    assert far_keep[visible].all()
    # window 0 and a huge relative tolerance keep everything too
    assert visibility_reference(res, hw, window=0, depth_tolerance=0.0,
                                relative_tolerance=1.5).all()


def test_visibility_validation():
    res = project_points_reference(torch.rand(10, 3) + 2, torch.eye(4)[None],
                                   torch.tensor([[5, 5]]))
    with pytest.raises(ValueError, match="window"):
        visibility_reference(res, torch.tensor([[5, 5]]), window=-1)
    with pytest.raises(ValueError, match="depth_tolerance"):
        visibility_reference(res, torch.tensor([[5, 5]]), depth_tolerance=-0.1)
    with pytest.raises(ValueError, match="image_hw"):
        visibility_reference(res, torch.tensor([5, 5]))
    with pytest.raises(TypeError, match="result"):
        visibility_reference((1, 2), torch.tensor([[5, 5]]))
    made = ProjectionResult(torch.tensor([0, 1]), torch.tensor([0, 0]),
                            torch.tensor([[1.0, 1.0], [float("inf"), 2.0]]),
                            torch.tensor([3.0, 4.0]))
    with pytest.raises(ValueError, match="non-finite"):
        visibility_reference(made, torch.tensor([[5, 5]]))


# ------------------------------------------------------------------ validation
def test_projection_validation():
    pts = torch.rand(10, 4)
    mats = torch.eye(4).repeat(2, 1, 1)
    hw = torch.tensor([[10, 10], [10, 10]])
    with pytest.raises(TypeError, match="points"):
        project_points_reference(pts.numpy(), mats, hw)
    with pytest.raises(TypeError, match="points"):
        project_points_reference(pts.long(), mats, hw)
    with pytest.raises(ValueError, match="points"):
        project_points_reference(pts[:, :2], mats, hw)
    with pytest.raises(ValueError, match="lidar2img"):
        project_points_reference(pts, mats[:, :3], hw)
    with pytest.raises(TypeError, match="lidar2img"):
        project_points_reference(pts, mats.int(), hw)
    with pytest.raises(ValueError, match="image_hw"):
        project_points_reference(pts, mats, hw[:1])
    with pytest.raises(TypeError, match="image_hw"):
        project_points_reference(pts, mats, hw.bool())
    with pytest.raises(TypeError, match="min_depth"):
        project_points_reference(pts, mats, hw, min_depth="1")
    with pytest.raises(ValueError, match="lidar2img is on"):
        project_points_reference(pts, mats.to("meta"), hw)
    b_mats, b_hw = mats[None].repeat(2, 1, 1, 1), hw[None].repeat(2, 1, 1)
    with pytest.raises(ValueError, match="offsets"):
        project_points_batched_reference(pts, torch.tensor([6, 4]), b_mats, b_hw)
    with pytest.raises(ValueError, match="offsets"):
        project_points_batched_reference(pts, torch.tensor([4, 9]), b_mats, b_hw)
    with pytest.raises(ValueError, match="offsets"):
        project_points_batched_reference(pts, torch.tensor([-1, 10]), b_mats, b_hw)
    with pytest.raises(TypeError, match="offsets"):
        project_points_batched_reference(pts, torch.tensor([4.0, 10.0]), b_mats, b_hw)
    with pytest.raises(ValueError, match="lidar2img"):
        project_points_batched_reference(pts, torch.tensor([4, 10]), mats, b_hw)
    with pytest.raises(ValueError, match="lidar2img"):
        project_points_batched_reference(pts, torch.tensor([10]), b_mats, b_hw)
    with pytest.raises(ValueError, match="image_hw"):
        project_points_batched_reference(pts, torch.tensor([4, 10]), b_mats, hw)


# ------------------------------------------------------------------ gather
def test_gather_hand_computed():
    fmap = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4)  # f[y, x] = 4 y + x
    fmap = torch.cat([fmap, -fmap], 1)  # two channels
    idx = torch.zeros(4, dtype=torch.int64)
    uv = torch.tensor([[2.5, 1.5],      # stride 2: x = 1.0, y = 0.5 -> (f[0,1] + f[1,1]) / 2
                       [4.0, 2.0],      # x = 1.75, y = 0.75 -> 4 * 0.75 + 1.75 = 4.75
                       [-10.0, -3.0],   # clamped to the corner (0, 0)
                       [100.0, 100.0]],  # clamped to the corner (2, 3)
                      dtype=torch.float64)
    out = gather_pixel_features_reference(fmap, idx, uv, stride=2)
    expected = torch.tensor([3.0, 4.75, 0.0, 11.0], dtype=torch.float64)
    torch.testing.assert_close(out, torch.stack([expected, -expected], 1))
    # stride (sy, sx): x = (4.5 + .5) / 2 - .5 = 2, y = (0.5 + .5) / 4 - .5 = -0.25 -> row 0
    out = gather_pixel_features_reference(fmap, idx[:1], torch.tensor([[4.5, 0.5]],
                                                                      dtype=torch.float64),
                                          stride=(4, 2))
    torch.testing.assert_close(out[:, 0], torch.tensor([2.0], dtype=torch.float64))
    # stride 1 at integer pixels reads the pixels exactly
    out = gather_pixel_features_reference(fmap, torch.zeros(2, dtype=torch.int64),
                                          torch.tensor([[3.0, 2.0], [0.0, 1.0]]), stride=1)
    torch.testing.assert_close(out[:, 0], torch.tensor([11.0, 4.0], dtype=torch.float64))


@pytest.mark.parametrize("stride", [1, 4, (8, 4), 2.5])
def test_gather_matches_grid_sample(stride):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 5, 7, 9, generator=g, dtype=torch.float64)
    m = 400
    idx = torch.randint(0, 6, (m,), generator=g)
    sy, sx = (stride, stride) if not isinstance(stride, tuple) else stride
    h_img, w_img = 7 * sy, 9 * sx
    uv = torch.rand(m, 2, generator=g, dtype=torch.float64) * torch.tensor(
        [w_img + 20.0, h_img + 20.0], dtype=torch.float64) - 10.0  # some outside: border
    out = gather_pixel_features_reference(feats, idx, uv, stride)
    grid = torch.stack([(uv[:, 0] + 0.5) / (sx * 9) * 2 - 1,
                        (uv[:, 1] + 0.5) / (sy * 7) * 2 - 1], 1).view(m, 1, 1, 2)
    ref = F.grid_sample(feats[idx], grid, mode="bilinear", padding_mode="border",
                        align_corners=False).view(m, 5)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    out32 = gather_pixel_features_reference(feats.float(), idx, uv.float(), stride)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, ref.float(), rtol=1e-4, atol=1e-4)


def test_gather_gradcheck():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(3, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([0, 2, 2, 1, 0, 1])
    uv = torch.tensor([[1.3, 2.7], [7.9, 0.2], [7.9, 0.2], [-3.0, 5.5], [19.5, 15.9],
                       [10.1, 6.6]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda f: gather_pixel_features_reference(f, idx, uv, stride=4), (feats,))
    # the gradient of a sum is the bilinear weights scattered back: it sums to M per channel
    gather_pixel_features_reference(feats, idx, uv, 4).sum().backward()
    torch.testing.assert_close(feats.grad.sum((0, 2, 3)),
                               torch.full((2,), 6.0, dtype=torch.float64))


def test_gather_with_batched_projection():
    """The flat image index batch * K + camera reads the right feature map."""
    mats = torch.from_numpy(np.stack([_front_camera()] * 2))[None].repeat(2, 1, 1, 1)
    hw = torch.full((2, 2, 2), 200)
    points = torch.tensor([[10.0, 0.0, 0.0], [10.0, 1.0, 1.0]], dtype=torch.float64)
    res = project_points_batched_reference(points, torch.tensor([1, 2]), mats, hw)
    image = res.batch_index * 2 + res.camera_index
    assert image.tolist() == [0, 1, 2, 3]
    feats = torch.arange(4, dtype=torch.float64).view(4, 1, 1, 1).expand(4, 1, 25, 25)
    out = gather_pixel_features_reference(feats.contiguous(), image, res.uv, 8)
    torch.testing.assert_close(out[:, 0], torch.arange(4, dtype=torch.float64))


def test_gather_validation():
    feats = torch.rand(2, 3, 4, 4)
    idx = torch.tensor([0, 1])
    uv = torch.rand(2, 2)
    with pytest.raises(ValueError, match="image_index"):
        gather_pixel_features_reference(feats, torch.tensor([0, 2]), uv, 1)
    with pytest.raises(TypeError, match="image_index"):
        gather_pixel_features_reference(feats, idx.int(), uv, 1)
    with pytest.raises(ValueError, match="uv"):
        gather_pixel_features_reference(feats, idx, uv[:1], 1)
    with pytest.raises(TypeError, match="features"):
        gather_pixel_features_reference(feats.long(), idx, uv, 1)
    with pytest.raises(ValueError, match="features"):
        gather_pixel_features_reference(feats[0], idx, uv, 1)
    with pytest.raises(ValueError, match="stride"):
        gather_pixel_features_reference(feats, idx, uv, 0)
    with pytest.raises(TypeError, match="stride"):
        gather_pixel_features_reference(feats, idx, uv, (1, 2, 3))
