"""Procedural driving-scene generator writing the nuScenes v1.0 table layout."""
