"""Generate a dataset and write it in the nuScenes v1.0 table layout."""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import time

import cv2
import numpy as np

from lidarcl.utils.paths import safe_file_stem

from . import scene as S
from . import sensors as SE
from .constants import (ATTRIBUTE_NAMES, CAMERA_CHANNELS, CAMERA_RIG, CATEGORY_NAMES,
                        LIDAR_CHANNEL, LIDAR_ROTATION, LIDAR_TRANSLATION,
                        VISIBILITY_LEVELS, fixed_token)
from .map_expansion import build_map_expansion
from .maps import rasterize_layers

KEYFRAME_PERIOD_S = 0.5
ANNOTATION_RANGE = 70.0
LOCATION = "synthetic-grid-city"
BASE_TIMESTAMP_US = 1_600_000_000_000_000
DEVKIT_MAP_RESOLUTION = 0.1   # nuscenes-devkit MapMask native resolution


class _Tokens:
    def __init__(self, seed, stream: int = 7):
        self.rng = np.random.default_rng([seed, stream])

    def __call__(self):
        return self.rng.bytes(16).hex()


def _dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=0, separators=(",", ":"))


def _attribute(actor, speed):
    cat = actor.category
    if cat.startswith("vehicle.bicycle") or cat.startswith("vehicle.motorcycle"):
        return ["cycle.with_rider"]
    if cat.startswith("vehicle."):
        if actor.parked:
            return ["vehicle.parked"]
        return ["vehicle.moving"] if speed > 0.3 else ["vehicle.stopped"]
    if cat.startswith("human.pedestrian"):
        return ["pedestrian.moving"] if speed > 0.3 else ["pedestrian.standing"]
    return []


def _visibility(visible, expected):
    if expected <= 0:
        return "1"
    frac = min(1.0, visible / expected)
    return str(1 + int(np.searchsorted([0.4, 0.6, 0.8], frac, side="right")))


def _check_arguments(scenes, keyframes, image_size, sweeps_per_keyframe, version, val_scenes,
                     map_resolution, jpeg_quality, density) -> tuple[int, int]:
    """Every argument checked before anything is written (a ValueError saying which one),
    so that an impossible request leaves no half-written dataset behind. Returns the
    image size as ``(W, H)`` ints."""
    if scenes < 1 or keyframes < 1:
        raise ValueError(f"need at least one scene and one keyframe, got scenes={scenes}, "
                         f"keyframes={keyframes}")
    if val_scenes is not None and not 0 <= val_scenes < scenes:
        # the val scenes are taken from the scenes generated: at least one must stay in train
        raise ValueError(f"val_scenes must be between 0 and scenes - 1 = {scenes - 1} (at "
                         f"least one training scene), got val_scenes={val_scenes}")
    if sweeps_per_keyframe < 0:
        raise ValueError(f"sweeps_per_keyframe must be >= 0, got {sweeps_per_keyframe}")
    if len(image_size) != 2 or min(int(v) for v in image_size) < 1:
        raise ValueError(f"image_size must be two positive ints (W, H), got {tuple(image_size)}")
    if not (isinstance(version, str) and safe_file_stem(version) == version):
        raise ValueError(f"version must be a plain folder name (letters, digits, '.', '_', "
                         f"'-'), got {version!r}")
    if not (np.isfinite(map_resolution) and map_resolution > 0):
        raise ValueError(f"map_resolution must be a positive number of metres, got "
                         f"{map_resolution}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be between 1 and 100, got {jpeg_quality}")
    if not (np.isfinite(density) and density >= 0):
        raise ValueError(f"density must be >= 0, got {density}")
    return int(image_size[0]), int(image_size[1])


def generate_dataset(out_dir, scenes: int = 2, keyframes: int = 10, seed: int = 0,
                     image_size=(800, 450), sweeps_per_keyframe: int = 9,
                     version: str = "v1.0-synthetic", val_scenes: int | None = None,
                     write_depth: bool = False, map_resolution: float = 0.2,
                     jpeg_quality: int = 90, density: float = 1.0, overwrite: bool = False,
                     verbose: bool = False) -> dict:
    """Generate ``scenes`` driving scenes of ``keyframes`` annotated samples each.

    Writes the nuScenes v1.0 layout under ``out_dir`` (see docs/synthetic_format.md) and
    returns a summary dict. The output depends only on the arguments (byte-identical files
    for the same arguments). ``sweeps_per_keyframe`` intermediate lidar sweeps are evenly
    spaced between keyframes (9 gives nuScenes' 20 Hz). ``write_depth`` also stores each
    camera's rendered depth (uint16 PNG, centimetres, 0 = sky) under ``depth/``.
    An existing dataset in ``out_dir`` raises ``FileExistsError`` unless ``overwrite``, which
    first deletes the folders the generator writes (tables, samples, sweeps, lidarseg, maps,
    depth) and nothing else. ``val_scenes`` of the scenes (default: a fifth, at least one when
    there are two or more) form the val split; at least one scene must stay in train.
    Impossible arguments raise ``ValueError`` before anything is created or deleted.
    """
    image_size = _check_arguments(scenes, keyframes, image_size, sweeps_per_keyframe, version,
                                  val_scenes, map_resolution, jpeg_quality, density)
    t_start = time.perf_counter()
    root = osp.abspath(out_dir)
    if osp.exists(root) and not osp.isdir(root):
        raise ValueError(f"out_dir {root} exists and is not a folder")
    table_dir = osp.join(root, version)
    owned = [version, "samples", "sweeps", "lidarseg", "maps", "depth"]
    if any(osp.exists(osp.join(root, d)) for d in owned):
        if not overwrite:
            raise FileExistsError(f"{root} already holds a dataset ({', '.join(d for d in owned if osp.exists(osp.join(root, d)))}); "
                                  "pass overwrite=True (--overwrite) to replace it")
        for d in owned:
            shutil.rmtree(osp.join(root, d), ignore_errors=True)
    for sub in [version, "maps", osp.join("maps", "bev"), osp.join("maps", "expansion"),
                osp.join("lidarseg", version),
                osp.join("samples", LIDAR_CHANNEL), osp.join("sweeps", LIDAR_CHANNEL)] + \
            [osp.join("samples", c) for c in CAMERA_CHANNELS]:
        os.makedirs(osp.join(root, sub), exist_ok=True)
    if write_depth:
        for c in CAMERA_CHANNELS:
            os.makedirs(osp.join(root, "depth", c), exist_ok=True)

    tok = _Tokens(seed)
    sweep_dt = KEYFRAME_PERIOD_S / (sweeps_per_keyframe + 1)
    duration = KEYFRAME_PERIOD_S * keyframes + 0.2
    max_route = 5.0 + 9.0 * 1.35 * duration + 40.0
    half_extent = float(np.ceil(max(220.0, max_route + 150.0) / 10.0) * 10.0)
    offset = np.array([half_extent, half_extent, 0.0])   # global = city + offset (>= 0 like nuScenes)
    city = S.make_city(np.random.default_rng([seed, 1]), half_extent)

    # ------------------------------------------------------------ fixed tables
    category = [{"token": fixed_token("category", n), "name": n, "description": n, "index": i}
                for i, n in enumerate(CATEGORY_NAMES)]
    cat_tok = {c["name"]: c["token"] for c in category}
    attribute = [{"token": fixed_token("attribute", n), "name": n, "description": n}
                 for n in ATTRIBUTE_NAMES]
    attr_tok = {a["name"]: a["token"] for a in attribute}
    visibility = [{"token": str(i + 1), "level": lv, "description": f"visibility of whole object "
                   f"is between {lv[1:].replace('-', ' and ')}%"} for i, lv in enumerate(VISIBILITY_LEVELS)]
    sensor = [{"token": fixed_token("sensor", c), "channel": c,
               "modality": "lidar" if c == LIDAR_CHANNEL else "camera"}
              for c in (LIDAR_CHANNEL,) + CAMERA_CHANNELS]
    sens_tok = {s["channel"]: s["token"] for s in sensor}
    calibrated_sensor = [{"token": fixed_token("calibrated_sensor", LIDAR_CHANNEL),
                          "sensor_token": sens_tok[LIDAR_CHANNEL],
                          "translation": list(LIDAR_TRANSLATION), "rotation": list(LIDAR_ROTATION),
                          "camera_intrinsic": []}]
    for c in CAMERA_CHANNELS:
        fx, fy, cx, cy = SE.camera_intrinsics(c, image_size)
        calibrated_sensor.append({
            "token": fixed_token("calibrated_sensor", f"{c}/{image_size[0]}x{image_size[1]}"),
            "sensor_token": sens_tok[c], "translation": list(CAMERA_RIG[c][0]),
            "rotation": list(CAMERA_RIG[c][1]),
            "camera_intrinsic": [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]})
    cs_tok = {LIDAR_CHANNEL: calibrated_sensor[0]["token"]}
    cs_tok.update({c: calibrated_sensor[i + 1]["token"] for i, c in enumerate(CAMERA_CHANNELS)})

    logs, scene_tab, samples, sample_data, ego_poses = [], [], [], [], []
    instances, annotations, lidarseg = [], [], []
    n_points, n_sweeps = [], 0
    t_lidar = t_cam = 0.0

    def add_ego_pose(scn, t, ts):
        x, y, yaw = scn.ego_pose(t)
        rec = {"token": tok(), "timestamp": ts,
               "rotation": SE.yaw_quaternion(yaw).tolist(),
               "translation": [x + offset[0], y + offset[1], 0.0]}
        ego_poses.append(rec)
        return rec["token"]

    for si in range(scenes):
        srng = np.random.default_rng([seed, 100 + si])
        scn = S.make_scene(srng, city, duration, density)
        log_token = tok()
        date = time.strftime("%Y-%m-%d", time.gmtime((BASE_TIMESTAMP_US + si * 3_600_000_000) / 1e6))
        logfile = f"syn{seed % 1000:03d}-{date}-scene{si:04d}"
        logs.append({"token": log_token, "logfile": logfile, "vehicle": "syn-ego",
                     "date_captured": date, "location": LOCATION})
        scene_token = tok()
        ts0 = BASE_TIMESTAMP_US + si * 3_600_000_000 + seed * 1000
        sample_tokens = [tok() for _ in range(keyframes)]
        inst_tokens = {}
        inst_anns: dict = {}
        prev_sd = {c: None for c in (LIDAR_CHANNEL,) + CAMERA_CHANNELS}
        sim_rng = np.random.default_rng([seed, 200 + si])
        # the intermediate sweeps draw from their own stream: the keyframes' points and
        # labels do not depend on sweeps_per_keyframe (the tokens do: one counter names
        # every record)
        sweep_rng = np.random.default_rng([seed, 300 + si])

        def add_sd(channel, ts, t, sample_token, filename, key, width=0, height=0):
            rec = {"token": tok(), "sample_token": sample_token, "ego_pose_token": add_ego_pose(scn, t, ts),
                   "calibrated_sensor_token": cs_tok[channel], "timestamp": ts,
                   "fileformat": "pcd" if channel == LIDAR_CHANNEL else "jpg",
                   "is_key_frame": key, "height": height, "width": width, "filename": filename,
                   "prev": "", "next": ""}
            if prev_sd[channel] is not None:
                rec["prev"] = prev_sd[channel]["token"]
                prev_sd[channel]["next"] = rec["token"]
            prev_sd[channel] = rec
            sample_data.append(rec)
            return rec

        for k in range(keyframes):
            t_key = KEYFRAME_PERIOD_S * (k + 1)
            ts_key = ts0 + int(round(t_key * 1e6))
            # ---- intermediate sweeps before this keyframe
            for j in range(sweeps_per_keyframe, 0, -1):
                t = t_key - j * sweep_dt
                ts = ts0 + int(round(t * 1e6))
                tl = time.perf_counter()
                sw = SE.simulate_sweep(scn, t, sweep_rng)
                t_lidar += time.perf_counter() - tl
                fn = f"sweeps/{LIDAR_CHANNEL}/{logfile}__{LIDAR_CHANNEL}__{ts}.pcd.bin"
                sw.points.tofile(osp.join(root, fn))
                add_sd(LIDAR_CHANNEL, ts, t, sample_tokens[k], fn, False)
                n_sweeps += 1
            # ---- keyframe lidar
            boxes = scn.boxes(t_key)
            tl = time.perf_counter()
            sw = SE.simulate_sweep(scn, t_key, sim_rng, keyframe=True, boxes=boxes)
            t_lidar += time.perf_counter() - tl
            n_points.append(len(sw.points))
            n_sweeps += 1
            fn = f"samples/{LIDAR_CHANNEL}/{logfile}__{LIDAR_CHANNEL}__{ts_key}.pcd.bin"
            sw.points.tofile(osp.join(root, fn))
            lid = add_sd(LIDAR_CHANNEL, ts_key, t_key, sample_tokens[k], fn, True)
            seg_fn = f"lidarseg/{version}/{lid['token']}_lidarseg.bin"
            sw.labels.astype(np.uint8).tofile(osp.join(root, seg_fn))
            lidarseg.append({"token": lid["token"], "sample_data_token": lid["token"],
                             "filename": seg_fn})
            samples.append({"token": sample_tokens[k], "timestamp": ts_key,
                            "prev": sample_tokens[k - 1] if k > 0 else "",
                            "next": sample_tokens[k + 1] if k + 1 < keyframes else "",
                            "scene_token": scene_token})
            # ---- annotations
            origin = sw.lidar2world[:3, 3]
            pts_world = sw.points[:, :3].astype(np.float64) @ sw.lidar2world[:3, :3].T + origin
            for m, actor in enumerate(scn.actors):
                b = boxes[m]
                dist = np.hypot(b[0] - origin[0], b[1] - origin[1])
                rel = pts_world - b[:3]
                c, s = np.cos(b[6]), np.sin(b[6])
                inside = ((np.abs(rel[:, 0] * c + rel[:, 1] * s) <= b[3] / 2)
                          & (np.abs(-rel[:, 0] * s + rel[:, 1] * c) <= b[4] / 2)
                          & (np.abs(rel[:, 2]) <= b[5] / 2))
                npts = int(inside.sum())
                if dist > ANNOTATION_RANGE or (npts == 0 and dist > 40.0):
                    continue
                if m not in inst_tokens:
                    inst_tokens[m] = tok()
                speed = float(np.hypot(*actor.velocity(t_key)))
                ann = {"token": tok(), "sample_token": sample_tokens[k],
                       "instance_token": inst_tokens[m],
                       "visibility_token": _visibility(sw.visible_rays[m], sw.expected_rays[m]),
                       "attribute_tokens": [attr_tok[a] for a in _attribute(actor, speed)],
                       "translation": [float(b[0] + offset[0]), float(b[1] + offset[1]), float(b[2])],
                       "size": [float(b[4]), float(b[3]), float(b[5])],
                       "rotation": SE.yaw_quaternion(b[6]).tolist(),
                       "prev": "", "next": "", "num_lidar_pts": npts, "num_radar_pts": 0}
                lst = inst_anns.setdefault(m, [])
                if lst:
                    ann["prev"] = lst[-1]["token"]
                    lst[-1]["next"] = ann["token"]
                lst.append(ann)
                annotations.append(ann)
            # ---- cameras (own timestamps and ego poses)
            tc = time.perf_counter()
            for c in CAMERA_CHANNELS:
                t = t_key + CAMERA_RIG[c][3]
                ts = ts0 + int(round(t * 1e6))
                rgb, depth, _ = SE.render_camera(scn, c, t, image_size, noise_seed=k)
                fn = f"samples/{c}/{logfile}__{c}__{ts}.jpg"
                ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                                       [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for {fn}")
                buf.tofile(osp.join(root, fn))
                if write_depth:
                    d16 = np.clip(np.round(depth * 100.0), 0, 65535).astype(np.uint16)
                    cv2.imwrite(osp.join(root, "depth", c, osp.basename(fn)[:-4] + ".png"), d16)
                add_sd(c, ts, t, sample_tokens[k], fn, True, image_size[0], image_size[1])
            t_cam += time.perf_counter() - tc
        for m, anns in inst_anns.items():
            instances.append({"token": inst_tokens[m],
                              "category_token": cat_tok[scn.actors[m].category],
                              "nbr_annotations": len(anns),
                              "first_annotation_token": anns[0]["token"],
                              "last_annotation_token": anns[-1]["token"]})
        scene_tab.append({"token": scene_token, "log_token": log_token, "nbr_samples": keyframes,
                          "first_sample_token": sample_tokens[0],
                          "last_sample_token": sample_tokens[-1],
                          "name": f"scene-{si + 1:04d}",
                          "description": f"synthetic grid city, seed {seed}, "
                                         f"{len(scn.actors)} actors"})

    # ------------------------------------------------------------ maps
    map_token = tok()
    layers, (x0, y0, x1, y1) = rasterize_layers(city.layout, map_resolution, city.building_boxes)
    for name, img in layers.items():
        cv2.imwrite(osp.join(root, "maps", "bev", f"{name}.png"), img)
    _dump(osp.join(root, "maps", "bev", "meta.json"), {
        "location": LOCATION, "resolution": map_resolution,
        "origin": [x0 + offset[0], y0 + offset[1]],
        "extent": [x0 + offset[0], y0 + offset[1], x1 + offset[0], y1 + offset[1]],
        "size": [int(layers["drivable_area"].shape[1]), int(layers["drivable_area"].shape[0])],
        "row0": "north (max y)", "col0": "west (min x)", "layers": sorted(layers)})
    prior, _ = rasterize_layers(city.layout, DEVKIT_MAP_RESOLUTION)
    map_fn = f"maps/{map_token}.png"
    cv2.imwrite(osp.join(root, map_fn), prior["drivable_area"])
    maps = [{"token": map_token, "log_tokens": [lg["token"] for lg in logs],
             "category": "semantic_prior", "filename": map_fn}]
    # vector map for nuscenes-devkit's NuScenesMap (own token stream: the tables' tokens stay)
    expansion = build_map_expansion(city.layout, offset[:2], _Tokens(seed, stream=8))
    with open(osp.join(root, "maps", "expansion", f"{LOCATION}.json"), "w") as f:
        json.dump(expansion, f, separators=(",", ":"))

    tables = {"attribute": attribute, "calibrated_sensor": calibrated_sensor,
              "category": category, "ego_pose": ego_poses, "instance": instances, "log": logs,
              "map": maps, "sample": samples, "sample_annotation": annotations,
              "sample_data": sample_data, "scene": scene_tab, "sensor": sensor,
              "visibility": visibility, "lidarseg": lidarseg}
    for name, tab in tables.items():
        _dump(osp.join(table_dir, f"{name}.json"), tab)
    names = [s["name"] for s in scene_tab]
    n_val = val_scenes if val_scenes is not None else (max(1, len(names) // 5) if len(names) > 1 else 0)
    n_val = min(n_val, len(names) - 1)
    _dump(osp.join(table_dir, "splits.json"),
          {"train": names[:len(names) - n_val], "val": names[len(names) - n_val:]})
    summary = {"dataroot": root, "version": version, "scenes": scenes, "val_scenes": n_val,
               "samples": len(samples), "sample_data": len(sample_data), "lidar_sweeps": n_sweeps,
               "annotations": len(annotations), "instances": len(instances),
               "mean_points_per_keyframe": float(np.mean(n_points)),
               "seconds": time.perf_counter() - t_start, "seconds_lidar": t_lidar,
               "seconds_cameras": t_cam}
    if verbose:
        print(json.dumps(summary, indent=1))
    return summary
