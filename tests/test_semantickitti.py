"""SemanticKITTI: the generated scenes exported in its layout (through nuscenes-devkit), indexed
and loaded back; points, labels, instances and poses must equal what the devkit reads from
the nuScenes-layout original. Malformed files are errors naming the file."""
import os
import subprocess
import sys

import numpy as np
import pytest

from lidarcl.datasets.semantickitti_converter import (IGNORE_INDEX, LEARNING_MAP,
                                                      LEARNING_MAP_INV,
                                                      SEMANTICKITTI_CLASSES,
                                                      SEMANTICKITTI_RAW_LABELS,
                                                      create_semantickitti_infos,
                                                      read_label_file, read_poses)
from lidarcl.datasets.transforms import LoadPoints, LoadSemanticKITTILabels
from lidarcl.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_learning_map_by_hand():
    names = SEMANTICKITTI_CLASSES
    assert len(names) == 19 and names[0] == "car" and names[18] == "traffic-sign"
    assert names[LEARNING_MAP[252]] == "car"           # moving-car -> car
    assert names[LEARNING_MAP[60]] == "road"           # lane-marking -> road
    assert names[LEARNING_MAP[13]] == "other-vehicle"  # bus -> other-vehicle
    assert names[LEARNING_MAP[254]] == "person"
    for raw in (0, 1, 52, 99):                         # unlabeled, outlier, other-structure/object
        assert LEARNING_MAP[raw] == IGNORE_INDEX
    assert set(LEARNING_MAP) == set(SEMANTICKITTI_RAW_LABELS)
    for label, raw in LEARNING_MAP_INV.items():
        assert LEARNING_MAP[raw] == label
        assert SEMANTICKITTI_RAW_LABELS[raw] == SEMANTICKITTI_CLASSES[label]


@pytest.fixture(scope="module")
def exported(synthetic_root, tmp_path_factory):
    from lidarcl.datasets.synthetic.semantickitti_export import export_semantickitti

    out = str(tmp_path_factory.mktemp("semantickitti"))
    summary = export_semantickitti(synthetic_root.dataroot, synthetic_root.version, out)
    splits = {"train": tuple(summary["splits"]["train"]), "val": tuple(summary["splits"]["val"])}
    paths = create_semantickitti_infos(out, out, splits=splits)
    return out, summary, paths


def _nuscenes_keyframes(root, scene_name):
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version=root.version, dataroot=root.dataroot, verbose=False)
    scene = next(s for s in nusc.scene if s["name"] == scene_name)
    token, frames = scene["first_sample_token"], []
    while token:
        sample = nusc.get("sample", token)
        frames.append(sample["data"]["LIDAR_TOP"])
        token = sample["next"]
    return nusc, frames


def test_export_round_trip_equals_the_devkit(synthetic_root, exported):
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box, transform_matrix
    from pyquaternion import Quaternion

    from lidarcl.datasets.semantickitti_dataset import SemanticKITTIDataset
    from lidarcl.datasets.synthetic.semantickitti_export import NUSCENES_TO_SEMANTICKITTI

    out, summary, paths = exported
    assert summary["splits"] == {"train": ["00"], "val": ["01"]}
    dataset = SemanticKITTIDataset(paths[0], data_root=out, pipeline=[
        LoadPoints(), LoadSemanticKITTILabels()])
    nusc, frames = _nuscenes_keyframes(synthetic_root, summary["sequences"]["00"])
    assert len(dataset) == len(frames) == 10
    names = {c["index"]: c["name"] for c in nusc.category}

    def lidar_pose(sd):
        ego = nusc.get("ego_pose", sd["ego_pose_token"])
        cal = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        return (transform_matrix(ego["translation"], Quaternion(ego["rotation"]))
                @ transform_matrix(cal["translation"], Quaternion(cal["rotation"])))

    first = lidar_pose(nusc.get("sample_data", frames[0]))
    thing_points = 0
    for k, sd_token in enumerate(frames):
        sample = dataset[k]
        sd = nusc.get("sample_data", sd_token)
        path, boxes, _ = nusc.get_sample_data(sd_token)
        cloud = LidarPointCloud.from_file(path).points
        np.testing.assert_array_equal(sample["points"][:, :3], cloud[:3].T)
        np.testing.assert_allclose(sample["points"][:, 3], cloud[3] / 255, rtol=1e-6)
        fine = np.fromfile(os.path.join(synthetic_root.dataroot,
                                        nusc.get("lidarseg", sd_token)["filename"]), np.uint8)
        expected = [LEARNING_MAP[NUSCENES_TO_SEMANTICKITTI[names[int(c)]]] for c in fine]
        np.testing.assert_array_equal(sample["pts_semantic_mask"], expected)
        inside = np.zeros(cloud.shape[1], dtype=bool)
        for box in boxes:
            inside |= points_in_box(box, cloud[:3])
        np.testing.assert_array_equal(sample["pts_instance_mask"] > 0, inside)
        thing_points += inside.sum()
        # the index's pose: the scan in the first scan's LiDAR frame
        info = dataset.get_data_info(k)
        np.testing.assert_allclose(info["ego2global"],
                                   np.linalg.inv(first) @ lidar_pose(sd), atol=1e-8)
        assert info["token"] == f"00_{k:06d}" and info["scene_token"] == "00"
    assert thing_points > 0
    assert len(set(np.concatenate([dataset[k]["pts_semantic_mask"] for k in range(3)]))) > 3


def test_malformed_label_and_pose_files_name_the_file(exported, tmp_path):
    import shutil

    from lidarcl.datasets.semantickitti_dataset import SemanticKITTIDataset

    out, _, _ = exported
    root = tmp_path / "copy"
    shutil.copytree(os.path.join(out, "sequences", "00"), root / "sequences" / "00")
    label = root / "sequences" / "00" / "labels" / "000003.label"
    label.write_bytes(label.read_bytes()[:-4])  # one label short
    [path] = create_semantickitti_infos(root, root, splits={"train": ("00",)})
    dataset = SemanticKITTIDataset(path, data_root=str(root), pipeline=[
        LoadPoints(), LoadSemanticKITTILabels()])
    with pytest.raises(DataError, match=r"000003\.label.*labels but the point file"):
        dataset[3]
    label.write_bytes(label.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"000003\.label.*whole number of uint32"):
        read_label_file(label)
    poses = root / "sequences" / "00" / "poses.txt"
    poses.write_text("\n".join(poses.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match=r"poses\.txt.*9 poses for 10 scans"):
        create_semantickitti_infos(root, root, splits={"train": ("00",)})
    poses.write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"poses\.txt.*line 1: expected 12"):
        read_poses(poses)
    with pytest.raises(DataError, match=r"sequences/07"):
        create_semantickitti_infos(root, root, splits={"train": ("00", "07")})


def test_make_synthetic_semantickitti_then_create_data(tmp_path):
    out = tmp_path / "skitti"
    run = subprocess.run([sys.executable, "tools/make_synthetic.py", "--format", "semantickitti",
                          "--out", str(out), "--scenes", "3", "--keyframes", "2",
                          "--val-scenes", "1", "--image-size", "160", "90",
                          "--sweeps-per-keyframe", "0"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    command = run.stdout.strip().splitlines()[-1].strip()
    assert "--train-sequences 00,01 --val-sequences '02'" in command
    assert command.startswith("python tools/create_data.py semantickitti")
    # the printed command, run with this interpreter (a bare "python" may be another one)
    created = subprocess.run(command.replace("python", sys.executable, 1), shell=True,
                             capture_output=True, text=True, cwd=REPO)
    assert created.returncode == 0, created.stderr
    assert sorted(os.listdir(out)) == ["semantickitti_infos_train.json",
                                       "semantickitti_infos_val.json", "sequences"]
    assert sorted(os.listdir(out / "sequences" / "02")) == [
        "calib.txt", "labels", "poses.txt", "times.txt", "velodyne"]
