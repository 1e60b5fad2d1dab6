"""Fixed facts of the synthetic dataset: categories, attributes, sensor rig, materials.

The sensor rig copies nuScenes' published calibration (LIDAR_TOP and the six cameras of
vehicle n015) so that models trained on the synthetic data see nuScenes-like geometry.
Nothing here is read from disk at run time.
"""
from __future__ import annotations

import hashlib

import numpy as np

from lidarcl.datasets.nuscenes_constants import CAMERA_CHANNELS, LIDARSEG_CATEGORIES  # noqa: F401

# nuScenes-lidarseg categories with their official indices (category.json "index").
CATEGORY_NAMES = LIDARSEG_CATEGORIES
LABEL = {name: i for i, name in enumerate(CATEGORY_NAMES)}

ATTRIBUTE_NAMES = (
    "cycle.with_rider", "cycle.without_rider", "pedestrian.moving", "pedestrian.standing",
    "pedestrian.sitting_lying_down", "vehicle.moving", "vehicle.parked", "vehicle.stopped",
)
VISIBILITY_LEVELS = ("v0-40", "v40-60", "v60-80", "v80-100")


def fixed_token(kind: str, name: str) -> str:
    """A token that depends only on the table and the record name (same in every dataset)."""
    return hashlib.md5(f"lidarcl-synthetic/{kind}/{name}".encode()).hexdigest()


# ---------------------------------------------------------------- sensor rig (nuScenes n015)
LIDAR_CHANNEL = "LIDAR_TOP"
LIDAR_TRANSLATION = (0.9437130093574524, 0.0, 1.8402299880981445)
LIDAR_ROTATION = (0.707795511916431, -0.006492241857684924, 0.0106462146021381,
                  -0.7063073142912113)
# HDL-32E: 32 beams evenly spaced from -30.67 to +10.67 degrees; ring 0 is the lowest beam,
# as in nuScenes point files. 1084 firings per revolution (nuScenes keeps 32 x 1084 slots).
LIDAR_ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)
LIDAR_AZIMUTH_STEPS = 1084
LIDAR_MAX_RANGE = 70.0
LIDAR_PERIOD_S = 0.05  # 20 Hz

NUSCENES_IMAGE_SIZE = (1600, 900)
# channel: (translation, rotation [w, x, y, z], (fx, fy, cx, cy) at 1600x900,
#           time offset from the lidar keyframe in seconds: the spinning lidar passes the
#           camera's optical axis then and triggers it, as in nuScenes)
CAMERA_RIG = {
    "CAM_FRONT": ((1.7007912397384644, 0.01594563201069832, 1.5109575986862183),
                  (0.4998015430554757, -0.5030316162514281, 0.49977981144115063,
                   -0.49737083819489186),
                  (1266.417203046554, 1266.417203046554, 816.2670197447984, 491.50706579294757),
                  -0.0355),
    "CAM_FRONT_RIGHT": ((1.5508477687835693, -0.4934048056602478, 1.4957480430603027),
                        (0.20603479288882035, -0.2026940539967366, 0.6824507837225665,
                         -0.6713610894221409),
                        (1260.8474446004698, 1260.8474446004698, 807.968244525554,
                         495.3344268742088),
                        -0.0276),
    "CAM_FRONT_LEFT": ((1.5238779783248901, 0.4946313500404358, 1.5093282461166382),
                       (0.6757265040490898, -0.6736266528015487, 0.21214014860684996,
                        -0.21122826920192475),
                       (1272.5979470598488, 1272.5979470598488, 826.6154927353808,
                        479.75165386361925),
                       -0.0431),
    "CAM_BACK": ((0.02832603082060814, 0.0034513676073402166, 1.5791034698486328),
                 (0.5037872665570176, -0.4974024980012, -0.494185022474079, 0.5045496096514881),
                 (809.2209905677063, 809.2209905677063, 829.2196003259838, 481.77842384512485),
                 -0.0104),
    "CAM_BACK_LEFT": ((1.0356910228729248, 0.4847950339317322, 1.5909701585769653),
                      (0.6924185586059356, -0.7031619418178132, -0.1164834302880101,
                       0.11203318144826173),
                      (1256.7414812095406, 1256.7414812095406, 792.1125740759628,
                       492.7757465151356),
                      -0.0005),
    "CAM_BACK_RIGHT": ((1.0148781538009644, -0.4805682301521301, 1.562395453453064),
                       (0.12280980017394034, -0.13240084180727243, -0.7004305823327249,
                        0.690496031417272),
                       (1259.5137405846733, 1259.5137405846733, 807.2529053838625,
                        501.19579884916527),
                       -0.0199),
}

# Ego vehicle body (Renault Zoe-like) in the ego frame (origin: rear axle on the ground).
EGO_BODY_CENTER = (1.35, 0.0, 0.78)
EGO_BODY_SIZE = (4.10, 1.73, 1.56)
# boxes (cx, cy, cz, l, w, h) that the lidar sees of its own vehicle (label vehicle.ego)
EGO_BOXES = ((1.35, 0.0, 0.575, 4.10, 1.73, 0.75), (1.05, 0.0, 1.225, 1.6, 1.30, 0.55))

# ---------------------------------------------------------------- ground materials
M_GRASS, M_ROAD, M_SIDEWALK, M_PLAZA, M_WHITE, M_YELLOW, M_CROSS, M_PARKING = range(8)
GROUND_LABEL = np.array([LABEL["flat.terrain"], LABEL["flat.driveable_surface"],
                         LABEL["flat.sidewalk"], LABEL["flat.other"],
                         LABEL["flat.driveable_surface"], LABEL["flat.driveable_surface"],
                         LABEL["flat.driveable_surface"], LABEL["flat.driveable_surface"]],
                        dtype=np.uint8)
GROUND_RAISED = np.array([1, 0, 1, 1, 0, 0, 0, 0], dtype=np.uint8)  # on the 15 cm curb level
GROUND_INTENSITY = np.array([6.0, 9.0, 16.0, 20.0, 70.0, 55.0, 70.0, 8.0])
GROUND_COLOR = np.array([[78, 104, 52], [74, 74, 78], [150, 146, 138], [128, 118, 108],
                         [225, 225, 220], [220, 180, 40], [230, 230, 225], [66, 66, 70]],
                        dtype=np.float64) / 255.0
CURB_HEIGHT = 0.15

# ---------------------------------------------------------------- object surface materials
# (texture id used by the renderer; intensity is set per primitive)
T_PLAIN, T_BUILDING, T_FOLIAGE, T_GLASS, T_PAINT = range(5)
