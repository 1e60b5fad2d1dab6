"""Speed of the point-pixel kernels (``lidarcl.ops``) against their pure-PyTorch references
and nuscenes-devkit's numpy path, on the real nuScenes keyframe and a 10-sweep
accumulation, at 1 and 2 CPU threads (and on a GPU when one is present).

Run through ``python tools/benchmark.py ops``. Workloads:

* ``real``: the keyframe of ``../shared/data/real/nuscenes`` (34,688 points, 6 cameras at
  1600x900) with SLIC superpixels (scikit-image, 150 segments, SLidR's parameters)
  computed on its six images.
* ``10sweep``: the keyframe and 9 copies moved by the ego motion of a car driving at
  10 m/s and turning at 0.1 rad/s, 0.05 s apart (as 20 Hz sweeps accumulated into the
  keyframe's LiDAR frame are): 346,880 points. The data set has no real sweeps of this
  frame; the points' layout (and so the work per call) is that of a real accumulation.

Ops timed (median wall time per call):

* ``projection``: all (point, camera) pairs; devkit column: its numpy path per camera
  (``LidarPointCloud.rotate/translate`` through ego and global frames, ``view_points``,
  the same masks), as ``NuScenesExplorer.map_pointcloud_to_image`` runs it, minus file I/O.
* ``visibility``: depth-buffer test on those pairs (window 1, tolerance 0.3 m).
* ``gather``: bilinear read of 64-channel stride-4 feature maps at every pair, in the
  contiguous (NCHW) and the channels-last layout.
* ``point pool``: mean of 64-channel point features per superpixel of the pairs
  (kernel: the fused ``project_pool``; reference: projection + superpixel read +
  ``region_pool_reference``).
* ``pixel pool``: mean of the 64-channel stride-4 pixel features per superpixel.
* ``serialize``: Hilbert keys of the points voxelised at 0.1 m.
* ``projection + pooling``: projection plus point pooling plus pixel pooling, the
  correspondence work of one SLidR step (the issue's target: kernel >= 5x reference at
  2 threads).

``--workload synthetic`` (the default when the real frame is absent, e.g. on a GPU machine):
a generated LiDAR-like scan of the keyframe's size (34,688 points on 32 rings, 2-60 m) seen
by six 1600x900 cameras 60 degrees apart, with 90-pixel grid superpixels (int16), and its
10-sweep accumulation; it needs only numpy and torch (no nuscenes-devkit, scikit-image,
spconv, open3d or mmengine). ``--size tiny`` shrinks it (3,000 points, 160x90 cameras,
8 channels, 2 sweeps) for a smoke run.

Rotated-box ops (``box ops`` table), kernel against the pure-PyTorch reference: BEV and 3D
IoU of 500 x 500 boxes; rotated BEV NMS of 1,000 jittered candidates at IoU 0.2 (the
pre-NMS size of CenterPoint's nuScenes heads); points in boxes of the scan against the
frame's 69 annotation boxes (real workload; 60 random boxes otherwise), with
``lidarcl.structures.boxes.points_in_boxes`` (numpy) as a third column.

Pooling modes (every device): mean / sum / max ``region_pool`` of the pixel rows,
``project_pool`` and ``voxelize`` at 0.1 m, each with the default deterministic kernels
against the float-atomic ones that :func:`lidarcl.ops.atomic_pooling` opts in to on CUDA
(the ratio a GPU session should measure: issue 12 keeps the atomic path only where it is
much faster). On the CPU both columns run the same (deterministic) kernel.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real/nuscenes"
CHANNELS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
            "CAM_BACK_RIGHT")
CHANNELS_FEAT = 64
FEATURE_STRIDE = 4
MIN_TIME = 0.5  # seconds of repeats per timed op (--size tiny: 0)


def timed(fn, device: str, min_time: float | None = None, max_repeats: int = 50,
          min_repeats: int = 3) -> float:
    """Median seconds per call of ``fn`` after one warm-up call."""
    if min_time is None:
        min_time = MIN_TIME
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
    fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < min_time
                                       and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------ workloads
def load_real_frame(data_root: Path, work_dir: Path):
    """Points, calibration, images and the devkit transform chain of the real keyframe."""
    from nuscenes.nuscenes import NuScenes
    from pyquaternion import Quaternion

    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

    frame = json.loads((data_root / "frame.json").read_text())
    points = np.fromfile(data_root / frame["lidar_file"], dtype=np.float32).reshape(-1, 5)
    paths = create_nuscenes_infos(str(data_root), "v1.0-mini", str(work_dir))
    infos = []
    for path in paths:
        infos += read_info_index(path, dataset="nuscenes")[0]
    info = next(i for i in infos if i["token"] == frame["sample_token"])
    lidar2img = np.stack([np.array(info["cams"][ch]["lidar2img"]) for ch in CHANNELS])
    image_hw = np.array([(info["cams"][ch]["height"], info["cams"][ch]["width"])
                         for ch in CHANNELS])
    images = [str(data_root / info["cams"][ch]["path"]) for ch in CHANNELS]

    nusc = NuScenes(version="v1.0-mini", dataroot=str(data_root), verbose=False)
    lidar_sd = nusc.get("sample_data", info["nuscenes"]["lidar_token"])

    def pose(record):
        return Quaternion(record["rotation"]).rotation_matrix, np.array(record["translation"])

    chains = []
    for ch in CHANNELS:
        cam_sd = nusc.get("sample_data", info["cams"][ch]["sample_data_token"])
        cam_cs = nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"])
        chains.append({
            "lidar2ego": pose(nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"])),
            "ego2global": pose(nusc.get("ego_pose", lidar_sd["ego_pose_token"])),
            "cam_ego2global": pose(nusc.get("ego_pose", cam_sd["ego_pose_token"])),
            "cam2ego": pose(cam_cs),
            "intrinsic": np.array(cam_cs["camera_intrinsic"]),
        })
    return points, lidar2img, image_hw, images, chains


def accumulate_sweeps(points: np.ndarray, sweeps: int = 10, speed: float = 10.0,
                      yaw_rate: float = 0.1, dt: float = 0.05) -> np.ndarray:
    """The keyframe plus ``sweeps - 1`` copies moved by past ego poses (see module doc)."""
    out = [points]
    for i in range(1, sweeps):
        t = i * dt
        yaw = -yaw_rate * t
        c, s = np.cos(yaw), np.sin(yaw)
        moved = points.copy()
        x, y = points[:, 0], points[:, 1]
        # LIDAR_TOP's forward axis is +y: the past sweep sat speed*t behind
        moved[:, 0] = c * x - s * y
        moved[:, 1] = s * x + c * y - speed * t
        out.append(moved)
    return np.concatenate(out).astype(np.float32)


def synthetic_frame(num_points: int = 34688, height: int = 900, width: int = 1600,
                    seed: int = 0):
    """A LiDAR-like scan (x, y, z, intensity, ring; 32 rings between -25 and +5 degrees of
    elevation, ranges 2-60 m, some returns from a ground plane) and six pinhole cameras
    60 degrees apart (focal length 1266 px at 1600 px width, as nuScenes' front camera).
    Returns ``points (N, 5) float32, lidar2img (6, 4, 4), image_hw (6, 2)``."""
    rng = np.random.default_rng(seed)
    ring = rng.integers(0, 32, num_points)
    elevation = np.deg2rad(-25.0 + ring * 30.0 / 31)
    azimuth = rng.uniform(-np.pi, np.pi, num_points)
    rng_m = rng.uniform(2.0, 60.0, num_points)
    ground = elevation < 0
    rng_m[ground] = np.minimum(rng_m[ground], 1.8 / np.sin(-elevation[ground]))
    points = np.stack([rng_m * np.cos(elevation) * np.cos(azimuth),
                       rng_m * np.cos(elevation) * np.sin(azimuth),
                       rng_m * np.sin(elevation), rng.uniform(0, 255, num_points),
                       ring.astype(np.float64)], 1).astype(np.float32)
    focal = 1266.0 * width / 1600
    intrinsic = np.array([[focal, 0, width / 2, 0], [0, focal, height / 2, 0], [0, 0, 1, 0],
                          [0, 0, 0, 1]])
    mats = []
    for k in range(len(CHANNELS)):
        yaw = k * np.pi / 3
        forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
        lidar2cam = np.eye(4)
        lidar2cam[:3, :3] = np.stack([right, [0.0, 0.0, -1.0], forward])
        lidar2cam[:3, 3] = [0.0, 0.3, -0.5]
        mats.append(intrinsic @ lidar2cam)
    image_hw = np.array([[height, width]] * len(CHANNELS))
    return points, np.stack(mats), image_hw


def grid_superpixels(image_hw: np.ndarray, cell: int) -> torch.Tensor:
    """(1, K, H, W) int16 ids of ``cell`` x ``cell`` pixel blocks (superpixel stand-ins)."""
    height, width = (int(v) for v in image_hw[0])
    y = torch.arange(height)[:, None] // cell
    x = torch.arange(width)[None, :] // cell
    ids = (y * ((width + cell - 1) // cell) + x).to(torch.int16)
    return ids.expand(len(image_hw), height, width)[None].contiguous()


def superpixel_maps(images: list[str]) -> torch.Tensor:
    from PIL import Image

    from lidarcl.datasets.superpixels import compute_slic

    maps = [compute_slic(np.asarray(Image.open(p).convert("RGB"))) for p in images]
    # int16, as LoadSuperpixels gives them
    return torch.from_numpy(np.stack(maps).astype(np.int16))[None]  # (1, K, H, W)


# ------------------------------------------------------------------ devkit numpy path
def devkit_projection(points: np.ndarray, chains, min_dist: float = 1.0):
    """nuscenes-devkit's map_pointcloud_to_image arithmetic per camera (no file I/O)."""
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import view_points

    out = []
    for chain in chains:
        pc = LidarPointCloud(points[:, :4].T.copy())  # x, y, z, intensity as from_file
        rot, trans = chain["lidar2ego"]
        pc.rotate(rot)
        pc.translate(trans)
        rot, trans = chain["ego2global"]
        pc.rotate(rot)
        pc.translate(trans)
        rot, trans = chain["cam_ego2global"]
        pc.translate(-trans)
        pc.rotate(rot.T)
        rot, trans = chain["cam2ego"]
        pc.translate(-trans)
        pc.rotate(rot.T)
        depths = pc.points[2, :]
        uv = view_points(pc.points[:3, :], chain["intrinsic"], normalize=True)
        mask = (depths > min_dist) & (uv[0] > 1) & (uv[0] < 1600 - 1) & (uv[1] > 1) \
            & (uv[1] < 900 - 1)
        out.append((np.nonzero(mask)[0], uv[:2, mask], depths[mask]))
    return out


# ------------------------------------------------------------------ the table
def run_workload(name: str, points_np: np.ndarray, lidar2img_np, image_hw_np, superpixels,
                 chains, threads: list[int], device: str, with_devkit: bool):
    import lidarcl.ops as ops
    from lidarcl.ops.pooling import superpixel_pairs

    dev = torch.device(device)
    points = torch.from_numpy(points_np).to(dev)
    lidar2img = torch.from_numpy(lidar2img_np).float().to(dev)
    image_hw = torch.from_numpy(image_hw_np).to(dev)
    offsets = torch.tensor([len(points)], device=dev)
    mats_b, hw_b = lidar2img[None], image_hw[None]
    sp = superpixels.to(dev)
    num_sp = int(sp.max()) + 1
    gen = torch.Generator().manual_seed(0)
    point_feats = torch.randn(len(points), CHANNELS_FEAT, generator=gen).to(dev)
    fh, fw = int(image_hw_np[0][0]) // FEATURE_STRIDE, int(image_hw_np[0][1]) // FEATURE_STRIDE
    pixel_maps = torch.randn(len(CHANNELS), CHANNELS_FEAT, fh, fw, generator=gen).to(dev)
    pixel_maps_cl = pixel_maps.to(memory_format=torch.channels_last)
    sp_small = sp[0, :, FEATURE_STRIDE // 2::FEATURE_STRIDE, FEATURE_STRIDE // 2::FEATURE_STRIDE]
    pixel_rows = pixel_maps.permute(0, 2, 3, 1).reshape(-1, CHANNELS_FEAT).contiguous()
    pixel_region = (torch.arange(len(CHANNELS), device=dev)[:, None, None] * num_sp
                    + sp_small).reshape(-1)
    num_regions = len(CHANNELS) * num_sp
    voxels = torch.floor((points[:, :3] - points[:, :3].min(0).values) / 0.1).long()
    voxel_batch = torch.zeros(len(points), dtype=torch.int64, device=dev)
    res = ops.project_points_batched(points, offsets, mats_b, hw_b)
    image_index = res.batch_index * len(CHANNELS) + res.camera_index

    def ref_point_pool():
        # the reference's steps minus its pass over the whole maps (a validation)
        r = ops.project_points_batched_reference(points, offsets, mats_b, hw_b)
        pair_point, region = superpixel_pairs(r, sp, num_sp, len(CHANNELS))
        return ops.region_pool_reference(point_feats[pair_point], region, num_regions)

    rows = {
        "projection": (lambda: ops.project_points_batched(points, offsets, mats_b, hw_b),
                       lambda: ops.project_points_batched_reference(points, offsets, mats_b,
                                                                    hw_b)),
        "visibility": (lambda: ops.visibility(res, hw_b), lambda: ops.visibility_reference(
            res, hw_b)),
        "gather": (lambda: ops.gather_pixel_features(pixel_maps, image_index, res.uv,
                                                     FEATURE_STRIDE),
                   lambda: ops.gather_pixel_features_reference(pixel_maps, image_index, res.uv,
                                                               FEATURE_STRIDE)),
        "gather (channels-last)": (
            lambda: ops.gather_pixel_features(pixel_maps_cl, image_index, res.uv,
                                              FEATURE_STRIDE),
            lambda: ops.gather_pixel_features_reference(pixel_maps_cl, image_index, res.uv,
                                                        FEATURE_STRIDE)),
        "point pool": (lambda: ops.project_pool(points, offsets, mats_b, hw_b, sp, num_sp,
                                                point_feats), ref_point_pool),
        "pixel pool": (lambda: ops.region_pool(pixel_rows, pixel_region, num_regions),
                       lambda: ops.region_pool_reference(pixel_rows, pixel_region,
                                                         num_regions)),
        "serialize": (lambda: ops.serialize(voxels, voxel_batch, "hilbert"),
                      lambda: ops.serialize_reference(voxels, voxel_batch, "hilbert")),
    }
    if with_devkit and chains is not None:  # same work on both sides
        devkit_pairs = sum(len(idx) for idx, _, _ in devkit_projection(points_np, chains))
        assert devkit_pairs == res.point_index.numel(), (devkit_pairs, res.point_index.numel())
    # bytes an op must at least read and write (inputs it reads + outputs), for the
    # achieved-bandwidth column on a GPU
    def nbytes(*tensors):
        return sum(t.numel() * t.element_size() for t in tensors)
    pairs = res.point_index.numel()
    moved = {
        "projection": nbytes(points[:, :3]) + nbytes(*res),
        "visibility": nbytes(res.uv, res.depth, image_index) + pairs,
        "gather": pairs * (4 * CHANNELS_FEAT * 4 + 8 + 8 + CHANNELS_FEAT * 4),
        "point pool": nbytes(points[:, :3]) + pairs * (CHANNELS_FEAT * 4 + 2 + 16)
        + num_regions * (CHANNELS_FEAT * 4 + 8),
        "pixel pool": nbytes(pixel_rows, pixel_region) + num_regions * (CHANNELS_FEAT * 4 + 8),
        "serialize": nbytes(voxels, voxel_batch) + len(points) * 8,
    }
    moved["gather (channels-last)"] = moved["gather"]
    moved["projection + pooling"] = moved["projection"] + moved["point pool"] \
        + moved["pixel pool"]
    results = []
    thread_list = threads if device == "cpu" else [torch.get_num_threads()]
    for t in thread_list:
        torch.set_num_threads(t)
        times = {}
        for op, (kernel, reference) in rows.items():
            times[op] = (timed(kernel, device), timed(reference, device))
        times["projection + pooling"] = tuple(
            times["projection"][i] + times["point pool"][i] + times["pixel pool"][i]
            for i in range(2))
        devkit = None
        if with_devkit and chains is not None:
            from threadpoolctl import threadpool_limits
            with threadpool_limits(limits=t):
                devkit = timed(lambda: devkit_projection(points_np, chains), "cpu")
        results.append((t, times, devkit))
    info = {"points": len(points), "pairs": int(res.point_index.numel()),
            "superpixels": num_sp, "pixel rows": len(pixel_rows), "bytes": moved}
    info["pooling modes"] = pooling_modes(points, offsets, mats_b, hw_b, sp, num_sp,
                                          point_feats, pixel_rows, pixel_region, num_regions,
                                          device)
    return results, info


def pooling_modes(points, offsets, mats_b, hw_b, sp, num_sp, point_feats, pixel_rows,
                  pixel_region, num_regions, device: str) -> dict:
    """ms per call of each pooling op with the default deterministic kernels and with
    :func:`lidarcl.ops.atomic_pooling` (float atomics on CUDA; the same kernel on the CPU),
    and whether two deterministic runs gave the same bits."""
    import lidarcl.ops as ops

    def atomic(fn):
        def run():
            with ops.atomic_pooling():
                return fn()
        return run

    voxel_feats = points[:, :4].contiguous()
    cases = {
        f"region_pool {r} (pixel rows)": (
            lambda r=r: ops.region_pool(pixel_rows, pixel_region, num_regions, r).features)
        for r in ops.REDUCTIONS}
    cases["project_pool (point pool)"] = (
        lambda: ops.project_pool(points, offsets, mats_b, hw_b, sp, num_sp,
                                 point_feats).features)
    cases["voxelize 0.1 m, canonical=False"] = (
        lambda: ops.voxelize(points, offsets, 0.1, features=voxel_feats,
                             canonical=False).features)
    cases["voxelize 0.1 m, canonical=True"] = (
        lambda: ops.voxelize(points, offsets, 0.1, features=voxel_feats).features)
    out = {}
    for name, fn in cases.items():
        first, second = fn(), fn()
        same = bool(torch.equal(first.isnan(), second.isnan())
                    and torch.equal(first.nan_to_num(0.0), second.nan_to_num(0.0)))
        out[name] = {"deterministic_ms": 1e3 * timed(fn, device),
                     "atomic_ms": 1e3 * timed(atomic(fn), device),
                     "deterministic_repeat_identical": same}
    return out


def print_pooling_table(name: str, info: dict, device: str) -> None:
    print(f"\n### {name}: pooling, deterministic (default) vs atomic opt-in ({device})")
    if device != "cuda":
        print("(CPU: one deterministic kernel; the atomic request is ignored, both columns "
              "time it)")
    print("| op | deterministic ms | atomic ms | deterministic / atomic | repeat bit-identical |")
    print("|---|---|---|---|---|")
    for op, row in info["pooling modes"].items():
        d, a = row["deterministic_ms"], row["atomic_ms"]
        print(f"| {op} | {d:.3f} | {a:.3f} | {d / a:.2f}x | "
              f"{'yes' if row['deterministic_repeat_identical'] else 'NO'} |")


# HBM peak bandwidth (GB/s) of the GPUs this project is lent; --peak-gbps overrides
PEAK_GBPS = {"H100": 3350.0, "H200": 4800.0, "A100": 2039.0}


def bandwidth_note(device: str) -> str:
    if device != "cuda":
        return ""
    props = torch.cuda.get_device_properties(0)
    return f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB"


def peak_gbps(override: float | None) -> float | None:
    if override:
        return override
    name = torch.cuda.get_device_properties(0).name
    return next((v for k, v in PEAK_GBPS.items() if k in name), None)


def print_gpu_table(name: str, info: dict, results, peak: float | None) -> None:
    print(f"\n## {name}: {info['points']:,} points, {info['pairs']:,} pairs (cuda)")
    print("| op | kernel ms | reference ms | reference / kernel | GB/s (min. bytes) | "
          "% of peak |")
    print("|---|---|---|---|---|---|")
    for _, times, _ in results:
        for op, (k, r) in times.items():
            gbps = info["bytes"][op] / k / 1e9
            share = f"{100 * gbps / peak:.1f}%" if peak else "?"
            print(f"| {op} | {k * 1e3:.3f} | {r * 1e3:.3f} | {r / k:.1f}x | {gbps:.0f} | "
                  f"{share} |")


def print_table(name: str, info: dict, results, device: str) -> None:
    print(f"\n## {name}: {info['points']:,} points, {info['pairs']:,} point-camera pairs, "
          f"{info['superpixels']} superpixel ids, {info['pixel rows']:,} pixel rows "
          f"({device})")
    print("| op | threads | kernel ms | reference ms | devkit numpy ms | reference / kernel |")
    print("|---|---|---|---|---|---|")
    for threads, times, devkit in results:
        for op, (k, r) in times.items():
            d = f"{devkit * 1e3:.1f}" if (devkit is not None and op == "projection") else ""
            print(f"| {op} | {threads} | {k * 1e3:.2f} | {r * 1e3:.2f} | {d} | {r / k:.1f}x |")


def box_ops(points_np: np.ndarray, boxes_np: np.ndarray | None, threads: list[int], device: str,
            size: str) -> dict:
    """Kernel / reference / numpy timings of the rotated-box ops (module doc)."""
    import lidarcl.ops as ops
    from lidarcl.structures.boxes import points_in_boxes

    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    n_iou, n_nms = (100, 200) if size == "tiny" else (500, 1000)

    def random_boxes(n, spread):
        centre = (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1) * spread
        dims = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 4 + 0.5
        yaw = (torch.rand(n, 1, generator=gen, dtype=torch.float64) * 2 - 1) * np.pi
        return torch.cat([centre, dims, yaw], 1).float()

    iou_a, iou_b = random_boxes(n_iou, 30).to(dev), random_boxes(n_iou, 30).to(dev)
    centres = random_boxes(n_nms // 10, 50)
    cand = centres.repeat_interleave(10, 0)
    cand[:, :2] += torch.randn(len(cand), 2, generator=gen) * 0.5
    cand, scores = cand.to(dev), torch.rand(len(cand), generator=gen).to(dev)
    pts = torch.from_numpy(points_np).to(dev)
    boxes = (torch.from_numpy(boxes_np).float() if boxes_np is not None
             else random_boxes(60, 40)).to(dev)
    rows = {
        f"BEV IoU {n_iou}x{n_iou}": (lambda: ops.box_iou_bev(iou_a, iou_b),
                                     lambda: ops.box_iou_reference(iou_a, iou_b, "bev"), None),
        f"3D IoU {n_iou}x{n_iou}": (lambda: ops.box_iou_3d(iou_a, iou_b),
                                    lambda: ops.box_iou_reference(iou_a, iou_b, "3d"), None),
        f"NMS {len(cand)} boxes": (lambda: ops.nms_bev(cand, scores, 0.2),
                                   lambda: ops.nms_bev_reference(cand, scores, 0.2), None),
        f"points in {len(boxes)} boxes": (
            lambda: ops.points_in_boxes_all(pts, boxes),
            lambda: ops.points_in_boxes_reference(pts, boxes),
            (lambda: points_in_boxes(points_np, boxes_np if boxes_np is not None
                                     else boxes.cpu().double().numpy()))
            if device == "cpu" else None),
    }
    print(f"\n## box ops: {len(pts):,} points ({device})")
    print("| op | threads | kernel ms | reference ms | numpy ms | reference / kernel |")
    print("|---|---|---|---|---|---|")
    out = {}
    previous = torch.get_num_threads()
    try:
        for t in threads if device == "cpu" else [previous]:
            torch.set_num_threads(t)
            for op, (kernel, reference, numpy_fn) in rows.items():
                k = timed(kernel, device)
                r = timed(reference, device, min_repeats=1, max_repeats=5)
                n = timed(numpy_fn, device, min_repeats=1, max_repeats=5) if numpy_fn else None
                ns = f"{n * 1e3:.1f}" if n is not None else ""
                print(f"| {op} | {t} | {k * 1e3:.3f} | {r * 1e3:.1f} | {ns} | {r / k:.0f}x |")
                out[f"{op} @ {t} threads"] = {"kernel": 1e3 * k, "reference": 1e3 * r,
                                              "numpy": None if n is None else 1e3 * n}
    finally:
        torch.set_num_threads(previous)
    return out


def main(args) -> int:
    import tempfile

    global CHANNELS_FEAT, MIN_TIME
    from lidarcl.ops._extension import compiled

    if compiled() is None:
        print("lidarcl._C is not built: the kernel column would time the reference. "
              "Run `pip install --no-build-isolation -e .` first.")
        return 1
    device = args.device
    if device == "cuda" and not (torch.cuda.is_available() and compiled().with_cuda()):
        print("no CUDA device or lidarcl._C built without CUDA")
        return 1
    data_root = Path(args.data_root)
    workload = getattr(args, "workload", "real")
    size = getattr(args, "size", "full")
    if workload == "auto":
        workload = "real" if (data_root / "frame.json").is_file() else "synthetic"
    sweeps = args.sweeps
    chains = None
    frame_boxes = None
    if workload == "real":
        if not (data_root / "frame.json").is_file():
            print(f"real nuScenes frame not found at {data_root} (--workload synthetic needs "
                  "none)")
            return 1
        with tempfile.TemporaryDirectory() as tmp:
            points, lidar2img, image_hw, images, chains = load_real_frame(data_root, Path(tmp))
        frame_boxes = np.array([b["box_lidar"][:7] for b in json.loads(
            (data_root / "frame.json").read_text())["boxes"]], dtype=np.float64)
        if getattr(args, "boxes_only", False):
            report = {"torch": torch.__version__, "device": bandwidth_note(device) or "CPU",
                      "workload": workload, "size": size,
                      "box_ops": box_ops(points, frame_boxes, args.threads, device, size)}
            if getattr(args, "json", None):
                Path(args.json).write_text(json.dumps(report, indent=1))
            return 0
        t0 = time.perf_counter()
        superpixels = superpixel_maps(images)
        print(f"SLIC superpixels of the 6 images: {time.perf_counter() - t0:.1f} s "
              f"({[int(m.max()) + 1 for m in superpixels[0]]} segments)")
        label = "real keyframe"
    else:
        if size == "tiny":
            CHANNELS_FEAT, MIN_TIME, sweeps = 8, 0.0, min(sweeps, 2)
            points, lidar2img, image_hw = synthetic_frame(3000, 90, 160)
            superpixels = grid_superpixels(image_hw, 12)
        else:
            points, lidar2img, image_hw = synthetic_frame()
            superpixels = grid_superpixels(image_hw, 90)
        label = f"synthetic scan ({size})"
        print(f"synthetic workload ({size}): {len(points):,} points, six "
              f"{int(image_hw[0][1])}x{int(image_hw[0][0])} cameras, "
              f"{int(superpixels.max()) + 1} grid superpixels per image")
    print(f"torch {torch.__version__}, {bandwidth_note(device) or 'CPU'}; "
          f"threads: {args.threads}")
    workloads = [(label, points), (f"{sweeps}-sweep accumulation",
                                   accumulate_sweeps(points, sweeps))]
    report = {"torch": torch.__version__, "device": bandwidth_note(device) or "CPU",
              "workload": workload, "size": size, "workloads": {}}
    for name, pts in workloads:
        results, info = run_workload(name, pts, lidar2img, image_hw, superpixels, chains,
                                     args.threads, device,
                                     with_devkit=device == "cpu" and chains is not None)
        if device == "cuda":
            print_gpu_table(name, info, results, peak_gbps(args.peak_gbps))
        else:
            print_table(name, info, results, device)
        print_pooling_table(name, info, device)
        report["workloads"][name] = {
            "points": info["points"], "pairs": info["pairs"],
            "ops_ms": {f"{op} @ {t} threads": {"kernel": 1e3 * k, "reference": 1e3 * r}
                       for t, times, _ in results for op, (k, r) in times.items()},
            "pooling_modes": info["pooling modes"]}
    report["box_ops"] = box_ops(points, frame_boxes, args.threads, device, size)
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(report, indent=1))
    identical = all(row["deterministic_repeat_identical"]
                    for w in report["workloads"].values()
                    for row in w["pooling_modes"].values())
    if not identical:
        print("FAIL: a deterministic pooling run differed from its repeat")
        return 1
    return 0
