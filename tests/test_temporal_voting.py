"""Temporal voting (lidarcl/evaluation/temporal_voting.py) against a brute-force reference on
generated scans: consecutive keyframes of one scene with their real ego poses, every
distance computed, the neighbours' points moved one by one in homogeneous coordinates."""
import os

import numpy as np
import pytest

from lidarcl.evaluation.temporal_voting import transport, vote


def brute_force_vote(points, scores, pose, neighbours, radius, weight):
    total = scores.astype(np.float64).copy()
    to_current = np.linalg.inv(pose)
    for other_points, other_scores, other_pose in neighbours:
        moved = np.array([(to_current @ other_pose @ np.append(p[:3], 1.0))[:3]
                          for p in other_points])
        for i, p in enumerate(points[:, :3]):
            distance = np.sqrt(((moved - p) ** 2).sum(1))
            j = int(distance.argmin())
            if distance[j] <= radius:
                total[i] += weight * other_scores[j]
    return total, total.argmax(1)


@pytest.fixture(scope="module")
def scene_scans(synthetic_root):
    """Three consecutive keyframes of scene 0: (points subsampled, LiDAR pose)."""
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import transform_matrix
    from pyquaternion import Quaternion

    nusc = NuScenes(version=synthetic_root.version, dataroot=synthetic_root.dataroot,
                    verbose=False)
    token = nusc.scene[0]["first_sample_token"]
    rng = np.random.default_rng(0)
    scans = []
    for _ in range(3):
        sample = nusc.get("sample", token)
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        cloud = LidarPointCloud.from_file(os.path.join(nusc.dataroot, sd["filename"])).points.T
        keep = rng.choice(len(cloud), 600, replace=False)
        ego = nusc.get("ego_pose", sd["ego_pose_token"])
        cal = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = (transform_matrix(ego["translation"], Quaternion(ego["rotation"]))
                @ transform_matrix(cal["translation"], Quaternion(cal["rotation"])))
        scans.append((cloud[keep].astype(np.float64), pose))
        token = sample["next"]
    # the ego moves between keyframes: the poses differ
    assert np.linalg.norm(scans[0][1][:3, 3] - scans[2][1][:3, 3]) > 1.0
    return scans


@pytest.mark.parametrize("radius,weight", [(0.5, 1.0), (2.0, 0.5)])
def test_vote_equals_the_brute_force_reference(scene_scans, radius, weight):
    rng = np.random.default_rng(1)
    scores = [rng.dirichlet(np.ones(5), len(points)) for points, _ in scene_scans]
    (points, pose), own = scene_scans[1], scores[1]
    neighbours = [(scene_scans[k][0], scores[k], scene_scans[k][1]) for k in (0, 2)]
    total, labels = vote(points, own, pose, neighbours, radius=radius, weight=weight)
    ref_total, ref_labels = brute_force_vote(points, own, pose, neighbours, radius, weight)
    np.testing.assert_allclose(total, ref_total, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(labels, ref_labels)
    voted = (np.abs(total - own).sum(1) > 0).mean()
    assert 0 < voted < 1  # some points found a neighbour within the radius, some did not


def test_transport_and_a_hand_computed_vote():
    # scan s is scan t moved 1 m forward: a point at x=2 in s is at x=3 in t
    pose_t, pose_s = np.eye(4), np.eye(4)
    pose_s[0, 3] = 1.0
    np.testing.assert_allclose(transport(np.array([[2.0, 0, 0]]), pose_s, pose_t),
                               [[3.0, 0, 0]])
    points = np.array([[3.05, 0, 0], [10.0, 0, 0]])
    own = np.array([[0.6, 0.4], [0.6, 0.4]])
    total, labels = vote(points, own, pose_t, [(np.array([[2.0, 0, 0]]),
                                                np.array([[0.0, 1.0]]), pose_s)], radius=0.1)
    np.testing.assert_allclose(total, [[0.6, 1.4], [0.6, 0.4]])  # the far point: no vote
    assert labels.tolist() == [1, 0]
