"""Shared pytest fixtures.

``synthetic_root`` (session scope) generates a small synthetic nuScenes-layout dataset once
per test session and returns a ``SyntheticRoot(dataroot, version)`` named tuple:
2 scenes x 10 keyframes, six 320x180 cameras, 1 lidar sweep between keyframes, with the
optional per-camera depth maps (``depth/<CHANNEL>/<image basename>.png``, uint16 cm).
Load it with ``NuScenes(version=root.version, dataroot=root.dataroot)``.

``tiny_dataset`` (session scope): 2 generated scenes x 2 keyframes (160x90 cameras) with
their info indexes, the data root of the short pretraining runs (test_pretrain.py,
test_checkpoints.py); returns the root as a string.

``REAL_DATA`` (also the ``real_data`` fixture): where the real nuScenes and KITTI frames
are, read once from the environment (README, "Testing with your own data"):

    LIDARCL_REAL_DATA         folder holding ``nuscenes/`` and ``kitti/``; default
                              ``<repository>/../shared/data/real`` (the shipped frames)
    LIDARCL_NUSCENES_ROOT     a nuScenes dataroot (``<version>/`` tables, ``samples/``);
                              default ``$LIDARCL_REAL_DATA/nuscenes``
    LIDARCL_NUSCENES_VERSION  its table version; default ``v1.0-mini``
    LIDARCL_KITTI_ROOT        a KITTI object root (``ImageSets/``, ``training/``);
                              default ``$LIDARCL_REAL_DATA/kitti``

Relative paths are taken from the current directory. Two kinds of tests use them:

* tests that hold on **any copy** (a real scan through voxelisation, the backbones, the
  regions, the point-file checks; the devkit's class table) take one scan with
  :meth:`RealData.nuscenes_lidar_file` / :meth:`RealData.kitti_file` and skip, naming the
  variable and the path, when no copy is found (``needs_nuscenes()`` / ``needs_kitti()``,
  ``require_nuscenes()`` / ``require_kitti()``);
* tests that assert values of the **shipped frames** (one v1.0-mini keyframe of
  scene-0061 with 69 boxes and its ``frame.json``; KITTI frame 000008 alone in
  ``ImageSets/train.txt``), or that copy or convert the whole root, use
  ``shipped=True`` and skip on another copy, saying so.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Mapping, NamedTuple

import pytest


class SyntheticRoot(NamedTuple):
    dataroot: str
    version: str


SYNTHETIC_FIXTURE_ARGS = dict(scenes=2, keyframes=10, seed=0, image_size=(320, 180),
                              sweeps_per_keyframe=1, version="v1.0-synthetic",
                              write_depth=True)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> SyntheticRoot:
    from lidarcl.datasets.synthetic import generate_dataset
    out = tmp_path_factory.mktemp("synthetic_nuscenes")
    summary = generate_dataset(str(out), **SYNTHETIC_FIXTURE_ARGS)
    return SyntheticRoot(summary["dataroot"], summary["version"])


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    from lidarcl.datasets.nuscenes_converter import create_nuscenes_infos
    from lidarcl.datasets.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("pretrain_data")
    summary = generate_dataset(str(root), scenes=2, keyframes=2, seed=0,
                               image_size=(160, 90), version="v1.0-synthetic", overwrite=True)
    create_nuscenes_infos(summary["dataroot"], "v1.0-synthetic", summary["dataroot"])
    return summary["dataroot"]


@pytest.fixture(autouse=True)
def _restore_torch_global_state():
    """Every test starts with torch's deterministic-algorithms flag and thread count as the
    session had them: a run in the deterministic mode (mmengine's ``set_random_seed(...,
    deterministic=True)``) turns ``torch.use_deterministic_algorithms`` on for the process
    and never off, which made later tests of non-deterministic kernels fail."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_num_threads(threads)


def load_tool(name: str):
    """``tools/<name>.py`` as a module (its ``main(argv)`` runs the CLI in-process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"lidarcl_tool_{name}",
                                                  Path(__file__).resolve().parents[1]
                                                  / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------ real frames
REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL_DATA = REPO.parent / "shared" / "data" / "real"
SHIPPED_NUSCENES_VERSION = "v1.0-mini"
SHIPPED_NUSCENES_SAMPLE = "ca9a282c9e77460f8360f564131a8af5"  # scene-0061, first keyframe
# the shipped keyframe's files (v1.0-mini and v1.0-trainval hold them too)
SHIPPED_NUSCENES_FILES = {
    channel: f"samples/{channel}/n015-2018-07-24-11-22-45+0800__{channel}__{stamp}{suffix}"
    for channel, stamp, suffix in (
        ("LIDAR_TOP", 1532402927647951, ".pcd.bin"), ("CAM_FRONT", 1532402927612460, ".jpg"),
        ("CAM_FRONT_RIGHT", 1532402927620339, ".jpg"),
        ("CAM_FRONT_LEFT", 1532402927604844, ".jpg"), ("CAM_BACK", 1532402927637525, ".jpg"),
        ("CAM_BACK_LEFT", 1532402927647423, ".jpg"),
        ("CAM_BACK_RIGHT", 1532402927627893, ".jpg"))}
SHIPPED_KITTI_FRAME = "000008"
_HOW = "see the README, section 'Testing with your own data'"


def _env_path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name, "")
    return Path(os.path.abspath(os.path.expanduser(value))) if value else None


class RealData:
    """Where the real frames are (module doc), and whether they are the shipped ones."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        base = _env_path(env, "LIDARCL_REAL_DATA")
        self.base = base or DEFAULT_REAL_DATA
        base_setting = (f"LIDARCL_REAL_DATA={self.base}" if base else
                        f"LIDARCL_REAL_DATA unset, default {self.base}")
        nus = _env_path(env, "LIDARCL_NUSCENES_ROOT")
        self.nuscenes_root = nus or self.base / "nuscenes"
        self.nuscenes_version = env.get("LIDARCL_NUSCENES_VERSION") or SHIPPED_NUSCENES_VERSION
        self.nuscenes_setting = (f"LIDARCL_NUSCENES_ROOT={nus}" if nus else
                                 f"LIDARCL_NUSCENES_ROOT unset; {base_setting}")
        kitti = _env_path(env, "LIDARCL_KITTI_ROOT")
        self.kitti_root = kitti or self.base / "kitti"
        self.kitti_setting = (f"LIDARCL_KITTI_ROOT={kitti}" if kitti else
                              f"LIDARCL_KITTI_ROOT unset; {base_setting}")

    # ---------------------------------------------------------------- what is there
    @property
    def nuscenes_tables(self) -> Path:
        return self.nuscenes_root / self.nuscenes_version

    @functools.cached_property
    def nuscenes_found(self) -> bool:
        return (self.nuscenes_tables / "sample.json").is_file()

    @functools.cached_property
    def kitti_found(self) -> bool:
        return (self.kitti_root / "training" / "velodyne").is_dir()

    @functools.cached_property
    def nuscenes_shipped(self) -> bool:
        """The shipped frame: v1.0-mini tables holding the one keyframe, and frame.json."""
        if not (self.nuscenes_found and self.nuscenes_version == SHIPPED_NUSCENES_VERSION
                and (self.nuscenes_root / "frame.json").is_file()):
            return False
        try:
            samples = json.loads((self.nuscenes_tables / "sample.json").read_text())
            frame = json.loads((self.nuscenes_root / "frame.json").read_text())
        except (OSError, ValueError):
            return False
        return ([s.get("token") for s in samples] == [SHIPPED_NUSCENES_SAMPLE]
                and frame.get("sample_token") == SHIPPED_NUSCENES_SAMPLE)

    @functools.cached_property
    def kitti_shipped(self) -> bool:
        """The shipped frame: ``ImageSets/train.txt`` listing 000008 alone, no other split."""
        sets = self.kitti_root / "ImageSets"
        if not (self.kitti_found and sets.is_dir()):
            return False
        splits = {p.name: p.read_text().split() for p in sets.glob("*.txt")}
        return (splits == {"train.txt": [SHIPPED_KITTI_FRAME]} and
                (self.kitti_root / f"training/velodyne/{SHIPPED_KITTI_FRAME}.bin").is_file())

    # ------------------------------------------------------------------- skipping
    def nuscenes_skip_reason(self, shipped: bool = False) -> str | None:
        if not self.nuscenes_found:
            return (f"real nuScenes data not found: no {self.nuscenes_tables / 'sample.json'} "
                    f"({self.nuscenes_setting}; LIDARCL_NUSCENES_VERSION="
                    f"{self.nuscenes_version}); {_HOW}")
        if shipped and not self.nuscenes_shipped:
            return (f"checks values of the shipped nuScenes frame (one {SHIPPED_NUSCENES_VERSION} "
                    f"keyframe, sample {SHIPPED_NUSCENES_SAMPLE}, 69 boxes, frame.json); "
                    f"{self.nuscenes_root} ({self.nuscenes_setting}) is another copy")
        return None

    def kitti_skip_reason(self, shipped: bool = False) -> str | None:
        if not self.kitti_found:
            return (f"real KITTI data not found: no {self.kitti_root / 'training/velodyne'} "
                    f"({self.kitti_setting}); {_HOW}")
        if shipped and not self.kitti_shipped:
            return (f"checks values of the shipped KITTI frame ({SHIPPED_KITTI_FRAME} alone in "
                    f"ImageSets/train.txt); {self.kitti_root} ({self.kitti_setting}) is "
                    "another copy")
        return None

    def needs_nuscenes(self, shipped: bool = False):
        """A skipif mark: no nuScenes copy (or, with ``shipped``, not the shipped frame)."""
        reason = self.nuscenes_skip_reason(shipped)
        return pytest.mark.skipif(reason is not None, reason=reason or "")

    def needs_kitti(self, shipped: bool = False):
        reason = self.kitti_skip_reason(shipped)
        return pytest.mark.skipif(reason is not None, reason=reason or "")

    def require_nuscenes(self, shipped: bool = False) -> Path:
        """The nuScenes root, or ``pytest.skip`` with the reason."""
        reason = self.nuscenes_skip_reason(shipped)
        if reason is not None:
            pytest.skip(reason)
        return self.nuscenes_root

    def require_kitti(self, shipped: bool = False) -> Path:
        reason = self.kitti_skip_reason(shipped)
        if reason is not None:
            pytest.skip(reason)
        return self.kitti_root

    # ------------------------------------------------------------------ one frame
    def nuscenes_keyframe_file(self, channel: str = "LIDAR_TOP",
                               shipped_file: bool = False) -> Path:
        """One keyframe file of ``channel`` of any nuScenes copy: the shipped keyframe's
        where the copy has it (v1.0-mini and v1.0-trainval do), else the first file of
        ``samples/<channel>`` by name. ``shipped_file``: that file or a skip."""
        root = self.require_nuscenes()
        shipped = SHIPPED_NUSCENES_FILES[channel]
        if (root / shipped).is_file():
            return root / shipped
        if shipped_file:
            pytest.skip(f"checks values of the shipped nuScenes keyframe; {root} "
                        f"({self.nuscenes_setting}) lacks {shipped}")
        files = sorted(p for p in (root / "samples" / channel).glob("*")
                       if p.name.endswith(Path(shipped).name.partition(".")[2]))
        if not files:
            pytest.skip(f"no {channel} keyframe under {root / 'samples' / channel} "
                        f"({self.nuscenes_setting}); {_HOW}")
        return files[0]

    def nuscenes_lidar_file(self, shipped_scan: bool = False) -> Path:
        """One LiDAR keyframe (5 float32 columns) of any nuScenes copy (above)."""
        return self.nuscenes_keyframe_file("LIDAR_TOP", shipped_scan)

    def kitti_file(self, sub: str = "velodyne", suffix: str = ".bin") -> Path:
        """One file of ``training/<sub>`` of any KITTI copy: frame 000008 where the copy has
        it, else the first frame of ``ImageSets/train.txt`` that has one, else the first
        file by name."""
        folder = self.require_kitti() / "training" / sub
        path = folder / f"{SHIPPED_KITTI_FRAME}{suffix}"
        if path.is_file():
            return path
        split = self.kitti_root / "ImageSets" / "train.txt"
        ids = split.read_text().split() if split.is_file() else []
        for frame in ids[:100]:
            if (folder / f"{frame}{suffix}").is_file():
                return folder / f"{frame}{suffix}"
        files = sorted(folder.glob(f"*{suffix}"))
        if not files:
            pytest.skip(f"no KITTI {sub} file under {folder} ({self.kitti_setting}); {_HOW}")
        return files[0]


REAL_DATA = RealData()


@pytest.fixture(scope="session")
def real_data() -> RealData:
    """:data:`REAL_DATA` (the module doc)."""
    return REAL_DATA
