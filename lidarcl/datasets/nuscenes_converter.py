"""nuScenes tables -> lidarcl info index (``lidarcl/datasets/info_format.py``).

Reads the tables with nuscenes-devkit once, at conversion time, so that training workers
never need the devkit. Every geometric quantity is produced the way the devkit produces it:

* boxes: ``NuScenes.get_boxes`` of the LiDAR sample_data (global frame), then the devkit's
  ``Box`` chain global -> ego (LiDAR timestamp) -> LiDAR, as ``NuScenes.get_sample_data``
  does; stored as ``[x, y, z, l=wlh[1], w=wlh[0], h=wlh[2], yaw]`` with ``yaw`` the heading
  of the box's rotated +x axis in the LiDAR frame (``structures/boxes.py``);
* velocity: ``NuScenes.box_velocity`` (global, NaN when it cannot be estimated) with its
  z set to 0 and rotated into the LiDAR frame (rotation only);
* cameras: ``lidar2cam`` = cam<-ego(camera time)<-global<-ego(LiDAR time)<-LiDAR, the chain
  of ``NuScenesExplorer.map_pointcloud_to_image``; ``cam2img`` is the 3x3 intrinsic padded
  to 4x4; ``lidar2img = cam2img @ lidar2cam``;
* sweeps: previous LIDAR_TOP sample_data along ``prev`` (newest first), ``sweep2lidar`` =
  key LiDAR<-key ego<-global<-sweep ego<-sweep LiDAR, ``time_lag`` in seconds.

Splits: for the official versions (``v1.0-mini``, ``v1.0-trainval``, ``v1.0-test``) the
devkit's ``create_splits_scenes`` by scene name (mini: ``mini_train``/``mini_val`` are
written as ``train``/``val``). For any other version ``ROOT/VERSION/splits.json``
(``{"train": [scene names], "val": [...], ...}``, the devkit's custom-split file) when it
exists, otherwise every scene goes to ``train``. One file
``<out_dir>/<prefix>_infos_<split>.json`` is written for **every split the version defines,
even when it is empty**, so that configs can name the files without knowing the content.
Scenes that no split lists are left out (with a warning); a split naming a scene that the
tables lack raises :class:`DataError`.

Bad tables: the devkit answers a missing, empty or malformed table, or a token that points
nowhere, with a bare ``JSONDecodeError``/``KeyError`` that names no table, or (for ``[]`` or
a dangling ``sample.scene_token``) with no error at all. :func:`load_nuscenes` therefore
checks the tables the devkit loaded (:func:`check_tables`: lists of records with tokens, the
tables that must not be empty, the references the devkit and this converter follow), and
when the devkit itself fails it reads the tables again only to name the culprit. Every file a
keyframe's info lists (LiDAR, sweeps, camera images, lidarseg labels) must lie inside the
dataroot (``confined_path``) and exist; each failure is a :class:`DataError` naming the table
file, the record's token and the problem.
"""
from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace
from typing import Any

import numpy as np

from lidarcl.datasets.info_format import write_info_index
from lidarcl.datasets.nuscenes_constants import CAMERA_CHANNELS
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.structures.boxes import yaw_from_matrix
from lidarcl.structures.camera import pad_to_4x4
from lidarcl.structures.transforms import inverse_rigid, transform_from_pose
from lidarcl.utils.paths import confined_path

logger = logging.getLogger(__name__)

LIDAR_CHANNEL = "LIDAR_TOP"
NUM_POINT_FEATURES = 5  # x, y, z, intensity, ring index

# the nuScenes detection classes, in the order of the official detection challenge
DETECTION_CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
                     "motorcycle", "bicycle", "pedestrian", "traffic_cone")

# official version -> {our split name: devkit split name}
OFFICIAL_SPLITS = {
    "v1.0-mini": {"train": "mini_train", "val": "mini_val"},
    "v1.0-trainval": {"train": "train", "val": "val"},
    "v1.0-test": {"test": "test"},
}


# the tables NuScenes() always loads (its ``table_names``) and those it loads when present
REQUIRED_TABLES = ("category", "attribute", "visibility", "instance", "sensor",
                   "calibrated_sensor", "ego_pose", "log", "scene", "sample", "sample_data",
                   "sample_annotation", "map")
OPTIONAL_TABLES = ("lidarseg", "panoptic")
# without records here there is nothing to convert (and the devkit indexes map[0]);
# v1.0-test legitimately has no sample_annotation / instance records
NON_EMPTY_TABLES = ("sensor", "calibrated_sensor", "ego_pose", "log", "scene", "sample",
                    "sample_data", "map")
# (table, field, referenced table, "" allowed): the references that the devkit's reverse
# index or this converter follow; a list field references each of its elements
REFERENCES = (
    ("scene", "first_sample_token", "sample", False),
    ("sample", "scene_token", "scene", False),
    ("sample", "prev", "sample", True),
    ("sample", "next", "sample", True),
    ("sample_data", "sample_token", "sample", False),
    ("sample_data", "calibrated_sensor_token", "calibrated_sensor", False),
    ("sample_data", "ego_pose_token", "ego_pose", False),
    ("sample_data", "prev", "sample_data", True),
    ("sample_data", "next", "sample_data", True),
    ("calibrated_sensor", "sensor_token", "sensor", False),
    ("sample_annotation", "sample_token", "sample", False),
    ("sample_annotation", "instance_token", "instance", False),
    ("sample_annotation", "attribute_tokens", "attribute", False),
    ("sample_annotation", "prev", "sample_annotation", True),
    ("sample_annotation", "next", "sample_annotation", True),
    ("instance", "category_token", "category", False),
    ("lidarseg", "sample_data_token", "sample_data", False),
    ("panoptic", "sample_data_token", "sample_data", False),
)


def _import_devkit():
    try:
        from nuscenes.nuscenes import NuScenes
    except ImportError as exc:  # pragma: no cover - declared dependency of the converter
        raise ImportError("converting nuScenes needs nuscenes-devkit "
                          "(pip install nuscenes-devkit)") from exc
    return NuScenes


def _table_file(table_root: str, table: str) -> str:
    return os.path.join(table_root, f"{table}.json")


def check_tables(tables: dict[str, Any], table_root: str) -> None:
    """Raise :class:`DataError` naming the table file for a table that is not a list of
    records with string tokens, an empty table of ``NON_EMPTY_TABLES``, a record lacking a
    field of ``REFERENCES`` or a token there that its table lacks, and a log that no map
    lists (the devkit's reverse index needs one per log). ``tables``: name -> parsed JSON."""
    tokens: dict[str, set] = {}
    for name, table in tables.items():
        path = _table_file(table_root, name)
        if not isinstance(table, list):
            raise DataError(path, f"expected a JSON list of records, got {type(table).__name__}")
        if not table and name in NON_EMPTY_TABLES:
            raise DataError(path, f"the {name} table is empty ([]); it needs at least one record")
        for i, rec in enumerate(table):
            if not isinstance(rec, dict) or not isinstance(rec.get("token"), str):
                raise DataError(path, f"record {i} is not an object with a string 'token'")
        tokens[name] = {rec["token"] for rec in table}
    for table, field, target, may_be_empty in REFERENCES:
        if table not in tables:
            continue
        path = _table_file(table_root, table)
        for rec in tables[table]:
            if field not in rec:
                raise DataError(path, f"{table} {rec['token']} lacks the field {field!r}")
            values = rec[field] if isinstance(rec[field], list) else [rec[field]]
            for value in values:
                if may_be_empty and value == "":
                    continue
                if not isinstance(value, str) or value not in tokens[target]:
                    raise DataError(path, f"{table} {rec['token']}: {field} {value!r} is not a "
                                          f"token of {target}.json (dangling reference)")
    mapped = {t for rec in tables.get("map", ()) for t in rec["log_tokens"]}
    for rec in tables.get("log", ()):
        if rec["token"] not in mapped:
            raise DataError(_table_file(table_root, "map"),
                            f"log {rec['token']} is in no map record's log_tokens")


def _read_table(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from exc


def load_nuscenes(root: str, version: str):
    """``NuScenes(version, root)`` with its tables checked (module docstring, "Bad tables").

    The devkit parses the tables once; :func:`check_tables` then runs on what it loaded. Only
    when the devkit fails are the tables parsed again here, to name the file and record at
    fault (a trainval release holds about a gigabyte of JSON: no second parse otherwise).
    """
    table_root = os.path.join(root, version)
    present = list(REQUIRED_TABLES) + [t for t in OPTIONAL_TABLES
                                       if os.path.exists(_table_file(table_root, t))]
    for name in present:
        path = _table_file(table_root, name)
        if not os.path.isfile(path):
            raise DataFileNotFound(path, f"nuScenes table {name!r}")
        if os.path.getsize(path) == 0:
            raise DataError(path, "empty file (0 bytes); expected a JSON list of records")
    NuScenes = _import_devkit()
    try:
        nusc = NuScenes(version=version, dataroot=root, verbose=False)
    except MemoryError:
        raise
    except Exception as exc:  # the devkit's error names no table: find the culprit
        tables = {name: _read_table(_table_file(table_root, name)) for name in present}
        check_tables(tables, table_root)
        where = SimpleNamespace(dataroot=root, table_root=table_root)
        for task in OPTIONAL_TABLES:  # the devkit counts their label files before anything
            for rec in tables.get(task, ()):
                _data_file(where, task, f"{task} of sample_data {rec['sample_data_token']}",
                           rec.get("filename"))
        raise DataError(table_root, f"nuscenes-devkit cannot load the tables "
                                    f"({type(exc).__name__}: {exc})") from exc
    check_tables({name: getattr(nusc, name) for name in present}, table_root)
    return nusc


def _get(nusc, table: str, token: str) -> dict:
    """``nusc.get`` that names the table of a missing token (check_tables should have
    caught it; this keeps a foreign KeyError out should a reference slip through)."""
    try:
        return nusc.get(table, token)
    except KeyError:
        raise DataError(_table_file(nusc.table_root, table),
                        f"no {table} record with token {token!r}") from None


def _data_file(nusc, table: str, what: str, filename) -> str:
    """``filename`` of a ``table`` record, checked to stay inside the dataroot and to exist
    there (an index listing a missing file would fail at training time, far from here);
    returned unchanged, relative as in the table."""
    source = _table_file(nusc.table_root, table)
    path = confined_path(nusc.dataroot, filename, source, f"{what} filename")
    if not os.path.isfile(path):
        raise DataError(source, f"{what}: file {filename!r} not found under {nusc.dataroot}")
    return filename


def _pose(nusc, table: str, token: str) -> np.ndarray:
    rec = _get(nusc, table, token)
    return transform_from_pose(rec["translation"], rec["rotation"])


def _scene_splits(nusc, root: str, version: str) -> dict[str, list[str]]:
    """Our split name -> scene names, as documented in the module docstring."""
    if version in OFFICIAL_SPLITS:
        from nuscenes.utils.splits import create_splits_scenes

        official = create_splits_scenes()
        return {ours: list(official[theirs]) for ours, theirs in OFFICIAL_SPLITS[version].items()}
    path = os.path.join(root, version, "splits.json")
    if not os.path.isfile(path):
        return {"train": [s["name"] for s in nusc.scene]}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a JSON split file ({exc})") from exc
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(n, str) for n in v) for v in data.values()):
        raise DataError(path, 'expected {"<split>": [scene names], ...}')
    known = {s["name"] for s in nusc.scene}
    unknown = sorted({n for names in data.values() for n in names} - known)
    if unknown:
        raise DataError(path, f"split lists scenes that {version} lacks: {unknown[:5]}"
                              + (" ..." if len(unknown) > 5 else ""))
    return {str(k): list(v) for k, v in data.items()}


def _sweeps(nusc, lidar_sd: dict, lidar2ego: np.ndarray, ego2global: np.ndarray,
            max_sweeps: int) -> list[dict[str, Any]]:
    """Up to ``max_sweeps`` previous LiDAR sample_data, newest first."""
    global2lidar = inverse_rigid(lidar2ego) @ inverse_rigid(ego2global)
    sweeps = []
    sd = lidar_sd
    while len(sweeps) < max_sweeps and sd["prev"]:
        sd = _get(nusc, "sample_data", sd["prev"])
        sweep2global = (_pose(nusc, "ego_pose", sd["ego_pose_token"])
                        @ _pose(nusc, "calibrated_sensor", sd["calibrated_sensor_token"]))
        sweeps.append({
            "path": _data_file(nusc, "sample_data", f"sample_data {sd['token']}", sd["filename"]),
            "timestamp": int(sd["timestamp"]),
            "time_lag": (lidar_sd["timestamp"] - sd["timestamp"]) / 1e6,
            "sweep2lidar": (global2lidar @ sweep2global).tolist(),
            "sample_data_token": sd["token"],
            "is_key_frame": bool(sd["is_key_frame"]),
        })
    return sweeps


def _cameras(nusc, sample: dict, lidar2global: np.ndarray) -> dict[str, dict[str, Any]]:
    cams = {}
    for channel in CAMERA_CHANNELS:
        token = sample["data"].get(channel)
        if token is None:
            continue
        sd = _get(nusc, "sample_data", token)
        cs = _get(nusc, "calibrated_sensor", sd["calibrated_sensor_token"])
        if not cs.get("camera_intrinsic"):
            raise DataError(os.path.join(nusc.table_root, "calibrated_sensor.json"),
                            f"calibrated_sensor {cs['token']} of {channel} has no "
                            "camera_intrinsic")
        cam2ego = transform_from_pose(cs["translation"], cs["rotation"])
        ego2global_cam = _pose(nusc, "ego_pose", sd["ego_pose_token"])
        lidar2cam = inverse_rigid(cam2ego) @ inverse_rigid(ego2global_cam) @ lidar2global
        cam2img = pad_to_4x4(cs["camera_intrinsic"])
        cams[channel] = {
            "path": _data_file(nusc, "sample_data", f"sample_data {token}", sd["filename"]),
            "timestamp": int(sd["timestamp"]),
            "height": int(sd["height"]),
            "width": int(sd["width"]),
            "cam2img": cam2img.tolist(),
            "lidar2cam": lidar2cam.tolist(),
            "lidar2img": (cam2img @ lidar2cam).tolist(),
            "sample_data_token": sd["token"],
        }
    return cams


def _boxes(nusc, lidar_sd: dict) -> dict[str, Any]:
    """Annotations of a LiDAR sample_data in its LiDAR frame (the devkit's Box chain)."""
    from pyquaternion import Quaternion

    pose = _get(nusc, "ego_pose", lidar_sd["ego_pose_token"])
    cs = _get(nusc, "calibrated_sensor", lidar_sd["calibrated_sensor_token"])
    pose_q_inv, cs_q_inv = Quaternion(pose["rotation"]).inverse, Quaternion(cs["rotation"]).inverse
    global2lidar_rot = cs_q_inv.rotation_matrix @ pose_q_inv.rotation_matrix

    boxes, velocity, names, attributes, num_pts, instances, anns = [], [], [], [], [], [], []
    for box in nusc.get_boxes(lidar_sd["token"]):
        # global -> ego -> sensor, exactly as NuScenes.get_sample_data
        box.translate(-np.array(pose["translation"]))
        box.rotate(pose_q_inv)
        box.translate(-np.array(cs["translation"]))
        box.rotate(cs_q_inv)
        ann = _get(nusc, "sample_annotation", box.token)
        w, l, h = box.wlh
        boxes.append([*map(float, box.center), float(l), float(w), float(h),
                      yaw_from_matrix(box.orientation.rotation_matrix)])
        velo = np.asarray(nusc.box_velocity(box.token), dtype=np.float64)
        velo = global2lidar_rot @ np.array([velo[0], velo[1], 0.0])
        velocity.append([float(velo[0]), float(velo[1])])
        names.append(ann["category_name"])
        attributes.append(_get(nusc, "attribute", ann["attribute_tokens"][0])["name"]
                          if ann["attribute_tokens"] else "")
        num_pts.append(int(ann["num_lidar_pts"]))
        instances.append(ann["instance_token"])
        anns.append(ann["token"])
    return {"gt_boxes": boxes, "gt_velocity": velocity, "gt_names": names,
            "gt_attributes": attributes, "num_lidar_pts": num_pts,
            "instance_tokens": instances, "ann_tokens": anns}


def _lidarseg_paths(nusc) -> dict[str, str]:
    """LiDAR sample_data token -> lidarseg .bin path (empty without nuScenes-lidarseg)."""
    table = getattr(nusc, "lidarseg", None) or []
    return {rec.get("sample_data_token", rec["token"]): rec["filename"] for rec in table}


def _location(nusc, sample: dict) -> str:
    """The map location of the sample's log (``boston-seaport``, ...): which map expansion
    file holds its surroundings (BEV map segmentation)."""
    log = _get(nusc, "log", _get(nusc, "scene", sample["scene_token"])["log_token"])
    return str(log["location"])


def sample_info(nusc, sample: dict, max_sweeps: int = 10,
                lidarseg: dict[str, str] | None = None) -> dict[str, Any]:
    """The info (info_format.py) of one nuScenes keyframe."""
    lidar_token = sample["data"].get(LIDAR_CHANNEL)
    if lidar_token is None:
        raise DataError(os.path.join(nusc.table_root, "sample.json"),
                        f"sample {sample['token']} has no {LIDAR_CHANNEL} sample_data")
    lidar_sd = _get(nusc, "sample_data", lidar_token)
    lidar2ego = _pose(nusc, "calibrated_sensor", lidar_sd["calibrated_sensor_token"])
    ego2global = _pose(nusc, "ego_pose", lidar_sd["ego_pose_token"])
    annotations = _boxes(nusc, lidar_sd)
    ann_tokens = annotations.pop("ann_tokens")
    lidarseg_path = (lidarseg or {}).get(lidar_token)
    if lidarseg_path is not None:
        lidarseg_path = _data_file(nusc, "lidarseg", f"lidarseg of sample_data {lidar_token}",
                                   lidarseg_path)
    info = {
        "token": sample["token"],
        "timestamp": int(sample["timestamp"]),
        "lidar_path": _data_file(nusc, "sample_data", f"sample_data {lidar_token}",
                                 lidar_sd["filename"]),
        "num_point_features": NUM_POINT_FEATURES,
        "lidar2ego": lidar2ego.tolist(),
        "ego2global": ego2global.tolist(),
        "sweeps": _sweeps(nusc, lidar_sd, lidar2ego, ego2global, max_sweeps),
        "cams": _cameras(nusc, sample, ego2global @ lidar2ego),
        **annotations,
        "lidarseg_path": lidarseg_path,
        "scene_token": sample["scene_token"],
        "prev": sample["prev"],
        "next": sample["next"],
        "location": _location(nusc, sample),
        # extras: the LiDAR sample_data token and the sample_annotation token of each box
        "nuscenes": {"lidar_token": lidar_token, "ann_tokens": ann_tokens},
    }
    return info


def _checked_sample_info(nusc, sample: dict, max_sweeps: int, lidarseg) -> dict[str, Any]:
    """:func:`sample_info`, with a malformed field of a record it reads (missing, wrong type
    or shape, a zero quaternion) reported as a DataError naming the tables and the sample
    instead of a numpy/pyquaternion traceback that names neither."""
    try:
        return sample_info(nusc, sample, max_sweeps, lidarseg)
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as exc:
        problem = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(nusc.table_root, f"sample {sample['token']}: a record it uses is "
                                         f"malformed ({type(exc).__name__}: {problem})") from exc


def create_nuscenes_infos(root: str | os.PathLike, version: str, out_dir: str | os.PathLike,
                          max_sweeps: int = 10, prefix: str = "nuscenes") -> list[str]:
    """Convert a nuScenes release (or the generator's copy of its layout) to info indexes.

    Args:
        root: dataroot holding ``VERSION/*.json``, ``samples/``, ``sweeps/``.
        version: table version, e.g. ``v1.0-mini``.
        out_dir: where ``<prefix>_infos_<split>.json`` are written.
        max_sweeps: previous LiDAR sweeps kept per keyframe.
        prefix: file name prefix.

    Returns:
        The written paths, one per split of the version (see the module docstring).
    """
    root = os.fspath(root)
    table_root = os.path.join(root, version)
    if not os.path.isdir(table_root):
        raise DataError(table_root, f"nuScenes tables of version {version!r} not found")
    if max_sweeps < 0:
        raise ValueError(f"max_sweeps must be >= 0, got {max_sweeps}")
    nusc = load_nuscenes(root, version)

    splits = _scene_splits(nusc, root, version)
    scene_split = {}
    for split, names in splits.items():
        for name in names:
            scene_split.setdefault(name, split)
    lidarseg = _lidarseg_paths(nusc)

    infos: dict[str, list] = {split: [] for split in splits}
    skipped = []
    for scene in nusc.scene:
        split = scene_split.get(scene["name"])
        if split is None:
            skipped.append(scene["name"])
            continue
        token, seen = scene["first_sample_token"], set()
        while token:
            if token in seen:  # a cycle of next tokens would loop for ever
                raise DataError(_table_file(nusc.table_root, "sample"), f"sample {token} comes "
                                f"twice in the next-chain of scene {scene['token']}")
            seen.add(token)
            sample = _get(nusc, "sample", token)
            infos[split].append(_checked_sample_info(nusc, sample, max_sweeps, lidarseg))
            token = sample["next"]
    if skipped:
        logger.warning("nuScenes %s: %d scenes in no split were left out (%s%s)", version,
                       len(skipped), ", ".join(skipped[:5]), " ..." if len(skipped) > 5 else "")

    categories = [c["name"] for c in nusc.category]
    metadata = {
        "dataset": "nuscenes",
        "version": version,
        "data_root": os.path.abspath(root),
        "classes": list(DETECTION_CLASSES),
        "categories": categories,
        "max_sweeps": int(max_sweeps),
    }
    if all("index" in c for c in nusc.category):
        # lidarseg label index of each category (nuScenes-lidarseg's category.json)
        metadata["lidarseg_categories"] = {c["name"]: int(c["index"]) for c in nusc.category}

    written = []
    for split, split_infos in infos.items():
        path = os.path.join(os.fspath(out_dir), f"{prefix}_infos_{split}.json")
        write_info_index(path, split_infos, {**metadata, "split": split})
        logger.info("wrote %d samples to %s", len(split_infos), path)
        written.append(path)
    return written
