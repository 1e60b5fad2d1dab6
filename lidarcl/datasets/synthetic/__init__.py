"""Procedural driving-scene generator writing the nuScenes v1.0 table layout.

``generate_dataset(out_dir, scenes, keyframes, seed, ...)`` builds a grid city with lanes,
sidewalks, crossings, buildings, vegetation, street furniture and annotated traffic, then
simulates a nuScenes-like rig (32-beam LIDAR_TOP at 20 Hz, six cameras) and writes tables
that ``nuscenes.nuscenes.NuScenes`` loads unchanged. See docs/synthetic_format.md.
"""
from .writer import generate_dataset

__all__ = ["generate_dataset"]
