"""Reading point clouds and images, with errors that name the file and the problem.

Point files: ``.bin`` (raw float32, ``num_features`` columns, nuScenes ``.pcd.bin`` and KITTI
velodyne), ``.npy`` (2-D numeric array), ``.pcd`` / ``.ply`` (through open3d; x, y, z and,
when the file has colours, their mean as intensity; a ``.pcd`` header is checked against the
data it describes first, since open3d returns uninitialised memory for a file shorter than
its header promises).

Sanity rules (module constants, documented in the README's "Bad input"):

* a point whose x, y or z is NaN, infinite, or beyond :data:`MAX_ABS_COORDINATE` metres
  (100 km: no point of a scan in its sensor or ego frame lies there; a bit flip in an
  exponent puts one there) is **dropped and counted**; the count is returned so callers can
  report it. Georeferenced clouds (UTM, ECEF) pass ``max_abs_coordinate=None`` (finite
  only) or their own bound;
* a file is misread, not noisy, and raises :class:`DataError` when more than
  :data:`MAX_IMPLAUSIBLE_FRACTION` of its points are implausible, or when more than 1% are
  and the raw ``.bin`` reads plausibly in another layout (a float64 file, another column
  count; the error names it);
* a raw ``.bin`` whose rows read smoothly (consecutive points close together, as a
  scanning LiDAR writes them) with another column count than ``num_features``, and
  not with ``num_features``, raises :class:`DataError`: the index or config describes the
  file wrongly (a 5-column nuScenes file read as 4 columns is otherwise silent garbage).
  Multiples of ``num_features`` are not taken as evidence: a sensor that writes its lasers
  interleaved (raw Velodyne firing order, dual returns) reads smoothly at every other
  point, so 4 columns read as 8 would look right; an 8-column file declared as 4 is the
  one case left undetected;
* an empty scan (no points, or none left) is returned as such and reported by the
  caller (``LoadPoints`` skips it with a warning naming the file).
"""
from __future__ import annotations

import logging
import os

import numpy as np

from lidarcl.errors import DataError, DataFileNotFound

logger = logging.getLogger(__name__)

POINT_SUFFIXES = (".bin", ".npy", ".pcd", ".ply")
MAX_ABS_COORDINATE = 1.0e5  # metres; see the module doc
MAX_IMPLAUSIBLE_FRACTION = 0.5
_HINT_FRACTION = 0.01  # past this share of implausible points, look for a misread layout
_LAYOUT_MIN_ROWS = 64  # fewer rows cannot tell layouts apart
_LAYOUT_PROBE_ROWS = 2048  # rows read to compare column layouts of a .bin file
_LAYOUT_COLUMNS = range(3, 9)


def plausible_rows(xyz: np.ndarray, bound: float | None = MAX_ABS_COORDINATE) -> np.ndarray:
    """Rows whose x, y, z are finite and within ``bound`` (``None``: finite only)."""
    if bound is None:
        return np.isfinite(xyz).all(1)
    with np.errstate(invalid="ignore"):
        return (np.abs(xyz) <= bound).all(1)


def _roughness(xyz: np.ndarray) -> float:
    """Median distance between consecutive points over the median distance to the
    origin: small for a scan in sensor order, about 1 for shuffled or misread rows;
    ``inf`` when too few rows are plausible to tell."""
    xyz = xyz[plausible_rows(xyz)].astype(np.float64)
    if len(xyz) < 16:
        return float("inf")
    scale = float(np.median(np.linalg.norm(xyz, axis=1)))
    step = float(np.median(np.linalg.norm(np.diff(xyz, axis=0), axis=1)))
    return step / scale if scale > 0 else float("inf")


def _bin_layouts(path: str, size: int) -> dict[tuple[str, int], np.ndarray]:
    """The first rows' x, y, z under every (dtype, columns) layout the size allows."""
    layouts = {}
    for dtype in ("float32", "float64"):
        item = np.dtype(dtype).itemsize
        for cols in _LAYOUT_COLUMNS:
            if size % (item * cols) or size == 0:
                continue
            count = min(size // item, _LAYOUT_PROBE_ROWS * cols)
            rows = np.fromfile(path, dtype=dtype, count=count).reshape(-1, cols)
            layouts[(dtype, cols)] = rows[:, :3]
    return layouts


def _layout_hint(path: str, declared: tuple[str, int]) -> str:
    """``" (it reads plausibly as N float64 columns)"`` or ``""``."""
    size = os.path.getsize(path)
    best, best_score = None, float("inf")
    for layout, xyz in _bin_layouts(path, size).items():
        if layout == declared or len(xyz) < _LAYOUT_MIN_ROWS or \
                plausible_rows(xyz).mean() < 1 - _HINT_FRACTION:
            continue
        score = _roughness(xyz)
        if score < best_score:
            best, best_score = layout, score
    if best is None:
        return ""
    return f"; it reads plausibly as {best[1]} {best[0]} columns"


def _check_bin_layout(path: str, points: np.ndarray, num_features: int) -> None:
    """Raise when another column count reads the file far more smoothly (module doc)."""
    declared = _roughness(points[:_LAYOUT_PROBE_ROWS, :3])
    if len(points) < _LAYOUT_MIN_ROWS or declared < 0.25 or not np.isfinite(declared):
        return  # too few rows to tell, or consecutive points already close: layout right
    size = os.path.getsize(path)
    for (dtype, cols), xyz in _bin_layouts(path, size).items():
        if dtype == "float32" and cols % num_features == 0:
            continue  # itself, or every k-th point of an interleaved scan (module doc)
        if len(xyz) >= _LAYOUT_MIN_ROWS and plausible_rows(xyz).all() \
                and _roughness(xyz) < 0.3 * declared:
            raise DataError(path, f"read as {num_features} float32 columns its points are "
                                  f"scattered, but as {cols} {dtype} columns they follow the "
                                  "scan: num_point_features (index or config) does not "
                                  "describe the file")


def _read_bin(path: str, num_features: int) -> np.ndarray:
    size = os.path.getsize(path)
    row_bytes = 4 * num_features
    if size % row_bytes:
        raise DataError(path, f"truncated or mis-described point file: {size} bytes is not a "
                              f"multiple of {num_features} float32 columns ({row_bytes} bytes)")
    points = np.fromfile(path, dtype=np.float32).reshape(-1, num_features)
    _check_bin_layout(path, points, num_features)
    return points


def _read_npy(path: str, num_features: int | None) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(path, f"not a plain .npy array ({exc})") from exc
    if arr.dtype.kind not in "fiu":
        raise DataError(path, f"expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise DataError(path, f"expected a (N, >=3) array, got shape {arr.shape}")
    if num_features is not None and arr.shape[1] != num_features:
        raise DataError(path, f"expected {num_features} columns, got {arr.shape[1]}")
    return arr.astype(np.float32, copy=False)


def _check_pcd_header(path: str) -> None:
    """The point count a ``.pcd`` header promises must be in the file (open3d reads past
    the data otherwise and returns uninitialised memory as points)."""
    size = os.path.getsize(path)
    fields: dict[str, list[str]] = {}
    with open(path, "rb") as handle:
        for _ in range(64):  # a PCD header is about 11 lines
            line = handle.readline(4096)
            if not line:
                raise DataError(path, "PCD header ends before its DATA line")
            words = line.decode("ascii", "replace").split()
            if not words or words[0].startswith("#"):
                continue
            fields[words[0].upper()] = words[1:]
            if words[0].upper() == "DATA":
                break
        else:
            raise DataError(path, "PCD header has no DATA line in its first 64 lines")
        data_start = handle.tell()
        try:
            sizes = [int(v) for v in fields.get("SIZE", [])]
            counts = [int(v) for v in fields.get("COUNT", ["1"] * len(sizes))]
            points = int(fields["POINTS"][0]) if "POINTS" in fields else \
                int(fields["WIDTH"][0]) * int(fields["HEIGHT"][0])
        except (ValueError, IndexError, KeyError) as exc:
            raise DataError(path, f"malformed PCD header ({exc})") from exc
        if points < 0 or len(sizes) != len(counts) or not sizes:
            raise DataError(path, "malformed PCD header (SIZE / COUNT / POINTS)")
        row_bytes = sum(a * b for a, b in zip(sizes, counts))
        kind = (fields["DATA"] or ["?"])[0].lower()
        if kind == "binary":
            if size - data_start < points * row_bytes:
                raise DataError(path, f"PCD header promises {points} points "
                                      f"({points * row_bytes} bytes) but the file holds "
                                      f"{size - data_start} bytes of data (truncated)")
        elif kind == "binary_compressed":
            head = handle.read(8)
            if len(head) < 8:
                raise DataError(path, "truncated binary_compressed PCD (no size header)")
            compressed, uncompressed = np.frombuffer(head, dtype="<u4")
            if uncompressed != points * row_bytes or size - data_start - 8 < compressed:
                raise DataError(path, f"PCD header promises {points} points but its "
                                      f"compressed block holds {int(uncompressed)} of "
                                      f"{points * row_bytes} bytes and the file "
                                      f"{size - data_start - 8} of {int(compressed)}")
        elif kind == "ascii":
            rows = sum(1 for line in handle if line.strip())
            if rows < points:
                raise DataError(path, f"PCD header promises {points} points but the file "
                                      f"has {rows} data lines (truncated)")
        else:
            raise DataError(path, f"unknown PCD DATA kind {kind!r}")


def _read_open3d(path: str) -> np.ndarray:
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - open3d is a declared dependency
        raise ImportError(f"reading {path} needs open3d (pip install open3d)") from exc
    if path.lower().endswith(".pcd"):
        _check_pcd_header(path)
    cloud = o3d.io.read_point_cloud(path)
    xyz = np.asarray(cloud.points, dtype=np.float32)
    if len(xyz) == 0 and os.path.getsize(path) > 0 and not _declares_no_points(path):
        raise DataError(path, "open3d read no points (unreadable file)")
    if cloud.has_colors():
        intensity = np.asarray(cloud.colors, dtype=np.float32).mean(1, keepdims=True)
    else:
        intensity = np.zeros((len(xyz), 1), dtype=np.float32)
    return np.concatenate([xyz, intensity], 1)


def _declares_no_points(path: str) -> bool:
    """Whether a .pcd / .ply header says the file holds no points (a valid empty scan)."""
    with open(path, "rb") as handle:
        head = handle.read(2048).decode("ascii", "replace").lower().split("\n")
    for line in head:
        words = line.split()
        if words[:1] == ["points"] or words[:2] == ["element", "vertex"]:
            return words[-1] == "0"
    return False


def load_points(path: str | os.PathLike, num_features: int | None = None,
                drop_nonfinite: bool = True, return_mask: bool = False,
                max_abs_coordinate: float | None = MAX_ABS_COORDINATE):
    """Load a point file; returns ``(points (N, C) float32, number of dropped points)``,
    plus, with ``return_mask``, the mask of kept rows over the file's rows (so that
    per-point labels stored beside the file can be dropped alike).

    ``num_features`` is required for ``.bin`` (the file has no header) and checked for
    ``.npy``. With ``drop_nonfinite`` points whose x, y or z is NaN, infinite or beyond
    ``max_abs_coordinate`` metres (default :data:`MAX_ABS_COORDINATE`; ``None``: no bound,
    for georeferenced clouds) are removed (and counted); without it they raise
    :class:`DataError`. A file where more than :data:`MAX_IMPLAUSIBLE_FRACTION` of the
    points are such raises in any case (module doc). An empty scan returns ``(0, C)``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "point file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".bin":
        if num_features is None:
            raise DataError(path, ".bin point files need num_features (columns per point)")
        points = _read_bin(path, num_features)
    elif suffix == ".npy":
        points = _read_npy(path, num_features)
    elif suffix in (".pcd", ".ply"):
        points = _read_open3d(path)
    else:
        raise DataError(path, f"unknown point file type {suffix!r}; expected one of "
                              f"{POINT_SUFFIXES}")
    bound = max_abs_coordinate
    finite = plausible_rows(points[:, :3], bound)
    dropped = int(len(points) - finite.sum())
    beyond = "" if bound is None else f" or implausible ones (beyond {bound:g} m)"
    if dropped:
        hint = _layout_hint(path, ("float32", num_features)) \
            if suffix == ".bin" and dropped > _HINT_FRACTION * len(points) else ""
        if hint or dropped > MAX_IMPLAUSIBLE_FRACTION * len(points):
            raise DataError(path, f"{dropped} of {len(points)} points have NaN or infinite "
                                  f"coordinates{beyond}: the file is misread or corrupt{hint}")
        if not drop_nonfinite:
            raise DataError(path, f"{dropped} points have NaN or infinite coordinates{beyond}")
        logger.warning("%s: dropped %d points with NaN or infinite coordinates%s", path,
                       dropped, beyond)
        points = points[finite]
    return (points, dropped, finite) if return_mask else (points, dropped)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load an image as uint8 RGB (H, W, 3)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "image")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"unreadable image ({exc})") from exc
