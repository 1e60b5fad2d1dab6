"""Pictures of samples: a bird's-eye view of points and boxes, and camera images with the
projected points coloured by depth. Pure numpy + Pillow (no display needed).

Pixel conventions of :func:`render_bev`: the image's up direction is LiDAR +x (forward), its
left is +y (left), so the picture reads like a map seen from above with the vehicle heading
up. Pixel ``(row, col)`` of a point ``(x, y)`` is
``row = (x_max - x) / resolution``, ``col = (y_max - y) / resolution``.
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from lidarcl.structures.boxes import box_corners
from lidarcl.structures.camera import points_to_image

# A qualitative palette for class ids (box classes or semantic labels); id -1 is grey.
_PALETTE = (np.array(colormaps["tab20"].colors)[:, :3] * 255).astype(np.uint8)
UNLABELLED_RGB = np.array([140, 140, 140], dtype=np.uint8)


def label_colors(labels) -> np.ndarray:
    """RGB (N, 3) uint8 for integer class ids (negative ids grey)."""
    labels = np.asarray(labels, dtype=np.int64)
    rgb = _PALETTE[np.mod(labels, len(_PALETTE))]
    rgb[labels < 0] = UNLABELLED_RGB
    return rgb


def scalar_colors(values, vmin=None, vmax=None, cmap: str = "viridis") -> np.ndarray:
    """RGB (N, 3) uint8 of scalars through a matplotlib colour map."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    lo = np.percentile(values, 1) if vmin is None else vmin
    hi = np.percentile(values, 99) if vmax is None else vmax
    t = np.clip((values - lo) / max(hi - lo, 1e-6), 0, 1)
    return (colormaps[cmap](t)[:, :3] * 255).astype(np.uint8)


def bev_pixels(xy, bev_range, resolution) -> np.ndarray:
    """(row, col) float pixel positions of LiDAR ``(x, y)`` in the BEV picture."""
    x_min, y_min, x_max, y_max = bev_range
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([(x_max - xy[..., 0]) / resolution, (y_max - xy[..., 1]) / resolution], -1)


MAX_BEV_SIDE = 8192  # pixels: 8192 x 8192 RGB is 192 MiB; a typo'd resolution asks for GiBs


def bev_canvas_shape(bev_range, resolution: float) -> tuple[int, int]:
    """``(height, width)`` in pixels of the BEV picture of ``bev_range`` at ``resolution``.

    Raises ValueError for a resolution that is not a positive number, an empty or non-finite
    range, and a canvas with a side over ``MAX_BEV_SIDE`` pixels (the message says which
    resolution would fit), before any memory is allocated.
    """
    x_min, y_min, x_max, y_max = (float(v) for v in bev_range)
    if not (np.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be a positive number of metres per pixel, got "
                         f"{resolution}")
    if not (np.isfinite([x_min, y_min, x_max, y_max]).all() and x_max > x_min
            and y_max > y_min):
        raise ValueError(f"bev_range (x_min, y_min, x_max, y_max) must be finite with "
                         f"x_max > x_min and y_max > y_min, got {tuple(bev_range)}")
    extent = max(x_max - x_min, y_max - y_min)
    height = int(round((x_max - x_min) / resolution))
    width = int(round((y_max - y_min) / resolution))
    if max(height, width) > MAX_BEV_SIDE:
        finest = max(np.ceil(extent / MAX_BEV_SIDE * 1e4) / 1e4, 1e-4)
        raise ValueError(f"a BEV of {x_max - x_min:g} x {y_max - y_min:g} m at resolution "
                         f"{resolution:g} m/pixel is {height} x {width} pixels, over the "
                         f"{MAX_BEV_SIDE} x {MAX_BEV_SIDE} limit; use a resolution >= "
                         f"{finest:g} or a smaller bev_range")
    if min(height, width) < 1:
        raise ValueError(f"resolution {resolution:g} m/pixel is coarser than the bev_range "
                         f"{tuple(bev_range)} (a {height} x {width} pixel picture)")
    return height, width


def render_bev(points, boxes=None, point_colors=None, box_labels=None,
               bev_range=(-50.0, -50.0, 50.0, 50.0), resolution: float = 0.1,
               point_size: int = 1, background=(16, 16, 16)) -> np.ndarray:
    """Bird's-eye view (H, W, 3) uint8 of points and boxes.

    Args:
        points: (N, >=3) LiDAR-frame points.
        boxes: (M, >=7) boxes ``[x, y, z, l, w, h, yaw]``; drawn as outlines with a line
            from the centre to the front face.
        point_colors: (N, 3) uint8 colours (default: height through viridis).
        box_labels: (M,) class ids for box colours (default: white).
        bev_range: ``(x_min, y_min, x_max, y_max)`` in metres.
    """
    height, width = bev_canvas_shape(bev_range, resolution)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = background
    points = np.asarray(points)
    if point_colors is None:
        point_colors = scalar_colors(points[:, 2], vmin=-3.0, vmax=2.0)
    pix = np.floor(bev_pixels(points[:, :2], bev_range, resolution)).astype(np.int64)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < height) & (pix[:, 1] >= 0) & (pix[:, 1] < width)
    pix, colors = pix[inside], np.asarray(point_colors)[inside]
    for dr in range(point_size):
        for dc in range(point_size):
            r = np.clip(pix[:, 0] + dr, 0, height - 1)
            c = np.clip(pix[:, 1] + dc, 0, width - 1)
            canvas[r, c] = colors
    if boxes is not None and len(boxes):
        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
        boxes = np.asarray(boxes, dtype=np.float64)
        corners = box_corners(boxes)[:, [0, 1, 5, 4], :2]  # top face: fl, fr, rr, rl
        box_rgb = (np.full((len(boxes), 3), 255, np.uint8) if box_labels is None
                   else label_colors(box_labels))
        for corner_xy, box, rgb in zip(corners, boxes, box_rgb):
            rc = bev_pixels(corner_xy, bev_range, resolution)
            polygon = [(float(c), float(r)) for r, c in rc]
            color = tuple(int(v) for v in rgb)
            draw.polygon(polygon, outline=color)
            front = bev_pixels(corner_xy[:2].mean(0), bev_range, resolution)
            centre = bev_pixels(box[:2], bev_range, resolution)
            draw.line([(centre[1], centre[0]), (front[1], front[0])], fill=color)
        canvas = np.asarray(image)
    return canvas


def render_camera_points(image, points, lidar2img, min_depth: float = 1.0,
                         max_depth: float = 60.0, radius: int = 2,
                         point_colors=None) -> np.ndarray:
    """The camera image with the points it sees drawn on it, coloured by depth.

    Uses the devkit's selection rule (``lidarcl.structures.camera.points_to_image``);
    nearer points are drawn last so that they stay on top.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    index, uv, depth = points_to_image(points, lidar2img, (height, width), min_depth)
    colors = (scalar_colors(depth, vmin=min_depth, vmax=max_depth, cmap="turbo")
              if point_colors is None else np.asarray(point_colors)[index])
    order = np.argsort(-depth)
    out = image.copy()
    centre = np.floor(uv[order]).astype(np.int64)
    for dr in range(-radius + 1, radius):
        for dc in range(-radius + 1, radius):
            r = np.clip(centre[:, 1] + dr, 0, height - 1)
            c = np.clip(centre[:, 0] + dc, 0, width - 1)
            out[r, c] = colors[order]
    return out


def point_label_colors(sample: dict) -> np.ndarray:
    """Colours for ``sample['points']``: semantic labels when the sample has them
    (``pts_semantic_mask``), else the class of the box holding the point (grey outside)."""
    from lidarcl.structures.boxes import points_in_boxes

    points = sample["points"]
    if "pts_semantic_mask" in sample:
        return label_colors(sample["pts_semantic_mask"])
    labels = np.full(len(points), -1, dtype=np.int64)
    boxes = sample.get("gt_boxes")
    if boxes is not None and len(boxes):
        inside = points_in_boxes(points, boxes)
        hit = inside.any(1)
        labels[hit] = np.asarray(sample["gt_labels"])[inside[hit].argmax(1)]
    return label_colors(labels)


def save_sample_views(sample: dict, out_dir: str, prefix: str = "sample",
                      color_by: str = "height", bev_range=(-50.0, -50.0, 50.0, 50.0),
                      resolution: float = 0.1, cameras=None) -> list[str]:
    """Write ``<prefix>_bev.png`` and ``<prefix>_<CAMERA>.png`` for a loaded sample.

    ``sample`` needs ``points`` and may hold ``gt_boxes``/``gt_labels``, ``images``,
    ``lidar2img`` and ``cam_names`` (the output of the loading transforms).
    ``color_by`` is ``"height"``, ``"intensity"`` or ``"label"``.
    """
    os.makedirs(out_dir, exist_ok=True)
    points = sample["points"]
    if color_by == "label":
        colors = point_label_colors(sample)
    elif color_by == "intensity":
        colors = scalar_colors(points[:, 3], cmap="magma")
    elif color_by == "height":
        colors = scalar_colors(points[:, 2], vmin=-3.0, vmax=2.0)
    else:
        raise ValueError(f"color_by must be 'height', 'intensity' or 'label', got {color_by!r}")
    written = []
    bev = render_bev(points, sample.get("gt_boxes"), colors, sample.get("gt_labels"),
                     bev_range=bev_range, resolution=resolution)
    path = os.path.join(out_dir, f"{prefix}_bev.png")
    Image.fromarray(bev).save(path)
    written.append(path)
    names = sample.get("cam_names", [])
    for k, name in enumerate(names):
        if cameras is not None and name not in cameras:
            continue
        view = render_camera_points(sample["images"][k], points, sample["lidar2img"][k])
        path = os.path.join(out_dir, f"{prefix}_{name}.png")
        Image.fromarray(view).save(path)
        written.append(path)
    return written


DATASET_TYPES = {"nuscenes": "NuScenesDataset", "kitti": "KittiDataset"}
DEFAULT_BEV_RANGES = {"nuscenes": (-50.0, -50.0, 50.0, 50.0), "kitti": (0.0, -40.0, 70.4, 40.0)}


def save_dataset_views(dataset: str, info_path: str, data_root: str, indices, out_dir: str,
                       color_by: str = "height", bev_range=None,
                       resolution: float = 0.1) -> list[str]:
    """Load samples of an indexed dataset with points, images and (when present)
    lidarseg labels, and write their views with :func:`save_sample_views`.

    The canvas size and every index are checked (ValueError) before anything is drawn, so
    that a bad argument neither allocates GiBs nor leaves half the pictures behind."""
    from lidarcl.registry import DATASETS
    from lidarcl.utils.setup_env import register_all_modules

    bev_range = bev_range or DEFAULT_BEV_RANGES[dataset]
    bev_canvas_shape(bev_range, resolution)
    if color_by not in ("height", "intensity", "label"):
        raise ValueError(f"color_by must be 'height', 'intensity' or 'label', got {color_by!r}")
    register_all_modules()
    pipeline = [dict(type="LoadPoints", use_dims=None), dict(type="LoadImages")]
    ds = DATASETS.build(dict(type=DATASET_TYPES[dataset], ann_file=os.path.abspath(info_path),
                             data_root=data_root, pipeline=pipeline, test_mode=True,
                             serialize_data=False))
    bad = [i for i in indices if not 0 <= i < len(ds)]
    if bad:
        valid = f"0 to {len(ds) - 1}" if len(ds) else "none"
        raise ValueError(f"{info_path}: sample index {bad[0]} is out of range: the index "
                         f"holds {len(ds)} samples (valid indices: {valid})")
    written = []
    for index in indices:
        sample = ds[index]
        if color_by == "label" and sample.get("lidarseg_path"):
            from lidarcl.datasets.transforms.loading import LoadLidarsegLabels

            sample = LoadLidarsegLabels()(sample)
        written += save_sample_views(sample, out_dir, prefix=f"{dataset}_{index:04d}",
                                     color_by=color_by,
                                     bev_range=bev_range,
                                     resolution=resolution)
    return written
