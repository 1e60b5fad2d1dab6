"""Export a nuScenes-layout dataset with lidarseg (the generator's) in the SemanticKITTI layout
(``lidarcl/datasets/semantickitti_converter.py``), read through nuscenes-devkit, so the
SemanticKITTI loader is tested on data whose truth is known.

One sequence per scene, in the order of the version's ``splits.json`` (train scenes first,
then val, then any other split; without the file, the scene table's order), numbered
``00, 01, ...``; the return value says which sequences each split got. Per keyframe:

* ``velodyne/XXXXXX.bin``: the LIDAR_TOP keyframe's x, y, z (LiDAR frame, as written) and
  its intensity divided by 255 (nuScenes stores 0..255, KITTI's remission is 0..1);
* ``labels/XXXXXX.label``: ``instance << 16 | semantic``: the semantic id from the point's
  nuScenes-lidarseg category through ``NUSCENES_TO_SEMANTICKITTI`` (this export's choice of
  the closest SemanticKITTI class; not an official correspondence), the instance the
  1-based index, within the sequence, of the annotated instance whose box holds the point
  (devkit ``points_in_box``; 0 outside every box);
* ``poses.txt``: ``Tr @ inv(L_0) @ L_k @ inv(Tr)``, with ``L_k = ego2global @ lidar2ego``
  of keyframe k: camera 0 in camera 0 of the first scan, as SemanticKITTI stores it;
* ``calib.txt``: ``P0..P3`` and ``Tr`` of KITTI odometry sequence 00 (values below);
* ``times.txt``: seconds since the scene's first keyframe.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

__all__ = ["NUSCENES_TO_SEMANTICKITTI", "KITTI_ODOMETRY_TR", "export_semantickitti"]

# nuScenes-lidarseg category -> SemanticKITTI raw semantic id (this export's choice)
NUSCENES_TO_SEMANTICKITTI = {
    "noise": 0, "animal": 99, "human.pedestrian.adult": 30, "human.pedestrian.child": 30,
    "human.pedestrian.construction_worker": 30, "human.pedestrian.personal_mobility": 30,
    "human.pedestrian.police_officer": 30, "human.pedestrian.stroller": 99,
    "human.pedestrian.wheelchair": 99, "movable_object.barrier": 51,
    "movable_object.debris": 99, "movable_object.pushable_pullable": 99,
    "movable_object.trafficcone": 99, "static_object.bicycle_rack": 52,
    "vehicle.bicycle": 11, "vehicle.bus.bendy": 13, "vehicle.bus.rigid": 13,
    "vehicle.car": 10, "vehicle.construction": 20, "vehicle.emergency.ambulance": 20,
    "vehicle.emergency.police": 10, "vehicle.motorcycle": 15, "vehicle.trailer": 20,
    "vehicle.truck": 18, "flat.driveable_surface": 40, "flat.other": 49,
    "flat.sidewalk": 48, "flat.terrain": 72, "static.manmade": 50, "static.other": 52,
    "static.vegetation": 70, "vehicle.ego": 0,
}
# KITTI odometry sequence 00 calib.txt: Tr (velodyne -> camera 0) and the projections
KITTI_ODOMETRY_TR = np.array([
    [4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02],
    [-7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02],
    [9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01]])
_P0 = np.array([[718.856, 0.0, 607.1928, 0.0], [0.0, 718.856, 185.2157, 0.0],
                [0.0, 0.0, 1.0, 0.0]])
KITTI_ODOMETRY_P = {"P0": _P0, "P1": _P0 + np.array([[0, 0, 0, -386.1448], [0] * 4, [0] * 4]),
                    "P2": _P0, "P3": _P0}


def _rigid(record: dict) -> np.ndarray:
    from pyquaternion import Quaternion

    matrix = np.eye(4)
    matrix[:3, :3] = Quaternion(record["rotation"]).rotation_matrix
    matrix[:3, 3] = record["translation"]
    return matrix


def _row(matrix: np.ndarray) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(matrix)[:3].reshape(-1))


def _scene_order(nusc, dataroot: str, version: str) -> tuple[list[dict], dict[str, list[str]]]:
    path = os.path.join(dataroot, version, "splits.json")
    by_name = {scene["name"]: scene for scene in nusc.scene}
    if not os.path.isfile(path):
        return list(nusc.scene), {"train": [s["name"] for s in nusc.scene]}
    with open(path, encoding="utf-8") as f:
        splits = json.load(f)
    order = [name for split in sorted(splits, key=lambda s: (s != "train", s != "val", s))
             for name in splits[split]]
    return [by_name[name] for name in order], splits


def export_semantickitti(dataroot: str, version: str, out: str,
                         overwrite: bool = False) -> dict:
    """Write ``<out>/sequences/NN/...`` (module doc) from the nuScenes-layout dataset at
    ``dataroot``; returns ``{"sequences": {NN: scene name}, "splits": {split: [NN, ...]},
    "scans": count}``. ``out/sequences`` must not exist unless ``overwrite``."""
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box

    sequences_dir = os.path.join(out, "sequences")
    if os.path.exists(sequences_dir):
        if not overwrite:
            raise FileExistsError(f"{sequences_dir} exists; pass overwrite=True (--overwrite)")
        shutil.rmtree(sequences_dir)
    nusc = NuScenes(version=version, dataroot=dataroot, verbose=False)
    lut = np.zeros(len(nusc.category), dtype=np.uint32)
    for category in nusc.category:
        lut[category["index"]] = NUSCENES_TO_SEMANTICKITTI[category["name"]]
    scenes, splits = _scene_order(nusc, dataroot, version)
    tr = np.eye(4)
    tr[:3] = KITTI_ODOMETRY_TR
    summary = {"sequences": {}, "splits": {}, "scans": 0}
    for number, scene in enumerate(scenes):
        sequence = f"{number:02d}"
        summary["sequences"][sequence] = scene["name"]
        for split, names in splits.items():
            if scene["name"] in names:
                summary["splits"].setdefault(split, []).append(sequence)
        seq_dir = os.path.join(sequences_dir, sequence)
        for sub in ("velodyne", "labels"):
            os.makedirs(os.path.join(seq_dir, sub))
        poses, times, instances = [], [], {}
        first_pose, first_time = None, None
        token = scene["first_sample_token"]
        frame = 0
        while token:
            sample = nusc.get("sample", token)
            sd_token = sample["data"]["LIDAR_TOP"]
            sd = nusc.get("sample_data", sd_token)
            path, boxes, _ = nusc.get_sample_data(sd_token)  # boxes in the LiDAR frame
            cloud = LidarPointCloud.from_file(path).points  # (4, N): x, y, z, intensity
            semantic_nus = np.fromfile(os.path.join(
                dataroot, nusc.get("lidarseg", sd_token)["filename"]), dtype=np.uint8)
            semantic = lut[semantic_nus]
            instance = np.zeros(cloud.shape[1], dtype=np.uint32)
            for box in boxes:
                ann = nusc.get("sample_annotation", box.token)
                number_in_scene = instances.setdefault(ann["instance_token"],
                                                       len(instances) + 1)
                instance[points_in_box(box, cloud[:3])] = number_in_scene
            scan = np.stack([cloud[0], cloud[1], cloud[2], cloud[3] / 255.0], 1)
            scan.astype(np.float32).tofile(os.path.join(seq_dir, "velodyne",
                                                        f"{frame:06d}.bin"))
            ((instance << 16) | semantic).astype("<u4").tofile(
                os.path.join(seq_dir, "labels", f"{frame:06d}.label"))
            lidar2global = (_rigid(nusc.get("ego_pose", sd["ego_pose_token"]))
                            @ _rigid(nusc.get("calibrated_sensor",
                                              sd["calibrated_sensor_token"])))
            if first_pose is None:
                first_pose, first_time = lidar2global, sd["timestamp"]
            poses.append(tr @ np.linalg.inv(first_pose) @ lidar2global @ np.linalg.inv(tr))
            times.append((sd["timestamp"] - first_time) / 1e6)
            token = sample["next"]
            frame += 1
        with open(os.path.join(seq_dir, "poses.txt"), "w") as f:
            f.writelines(_row(pose) + "\n" for pose in poses)
        with open(os.path.join(seq_dir, "times.txt"), "w") as f:
            f.writelines(f"{t:.6e}\n" for t in times)
        with open(os.path.join(seq_dir, "calib.txt"), "w") as f:
            f.writelines(f"{key}: {_row(p)}\n" for key, p in KITTI_ODOMETRY_P.items())
            f.write(f"Tr: {_row(tr)}\n")
        summary["scans"] += frame
    return summary
