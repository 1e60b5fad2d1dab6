"""Robo3D's sensor-side corruptions (lidarcl/robustness/corruptions/sensor.py): each checked
against the parameter it claims, on the real nuScenes frame (its 32 rings, 69 boxes) and on
generated scans with lidarseg labels; per-sample determinism; labels and instance ids that
follow the points."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from conftest import REAL_DATA
from lidarcl.datasets.nuscenes_constants import LIDARSEG_CATEGORIES
from lidarcl.datasets.nuscenes_dataset import NUSCENES_NAME_MAPPING
from lidarcl.robustness.corruptions import (CORRUPTIONS, IGNORE_LABEL, BeamMissing,
                                            CrossSensor, Crosstalk, IncompleteEcho,
                                            MotionBlur, build_corruption)


@pytest.fixture(scope="module")
def real_points() -> np.ndarray:
    paths = sorted(glob.glob(os.path.join(REAL_DATA.nuscenes_root, "samples", "LIDAR_TOP",
                                          "*.bin")))
    if not paths:
        pytest.skip(f"no real nuScenes frame under {REAL_DATA.nuscenes_root}")
    return np.fromfile(paths[0], np.float32).reshape(-1, 5)


def real_sample(points: np.ndarray, token: str = "real") -> dict:
    """The frame as LoadPoints(use_dims=None) gives it, plus a per-point row index (as a
    per-point array, so it must follow every selection the labels follow)."""
    return {"token": token, "points": points.copy(), "points_use_dims": (0, 1, 2, 3, 4),
            "row": np.arange(len(points)), "point_keys": ["row"]}


@pytest.fixture(scope="module")
def labelled(tiny_dataset) -> list[dict]:
    """Generated keyframes with raw lidarseg labels, all five columns and boxes."""
    from lidarcl.datasets.nuscenes_dataset import NuScenesDataset
    from lidarcl.datasets.transforms.loading import LoadLidarsegLabels, LoadPoints

    ds = NuScenesDataset(os.path.join(tiny_dataset, "nuscenes_infos_train.json"),
                         data_root=tiny_dataset,
                         pipeline=[LoadPoints(use_dims=None), LoadLidarsegLabels()])
    samples = [ds[i] for i in range(len(ds))]
    for s in samples:
        s["row"] = np.arange(len(s["points"]))
        s["point_keys"] = ["row"]
    return samples


def copy(sample: dict) -> dict:
    return {k: (v.copy() if isinstance(v, np.ndarray) else list(v) if isinstance(v, list)
                else v) for k, v in sample.items()}


def test_the_real_frame_has_32_rings(real_points):
    assert set(np.unique(real_points[:, 4]).astype(int)) == set(range(32))


# ---------------------------------------------------------------------- beam missing
@pytest.mark.parametrize("severity, dropped", [(1, 8), (2, 16), (3, 24)])
def test_beam_missing_drops_that_fraction_of_the_rings_and_only_them(real_points, severity,
                                                                     dropped):
    out = BeamMissing(severity)(real_sample(real_points))
    before = set(np.unique(real_points[:, 4]).astype(int))
    after = set(np.unique(out["points"][:, 4]).astype(int))
    gone = before - after
    assert len(after) == 32 - dropped  # moderate: half of the rings are left
    assert min(gone) >= 2 and max(gone) <= 28  # Robo3D's droppable rings
    # every point of a kept ring is there, unchanged, in its order; the rows follow
    expected = np.flatnonzero(~np.isin(real_points[:, 4], sorted(gone)))
    np.testing.assert_array_equal(out["row"], expected)
    np.testing.assert_array_equal(out["points"], real_points[expected])
    assert out["points"].dtype == np.float32 and out["points"].shape[1] == 5
    assert out["corruptions"] == [{"name": "beam_missing", "severity": severity,
                                   "beam_fraction": dropped / 32}]


def test_beam_missing_repeats_per_sample_and_varies_across_samples(real_points):
    corruption = BeamMissing("moderate", seed=7)
    first = corruption(real_sample(real_points, "a"))["points"]
    # another sample in between, and a new instance (another process would build one)
    corruption(real_sample(real_points, "b"))
    again = BeamMissing(2, seed=7)(real_sample(real_points, "a"))["points"]
    np.testing.assert_array_equal(first, again)
    rings = {tuple(np.unique(BeamMissing(2, seed=7)(real_sample(real_points, t))["points"][:, 4]))
             for t in "abcdef"}
    assert len(rings) > 1  # the draw depends on the sample
    other_seed = BeamMissing(2, seed=8)(real_sample(real_points, "a"))["points"]
    assert not np.array_equal(first, other_seed)


def test_a_corruption_needing_rings_names_the_missing_column(real_points):
    sample = {"token": "x", "points": real_points[:, :4].copy(), "points_use_dims": (0, 1, 2, 3)}
    with pytest.raises(ValueError, match="ring index .*use_dims including 4"):
        BeamMissing(1)(sample)


# ---------------------------------------------------------------------- cross-sensor
KEPT_RINGS = {1: set(range(32)) - set(range(1, 32, 4)), 2: set(range(0, 32, 2)),
              3: {0, 5, 9, 13, 17, 21, 25, 29}}  # np.arange(1, 32, 1.33).astype(int) dropped


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_cross_sensor_keeps_fixed_rings_then_every_second_point(real_points, severity):
    kept_rings = KEPT_RINGS[severity]
    assert len(kept_rings) == (24, 16, 8)[severity - 1]
    on_kept = np.flatnonzero(np.isin(real_points[:, 4], sorted(kept_rings)))
    # Robo3D's [::2] in the file's order; nuScenes' firing-major files then keep every
    # second kept ring of each firing, whole: 12 / 8 / 4 rings
    out = CrossSensor(severity)(real_sample(real_points))
    np.testing.assert_array_equal(out["row"], on_kept[::2])
    rings = np.unique(out["points"][:, 4]).astype(int)
    assert set(rings) == set(sorted(kept_rings)[::2]) and len(rings) == len(kept_rings) // 2
    # no randomness: any seed and token give the same scan
    np.testing.assert_array_equal(
        out["points"], CrossSensor(severity, seed=3)(real_sample(real_points, "z"))["points"])

    # the sensor the paper describes: every kept ring, each at half its azimuth resolution
    swap = CrossSensor(severity, mode="azimuth")(real_sample(real_points))
    assert set(np.unique(swap["points"][:, 4]).astype(int)) == kept_rings
    for r in kept_rings:
        ring_rows = np.flatnonzero(real_points[:, 4] == r)
        azimuth = np.arctan2(real_points[ring_rows, 1], real_points[ring_rows, 0])
        expected = np.sort(ring_rows[np.argsort(azimuth, kind="stable")][::2])
        np.testing.assert_array_equal(swap["row"][swap["points"][:, 4] == r], expected)


# ------------------------------------------------------------------------- crosstalk
@pytest.mark.parametrize("severity", [1, 2, 3])
def test_crosstalk_moves_its_fraction_of_points_by_three_metres_noise(labelled, severity):
    sample = copy(labelled[0])
    before, labels = sample["points"].copy(), sample["pts_semantic_mask"].copy()
    out = Crosstalk(severity)(sample)
    fraction = (0.03, 0.07, 0.12)[severity - 1]
    moved = np.flatnonzero(np.any(out["points"][:, :4] != before[:, :4], axis=1))
    assert len(moved) == int(fraction * len(before))  # crosstalk at 3 % moves 3 %
    assert len(out["points"]) == len(before)
    np.testing.assert_array_equal(out["points"][:, 4], before[:, 4])  # rings untouched
    displacement = (out["points"][moved, :3] - before[moved, :3]).ravel()
    # N(0, 3^2) per coordinate: the sample std of >= 300 draws is within 15 % of 3
    assert abs(displacement.std() - 3.0) < 0.45 and abs(displacement.mean()) < 0.5
    assert np.all(out["pts_semantic_mask"][moved] == IGNORE_LABEL)
    still = np.setdiff1d(np.arange(len(before)), moved)
    np.testing.assert_array_equal(out["pts_semantic_mask"][still], labels[still])


# ------------------------------------------------------------------- incomplete echo
def _vehicle_groups():
    return [[LIDARSEG_CATEGORIES.index(c) for c in group] for group in
            (("vehicle.bicycle",), ("vehicle.bus.bendy", "vehicle.bus.rigid"), ("vehicle.car",),
             ("vehicle.construction",), ("vehicle.motorcycle",), ("vehicle.trailer",),
             ("vehicle.truck",))]


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_incomplete_echo_drops_its_fraction_of_each_vehicle_class(labelled, severity):
    ratio = (0.75, 0.85, 0.95)[severity - 1]
    sample = copy(labelled[0])
    labels = sample["pts_semantic_mask"].copy()
    out = IncompleteEcho(severity)(sample)
    vehicles = np.concatenate(_vehicle_groups())
    checked = 0
    for group in _vehicle_groups():
        n = int(np.isin(labels, group).sum())
        left = int(np.isin(out["pts_semantic_mask"], group).sum())
        assert left == (n - int(n * ratio) if n > 10 else n), group
        checked += n > 10
    assert checked >= 1, "the generated scan has no vehicle class with over 10 points"
    # the rest is untouched, row for row, and the labels follow their points
    others = np.flatnonzero(~np.isin(labels, vehicles))
    assert set(others) <= set(out["row"])
    np.testing.assert_array_equal(out["pts_semantic_mask"], labels[out["row"]])
    np.testing.assert_array_equal(out["points"], labelled[0]["points"][out["row"]])


def test_incomplete_echo_uses_the_boxes_without_point_labels(labelled):
    from lidarcl.structures.boxes import points_in_boxes

    sample = copy(labelled[0])
    del sample["pts_semantic_mask"]
    names = np.asarray(sample["gt_names"])  # raw category names; detection names also work
    assert "vehicle.car" in names
    out = IncompleteEcho(3)(sample)
    inside = points_in_boxes(labelled[0]["points"][:, :3], sample["gt_boxes"][:, :7])
    cars = inside[:, names == "vehicle.car"].any(1)
    n = int(cars.sum())
    assert n > 10
    assert int(cars[out["row"]].sum()) == n - int(n * 0.95)
    vehicle_boxes = np.array([n.startswith("vehicle.") for n in names])
    outside = np.flatnonzero(~inside[:, vehicle_boxes].any(1))
    assert set(outside) <= set(out["row"])  # only points in vehicle boxes go
    sample = copy(labelled[0])
    del sample["pts_semantic_mask"]
    sample["gt_names"] = np.array([NUSCENES_NAME_MAPPING.get(n, n) for n in names],
                                  dtype=object)
    np.testing.assert_array_equal(IncompleteEcho(3)(sample)["row"], out["row"])
    with pytest.raises(ValueError, match="needs point labels"):
        IncompleteEcho(1)({"token": "t", "points": sample["points"]})


# ----------------------------------------------------------------------- motion blur
@pytest.mark.parametrize("severity", [1, 3])
def test_motion_blur_shifts_the_scan_and_jitters_each_point(real_points, severity):
    sigma = (0.2, 0.3, 0.4)[severity - 1]
    out = MotionBlur(severity)(real_sample(real_points))
    delta = out["points"][:, :3].astype(np.float64) - real_points[:, :3]
    shift = delta.mean(0)  # the common translation (the jitter averages out over 35k points)
    jitter = delta - shift
    np.testing.assert_allclose(jitter.std(0), [0.1 * sigma, 0.1 * sigma, 0.05 * sigma],
                               rtol=0.05)
    assert np.all(np.abs(shift) < 5 * sigma)
    np.testing.assert_array_equal(out["points"][:, 3:], real_points[:, 3:])
    np.testing.assert_array_equal(out["row"], np.arange(len(real_points)))


# ----------------------------------------------------------------------- the registry
def test_every_corruption_builds_by_name_and_from_a_config():
    from lidarcl.registry import TRANSFORMS

    assert {"beam_missing", "cross_sensor", "crosstalk", "incomplete_echo",
            "motion_blur"} <= set(CORRUPTIONS)
    for name, cls in CORRUPTIONS.items():
        assert len(cls.parameters) in (3, 5) and cls.source, name
        top = len(cls.parameters)
        built = TRANSFORMS.build(dict(type=cls.__name__, severity="heavy" if top == 3 else top))
        assert isinstance(built, cls) and built.severity == top
        assert build_corruption(name, 1).parameter == cls.parameters[0]
    with pytest.raises(ValueError, match="severity 4 is not in 1..3"):
        BeamMissing(4)
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        build_corruption("rain", 1)


# ------------------------------------------------------------------------------- fog
def test_fog_soft_response_matches_an_independent_quadrature():
    """The normalised soft echo (Hahner et al. ICCV 2021, Eq. 9-11) against scipy's adaptive
    quadrature of the same integrand."""
    from scipy.integrate import quad

    from lidarcl.robustness.corruptions.fog import soft_response

    c, tau = 299_792_458.0, 20e-9

    def integrand(t, R, R0, alpha):
        r = R - c * t / 2
        if r <= 0.9 or r > R0:
            return 0.0
        xi = min(1.0, (r - 0.9) / 0.1)
        return np.sin(np.pi * t / (2 * tau)) ** 2 * np.exp(-2 * alpha * r) * xi / r ** 2

    for R, R0, alpha in [(4.7, 30.0, 0.0), (3.0, 30.0, 0.03), (8.0, 6.0, 0.06), (2.0, 50, 0.01)]:
        expected = quad(integrand, 0, 2 * tau, args=(R, R0, alpha), points=[2 * (R - 1) / c],
                        epsabs=0, epsrel=1e-9, limit=200)[0]
        assert soft_response(R, R0, alpha) == pytest.approx(expected, rel=1e-4)


def test_fog_table_reproduces_robo3ds_lookup_tables():
    """Robo3D's nuScenes-C lookup tables (one per alpha, identical for the three betas): for
    targets beyond ~4.8 m the soft peak sits at 4.70 m (4.60 m at alpha 0.06) with the
    normalised strength 4.64e-9 / 4.57e-9 / 4.21e-9 / 3.82e-9; nearer targets peak one grid
    step in front of themselves."""
    from lidarcl.robustness.corruptions.fog import soft_peak_table

    for alpha, strength, at in [(0.0, 4.64e-9, 4.70), (0.005, 4.57e-9, 4.70),
                                (0.03, 4.21e-9, 4.70), (0.06, 3.82e-9, 4.60)]:
        peak, where = soft_peak_table(alpha)
        assert len(peak) == 2001  # R0 = 0, 0.1, ..., 200 m
        assert peak[500] == pytest.approx(strength, rel=2e-3)
        assert where[500] == pytest.approx(at, abs=0.01) and where[2000] == where[500]
        assert where[30] == pytest.approx(2.9, abs=0.01)  # R0 = 3 m


@pytest.mark.parametrize("alpha", [0.0, 0.06])
def test_fog_attenuates_hard_returns_and_turns_far_weak_ones_into_fog(real_points, alpha):
    from lidarcl.robustness.corruptions.fog import BETA_0, Fog, soft_peak_table

    beta = 0.05
    out = Fog("moderate", alpha=alpha)(real_sample(real_points))
    distance = np.linalg.norm(real_points[:, :3].astype(np.float64), axis=1)
    intensity = real_points[:, 3].astype(np.float64)
    moved = np.any(out["points"][:, :3] != real_points[:, :3], axis=1)
    # hard returns: unchanged position, intensity attenuated twice over the path (Eq. 6)
    np.testing.assert_array_equal(out["points"][~moved, 3],
                                  np.round(np.exp(-2 * alpha * distance[~moved])
                                           * intensity[~moved]).astype(np.float32))
    # fog returns exactly where the soft peak beats the attenuated hard one
    peak, at = soft_peak_table(alpha)
    strength = peak[np.minimum(np.round(distance * 10).astype(int), 2000)]
    expected = strength * intensity * distance ** 2 * beta / BETA_0 > np.round(
        np.exp(-2 * alpha * distance) * intensity)
    np.testing.assert_array_equal(moved, expected)
    if alpha == 0.0:  # then the onset is one range: sqrt(beta_0 / (I beta)) = 37.0 m
        onset = np.sqrt(BETA_0 / (peak[2000] * beta))
        assert onset == pytest.approx(37.0, abs=0.05)  # Robo3D tables: 37.1 (0.1 m grid)
        assert not moved[distance < onset - 0.1].any()
        assert moved[(distance > onset + 0.1) & (intensity >= 1)].all()
    assert 0.05 < moved.mean() < 0.9
    # a fog return lies near the soft peak: R_fog * R0 / d with d within R0 +- 10 m
    new = np.linalg.norm(out["points"][moved, :3].astype(np.float64), axis=1)
    r0, r_fog = distance[moved], at[np.round(distance[moved] * 10).clip(0, 2000).astype(int)]
    assert np.all(new >= r_fog * r0 / (r0 + 10) - 1e-3)
    assert np.all(new <= r_fog * r0 / np.maximum(r0 - 10, 1.0) + 1e-3)
    assert np.all(out["points"][moved, 3] <= 255)
    np.testing.assert_array_equal(out["row"], np.arange(len(real_points)))
    assert out["corruptions"][0]["beta"] == beta and out["fog_alpha"] == alpha


def test_fog_grows_with_severity_relabels_its_returns_and_repeats(labelled):
    from lidarcl.robustness.corruptions.fog import Fog

    fractions = []
    for severity in (1, 2, 3):
        sample = copy(labelled[0])
        labels = sample["pts_semantic_mask"].copy()
        out = Fog(severity, alpha=0.02)(sample)
        moved = np.any(out["points"][:, :3] != labelled[0]["points"][:, :3], axis=1)
        assert np.all(out["pts_semantic_mask"][moved] == IGNORE_LABEL)
        np.testing.assert_array_equal(out["pts_semantic_mask"][~moved], labels[~moved])
        fractions.append(moved.mean())
    assert fractions[0] < fractions[1] < fractions[2]
    # the attenuation drawn per scan is one of Robo3D's, and repeats per sample
    draws = {Fog(2)(copy(s))["fog_alpha"] for s in labelled}
    assert draws <= {0.0, 0.005, 0.01, 0.02, 0.03, 0.06}
    a, b = Fog(2, seed=1)(copy(labelled[1])), Fog(2, seed=1)(copy(labelled[1]))
    np.testing.assert_array_equal(a["points"], b["points"])


# ------------------------------------------------------------------------ wet ground
def test_fresnel_power_conserves_energy_and_knows_brewsters_angle():
    from lidarcl.robustness.corruptions.wet_ground import fresnel_power

    angles = np.radians(np.linspace(0, 80, 17))
    for n1, n2 in [(1.0003, 1.33), (1.33, 1.0003)]:
        inside = angles < np.arcsin(min(1.0, n2 / n1))  # below the critical angle
        rs, ts, rp, tp, _ = fresnel_power(angles[inside], n1, n2)
        np.testing.assert_allclose(rs + ts, 1.0, atol=1e-12)
        np.testing.assert_allclose(rp + tp, 1.0, atol=1e-12)
    rs, _, rp, _, _ = fresnel_power(0.0, 1.0003, 1.33)
    assert rs == pytest.approx(((1.0003 - 1.33) / (1.0003 + 1.33)) ** 2) == rp
    assert fresnel_power(np.arctan(1.33 / 1.0003), 1.0003, 1.33)[2] == pytest.approx(0, abs=1e-12)


def test_wet_ground_transmittance_sums_every_bounce_in_the_film():
    from lidarcl.robustness.corruptions.wet_ground import fresnel_power, wet_ground_transmittance

    angles, rho = np.radians([10.0, 45.0, 80.0]), np.array([0.05, 0.3, 1.0])
    _, tis, _, tip, refracted = fresnel_power(angles, 1.0003, 1.33)
    rbs, tos, rbp, top, _ = fresnel_power(refracted, 1.33, 1.0003)
    bounces = sum((rho * rbs) ** k for k in range(200)), sum((rho * rbp) ** k for k in range(200))
    expected = np.maximum(tis * rho * tos * bounces[0], tip * rho * top * bounces[1])
    np.testing.assert_allclose(wet_ground_transmittance(angles, rho), expected, rtol=1e-12)


def test_wet_ground_darkens_and_drops_only_ground_points_more_with_severity(labelled):
    from lidarcl.robustness.corruptions.wet_ground import WetGround

    ground_labels = [LIDARSEG_CATEGORIES.index(c) for c in
                     ("flat.driveable_surface", "flat.other", "flat.sidewalk")]
    original = labelled[0]
    ground = np.isin(original["pts_semantic_mask"], ground_labels)
    assert ground.sum() >= 1000
    lost = []
    for severity in (1, 2, 3):
        out = WetGround(severity)(copy(original))
        rows = out["row"]
        # every non-ground point is there, unchanged; only ground points go
        assert set(np.flatnonzero(~ground)) <= set(rows)
        other = ~ground[rows]
        np.testing.assert_array_equal(out["points"][other], original["points"][rows[other]])
        # ground points keep position and ring, and never get brighter
        np.testing.assert_array_equal(out["points"][~other][:, [0, 1, 2, 4]],
                                      original["points"][rows[~other]][:, [0, 1, 2, 4]])
        assert np.all(out["points"][~other, 3] <= original["points"][rows[~other], 3] + 1e-4)
        np.testing.assert_array_equal(out["pts_semantic_mask"], original["pts_semantic_mask"][rows])
        lost.append(1 - len(rows) / len(original["points"]))
    assert 0 < lost[0] < lost[2]

    class Dry(WetGround):
        parameters = (0.0,)
        noise_floors = (0.7,)

    dry = Dry(1)(copy(original))  # no water: the reflectivity model returns the input
    kept_ground = ground[dry["row"]]
    np.testing.assert_allclose(dry["points"][kept_ground, 3],
                               original["points"][dry["row"][kept_ground], 3], rtol=1e-5)


def test_wet_ground_fits_a_plane_without_point_labels(real_points):
    from lidarcl.datasets.regions import fit_ground_plane
    from lidarcl.robustness.corruptions.wet_ground import WetGround

    out = WetGround(3)(real_sample(real_points))
    plane, _ = fit_ground_plane(real_points[:, :3])
    near = np.abs(real_points[:, :3].astype(np.float64) @ plane[:3] + plane[3]) < 0.5
    assert near.sum() >= 1000 and len(out["row"]) < len(real_points)
    assert set(np.flatnonzero(~near)) <= set(out["row"])  # only points near the plane go
    changed = out["points"][:, 3] != real_points[out["row"], 3]
    assert changed.any() and near[out["row"][changed]].all()


# ------------------------------------------------------------------------------ snow
def test_snowfall_rates_convert_as_robo3ds_particle_files_are_named():
    """Robo3D's nuScenes-C snow loads ``gunn_<rain rate>_<occupancy>_<k>.npy``: 2.23838 /
    6.944e-07, 8.84799 / 1.7361e-06, 34.97476 / 4.3403e-06 for the three severities."""
    from lidarcl.robustness.corruptions.snow import Snow, snowfall_parameters

    expected = [(2.23838, 6.944e-07), (8.84799, 1.7361e-06), (34.97476, 4.3403e-06)]
    for severity, (rain, fill) in enumerate(expected, 1):
        snow = Snow(severity)
        got = snowfall_parameters(snow.parameter, snow.terminal_velocity)
        assert got[0] == pytest.approx(rain, abs=1e-5) and got[1] == pytest.approx(fill, rel=1e-4)


def test_flakes_fill_the_occupancy_with_gunn_marshall_sizes():
    from lidarcl.robustness.corruptions.snow import sample_flakes, snowfall_parameters

    rain, fill = snowfall_parameters(2.5, 1.6)
    flakes = sample_flakes(np.random.default_rng(0), rain, fill)
    x, y, r = flakes.T
    area = np.pi * (r ** 2).sum()
    target = fill * np.pi * 80.0 ** 2
    assert target <= area < target + np.pi * r.max() ** 2
    rho = np.hypot(x, y)
    assert np.all(rho <= 80.0) and np.all(rho > r)  # none covers the sensor
    assert abs(np.median(rho) - 80 / np.sqrt(2)) < 1.5  # uniform over the disc
    # a sphere of Exp(1 / Lambda) diameter cut at a uniform height: E[r^2] = E[D^2] / 6
    scale = 1e-3 * 10.0 / (25.5 * rain ** -0.48)  # m
    assert (r ** 2).mean() == pytest.approx(2 * scale ** 2 / 6, rel=0.05)


def test_beam_occlusion_gives_each_angle_to_the_nearest_flake():
    from lidarcl.robustness.corruptions.snow import beam_occlusion

    d = 0.003
    # one flake inside the wedge: its angle; the target keeps the rest
    share = beam_occlusion([0.0], [0.0003], [5.0], d)
    np.testing.assert_allclose(share, [0.2, 0.8])
    # two overlapping flakes: the nearer takes the overlap
    share = beam_occlusion([0.0, 0.0003], [0.0003, 0.0003], [9.0, 4.0], d)
    np.testing.assert_allclose(share, [0.1, 0.2, 0.7])
    # a flake wider than the beam: nothing reaches the target
    np.testing.assert_allclose(beam_occlusion([0.0001], [0.01], [3.0], d), [1.0, 0.0])
    # a flake cut by the wedge's edge counts only inside it
    np.testing.assert_allclose(beam_occlusion([0.0015], [0.0005], [3.0], d), [1 / 6, 5 / 6])


def test_a_beam_echoes_the_flake_that_beats_its_target():
    from lidarcl.robustness.corruptions.snow import _snow_ring

    def beam(flake_rho, flake_half):
        flag, dist, inten = np.zeros(1, np.int64), np.array([20.0]), np.array([50.0])
        _snow_ring(np.array([0.0]), np.array([20.0]), np.array([50.0]), np.array([0.0]),
                   np.array([flake_rho]), np.array([flake_half]), flake_half, 0.003, 1232,
                   flag, dist, inten)
        return flag[0], dist[0], inten[0]

    # a flake covering the whole beam at 3 m: the echo is the flake's, 0.9 x 255 / 3^2
    flag, distance, intensity = beam(3.0, 0.01)
    assert flag == 2 and distance == pytest.approx(3.0, abs=0.06)
    assert intensity == np.floor(0.9 * 255 / 9)
    # a small flake at 10 m takes 3 % of the beam: the target stays, 3 % dimmer
    flag, distance, intensity = beam(10.0, 0.000045)
    assert flag == 1 and distance == 20.0 and intensity == np.floor(50 * 0.97)
    # a flake behind the target does nothing
    flag, distance, intensity = beam(25.0, 0.01)
    assert flag == 0 and distance == 20.0 and intensity == 50.0


def test_snow_scatters_more_with_severity_and_keeps_labels_with_points(labelled):
    from lidarcl.robustness.corruptions.snow import Snow

    original = labelled[0]
    echoes = []
    for severity in (1, 3):
        out = Snow(severity, seed=2)(copy(original))
        rows, flags = out["row"], out["snow_flags"]
        np.testing.assert_array_equal(out["points"][:, 4], original["points"][rows, 4])
        scattered = flags == 2
        assert np.all(out["pts_semantic_mask"][scattered] == IGNORE_LABEL)
        np.testing.assert_array_equal(out["pts_semantic_mask"][~scattered],
                                      original["pts_semantic_mask"][rows[~scattered]])
        # a flake echo lies on its point's ray, nearer than the point
        before = original["points"][rows[scattered], :3].astype(np.float64)
        after = out["points"][scattered, :3].astype(np.float64)
        assert np.all(np.linalg.norm(after, axis=1) < np.linalg.norm(before, axis=1))
        cosine = (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(
            after, axis=1)
        assert np.all(cosine > 1 - 1e-6)
        echoes.append(scattered.sum())
        again = Snow(severity, seed=2)(copy(original))
        np.testing.assert_array_equal(again["points"], out["points"])
    assert 0 < echoes[0] < echoes[1]


# -------------------------------------------------------- object level (Dong et al.)
@pytest.fixture(scope="module")
def boxed(labelled) -> dict:
    """A generated scan with its boxes and which points each holds (the devkit's test)."""
    from lidarcl.structures.boxes import points_in_boxes

    sample = labelled[0]
    inside = points_in_boxes(sample["points"][:, :3], sample["gt_boxes"][:, :7])
    first = np.where(inside.any(1), inside.argmax(1), -1)
    members = [np.flatnonzero(first == b) for b in range(len(sample["gt_boxes"]))]
    assert sum(len(m) > 20 for m in members) >= 3
    return {"sample": sample, "members": members, "outside": np.flatnonzero(first < 0)}


def _kept(out, rows):
    return np.intersect1d(out["row"], rows)


@pytest.mark.parametrize("severity", [1, 5])
def test_local_density_and_cutout_remove_their_fraction_of_each_box(boxed, severity):
    from lidarcl.robustness.corruptions import LocalCutout, LocalDensityDecrease

    sample, members = boxed["sample"], boxed["members"]
    for cls, fraction in ((LocalDensityDecrease, (0.1, 0.5)), (LocalCutout, (0.3, 0.7))):
        c = fraction[0] if severity == 1 else fraction[1]
        out = cls(severity)(copy(sample))
        assert set(boxed["outside"]) <= set(out["row"])  # nothing outside the boxes changes
        np.testing.assert_array_equal(out["points"], sample["points"][out["row"]])
        np.testing.assert_array_equal(out["pts_semantic_mask"],
                                      sample["pts_semantic_mask"][out["row"]])
        for rows in members:
            left = _kept(out, rows)
            assert len(left) == len(rows) - int(c * len(rows))
            removed = np.setdiff1d(rows, left)
            if cls is LocalCutout and len(removed):
                # the hole is a ball: some removed point has every removed point nearer to it
                # than every kept point of the box
                xyz = sample["points"][:, :3].astype(np.float64)
                assert any(np.linalg.norm(xyz[removed] - xyz[r], axis=1).max()
                           <= np.linalg.norm(xyz[left] - xyz[r], axis=1).min(initial=np.inf)
                           for r in removed)


def test_local_noise_shear_scale_rotation_move_only_box_points(boxed):
    from lidarcl.robustness.corruptions import (LocalGaussianNoise, LocalRotation, LocalScale,
                                                LocalShear)
    from lidarcl.structures.boxes import points_in_boxes

    sample, members, boxes = boxed["sample"], boxed["members"], boxed["sample"]["gt_boxes"]
    xyz = sample["points"][:, :3].astype(np.float64)
    checked = {"rotation": 0, "scale": 0}
    for cls in (LocalGaussianNoise, LocalShear, LocalScale, LocalRotation):
        out = cls(5)(copy(sample))
        np.testing.assert_array_equal(out["row"], np.arange(len(xyz)))  # none removed
        np.testing.assert_array_equal(out["points"][boxed["outside"]],
                                      sample["points"][boxed["outside"]])
        np.testing.assert_array_equal(out["points"][:, 3:], sample["points"][:, 3:])
        np.testing.assert_array_equal(out["gt_boxes"], boxes)
        moved = out["points"][:, :3].astype(np.float64)
        if cls is LocalGaussianNoise:
            inside = np.concatenate(members)
            assert (moved[inside] - xyz[inside]).std() == pytest.approx(0.10, rel=0.1)
        if cls is LocalShear:  # clamped to its box
            for b, rows in enumerate(members):
                assert points_in_boxes(moved[rows] * 0.9999 + boxes[b, :3] * 1e-4,
                                       boxes[b:b + 1, :7]).all()
        if cls is LocalRotation:  # a rigid turn of 8-10 degrees about the box's axis
            for b, rows in enumerate(members):
                if len(rows) < 5:
                    continue
                a, p = xyz[rows, :2] - boxes[b, :2], moved[rows, :2] - boxes[b, :2]
                np.testing.assert_allclose(np.linalg.norm(p, axis=1),
                                           np.linalg.norm(a, axis=1), atol=1e-4)
                turn = np.degrees(np.arctan2(a[:, 0] * p[:, 1] - a[:, 1] * p[:, 0],
                                             (a * p).sum(1)))
                far = np.linalg.norm(a, axis=1) > 0.3
                if far.sum() < 2:
                    continue
                assert np.ptp(turn[far]) < 0.05 and 8 - 1e-3 <= abs(turn[far][0]) <= 10 + 1e-3
                np.testing.assert_allclose(moved[rows, 2], xyz[rows, 2], atol=1e-5)
                checked["rotation"] += 1
        if cls is LocalScale:  # one box axis stretched or shrunk by 20 %
            for b, rows in enumerate(members):
                if len(rows) < 5:
                    continue
                c, s = np.cos(boxes[b, 6]), np.sin(boxes[b, 6])
                turn = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])  # box frame -> LiDAR
                before = (xyz[rows] - boxes[b, :3]) @ turn
                after = (moved[rows] - boxes[b, :3]) @ turn
                changed = [not np.allclose(before[:, k], after[:, k], atol=1e-4)
                           for k in range(3)]
                assert sum(changed) == 1
                k = changed.index(True)
                ratio = np.ptp(after[:, k]) / np.ptp(before[:, k])
                assert min(abs(ratio - 1.2), abs(ratio - 0.8)) < 1e-3
                checked["scale"] += 1
    assert min(checked.values()) >= 3
    with pytest.raises(ValueError, match="needs the ground-truth boxes"):
        LocalRotation(1)({"token": "t", "points": sample["points"]})
    with pytest.raises(ValueError, match="severity 'heavy' is not one of 1..5"):
        LocalRotation("heavy")


# ------------------------------------------------------------ rings from the elevation
def test_rings_from_elevation_against_the_files_rings(real_points, labelled):
    from lidarcl.robustness.corruptions.base import NOMINAL_ELEVATIONS, rings_from_elevation

    # the generator's HDL-32E casts its rays from the sensor: every ring is recovered
    for sample in labelled:
        inferred = rings_from_elevation(sample["points"][:, :3], 32)
        np.testing.assert_array_equal(inferred, sample["points"][:, 4].astype(int))
    # the real nuScenes frame: the emitters sit off the sensor's axis, so near points miss
    # by a beam; beyond 5 m the nominal elevations find the file's ring for 95 %
    inferred = rings_from_elevation(real_points[:, :3], 32)
    far = np.hypot(real_points[:, 0], real_points[:, 1]) > 5
    assert (inferred[far] == real_points[far, 4]).mean() > 0.95
    # the HDL-64E table: 64 ascending elevations from -24.33 to +2.0 degrees
    table = NOMINAL_ELEVATIONS[64]
    assert len(table) == 64 and np.all(np.diff(table) > 0)
    assert table[0] == pytest.approx(-24.33) and table[-1] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no nominal beam elevations for a 40-beam"):
        rings_from_elevation(real_points[:, :3], 40)


def test_beam_missing_on_kitti_infers_64_rings(real_data):
    root = real_data.require_kitti()
    path = sorted(glob.glob(os.path.join(root, "training", "velodyne", "*.bin")))[0]
    points = np.fromfile(path, np.float32).reshape(-1, 4)
    from lidarcl.robustness.corruptions.base import rings_from_elevation

    sample = {"token": "kitti", "points": points.copy(), "points_use_dims": (0, 1, 2, 3)}
    out = BeamMissing(2, num_beams=64, ring_column=None)(sample)
    rings = rings_from_elevation(points[:, :3], 64)
    kept = set(np.unique(rings_from_elevation(out["points"][:, :3], 64)))
    gone = set(np.unique(rings)) - kept
    # 32 of the droppable rings 4..58 go; every point of the others stays
    assert gone and min(gone) >= 4 and max(gone) <= 58
    assert len(out["points"]) == int(np.isin(rings, sorted(kept)).sum())


# ---------------------------------------------------------- alignment (Dong et al.)
def test_spatial_misalignment_rotates_and_shifts_each_camera_by_its_sigma(labelled):
    from lidarcl.robustness.corruptions import SpatialMisalignment
    from lidarcl.robustness.corruptions.alignment import rotation_from_vector

    sample = labelled[0]
    assert len(sample["cams"]) == 6
    angles, shifts = [], []
    for token in range(40):  # 240 camera errors
        out = SpatialMisalignment(5)(dict(copy(sample), token=f"t{token}",
                                          cams={k: dict(v) for k, v in sample["cams"].items()}))
        for name, cam in out["cams"].items():
            before = np.asarray(sample["cams"][name]["lidar2cam"])
            error = cam["lidar2cam"] @ np.linalg.inv(before)
            rotation = error[:3, :3]
            np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
            angles.append(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
            shifts.append(error[:3, 3])
            cam2img = np.asarray(sample["cams"][name]["cam2img"])
            np.testing.assert_allclose(cam["lidar2img"], cam2img @ cam["lidar2cam"], atol=1e-9)
    shifts = np.concatenate(shifts)
    assert np.std(shifts) == pytest.approx(0.20, rel=0.1)
    # the angle of a rotation vector with N(0, s^2) components: Maxwell, mean 2 s sqrt(2 / pi)
    assert np.mean(angles) == pytest.approx(0.02 * 2 * np.sqrt(2 / np.pi), rel=0.1)
    np.testing.assert_allclose(rotation_from_vector([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0],
                               atol=1e-12)
    # the points are not touched
    np.testing.assert_array_equal(out["points"], sample["points"])


def test_temporal_misalignment_replaces_the_scan_by_an_older_sweep(labelled):
    from lidarcl.datasets.transforms.loading import load_sweep
    from lidarcl.robustness.corruptions import TemporalMisalignment

    sample = copy(labelled[0])
    with pytest.raises(ValueError, match="detection corruption"):
        TemporalMisalignment(1)(copy(sample))
    del sample["pts_semantic_mask"]
    sweeps = sample["sweeps"]
    assert len(sweeps) >= 9
    for severity, back in ((1, 1), (5, 9)):
        out = TemporalMisalignment(severity)(copy(sample))
        expected, _ = load_sweep(sample, sweeps[back - 1], sample["points_use_dims"],
                                 sample["points"].shape[1])
        np.testing.assert_array_equal(out["points"], expected)
        assert out["stale_sweep"] == sweeps[back - 1]["path"] and "row" not in out
        np.testing.assert_array_equal(out["gt_boxes"], sample["gt_boxes"])
