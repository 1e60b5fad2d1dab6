#!/usr/bin/env python
"""Speed of the procedural dataset generator.

Prints seconds per generated keyframe (lidar keyframe + its intermediate sweeps + six
cameras, file writing included), seconds per lidar sweep (simulation + writing) and the
raycaster alone (``cast_rays`` on one sweep's 34,688 rays, index included).

    python benchmarks/synthetic_generation.py [--keyframes 8] [--image-size 800 450]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--keyframes", type=int, default=8)
    p.add_argument("--sweeps-per-keyframe", type=int, default=9)
    p.add_argument("--image-size", type=int, nargs=2, default=(800, 450))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from lidarcl.datasets.synthetic import generate_dataset
    from lidarcl.datasets.synthetic import lidar as L
    from lidarcl.datasets.synthetic import scene as S
    from lidarcl.datasets.synthetic import sensors as SE

    with tempfile.TemporaryDirectory() as d:   # warm-up: numba compilation / cache load
        generate_dataset(d, scenes=1, keyframes=1, image_size=(64, 36), sweeps_per_keyframe=1)
    # end-to-end: full keyframes vs keyframes without cameras (to split the cost)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        s = generate_dataset(d, scenes=1, keyframes=args.keyframes, seed=args.seed,
                             image_size=tuple(args.image_size),
                             sweeps_per_keyframe=args.sweeps_per_keyframe)
        total = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        generate_dataset(d, scenes=1, keyframes=1, seed=args.seed, image_size=(16, 9),
                         sweeps_per_keyframe=0)
        fixed = time.perf_counter() - t0   # city, scene, map rasters: paid once per dataset
    per_kf = (total - fixed) / args.keyframes
    sweeps = args.keyframes * (args.sweeps_per_keyframe + 1)
    # raycaster alone
    rng = np.random.default_rng(args.seed)
    city = S.make_city(rng, 250.0)
    scn = S.make_scene(rng, city, 3.0)
    dirs_l, _ = L.beam_directions()
    e2w = SE.ego_to_world(scn, 1.0)
    l2w = e2w @ SE.LIDAR_TO_EGO
    origin = l2w[:3, 3].copy()
    dirs = np.ascontiguousarray(dirs_l @ l2w[:3, :3].T)
    prims = scn.snapshot(1.0, origin, 72.0)
    lay = city.layout
    out_t, out_p, out_m = np.empty(len(dirs)), np.empty(len(dirs), np.int64), np.empty(len(dirs), np.int64)
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        st, ix, dm = L.build_azimuth_index(prims, origin[0], origin[1], 70.0, SE.N_BINS)
        L.cast_rays(origin, dirs, 70.0, prims, st, ix, dm, SE.N_BINS, lay.roads_x, lay.roads_y,
                    lay.blocks, lay.sidewalk, lay.half_extent, out_t, out_p, out_m)
    ray = (time.perf_counter() - t0) / reps
    # baseline in the same run: one azimuth bin, so every ray tests every primitive
    base_t, base_p, base_m = np.empty_like(out_t), np.empty_like(out_p), np.empty_like(out_m)
    t0 = time.perf_counter()
    for _ in range(reps):
        st1, ix1, dm1 = L.build_azimuth_index(prims, origin[0], origin[1], 70.0, 1)
        L.cast_rays(origin, dirs, 70.0, prims, st1, ix1, dm1, 1, lay.roads_x, lay.roads_y,
                    lay.blocks, lay.sidewalk, lay.half_extent, base_t, base_p, base_m)
    brute = (time.perf_counter() - t0) / reps
    same_hits = bool(np.array_equal(out_p, base_p) and np.allclose(out_t, base_t))
    t0 = time.perf_counter()
    for k in range(reps):
        SE.simulate_sweep(scn, 0.5 + 0.05 * k, rng)
    sweep = (time.perf_counter() - t0) / reps
    print(f"dataset: {args.keyframes} keyframes, {sweeps} lidar sweeps, six {args.image_size[0]}x"
          f"{args.image_size[1]} cameras, {s['annotations']} annotations; total {total:.2f} s "
          f"(of which {fixed:.2f} s once-per-dataset city/map setup)")
    print(f"seconds per keyframe (lidar+{args.sweeps_per_keyframe} sweeps+6 cameras, files): "
          f"{per_kf:.3f} ({per_kf / 2.0:.2f} x the 2 s target)")
    print(f"  lidar part {s['seconds_lidar'] / args.keyframes:.3f} s, cameras part "
          f"{s['seconds_cameras'] / args.keyframes:.3f} s per keyframe")
    print(f"seconds per lidar sweep (simulation, no file): {sweep:.4f}")
    print(f"seconds raycaster alone (index + {len(dirs)} rays, {len(prims)} primitives): {ray:.4f}")
    print(f"  baseline without the azimuth index (every ray x every primitive): {brute:.4f} s, "
          f"index speed-up {brute / ray:.1f}x, identical hits: {same_hits}")


if __name__ == "__main__":
    main()
