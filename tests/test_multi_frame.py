"""Multi-frame samples (t-1, t, t+1) and the dense cloud, against nuscenes-devkit on generated
scenes in nuScenes' layout: the neighbours are the devkit's prev / next samples, a
neighbour's points reach the keyframe's LiDAR frame as the devkit's quaternion chain takes
them, under augmentation too, and the dense cloud's sweeps are the devkit's multi-sweep
cloud."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("multi_frame")
    summary = generate_dataset(str(root), scenes=2, keyframes=3, seed=2, image_size=(160, 90),
                               sweeps_per_keyframe=2, version="v1.0-synthetic", val_scenes=1,
                               overwrite=True)
    create_nuscenes_infos(summary["dataroot"], "v1.0-synthetic", summary["dataroot"])
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version="v1.0-synthetic", dataroot=summary["dataroot"], verbose=False)
    return summary["dataroot"], nusc


def _devkit_points_in(nusc, sample_token: str, key_token: str) -> np.ndarray:
    """LIDAR_TOP points of ``sample_token`` in the LiDAR frame of ``key_token``: sensor ->
    ego -> global -> ego -> sensor with the devkit's quaternions."""
    from nuscenes.utils.data_classes import LidarPointCloud
    from pyquaternion import Quaternion

    def chain(token):
        sd = nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])
        return sd, nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]), \
            nusc.get("ego_pose", sd["ego_pose_token"])

    sd, cs, pose = chain(sample_token)
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(sd["token"]))
    pc.rotate(Quaternion(cs["rotation"]).rotation_matrix)
    pc.translate(np.array(cs["translation"]))
    pc.rotate(Quaternion(pose["rotation"]).rotation_matrix)
    pc.translate(np.array(pose["translation"]))
    _, key_cs, key_pose = chain(key_token)
    pc.translate(-np.array(key_pose["translation"]))
    pc.rotate(Quaternion(key_pose["rotation"]).rotation_matrix.T)
    pc.translate(-np.array(key_cs["translation"]))
    pc.rotate(Quaternion(key_cs["rotation"]).rotation_matrix.T)
    return pc.points[:3].T


def _dataset(root, key_pipeline, frame_pipeline, **kwargs):
    from lidarcl.datasets import MultiFrameDataset, NuScenesDataset

    base = NuScenesDataset(ann_file="nuscenes_infos_train.json", data_root=root,
                           pipeline=key_pipeline)
    return MultiFrameDataset(base, frame_pipeline=frame_pipeline, **kwargs)


def test_neighbours_are_the_devkits_and_map_into_the_keyframe(scenes):
    from lidarcl.datasets.transforms import LoadPoints, PackSample

    root, nusc = scenes
    pipeline = [LoadPoints(use_dims=[0, 1, 2, 3]), PackSample()]
    dataset = _dataset(root, pipeline, pipeline)
    assert len(dataset) == 3  # one training scene of 3 keyframes
    for item in range(len(dataset)):
        sample = dataset[item]
        token = sample["meta"]["token"]
        record = nusc.get("sample", token)
        for frame, neighbour in zip(sample["frames"], (record["prev"], record["next"])):
            if not neighbour:  # scene end: the keyframe itself stands in
                assert int(frame["frame_offset"]) == 0
                assert frame["meta"]["token"] == token
                np.testing.assert_allclose(frame["frame_to_key"].numpy(), np.eye(4),
                                           atol=1e-12)
                continue
            assert frame["meta"]["token"] == neighbour
            assert int(frame["frame_offset"]) in (-1, 1)
            mapped = frame["points"][:, :3].double() @ frame["frame_to_key"][:3, :3].T \
                + frame["frame_to_key"][:3, 3]
            expected = _devkit_points_in(nusc, neighbour, token)
            np.testing.assert_allclose(mapped.numpy(), expected, atol=2e-4)
            # the scene moves: the map is not the identity
            assert np.abs(frame["frame_to_key"][:3, 3].numpy()).max() > 0.1


def test_augmented_neighbours_map_into_the_augmented_keyframe(scenes):
    from lidarcl.datasets.multi_frame import neighbour_to_key
    from lidarcl.datasets.transforms import GlobalRotScaleTrans, LoadPoints, PackSample

    root, nusc = scenes
    np.random.seed(0)
    pipeline = [LoadPoints(use_dims=[0, 1, 2, 3]),
                GlobalRotScaleTrans(rot_range=[-3.14, 3.14], scale_range=[0.9, 1.1],
                                    translation_std=[0.5, 0.5, 0.1]), PackSample()]
    dataset = _dataset(root, pipeline, pipeline, frame_offsets=(-1,), at_scene_end="drop")
    assert len(dataset) == 2  # the first keyframe has no t-1
    sample = dataset[1]
    frame = sample["frames"][0]
    matrix = neighbour_to_key(frame["frame_to_key"], frame["lidar_aug_matrix"].double(),
                              sample["lidar_aug_matrix"].double())
    mapped = frame["points"][:, :3].double() @ matrix[:3, :3].T + matrix[:3, 3]
    key_aug = sample["lidar_aug_matrix"].double().numpy()
    expected = _devkit_points_in(nusc, frame["meta"]["token"], sample["meta"]["token"])
    expected = expected @ key_aug[:3, :3].T + key_aug[:3, 3]
    np.testing.assert_allclose(mapped.numpy(), expected, atol=5e-4)


def test_dense_cloud_sweeps_are_the_devkits_multisweep_cloud(scenes):
    from nuscenes.utils.data_classes import LidarPointCloud

    from lidarcl.datasets import NuScenesDataset
    from lidarcl.datasets.transforms import GlobalRotScaleTrans, LoadDenseCloud, LoadPoints

    root, nusc = scenes
    np.random.seed(1)
    dataset = NuScenesDataset(ann_file="nuscenes_infos_train.json", data_root=root, pipeline=[
        LoadPoints(use_dims=[0, 1, 2, 3]),
        GlobalRotScaleTrans(rot_range=[-3.14, 3.14], scale_range=[1.0, 1.0],
                            translation_std=[0.0, 0.0, 0.0]),
        LoadDenseCloud(num_sweeps=2, remove_close=1.0)])
    sample = dataset[2]  # the last keyframe: it has two sweeps before it
    dense, index = sample["dense_points"], sample["dense_sweep_index"]
    np.testing.assert_array_equal(dense[index == 0], sample["points"])
    assert set(np.unique(index)) == {0, 1, 2}
    record = nusc.get("sample", sample["token"])
    pc, times = LidarPointCloud.from_file_multisweep(nusc, record, "LIDAR_TOP", "LIDAR_TOP",
                                                     nsweeps=3, min_distance=1.0)
    sweeps = pc.points[:3, times[0] > 0].T
    aug = sample["lidar_aug_matrix"]
    expected = sweeps @ aug[:3, :3].T + aug[:3, 3]
    ours = dense[index > 0, :3].astype(np.float64)
    assert len(ours) == len(expected)
    # the devkit lists the sweeps oldest last as we do; rows in the same order
    np.testing.assert_allclose(ours, expected, atol=2e-4)


def test_neighbours_see_the_keyframes_camera_subset_in_its_order(scenes):
    """SuperFlow draws 3 cameras for t; t-1 and t+1 must show those cameras, in the same
    order, each image the neighbour's own file of that channel."""
    from lidarcl.datasets.io import load_image
    from lidarcl.datasets.transforms import LoadImages, LoadPoints, PackSample, SelectCameras

    root, nusc = scenes
    keep = ["images", "lidar2img", "points"]
    key_pipeline = [LoadPoints(use_dims=[0, 1, 2, 3]), LoadImages(), SelectCameras(2, seed=4),
                    PackSample(keys=keep)]
    frame_pipeline = [LoadPoints(use_dims=[0, 1, 2, 3]), LoadImages(), PackSample(keys=keep)]
    dataset = _dataset(root, key_pipeline, frame_pipeline)
    subsets = set()
    for item in range(len(dataset)):
        sample = dataset[item]
        cameras = list(sample["meta"]["cam_names"])
        assert len(cameras) == 2
        subsets.add(tuple(cameras))
        for frame in sample["frames"]:
            assert list(frame["meta"]["cam_names"]) == cameras
            record = nusc.get("sample", frame["meta"]["token"])
            for k, name in enumerate(cameras):
                path = nusc.get_sample_data_path(record["data"][name])
                np.testing.assert_array_equal(
                    np.asarray(frame["images"][k]).transpose(1, 2, 0), load_image(path))
    assert len(subsets) > 1  # the draw varies, so a fixed camera order cannot pass by luck
