"""Pictures are checked pixel by pixel on hand-computed cases."""
import numpy as np

from lidarcl.visualization import (bev_pixels, label_colors, render_bev,
                                   render_camera_points)

RANGE = (-50.0, -50.0, 50.0, 50.0)


def test_bev_point_lands_on_hand_computed_pixel():
    red = np.array([[255, 0, 0]], dtype=np.uint8)
    bev = render_bev(np.array([[10.0, 5.0, 0.0]]), point_colors=red, bev_range=RANGE,
                     resolution=0.1, background=(0, 0, 0))
    assert bev.shape == (1000, 1000, 3)
    # x forward is up: row = (50 - 10) / 0.1, col = (50 - 5) / 0.1
    assert tuple(bev[400, 450]) == (255, 0, 0)
    assert bev.reshape(-1, 3).any(1).sum() == 1


def test_bev_box_outline_and_heading():
    boxes = np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
                      [20.0, 0.0, 0.0, 4.0, 2.0, 1.5, np.pi / 2]])
    bev = render_bev(np.zeros((0, 3)), boxes, box_labels=np.array([0, 1]), bev_range=RANGE,
                     resolution=0.1, background=(0, 0, 0))
    c0, c1 = tuple(label_colors([0])[0]), tuple(label_colors([1])[0])
    # box 0: front face at x = +2 -> row 480, spanning y in [-1, 1] -> cols 490..510
    assert tuple(bev[480, 500]) == c0
    assert tuple(bev[520, 500]) == c0          # rear face at x = -2
    # heading line from the centre (row 500) up to the front face
    assert tuple(bev[490, 500]) == c0
    # box 1 faces +y (left): its front face is at y = 2 -> col 480, x in [19, 21]
    assert tuple(bev[300, 480]) == c1
    assert tuple(bev[300, 490]) == c1          # heading line from col 500 to col 480
    assert not bev[300, 510].any()             # no heading line towards the rear
    assert tuple(bev[300, 520]) == c1          # rear face at y = -2


def test_bev_pixels_formula():
    rc = bev_pixels(np.array([[50.0, 50.0], [-50.0, -50.0]]), RANGE, 0.5)
    np.testing.assert_allclose(rc, [[0, 0], [200, 200]])


def test_camera_overlay_paints_the_projected_pixel():
    # camera looking along LiDAR +x: cam x = -lidar y, cam y = -lidar z, cam z = lidar x
    lidar2cam = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    cam2img = np.array([[100, 0, 50, 0], [0, 100, 40, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    image = np.zeros((80, 100, 3), dtype=np.uint8)
    points = np.array([[10.0, 0.0, 0.0],     # centre -> (u, v) = (50, 40)
                       [10.0, 2.0, -1.0],    # u = 50 - 100*2/10 = 30, v = 40 + 10 = 50
                       [-10.0, 0.0, 0.0]])   # behind the camera: not drawn
    out = render_camera_points(image, points, cam2img @ lidar2cam, radius=1)
    assert out[40, 50].any() and out[50, 30].any()
    assert out.reshape(-1, 3).any(1).sum() == 2
