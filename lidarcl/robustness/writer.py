"""Offline corrupted copies of a nuScenes, KITTI or SemanticKITTI dataset
(``tools/create_corrupted.py``).

Each (corruption, severity) becomes its own nuScenes dataroot,
``OUT/<corruption>/<severity>/``, that nuscenes-devkit, ``tools/create_data.py`` and
``NuScenesDataset`` read like the original:

* ``<version>/*.json``: the tables restricted to the scenes of the chosen info index
  (every record of those scenes: samples, all their sample_data, annotations, instances,
  ego poses, lidarseg; the sensors, calibrations, categories, logs and maps whole), and
  ``splits.json`` restricted the same way for a generated version;
* ``samples/LIDAR_TOP/`` and ``sweeps/LIDAR_TOP/``: every LiDAR file of those scenes,
  keyframes and sweeps, corrupted (a corruption that needs what only a keyframe has, point
  labels or boxes, leaves the sweeps as they are: see :data:`SWEEP_CORRUPTIONS`);
* ``lidarseg/<version>/``: the keyframes' labels, in step with the corrupted points
  (removed points take their label, created or displaced points get 255, which the
  dataset's learning map sends to the ignore index);
* the cameras, radars, maps and anything else: links to the original folders;
* ``<prefix>_infos_<split>.json``: the info index, written by ``create_nuscenes_infos`` from
  the new tables (so the copy goes through the devkit and every file check);
* ``corruption.json``: the corruption, severity, parameter, seed and source.

A keyframe is corrupted exactly as the same transform does inside a pipeline (the sample is
built by ``NuScenesDataset`` with ``LoadPoints`` keeping every column and
``LoadLidarsegLabels`` keeping the raw labels; the random source is seeded by the sample
token), so ``tools/robustness.py`` scores the same points whether it reads a copy or
corrupts on the fly. A sweep's random source is seeded by its sample_data token.

Spatial misalignment changes only the calibration: each keyframe camera's sample_data gets
its own ``calibrated_sensor`` record whose camera-to-ego pose makes the index's
``lidar2cam`` the noisy one; the points are linked. Temporal misalignment writes the stale
sweep in place of the keyframe and its lidarseg file as 255 (the sweep has no labels).

KITTI (``dataset="kitti"``): the object layout, ``training/velodyne/<id>.bin`` corrupted (the
rings from the elevation of the HDL-64E's nominal beams, reflectance in [0, 1]),
``ImageSets/<split>.txt`` of the index's frames, links to images, labels and calibrations
(spatial misalignment writes calibration files with the noisy ``Tr_velo_to_cam``), the
index by ``create_kitti_infos``; there are no sweeps (temporal misalignment is refused).

SemanticKITTI (``dataset="semantickitti"``): ``sequences/NN/velodyne/XXXXXX.bin`` of every scan
of the index's sequences corrupted (rings and reflectance as for KITTI), ``labels/`` in step
(raw semantic and instance ids kept; a displaced point gets 0, unlabeled), the sequence's
calibration, poses and times linked, the index by ``create_semantickitti_infos``. Robo3D's
eight only (no boxes, cameras or sweeps). The labels of wet ground, snow and incomplete
echo are Robo3D's SemanticKITTI-C classes (:data:`SEMANTICKITTI_GROUND_RAW`,
:data:`SEMANTICKITTI_VEHICLE_RAW`); the parameters are nuScenes-C's, as for every layout.

Resume: files are written atomically (a temporary file renamed into place), so a file that
exists is complete and is not written again; a set whose ``corruption.json`` says
``complete`` is skipped; a set folder written with other settings raises
:class:`~lidarcl.errors.DataError` instead of being mixed.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import sys
import time
from typing import Callable, Iterable

import numpy as np

from lidarcl.datasets.info_format import read_json_document
from lidarcl.errors import DataError
from lidarcl.utils.fileio import atomic_write, atomic_write_bytes

__all__ = ["SWEEP_CORRUPTIONS", "MANIFEST", "DATASETS", "corrupted_set_dir",
           "create_corrupted", "filter_tables", "plan_sets", "Progress",
           "semantickitti_corruption_args", "supported_corruptions"]

MANIFEST = "corruption.json"
MANIFEST_FORMAT = "lidarcl-corrupted"
LIDAR_CHANNEL = "LIDAR_TOP"
# corruptions that need only the points (sweeps get them too); the others need a keyframe's
# labels or boxes (incomplete echo, the object-level six), replace the keyframe (temporal)
# or touch only the calibration (spatial)
SWEEP_CORRUPTIONS = ("fog", "wet_ground", "snow", "motion_blur", "beam_missing", "crosstalk",
                     "cross_sensor")
# tables kept whole: what every scene shares
SHARED_TABLES = ("attribute", "calibrated_sensor", "category", "log", "map", "sensor",
                 "visibility")


def corrupted_set_dir(out: str, name: str, severity: int) -> str:
    """The dataroot of one corrupted set."""
    return osp.join(out, name, str(int(severity)))


def plan_sets(corruptions: Iterable[str] | str, severities: Iterable[int] | None
              ) -> list[tuple[str, int]]:
    """``[(name, severity)]``: ``"all"`` is every registered corruption; a severity a
    corruption does not have (4 and 5 for Robo3D's three-level ones) is left out, one no
    corruption has raises."""
    from lidarcl.robustness.corruptions import CORRUPTIONS

    names = sorted(CORRUPTIONS) if corruptions == "all" or list(corruptions) == ["all"] \
        else list(corruptions)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruptions {unknown}; known: {', '.join(sorted(CORRUPTIONS))}")
    sets = []
    for name in names:
        levels = len(CORRUPTIONS[name].parameters)
        wanted = range(1, levels + 1) if severities is None else [int(s) for s in severities]
        bad = [s for s in wanted if s < 1]
        if bad:
            raise ValueError(f"severities start at 1, got {bad}")
        sets += [(name, s) for s in wanted if s <= levels]
    if not sets:
        raise ValueError(f"no corruption among {names} has the severities {list(severities)}")
    return sets


def filter_tables(table_root: str, scene_tokens: set[str]) -> dict[str, list]:
    """The tables of ``table_root`` restricted to the scenes ``scene_tokens`` (module doc):
    ``{table name: records}``."""
    names = sorted(f[:-5] for f in os.listdir(table_root) if f.endswith(".json")
                   and f != "splits.json")
    tables = {n: read_json_document(osp.join(table_root, f"{n}.json"), f"nuScenes {n} table")
              for n in names}
    missing = [n for n in ("scene", "sample", "sample_data", "ego_pose") if n not in tables]
    if missing:
        raise DataError(table_root, f"the nuScenes tables lack {missing}")
    out = {n: tables[n] for n in SHARED_TABLES if n in tables}
    out["scene"] = [r for r in tables["scene"] if r["token"] in scene_tokens]
    unknown = scene_tokens - {r["token"] for r in out["scene"]}
    if unknown:
        raise DataError(osp.join(table_root, "scene.json"),
                        f"the info index names scenes the tables lack: {sorted(unknown)[:3]}")
    samples = {r["token"] for r in tables["sample"] if r["scene_token"] in scene_tokens}
    out["sample"] = [r for r in tables["sample"] if r["token"] in samples]
    out["sample_data"] = [r for r in tables["sample_data"] if r["sample_token"] in samples]
    data = {r["token"] for r in out["sample_data"]}
    poses = {r["ego_pose_token"] for r in out["sample_data"]}
    out["ego_pose"] = [r for r in tables["ego_pose"] if r["token"] in poses]
    if "sample_annotation" in tables:
        out["sample_annotation"] = [r for r in tables["sample_annotation"]
                                    if r["sample_token"] in samples]
        instances = {r["instance_token"] for r in out["sample_annotation"]}
        if "instance" in tables:
            out["instance"] = [r for r in tables["instance"] if r["token"] in instances]
    for name, records in tables.items():
        if name in out:
            continue
        if records and isinstance(records[0], dict) and "sample_data_token" in records[0]:
            out[name] = [r for r in records if r["sample_data_token"] in data]
        elif records and isinstance(records[0], dict) and "sample_token" in records[0]:
            out[name] = [r for r in records if r["sample_token"] in samples]
        else:
            out[name] = records
    return out


class Progress:
    """A progress line with the rate and the ETA, at most every ``interval`` seconds."""

    def __init__(self, total: int, done: int = 0, interval: float = 2.0, stream=None):
        self.total, self.done, self.interval = int(total), int(done), interval
        self.start_done = self.done
        self.start = self.last = time.perf_counter()
        self.stream = stream or sys.stderr

    def step(self, what: str = "", count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.last < self.interval and self.done < self.total:
            return
        self.last = now
        rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if np.isfinite(left) else "?"
        print(f"[{self.done}/{self.total} files] {rate:.1f} files/s, ETA {eta} {what}",
              file=self.stream, flush=True)


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _link(target: str, link: str) -> None:
    """``link`` -> ``target`` (absolute), unless it already points there."""
    if osp.islink(link):
        if os.readlink(link) == target:
            return
        os.unlink(link)
    os.makedirs(osp.dirname(link), exist_ok=True)
    os.symlink(target, link)


class _Source:
    """What every set of one call shares: the dataroot, its version, the info index (its
    samples, metadata and digest) and, for nuScenes, the tables of the index's scenes (read
    once, when a set is written)."""

    def __init__(self, root: str, version: str, index: str, infos: list, metadata: dict):
        self.root, self.version, self.index = osp.abspath(root), version, index
        self.infos, self.metadata = infos, metadata
        self.digest = _digest(index)
        self._tables = None

    @property
    def tables(self) -> dict[str, list]:
        if self._tables is None:
            self._tables = filter_tables(osp.join(self.root, self.version),
                                         {i["scene_token"] for i in self.infos})
        return self._tables


class _SetWriter:
    """One (corruption, severity) set of a nuScenes layout (module doc)."""

    def __init__(self, source: _Source, out, name, severity, seed, prefix,
                 corrupt_sweeps=True):
        self._init_set(source, out, name, severity, seed, prefix)
        self.corrupt_sweeps = bool(corrupt_sweeps) and name in SWEEP_CORRUPTIONS
        self.manifest["sweeps"] = "corrupted" if self.corrupt_sweeps else "unchanged (linked)"

    def _init_set(self, source: _Source, out, name, severity, seed, prefix,
                  **corruption_args) -> None:
        from lidarcl.robustness.corruptions import build_corruption

        self.source = source
        self.root, self.version, self.index = source.root, source.version, source.index
        self.infos, self.metadata = source.infos, source.metadata
        self.name, self.severity, self.seed, self.prefix = name, int(severity), seed, prefix
        self.corruption = build_corruption(name, severity, seed, **corruption_args)
        self.dir = corrupted_set_dir(out, name, severity)
        self.manifest = {
            "format": MANIFEST_FORMAT, "corruption": name, "severity": self.severity,
            "parameter_name": self.corruption.parameter_name,
            "parameter": self.corruption.parameter, "seed": int(seed),
            "source_root": osp.realpath(self.root), "version": self.version,
            "source_index": osp.realpath(self.index), "source_index_sha256": source.digest,
        }

    @property
    def tables(self) -> dict[str, list]:
        return self.source.tables

    @property
    def lidar(self) -> list[dict]:
        return [r for r in self.tables["sample_data"]
                if r["filename"].split("/")[1:2] == [LIDAR_CHANNEL]]

    @property
    def files(self) -> list[str]:
        return [r["filename"] for r in self.lidar]

    # -- state -------------------------------------------------------------------------
    def state(self) -> str:
        """``"complete"``, ``"partial"`` or ``"new"``; DataError when the folder holds a
        set written with other settings."""
        path = osp.join(self.dir, MANIFEST)
        if not osp.exists(path):
            if osp.isdir(self.dir) and os.listdir(self.dir):
                raise DataError(self.dir, f"the folder is not empty and has no {MANIFEST}; "
                                          "it is not a corrupted set of this tool: choose "
                                          "another --out")
            return "new"
        found = read_json_document(path, "corrupted-set manifest")
        settings = {k: v for k, v in found.items() if k != "complete"}
        if settings != self.manifest:
            differ = sorted(k for k in set(settings) | set(self.manifest)
                            if settings.get(k) != self.manifest.get(k))
            raise DataError(path, f"the set was written with other settings ({', '.join(differ)}"
                                  f" differ); delete {self.dir} or choose another --out")
        return "complete" if found.get("complete") else "partial"

    def files_to_write(self) -> int:
        return len(self.files)

    def files_done(self) -> int:
        return sum(osp.lexists(osp.join(self.dir, f)) for f in self.files)

    def _file_written(self, written: int, progress: Progress | None,
                      stop_after: int | None) -> int:
        """Count a written file, advance the progress line; ``stop_after`` files (the tests'
        interruption) raise KeyboardInterrupt."""
        written += 1
        if progress is not None:
            progress.step(f"{self.name} {self.severity}")
        if stop_after is not None and written >= stop_after:
            raise KeyboardInterrupt(f"stopped after {written} files (stop_after)")
        return written

    # -- writing -----------------------------------------------------------------------
    def write(self, progress: Progress | None = None,
              stop_after: int | None = None) -> None:
        """Write the set (resuming); ``stop_after`` files written (the tests' interruption)
        raises KeyboardInterrupt."""
        os.makedirs(self.dir, exist_ok=True)
        self._write_manifest(complete=False)
        self._write_links()
        keyframes = self._keyframes()
        written = 0
        for record in self.lidar:
            target = osp.join(self.dir, record["filename"])
            if osp.lexists(target):
                continue
            os.makedirs(osp.dirname(target), exist_ok=True)
            source = osp.join(self.root, record["filename"])
            if record["token"] in keyframes:
                self._write_keyframe(keyframes[record["token"]], target)
            elif self.corrupt_sweeps:
                self._write_sweep(record, source, target)
            else:
                _link(source, target)
            written = self._file_written(written, progress, stop_after)
        self._write_tables(self._noisy_calibrations(keyframes.values())
                           if self.name == "spatial_misalignment" else {})
        from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos

        create_nuscenes_infos(self.dir, self.version, self.dir,
                              max_sweeps=int(self.metadata.get("max_sweeps", 10)),
                              prefix=self.prefix)
        self._write_manifest(complete=True)

    def _write_manifest(self, complete: bool) -> None:
        with atomic_write(osp.join(self.dir, MANIFEST), "w", encoding="utf-8") as f:
            json.dump({**self.manifest, "complete": complete}, f, indent=1)

    def _write_links(self) -> None:
        """Everything but the tables, the LiDAR folders and the lidarseg labels: links."""
        skip = {self.version, "lidarseg", MANIFEST}
        for entry in sorted(os.listdir(self.root)):
            source = osp.join(self.root, entry)
            if entry in skip or (entry.endswith(".json") and not osp.isdir(source)):
                continue
            if entry in ("samples", "sweeps") and osp.isdir(source):
                for channel in sorted(os.listdir(source)):
                    if channel != LIDAR_CHANNEL:
                        _link(osp.join(source, channel), osp.join(self.dir, entry, channel))
                os.makedirs(osp.join(self.dir, entry, LIDAR_CHANNEL), exist_ok=True)
            elif osp.isdir(source):
                _link(source, osp.join(self.dir, entry))

    def _keyframes(self) -> dict[str, int]:
        """LiDAR sample_data token -> the keyframe's position in the index."""
        return {info["nuscenes"]["lidar_token"]: i for i, info in enumerate(self.infos)
                if (info.get("nuscenes") or {}).get("lidar_token")}

    def dataset(self, with_labels: bool):
        from lidarcl.datasets.nuscenes_dataset import NuScenesDataset

        key = "_dataset_labels" if with_labels else "_dataset_points"
        if getattr(self, key, None) is None:
            pipeline = [dict(type="LoadPoints", use_dims=None, skip_empty=False)]
            if with_labels:
                pipeline.append(dict(type="LoadLidarsegLabels", label_mapping=None))
            setattr(self, key, NuScenesDataset(ann_file=osp.abspath(self.index),
                                               data_root=self.root, pipeline=pipeline,
                                               test_mode=True))
        return getattr(self, key)

    def _write_keyframe(self, index: int, target: str) -> None:
        info = self.infos[index]
        labelled = bool(info.get("lidarseg_path")) and self.name != "temporal_misalignment"
        sample = self.dataset(labelled)[index]
        if sample["token"] != info["token"]:
            raise DataError(self.index, f"sample {index} is {sample['token']} in the "
                                        f"dataset but {info['token']} in the index")
        if self.name == "spatial_misalignment":
            _link(osp.join(self.root, info["lidar_path"]), target)
            if labelled:
                _link(osp.join(self.root, info["lidarseg_path"]),
                      osp.join(self.dir, info["lidarseg_path"]))
            return
        sample = self.corruption(sample)
        points = np.ascontiguousarray(sample["points"], dtype=np.float32)
        if info.get("lidarseg_path"):
            labels = sample.get("pts_semantic_mask")
            if labels is None:  # temporal: the stale sweep has no labels
                labels = np.full(len(points), 255)
            if len(labels) != len(points):
                raise RuntimeError(f"{self.name}: {len(labels)} labels for {len(points)} points")
            atomic_write_bytes(osp.join(self.dir, info["lidarseg_path"]),
                               np.asarray(labels).astype(np.uint8).tobytes())
        atomic_write_bytes(target, points.tobytes())

    def _write_sweep(self, record: dict, source: str, target: str) -> None:
        from lidarcl.datasets.transforms.loading import LoadPoints

        columns = int(self.infos[0].get("num_point_features", 5))
        sample = LoadPoints(use_dims=None, skip_empty=False)(
            {"lidar_path": source, "num_point_features": columns, "token": record["token"]})
        sample = self.corruption(sample)
        atomic_write_bytes(target, np.ascontiguousarray(sample["points"], np.float32).tobytes())

    def _noisy_calibrations(self, indices) -> dict[str, dict]:
        """Camera sample_data token -> its noisy calibrated_sensor record (module doc):
        ``cam2ego' = cam2ego @ lidar2cam @ inv(lidar2cam')``."""
        from pyquaternion import Quaternion

        calibrated = {r["token"]: r for r in self.tables["calibrated_sensor"]}
        by_file = {r["filename"]: r for r in self.tables["sample_data"]}
        out = {}
        for index in indices:
            sample = self.dataset(False).get_data_info(index)
            noisy = self.corruption(dict(sample, cams={k: dict(v) for k, v in
                                                         sample["cams"].items()}))
            for channel, cam in sample["cams"].items():
                filename = self.infos[index]["cams"][channel]["path"]
                record = by_file.get(filename)
                if record is None:
                    raise DataError(osp.join(self.root, self.version, "sample_data.json"),
                                    f"no sample_data record for {filename}")
                calib = calibrated[record["calibrated_sensor_token"]]
                cam2ego = np.eye(4)
                cam2ego[:3, :3] = Quaternion(calib["rotation"]).rotation_matrix
                cam2ego[:3, 3] = calib["translation"]
                new = cam2ego @ np.asarray(cam["lidar2cam"], np.float64) @ np.linalg.inv(
                    np.asarray(noisy["cams"][channel]["lidar2cam"], np.float64))
                token = hashlib.md5(f"{record['token']}-{self.name}-{self.severity}-"
                                    f"{self.seed}".encode()).hexdigest()
                out[record["token"]] = dict(
                    calib, token=token, translation=new[:3, 3].tolist(),
                    rotation=list(Quaternion(matrix=new[:3, :3], atol=1e-6).elements))
        return out

    def _write_tables(self, calibrations: dict[str, dict]) -> None:
        tables = dict(self.tables)
        if calibrations:
            tables["calibrated_sensor"] = tables["calibrated_sensor"] + list(calibrations.values())
            tables["sample_data"] = [dict(r, calibrated_sensor_token=calibrations[r["token"]]
                                          ["token"]) if r["token"] in calibrations else r
                                     for r in tables["sample_data"]]
        table_dir = osp.join(self.dir, self.version)
        os.makedirs(table_dir, exist_ok=True)
        for name, records in tables.items():
            with atomic_write(osp.join(table_dir, f"{name}.json"), "w", encoding="utf-8") as f:
                json.dump(records, f)
        splits = osp.join(self.root, self.version, "splits.json")
        if osp.isfile(splits):
            names = {r["name"] for r in tables["scene"]}
            kept = {k: [n for n in v if n in names]
                    for k, v in read_json_document(splits, "split file").items()}
            with atomic_write(osp.join(table_dir, "splits.json"), "w", encoding="utf-8") as f:
                json.dump(kept, f, indent=1)


# KITTI's HDL-64E: rings from the elevation, reflectance in [0, 1]
KITTI_CORRUPTION_ARGS = {
    "fog": dict(intensity_max=1.0), "wet_ground": dict(intensity_max=1.0),
    "snow": dict(intensity_max=1.0, ring_column=None, num_beams=64),
    "beam_missing": dict(ring_column=None, num_beams=64),
    "cross_sensor": dict(ring_column=None, num_beams=64),
}


class _KittiSetWriter(_SetWriter):
    """One set of a KITTI object layout: ``training/velodyne/<id>.bin`` corrupted,
    ``ImageSets/<split>.txt`` of the index's frames, links to the images, labels and
    calibrations (spatial misalignment: calibration files with the noisy
    ``Tr_velo_to_cam``), the index by ``create_kitti_infos``. KITTI has no sweeps."""

    def __init__(self, source: _Source, out, name, severity, seed, prefix):
        self._init_set(source, out, name, severity, seed, prefix,
                       **KITTI_CORRUPTION_ARGS.get(name, {}))
        self.split = self.metadata.get("split") or "val"
        self.manifest["sweeps"] = "none (KITTI)"

    @property
    def files(self) -> list[str]:
        return [info["lidar_path"] for info in self.infos]

    def write(self, progress: Progress | None = None, stop_after: int | None = None) -> None:
        from lidarcl.datasets.kitti_converter import create_kitti_infos
        from lidarcl.datasets.kitti_dataset import KittiDataset

        os.makedirs(self.dir, exist_ok=True)
        self._write_manifest(complete=False)
        spatial = self.name == "spatial_misalignment"
        folders = {osp.dirname(f) for f in self.files}
        for entry in sorted(os.listdir(self.root)):
            source = osp.join(self.root, entry)
            if entry == "ImageSets" or not osp.isdir(source):
                continue
            for sub in sorted(os.listdir(source)):
                rel = osp.join(entry, sub)
                if rel in folders or (spatial and sub == "calib"):
                    os.makedirs(osp.join(self.dir, rel), exist_ok=True)
                elif osp.isdir(osp.join(source, sub)):
                    _link(osp.join(source, sub), osp.join(self.dir, rel))
        dataset = KittiDataset(ann_file=osp.abspath(self.index), data_root=self.root,
                               pipeline=[dict(type="LoadPoints", use_dims=None,
                                              skip_empty=False)], test_mode=True)
        written = 0
        for i, info in enumerate(self.infos):
            target = osp.join(self.dir, info["lidar_path"])
            if osp.lexists(target):
                continue
            if spatial:
                self._write_noisy_calib(dataset, i, info)
                _link(osp.join(self.root, info["lidar_path"]), target)
            else:
                sample = self.corruption(dataset[i])
                atomic_write_bytes(target, np.ascontiguousarray(sample["points"],
                                                                np.float32).tobytes())
            written = self._file_written(written, progress, stop_after)
        with atomic_write(osp.join(self.dir, "ImageSets", f"{self.split}.txt"), "w") as f:
            f.write("".join(f"{info['token']}\n" for info in self.infos))
        create_kitti_infos(self.dir, self.dir, prefix=self.prefix)
        self._write_manifest(complete=True)

    def _write_noisy_calib(self, dataset, index: int, info: dict) -> None:
        """The frame's calibration file with ``Tr_velo_to_cam' = inv(R0_rect) lidar2cam'``,
        ``lidar2cam' = E R0_rect Tr_velo_to_cam`` the transform's noisy one."""
        from lidarcl.datasets.kitti_converter import parse_calib

        sample = dataset.get_data_info(index)
        noisy = self.corruption(dict(sample, cams={k: dict(v) for k, v in
                                                   sample["cams"].items()}))
        (channel, cam), = noisy["cams"].items()
        calib_rel = info["lidar_path"].replace("velodyne", "calib").rsplit(".", 1)[0] + ".txt"
        source = osp.join(self.root, calib_rel)
        calib = parse_calib(source)
        r0 = np.eye(4)
        r0[:3, :3] = calib.R0_rect
        tr = (np.linalg.inv(r0) @ np.asarray(cam["lidar2cam"], np.float64))[:3]
        with open(source, encoding="utf-8") as f:
            lines = f.read().splitlines()
        values = " ".join(f"{v:.12e}" for v in tr.reshape(-1))
        out = [f"Tr_velo_to_cam: {values}" if line.split(":")[0].strip() in
               ("Tr_velo_to_cam", "Tr_velo_cam") else line for line in lines]
        with atomic_write(osp.join(self.dir, calib_rel), "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")


# SemanticKITTI (same HDL-64E as KITTI). Its labels travel through a corruption as
# raw id + SEMANTICKITTI_LABEL_OFFSET, so the IGNORE_LABEL (255) that a corruption gives a
# displaced point cannot be mistaken for raw 255 (moving-motorcyclist); the label sets are
# raw ids of Robo3D's SemanticKITTI-C classes: wet ground (and snow's noise threshold) on
# road, parking, sidewalk, other-ground (create/semantickitti_c/wet_ground, learning classes
# 9-12; raw 60 lane-marking maps to road), incomplete echo on car, bicycle, motorcycle, truck,
# other-vehicle (create/semantickitti_c/incomplete_echo, learning classes 1-5)
SEMANTICKITTI_LABEL_OFFSET = 256
SEMANTICKITTI_GROUND_RAW = (40, 44, 48, 49, 60)
SEMANTICKITTI_VEHICLE_RAW = {"car": (10, 252), "bicycle": (11,), "motorcycle": (15,),
                             "truck": (18, 258), "other-vehicle": (13, 16, 20, 256, 257, 259)}


def semantickitti_corruption_args(name: str, offset: int = SEMANTICKITTI_LABEL_OFFSET) -> dict:
    """The corruption's arguments for SemanticKITTI scans whose ``pts_semantic_mask`` holds
    raw id + ``offset`` (``offset=None``: the 19 training labels of the learning map)."""
    from lidarcl.datasets.semantickitti_converter import LEARNING_MAP

    def encode(raw_ids):
        if offset is None:
            return sorted({LEARNING_MAP[r] for r in raw_ids})
        return [r + offset for r in raw_ids]

    args = dict(KITTI_CORRUPTION_ARGS.get(name, {}))
    if name in ("wet_ground", "snow"):
        args["ground_labels"] = encode(SEMANTICKITTI_GROUND_RAW)
    if name == "incomplete_echo":
        args["label_groups"] = {k: encode(v) for k, v in SEMANTICKITTI_VEHICLE_RAW.items()}
    return args


class _SemanticKittiSetWriter(_SetWriter):
    """One set of a SemanticKITTI layout: ``sequences/NN/velodyne/XXXXXX.bin`` corrupted,
    ``sequences/NN/labels/XXXXXX.label`` in step (raw semantic id and instance id kept for
    every point that keeps its surface; a displaced or created point gets 0, unlabeled, and
    no instance), ``calib.txt`` / ``poses.txt`` / ``times.txt`` and any other entry of the
    sequence folder linked, the index by ``create_semantickitti_infos``. Robo3D's eight
    only: SemanticKITTI has no boxes (object-level), cameras or sweeps (alignment)."""

    def __init__(self, source: _Source, out, name, severity, seed, prefix):
        self._init_set(source, out, name, severity, seed, prefix,
                       **semantickitti_corruption_args(name))
        self.manifest["sweeps"] = "none (SemanticKITTI)"
        self.sequences = sorted({str(info["scene_token"]) for info in self.infos})
        self.split = self.metadata.get("split") or "val"

    @property
    def files(self) -> list[str]:
        return [info["lidar_path"] for info in self.infos]

    def dataset(self, with_labels: bool):
        from lidarcl.datasets.semantickitti_dataset import SemanticKITTIDataset

        key = "_dataset_labels" if with_labels else "_dataset_points"
        if getattr(self, key, None) is None:
            pipeline = [dict(type="LoadPoints", use_dims=None, skip_empty=False)]
            if with_labels:
                pipeline.append(dict(
                    type="LoadSemanticKITTILabels", ignore_index=0,
                    label_mapping=np.arange(1 << 16) + SEMANTICKITTI_LABEL_OFFSET))
            setattr(self, key, SemanticKITTIDataset(
                ann_file=osp.abspath(self.index), data_root=self.root, pipeline=pipeline,
                test_mode=True))
        return getattr(self, key)

    def _check_source(self) -> None:
        """The layout's index is rebuilt from the folders: every scan of a sequence must be
        in the index (poses.txt has one row per scan), and every sequence of its split;
        incomplete echo needs each scan's labels (SemanticKITTI has no boxes)."""
        named = self.metadata.get("sequences")
        if named and sorted(map(str, named)) != self.sequences:
            raise DataError(self.index, f"its split names sequences {sorted(named)} but its "
                                        f"scans come from {self.sequences}")
        if self.name == "incomplete_echo":
            unlabelled = [i["token"] for i in self.infos if not i.get("lidarseg_path")]
            if unlabelled:
                raise DataError(self.index, f"incomplete echo needs point labels (no boxes "
                                            f"in SemanticKITTI); {len(unlabelled)} scans have "
                                            f"none, e.g. {unlabelled[0]}")
        for sequence in self.sequences:
            velodyne = osp.join(self.root, "sequences", sequence, "velodyne")
            scans = sum(f.endswith(".bin") for f in os.listdir(velodyne))
            listed = sum(str(i["scene_token"]) == sequence for i in self.infos)
            if scans != listed:
                raise DataError(self.index, f"lists {listed} of the {scans} scans of sequence "
                                            f"{sequence} ({velodyne}); a SemanticKITTI copy "
                                            "takes whole sequences")

    def write(self, progress: Progress | None = None, stop_after: int | None = None) -> None:
        from lidarcl.datasets.semantickitti_converter import create_semantickitti_infos

        self._check_source()
        os.makedirs(self.dir, exist_ok=True)
        self._write_manifest(complete=False)
        for sequence in self.sequences:
            rel = osp.join("sequences", sequence)
            for entry in sorted(os.listdir(osp.join(self.root, rel))):
                if entry in ("velodyne", "labels"):
                    os.makedirs(osp.join(self.dir, rel, entry), exist_ok=True)
                else:
                    _link(osp.join(self.root, rel, entry), osp.join(self.dir, rel, entry))
        written = 0
        for i, info in enumerate(self.infos):
            target = osp.join(self.dir, info["lidar_path"])
            if osp.lexists(target):
                continue
            labelled = bool(info.get("lidarseg_path"))
            sample = self.corruption(self.dataset(labelled)[i])
            points = np.ascontiguousarray(sample["points"], dtype=np.float32)
            if labelled:
                semantic = np.asarray(sample["pts_semantic_mask"], dtype=np.int64)
                instance = np.asarray(sample["pts_instance_mask"], dtype=np.int64)
                if not len(semantic) == len(instance) == len(points):
                    raise RuntimeError(f"{self.name}: {len(semantic)} labels for "
                                       f"{len(points)} points")
                raw = np.where(semantic >= SEMANTICKITTI_LABEL_OFFSET,
                               semantic - SEMANTICKITTI_LABEL_OFFSET, 0)
                instance = np.where(semantic >= SEMANTICKITTI_LABEL_OFFSET, instance, 0)
                atomic_write_bytes(osp.join(self.dir, info["lidarseg_path"]),
                                   ((instance << 16) | raw).astype("<u4").tobytes())
            atomic_write_bytes(target, points.tobytes())
            written = self._file_written(written, progress, stop_after)
        sequences = self.metadata.get("sequences") or self.sequences
        create_semantickitti_infos(self.dir, self.dir, splits={self.split: tuple(sequences)},
                                   prefix=self.prefix)
        self._write_manifest(complete=True)


DATASETS = ("nuscenes", "kitti", "semantickitti")
# why a layout cannot take the corruptions outside supported_corruptions
UNSUPPORTED = {
    "kitti": "temporal misalignment replaces a scan by an older sweep; KITTI's object layout "
             "has no sweeps",
    "semantickitti": "SemanticKITTI has no boxes, cameras or sweeps; its copies take Robo3D's "
                     "eight",
}


def supported_corruptions(dataset: str) -> list[str]:
    """What ``--corruptions all`` means for a layout: every corruption for nuScenes; all
    but temporal misalignment for KITTI (no sweeps); Robo3D's eight for SemanticKITTI."""
    from lidarcl.robustness.corruptions import CORRUPTIONS
    from lidarcl.robustness.scores import ROBO3D_CORRUPTIONS

    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: corrupted copies are written for "
                         f"{', '.join(DATASETS)}")
    if dataset == "semantickitti":
        return list(ROBO3D_CORRUPTIONS)
    return [n for n in sorted(CORRUPTIONS)
            if not (dataset == "kitti" and n == "temporal_misalignment")]


def create_corrupted(root: str, version: str, index: str, out: str,
                     corruptions: Iterable[str] | str = "all",
                     severities: Iterable[int] | None = None, seed: int = 0,
                     prefix: str = "nuscenes", log: Callable[[str], None] = print,
                     stop_after: int | None = None, progress_stream=None,
                     corrupt_sweeps: bool = True, dataset: str = "nuscenes") -> list[dict]:
    """Write every (corruption, severity) set of the samples of ``index`` (module doc);
    ``corrupt_sweeps=False`` links every sweep unchanged (for models of keyframes only);
    ``dataset="kitti"``: a KITTI object layout (``version`` unused; :class:`_KittiSetWriter`);
    ``dataset="semantickitti"``: the SemanticKITTI layout (:class:`_SemanticKittiSetWriter`).
    Returns one ``{"name", "severity", "dir", "state"}`` per set (state before this call:
    ``"new"``, ``"partial"`` (resumed) or ``"complete"`` (skipped))."""
    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.robustness.corruptions import CORRUPTIONS

    supported = supported_corruptions(dataset)  # ValueError for a dataset it cannot write
    if dataset == "nuscenes" and not osp.isdir(osp.join(root, str(version))):
        raise DataError(osp.join(root, str(version)), f"nuScenes tables of version "
                                                      f"{version!r} not found")
    corruptions = [corruptions] if isinstance(corruptions, str) else list(corruptions)
    if corruptions == ["all"]:
        corruptions = supported
    refused = [n for n in corruptions if n not in supported and n in CORRUPTIONS]
    if refused:
        raise ValueError(f"{', '.join(refused)}: {UNSUPPORTED[dataset]}")
    infos, metadata = read_info_index(index, dataset)
    if not infos:
        raise DataError(index, "the info index lists no sample")
    source = _Source(root, version if dataset == "nuscenes" else dataset, index, infos,
                     metadata)
    if dataset != "nuscenes":
        writer = _KittiSetWriter if dataset == "kitti" else _SemanticKittiSetWriter
        writers = [writer(source, out, name, severity, seed, prefix)
                   for name, severity in plan_sets(corruptions, severities)]
    else:
        writers = [_SetWriter(source, out, name, severity, seed, prefix, corrupt_sweeps)
                   for name, severity in plan_sets(corruptions, severities)]
    states = [w.state() for w in writers]
    total = sum(w.files_to_write() for w, s in zip(writers, states) if s != "complete")
    done = sum(w.files_done() for w, s in zip(writers, states) if s == "partial")
    progress = Progress(total, done, stream=progress_stream)
    report = []
    for writer, state in zip(writers, states):
        report.append({"name": writer.name, "severity": writer.severity, "dir": writer.dir,
                       "state": state})
        if state == "complete":
            log(f"{writer.name} {writer.severity}: complete, skipped ({writer.dir})")
            continue
        log(f"{writer.name} {writer.severity}: {'resuming' if state == 'partial' else 'writing'}"
            f" {writer.files_to_write()} LiDAR files of {len(infos)} keyframes -> {writer.dir}")
        writer.write(progress, stop_after)
    return report
