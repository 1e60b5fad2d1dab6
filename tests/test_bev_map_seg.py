"""BEV map segmentation: the generated map expansion through nuscenes-devkit's NuScenesMap,
the BEVFusion-style ground truth grid, and the IoU metric against hand-computed cases."""
from __future__ import annotations

import json
import math
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

nuscenes = pytest.importorskip("nuscenes")
from nuscenes.nuscenes import NuScenes  # noqa: E402
from pyquaternion import Quaternion  # noqa: E402

from conftest import SYNTHETIC_FIXTURE_ARGS  # noqa: E402
from lidarcl.datasets.synthetic.maps import (L_LANE_DIVIDER, L_ROAD_DIVIDER,  # noqa: E402
                                             make_layout, rasterize_layers)
from lidarcl.datasets.synthetic.writer import LOCATION  # noqa: E402
from lidarcl.evaluation.bev_map_seg import (BEV_MAP_CLASSES, BEVMapSegIoU,  # noqa: E402
                                            THRESHOLDS, bev_map_gt, lidar2global_of,
                                            load_nusc_map, map_mask)

POLYGON_LAYERS = ("drivable_area", "road_segment", "lane", "ped_crossing", "walkway",
                  "stop_line", "carpark_area")
LINE_LAYERS = ("road_divider", "lane_divider")


def _near(mask: np.ndarray, cells: int = 1) -> np.ndarray:
    """Cells within ``cells`` cells (chessboard distance) of a True cell."""
    p = np.pad(mask, cells)
    h, w = mask.shape
    steps = range(-cells, cells + 1)
    return np.any([p[cells + dr:cells + dr + h, cells + dc:cells + dc + w]
                   for dr in steps for dc in steps], axis=0)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Cells within one cell of both a True and a False cell."""
    return _near(mask) & _near(~mask)


def _pose(x, y, yaw_deg) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Quaternion(axis=[0, 0, 1], degrees=yaw_deg).rotation_matrix
    m[:2, 3] = x, y
    return m


@pytest.fixture(scope="module")
def generated(synthetic_root):
    nusc = NuScenes(version=synthetic_root.version, dataroot=synthetic_root.dataroot,
                    verbose=False)
    nusc_map = load_nusc_map(synthetic_root.dataroot, LOCATION)
    bev = osp.join(synthetic_root.dataroot, "maps", "bev")
    meta = json.load(open(osp.join(bev, "meta.json")))
    pngs = {name: np.asarray(Image.open(osp.join(bev, f"{name}.png"))) > 0
            for name in meta["layers"]}
    return nusc, nusc_map, meta, pngs


# ------------------------------------------------------------------ the generated map
def test_expansion_loads_in_devkit(generated, synthetic_root):
    nusc, nusc_map, meta, _ = generated
    # the file the devkit reads, and the location every log names
    path = osp.join(synthetic_root.dataroot, "maps", "expansion", f"{LOCATION}.json")
    assert nusc_map.json_fname == path and osp.isfile(path)
    assert {log["location"] for log in nusc.log} == {LOCATION}
    assert nusc_map.version >= "1.3"
    # the map spans the BEV rasters' extent (global metres, origin at 0)
    x0, y0, x1, y1 = meta["extent"]
    assert (x0, y0) == (0.0, 0.0)
    assert nusc_map.canvas_edge == pytest.approx([x1 - x0, y1 - y0])
    for layer in POLYGON_LAYERS + LINE_LAYERS + ("road_block",):
        assert len(getattr(nusc_map, layer)) > 0, layer
    # every node inside the canvas; records resolve through the devkit's own accessors
    xy = np.array([[n["x"], n["y"]] for n in nusc_map.node])
    assert xy.min() >= 0.0 and (xy <= np.array(nusc_map.canvas_edge) + 1e-9).all()
    assert nusc_map.extract_polygon(nusc_map.ped_crossing[0]["polygon_token"]).area > 0
    assert nusc_map.extract_line(nusc_map.road_divider[0]["line_token"]).length > 0
    assert all(s["cue"] for s in nusc_map.stop_line)   # PED_CROSSING stop lines name one
    lane = nusc_map.lane[0]["token"]
    assert len(nusc_map.discretize_lanes([lane], 1.0)[lane]) > 2
    # the ego poses lie on the devkit's drivable area (layers_on_point)
    for sample in nusc.sample[:3]:
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        x, y = nusc.get("ego_pose", sd["ego_pose_token"])["translation"][:2]
        assert nusc_map.layers_on_point(x, y, ["drivable_area"])["drivable_area"], (x, y)


def test_devkit_polygon_layers_match_generator_rasters(generated):
    """Each polygon layer rasterised by the devkit over the whole map, on the grid of the
    generator's ``maps/bev`` PNGs (0.2 m), against those PNGs (``CityLayout.ground`` at the
    pixel centres). Tolerance: the devkit rounds vertices to the pixel grid and fills pixels
    on the boundary (its polygons come out up to one pixel larger), so disagreements are
    allowed on boundary cells only -- every one within one cell of a cell where the PNG
    changes value -- and at least 99 % of all cells agree."""
    _, nusc_map, meta, pngs = generated
    res = meta["resolution"]
    w, h = meta["size"]
    x0, y0 = meta["origin"]
    # devkit canvas pixel (r, c) samples global (x0 + (c + 0.5) res, y0 + (r + 0.5) res):
    # the patch's low edge is the PNG's first pixel centre
    box = (x0 + 0.5 * res + w * res / 2, y0 + 0.5 * res + h * res / 2, h * res, w * res)
    masks = map_mask(nusc_map, box, 0.0, POLYGON_LAYERS, (h, w))
    for name, mask in zip(POLYGON_LAYERS, masks):
        dk = mask[::-1] > 0            # devkit rows grow northwards, PNG rows southwards
        ref = pngs[name]
        diff = dk != ref
        assert ref.sum() > 0, name
        assert diff.mean() < 0.01, (name, diff.mean())
        assert not (diff & ~_boundary(ref)).any(), (name, int((diff & ~_boundary(ref)).sum()))


def test_devkit_line_layers_match_layout(generated):
    """The divider lines rasterised by the devkit against the generator's
    ``CityLayout.ground`` divider bits (bands 0.4 m and 0.15 m wide, thinner than a 0.2 m
    pixel can sample at its centre: a cell counts as divider when any of 7 x 7 points over it
    has the bit), in a 120 m window around the first keyframe. Every divider cell lies within
    one cell of a devkit line cell; every devkit line cell within two cells of a divider cell:
    the devkit truncates line coordinates to integers (up to one cell towards the low edge)
    and ``cv2.polylines(thickness=2)`` paints one more cell on each side and past each end."""
    nusc, nusc_map, meta, pngs = generated
    half = (meta["extent"][2] - meta["extent"][0]) / 2
    layout = make_layout(np.random.default_rng([SYNTHETIC_FIXTURE_ARGS["seed"], 1]), half)
    # the writer's city is make_city(default_rng([seed, 1])), whose first draw is this
    # layout; it reproduces every PNG, so it is the generator's
    layers, _ = rasterize_layers(layout, meta["resolution"])
    for name, img in layers.items():
        assert np.array_equal(img > 0, pngs[name]), name
    res, n = 0.2, 600
    sd = nusc.get("sample_data", nusc.sample[0]["data"]["LIDAR_TOP"])
    ex, ey = nusc.get("ego_pose", sd["ego_pose_token"])["translation"][:2]
    gx0, gy0 = round(ex) - n * res / 2, round(ey) - n * res / 2   # pixel (r, c) samples
    box = (gx0 + n * res / 2, gy0 + n * res / 2, n * res, n * res)  # (gx0 + c res, gy0 + r res)
    masks = map_mask(nusc_map, box, 0.0, LINE_LAYERS, (n, n)) > 0
    sub = (np.arange(7) - 3) / 7 * res          # 7 x 7 points over each cell
    steps = np.arange(n) * res                  # city coordinates = global - half
    xx = gx0 - half + steps[None, :, None, None] + sub[None, None, None, :]
    yy = gy0 - half + steps[:, None, None, None] + sub[None, None, :, None]
    xx, yy = np.broadcast_arrays(xx, yy)
    _, bits, _ = layout.ground(xx, yy)
    bits = bits.reshape(n, n, 7, 7)
    for name, mask, bit in zip(LINE_LAYERS, masks, (L_ROAD_DIVIDER, L_LANE_DIVIDER)):
        touched = ((bits & bit) > 0).any(axis=(2, 3))
        assert touched.sum() > 100 and mask.sum() > 100, name
        assert not (mask & ~_near(touched, 2)).any(), name
        assert not (touched & ~_near(mask, 1)).any(), name


def test_map_mask_equals_devkit_get_map_mask(generated, synthetic_root, tmp_path):
    """``map_mask`` is ``NuScenesMap.get_map_mask`` where the latter runs: the generated map
    saved under a nuScenes city's name (get_map_mask accepts only those) gives identical
    masks for rotated patches around two keyframes, every layer of the BEV classes."""
    import shutil

    from nuscenes.map_expansion.map_api import NuScenesMap

    nusc, ours, _, _ = generated
    os.makedirs(tmp_path / "maps" / "expansion")
    shutil.copy(ours.json_fname, tmp_path / "maps" / "expansion" / "boston-seaport.json")
    devkit = NuScenesMap(dataroot=str(tmp_path), map_name="boston-seaport")
    layers = ["drivable_area", "ped_crossing", "walkway", "stop_line", "carpark_area",
              "road_divider", "lane_divider"]
    for sample, angle in ((nusc.sample[0], 17.0), (nusc.sample[-1], -101.5)):
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        x, y = nusc.get("ego_pose", sd["ego_pose_token"])["translation"][:2]
        box = (x, y, 100.0, 100.0)
        expected = devkit.get_map_mask(box, angle, layers, (200, 200))
        got = map_mask(ours, box, angle, layers, (200, 200))
        assert expected.sum() > 0
        np.testing.assert_array_equal(got, expected)


def test_map_mask_survives_multipart_lines_and_touching_polygons(tmp_path):
    """A divider that leaves and re-enters the patch becomes a MultiLineString, which the
    devkit's line rasteriser cannot iterate under shapely 2 (devkit 1.2.0: TypeError); a
    polygon that only touches the patch leaves a LineString the polygon rasteriser cannot
    fill (AttributeError). ``map_mask`` draws both divider parts and skips the touch."""
    root = str(tmp_path)
    name = _hand_map(root)
    path = osp.join(root, "maps", "expansion", f"{name}.json")
    obj = json.load(open(path))
    # a zigzag (95, 60) -> (85, 100) -> (95, 140): inside the patch x in [90, 130] for
    # y in [60, 80] and [120, 140], outside around its apex
    obj["node"] += [{"token": "z0", "x": 95.0, "y": 60.0}, {"token": "z1", "x": 85.0, "y": 100.0},
                    {"token": "z2", "x": 95.0, "y": 140.0}]
    obj["line"].append({"token": "zl", "node_tokens": ["z0", "z1", "z2"]})
    obj["road_divider"].append({"token": "zz", "line_token": "zl", "road_segment_token": ""})
    json.dump(obj, open(path, "w"))
    nusc_map = load_nusc_map(root, name)
    box = (110.0, 100.0, 100.0, 40.0)   # x in [90, 130], y in [50, 150]
    mask = map_mask(nusc_map, box, 0.0, ["road_divider"], (200, 80))[0]
    # canvas column (x - 90) * 2, row (y - 50) * 2: at y = 70 and 130 the legs are at x = 92.5
    assert mask[40, 4:7].any() and mask[160, 4:7].any()
    assert not mask[90:111, :15].any()                      # around the apex: nothing
    # the sidewalk x in [105, 108] touches the patch x in [90, 105] along x = 105 only
    touch = map_mask(nusc_map, (97.5, 100.0, 100.0, 15.0), 0.0, ["walkway", "drivable_area"],
                     (200, 30))
    assert not touch[0].any() and touch[1][:, 10:].all()
    assert mask[:, 20].all()                                # the straight divider x = 100.1


def test_gt_real_nuscenes(real_data):
    """Real nuScenes with the user-downloaded map expansion (skips without it): at the first
    keyframe the LiDAR stands on the drivable area (grid centre, i = j = 100), and so does
    the road 2-5 m ahead of the vehicle, which is +y of nuScenes' LIDAR_TOP (its x points to
    the vehicle's right): cells j = 104..110."""
    root = real_data.require_nuscenes()
    nusc = NuScenes(version=real_data.nuscenes_version, dataroot=str(root), verbose=False)
    sample = nusc.sample[0]
    location = nusc.get("log", nusc.get("scene", sample["scene_token"])["log_token"])["location"]
    if not osp.isfile(root / "maps" / "expansion" / f"{location}.json"):
        pytest.skip(f"no map expansion {root / 'maps' / 'expansion' / location}.json "
                    "(nuScenes-map-expansion-v1.3 is a separate download)")
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])

    def pose(rec):
        m = np.eye(4)
        m[:3, :3] = Quaternion(rec["rotation"]).rotation_matrix
        m[:3, 3] = rec["translation"]
        return m

    gt = bev_map_gt(load_nusc_map(str(root), location),
                    lidar2global_of(pose(nusc.get("ego_pose", sd["ego_pose_token"])),
                                    pose(nusc.get("calibrated_sensor",
                                                  sd["calibrated_sensor_token"]))))
    assert gt.shape == (6, 200, 200)
    assert gt[0, 98:103, 98:103].all()
    assert gt[0, 99:102, 104:111].all()
    assert gt[0].mean() > 0.1


# ------------------------------------------------------------------ ground truth grid
def _hand_map(root) -> str:
    """A hand-made expansion: a north-south road x in [95, 105] (global), a crossing at
    y in [120, 125], a sidewalk x in [105, 108], a road divider x = 100.1 and a lane divider
    x = 97.1 along y in [0, 200]."""
    nodes, polygons, lines = [], [], []

    def poly(x0, y0, x1, y1):
        toks = []
        for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
            toks.append(f"n{len(nodes)}")
            nodes.append({"token": toks[-1], "x": x, "y": y})
        polygons.append({"token": f"p{len(polygons)}", "exterior_node_tokens": toks, "holes": []})
        return polygons[-1]["token"]

    def line(x, y0, y1):
        toks = []
        for y in (y0, y1):
            toks.append(f"n{len(nodes)}")
            nodes.append({"token": toks[-1], "x": x, "y": y})
        lines.append({"token": f"l{len(lines)}", "node_tokens": toks})
        return lines[-1]["token"]

    obj = {"version": "1.3", "canvas_edge": [200.0, 200.0],
           "drivable_area": [{"token": "da", "polygon_tokens": [poly(95, 0, 105, 200)]}],
           "ped_crossing": [{"token": "pc", "polygon_token": poly(95, 120, 105, 125),
                             "road_segment_token": ""}],
           "walkway": [{"token": "ww", "polygon_token": poly(105, 0, 108, 200)}],
           "road_divider": [{"token": "rd", "line_token": line(100.1, 0, 200),
                             "road_segment_token": ""}],
           "lane_divider": [{"token": "ld", "line_token": line(97.1, 0, 200),
                             "lane_divider_segments": []}],
           "arcline_path_3": {}, "connectivity": {}}
    for layer in ("road_segment", "road_block", "lane", "stop_line", "carpark_area",
                  "traffic_light", "lane_connector"):
        obj[layer] = []
    obj.update(node=nodes, polygon=polygons, line=lines)
    os.makedirs(osp.join(root, "maps", "expansion"))
    with open(osp.join(root, "maps", "expansion", "hand-city.json"), "w") as f:
        json.dump(obj, f)
    return "hand-city"


@pytest.mark.parametrize("yaw", [90.0, 0.0])
def test_gt_orientation_hand_case(tmp_path, yaw):
    """LiDAR at global (110, 100). Yaw 90: LiDAR +x points north, +y west, so the road
    (x_global 95..105) is the band y_lidar = 5..15 -> columns j = 110..130 over every row i,
    the crossing (y_global 120..125) is x_lidar = 20..25 -> rows i = 140..150. Yaw 0: +x east,
    +y north: the road is x_lidar = -15..-5 -> rows i = 70..90 over every column, the crossing
    y_lidar = 20..25 -> columns j = 140..150. (Cell k stands for -50 + 0.5 k; the devkit fills
    boundary cells, so the integer-aligned edges are inclusive.)"""
    root = str(tmp_path)
    nusc_map = load_nusc_map(root, _hand_map(root))
    gt = bev_map_gt(nusc_map, _pose(110.0, 100.0, yaw))
    assert gt.shape == (6, 200, 200) and gt.dtype == bool
    c = {name: gt[k] for k, name in enumerate(BEV_MAP_CLASSES)}
    expect = np.zeros((200, 200), bool)
    band, cross, walk = slice(110, 131), slice(140, 151), slice(104, 111)
    if yaw == 90.0:
        expect[:, band] = True
        np.testing.assert_array_equal(c["drivable_area"], expect)
        expect[:] = False
        expect[cross, band] = True
        np.testing.assert_array_equal(c["ped_crossing"], expect)
        expect[:] = False
        expect[:, walk] = True
        np.testing.assert_array_equal(c["walkway"], expect)
        # dividers: road divider at y_lidar = 9.9 (j 119.8), lane divider at 12.9 (j 125.8);
        # 2-pixel lines: every row has divider cells only within one cell of those columns
        cols = np.flatnonzero(c["divider"].any(axis=0))
        assert c["divider"][:, 119].all() and c["divider"][:, 125].all()
        assert set(cols) <= set(range(118, 122)) | set(range(124, 128)), cols
    else:
        band_i = slice(70, 91)
        expect[band_i, :] = True
        np.testing.assert_array_equal(c["drivable_area"], expect)
        expect[:] = False
        expect[band_i, cross] = True
        np.testing.assert_array_equal(c["ped_crossing"], expect)
        rows = np.flatnonzero(c["divider"].any(axis=1))
        # road divider x_lidar = -9.9 (i 80.2), lane divider -12.9 (i 74.2)
        assert c["divider"][80].all() and c["divider"][74].all()
        assert set(rows) <= set(range(73, 77)) | set(range(79, 83)), rows
    assert not c["stop_line"].any() and not c["carpark_area"].any()
    # the same frame reached through an augmentation: original yaw 0 rotated by -yaw
    aug = np.eye(4)
    aug[:3, :3] = Quaternion(axis=[0, 0, 1], degrees=-yaw).rotation_matrix
    np.testing.assert_array_equal(
        bev_map_gt(nusc_map, lidar2global_of(_pose(110.0, 100.0, 0.0), np.eye(4), aug)), gt)


def test_gt_augmented_frame_hand_case(tmp_path):
    """The hand map seen from the yaw-90 pose through an augmented frame (points p' = A p).
    Scale 2: the grid's +-50 units are +-25 m, the road y_lidar 5..15 m is y' 10..30 ->
    columns j = 120..160, the crossing x' 40..50 -> rows i = 180..199 (the patch ends at 50).
    Flip of y (BEVFusion's horizontal flip, ``mask[:, :, ::-1]``): the road's columns
    110..130 become 69..89 (the flip mirrors cell indices, the devkit's cells sit on their low
    corners: one cell off the exact mirror image 70..90, as in BEVFusion)."""
    root = str(tmp_path)
    nusc_map = load_nusc_map(root, _hand_map(root))
    pose = _pose(110.0, 100.0, 90.0)
    scaled = bev_map_gt(nusc_map, lidar2global_of(pose, np.eye(4), np.diag([2.0, 2, 2, 1])))
    expect = np.zeros((200, 200), bool)
    expect[:, 120:161] = True
    np.testing.assert_array_equal(scaled[0], expect)
    expect[:] = False
    expect[180:, 120:161] = True
    np.testing.assert_array_equal(scaled[1], expect)
    flipped = bev_map_gt(nusc_map, lidar2global_of(pose, np.eye(4), np.diag([1.0, -1, 1, 1])))
    expect[:] = False
    expect[:, 69:90] = True
    np.testing.assert_array_equal(flipped[0], expect)
    expect[:] = False
    expect[140:151, 69:90] = True
    np.testing.assert_array_equal(flipped[1], expect)


def test_gt_of_generated_sample_matches_rasters(generated):
    """A generated keyframe's ground truth against the BEV PNGs looked up at each cell's
    point (x, y) = (-50 + 0.5 i, -50 + 0.5 j) of the LiDAR frame carried to the world through
    the devkit's calibrated_sensor and ego_pose records (pyquaternion). Area classes: at
    least 97 % of the cells agree and every disagreement is within one cell of the
    reference's boundary. Thin classes (stop lines 0.4 m, dividers 0.15-0.4 m wide), which a
    0.5 m grid of points can miss entirely while the devkit fills every cell they touch:
    every reference cell within one cell of a GT cell."""
    nusc, nusc_map, meta, pngs = generated
    res = meta["resolution"]
    x0, _, _, y1 = meta["extent"]
    ref_layers = dict(pngs, divider=pngs["road_divider"] | pngs["lane_divider"])

    def pose(rec):
        m = np.eye(4)
        m[:3, :3] = Quaternion(rec["rotation"]).rotation_matrix
        m[:3, 3] = rec["translation"]
        return m

    ii, jj = np.meshgrid(np.arange(200), np.arange(200), indexing="ij")
    pts = np.stack([-50 + 0.5 * ii, -50 + 0.5 * jj, np.zeros(ii.shape), np.ones(ii.shape)], -1)
    for sample in (nusc.sample[0], nusc.sample[-1]):
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        lidar2ego = pose(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))
        ego2global = pose(nusc.get("ego_pose", sd["ego_pose_token"]))
        gt = bev_map_gt(nusc_map, lidar2global_of(ego2global, lidar2ego))
        world = pts @ (ego2global @ lidar2ego).T
        col = np.floor((world[..., 0] - x0) / res).astype(int)
        row = np.floor((y1 - world[..., 1]) / res).astype(int)
        for k, name in enumerate(BEV_MAP_CLASSES):
            ref = ref_layers[name][row, col]
            if name in ("stop_line", "divider"):
                assert not (ref & ~_near(gt[k])).any(), name
                continue
            diff = gt[k] != ref
            assert diff.mean() < 0.03, (name, diff.mean())
            assert not (diff & ~_boundary(ref)).any(), name
        # the ego stands on the drivable area, at the grid centre (x = y = 0: i = j = 100)
        assert gt[0, 98:103, 98:103].all()


# ------------------------------------------------------------------ metric
def test_metric_hand_computed():
    """Two classes, two samples of 2 x 2 cells, thresholds 0.4 and 0.6 (``>=``).

    class a, sample 1: p = .3 .5 .7 .9, gt = 0 1 1 0; sample 2: p = .45 .65 .1 .6, gt = 1 1 0 0
      t = .4: s1 pred 0 1 1 1 -> TP 2 FP 1 FN 0; s2 pred 1 1 0 1 -> TP 2 FP 1 FN 0: 4/6
      t = .6: s1 pred 0 0 1 1 -> TP 1 FP 1 FN 1; s2 pred 0 1 0 1 -> TP 1 FP 1 FN 1: 2/6
    class b, sample 1: p = .5 x4, gt = 1 x4; sample 2: p = .1 x4, gt = 0 0 0 1
      t = .4: TP 4, FN 1 -> 4/5;  t = .6: TP 0, FN 5 -> 0
    max: a 4/6, b 4/5; mIoU@max = (4/6 + 4/5) / 2. Accumulated over the set, not averaged per
    sample (class b per sample at .4: 1 and 0)."""
    pred = np.array([[[.3, .5, .7, .9], [.5, .5, .5, .5]],
                     [[.45, .65, .1, .6], [.1, .1, .1, .1]]], np.float32).reshape(2, 2, 2, 2)
    gt = np.array([[[0, 1, 1, 0], [1, 1, 1, 1]],
                   [[1, 1, 0, 0], [0, 0, 0, 1]]], bool).reshape(2, 2, 2, 2)
    metric = BEVMapSegIoU(classes=("a", "b"), thresholds=(0.4, 0.6))
    metric.update(pred[:1], gt[:1])
    metric.update(pred[1:], gt[1:])
    out = metric.compute()
    expected = {"a@0.40": 4 / 6, "a@0.60": 2 / 6, "a@max": 4 / 6,
                "b@0.40": 4 / 5, "b@0.60": 0.0, "b@max": 4 / 5,
                "mIoU@max": (4 / 6 + 4 / 5) / 2}
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-6), key
    np.testing.assert_array_equal(metric.tp, [[4, 2], [4, 0]])
    np.testing.assert_array_equal(metric.fp, [[2, 2], [0, 0]])
    np.testing.assert_array_equal(metric.fn, [[0, 2], [1, 5]])
    # one batch of both samples (torch input) counts the same
    torch = pytest.importorskip("torch")
    both = BEVMapSegIoU(classes=("a", "b"), thresholds=(0.4, 0.6))
    both.update(torch.from_numpy(pred), torch.from_numpy(gt))
    assert both.compute() == out


def test_metric_default_protocol():
    """BEVFusion's six classes and seven thresholds; a perfect prediction scores 1, an
    absent class with no prediction 0 (BEVFusion's 1e-7 denominator)."""
    assert THRESHOLDS == pytest.approx([0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65])
    metric = BEVMapSegIoU()
    gt = np.zeros((1, 6, 4, 4), bool)
    gt[0, :5, :2] = True
    metric.update(gt.astype(np.float32), gt)
    out = metric.compute()
    assert len(out) == 6 * 7 + 6 + 1
    assert out["drivable_area@0.35"] == pytest.approx(1.0)
    assert out["divider@max"] == 0.0
    assert out["mIoU@max"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="must both be"):
        metric.update(np.zeros((1, 5, 4, 4), np.float32), np.zeros((1, 5, 4, 4), bool))
    assert math.isfinite(out["mIoU@max"])
