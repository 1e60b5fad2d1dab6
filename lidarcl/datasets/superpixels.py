"""Superpixels of the camera images, computed once and cached next to the info index.

Image-to-LiDAR pretraining (SLidR, Sautier et al. CVPR 2022, Sec. 3.1) average-pools point
and pixel features per superpixel. SLidR segments every camera image with scikit-image's
SLIC, 150 segments, ``compactness=6``, ``sigma=3.0``, ids from 0, and stores one 8-bit PNG per
image; :func:`compute_slic` uses the same call and defaults.

On-disk layout (``create_superpixels``; ``tools/create_data.py --superpixels slic``)::

    <index dir>/superpixels/<tag>/<sample token>_<CHANNEL>.png

``<tag>`` names the method and its parameters: ``slic150`` for SLidR's setting
(``slic<n_segments>``), ``slic<n>_c<compactness>_s<sigma>`` otherwise, so maps computed with
other parameters never overwrite or pass for each other. A PNG is single-channel, 8-bit when
every id is below 256, else 16-bit, one id per pixel, ids ``0 .. S-1`` (``S`` about
``n_segments``, not exactly: SLIC merges and splits). The info index records, per camera,
``cams[ch]["superpixel_path"]`` (relative to the index's own folder, so the cache moves with
the index) and in ``metadata["superpixels"]`` the method and parameters
(``lidarcl/datasets/info_format.py``).

``scikit-image`` is imported lazily (only computing needs it; loading needs Pillow only).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from lidarcl.datasets.info_format import read_info_index, write_info_index
from lidarcl.datasets.io import load_image
from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.utils.fileio import atomic_write
from lidarcl.utils.paths import confined_path, is_inside, safe_file_stem

logger = logging.getLogger(__name__)

SUPERPIXEL_METHODS = ("slic",)
DEFAULT_N_SEGMENTS = 150
DEFAULT_COMPACTNESS = 6.0
DEFAULT_SIGMA = 3.0
SUPERPIXEL_DIRNAME = "superpixels"
SUPERPIXEL_KEY = "superpixel_path"  # per camera in the info index
_PNG_MODES = {"L": np.uint8, "I;16": np.uint16}  # what write_superpixels writes


def _import_slic():
    try:
        from skimage.segmentation import slic
    except ImportError as exc:  # pragma: no cover - scikit-image is a declared dependency
        raise ImportError("computing superpixels needs scikit-image "
                          "(pip install scikit-image)") from exc
    return slic


def compute_slic(image: np.ndarray, n_segments: int = DEFAULT_N_SEGMENTS,
                 compactness: float = DEFAULT_COMPACTNESS,
                 sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """SLIC superpixels of an RGB image (SLidR's call: ``skimage.segmentation.slic(image,
    n_segments, compactness, sigma, start_label=0)``, CIELAB, connectivity enforced).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.

    Returns:
        ``(H, W)`` ids ``0 .. S-1``, uint8 when ``S <= 256``, else uint16.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"compute_slic needs an (H, W, 3) uint8 RGB image, got shape "
                         f"{image.shape} dtype {image.dtype}")
    if int(n_segments) < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    slic = _import_slic()
    labels = slic(image, n_segments=int(n_segments), compactness=float(compactness),
                  sigma=float(sigma), start_label=0, channel_axis=-1)
    top = int(labels.max()) if labels.size else 0
    if int(labels.min()) < 0 or top > np.iinfo(np.uint16).max:
        raise ValueError(f"SLIC gave ids in [{int(labels.min())}, {top}]; superpixel maps "
                         "hold ids 0 .. 65535")
    return labels.astype(np.uint8 if top < 256 else np.uint16)


def method_tag(method: str = "slic", n_segments: int = DEFAULT_N_SEGMENTS,
               compactness: float = DEFAULT_COMPACTNESS, sigma: float = DEFAULT_SIGMA) -> str:
    """Folder name of a method and its parameters (``slic150`` for SLidR's setting)."""
    if method not in SUPERPIXEL_METHODS:
        raise ValueError(f"unknown superpixel method {method!r}; known: {SUPERPIXEL_METHODS}")
    tag = f"{method}{int(n_segments)}"
    if float(compactness) != DEFAULT_COMPACTNESS or float(sigma) != DEFAULT_SIGMA:
        tag += f"_c{float(compactness):g}_s{float(sigma):g}"
    return tag


def superpixel_path(out_dir: str | os.PathLike, method_tag: str, sample_token: str,
                    channel: str) -> str:
    """``<out_dir>/<method_tag>/<sample_token>_<channel>.png``; a token or channel that is
    not a plain file name (``../x``, ``a/b``) is sanitised and hashed
    (:func:`lidarcl.utils.paths.safe_file_stem`), so the map stays in its folder."""
    return os.path.join(os.fspath(out_dir), method_tag,
                        f"{safe_file_stem(sample_token)}_{safe_file_stem(channel)}.png")


def write_superpixels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write an ``(H, W)`` id map as a single-channel PNG, atomically (temporary file in
    the same folder, then ``os.replace``): 8-bit when every id is below 256, else 16-bit."""
    from PIL import Image

    path = os.fspath(path)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: superpixels must be an (H, W) integer map, got shape "
                         f"{labels.shape} dtype {labels.dtype}")
    low = int(labels.min()) if labels.size else 0
    high = int(labels.max()) if labels.size else 0
    if low < 0 or high > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: superpixel ids must lie in [0, 65535], got [{low}, {high}]")
    arr = np.ascontiguousarray(labels.astype(np.uint8 if high < 256 else np.uint16))
    with atomic_write(path, "wb") as f:
        Image.fromarray(arr).save(f, format="PNG")


def load_superpixels(path: str | os.PathLike,
                     expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a superpixel PNG written by :func:`write_superpixels`; returns ``(H, W)`` int16
    (int32 when an id exceeds 32767).

    Raises :class:`DataError` naming the file when it is missing, not a readable PNG, not
    a single-channel 8- or 16-bit map, or (with ``expected_shape`` = ``(H, W)``) of
    another size than its image.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "superpixel map")
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode not in _PNG_MODES:
                raise DataError(path, f"superpixel map must be a single-channel 8- or 16-bit "
                                      f"PNG (mode L or I;16), got mode {mode}")
            img.load()
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(path, f"unreadable superpixel map ({exc})") from exc
    if arr.ndim != 2 or arr.dtype != _PNG_MODES[mode]:
        raise DataError(path, f"superpixel map decoded as shape {arr.shape} dtype "
                              f"{arr.dtype}, expected (H, W) {np.dtype(_PNG_MODES[mode])}")
    if expected_shape is not None and arr.shape != tuple(int(s) for s in expected_shape):
        raise DataError(path, f"superpixel map is {arr.shape[0]}x{arr.shape[1]} (HxW) but its "
                              f"image is {expected_shape[0]}x{expected_shape[1]}; recompute it "
                              "(tools/create_data.py --superpixels slic with "
                              "--overwrite-superpixels)")
    # int16 when the ids fit (SLIC's ~150 segments do): a quarter of int64's memory, and the
    # fused pooling kernel reads it faster (lidarcl.ops.project_pool takes it as it is)
    return arr.astype(np.int16 if arr.size == 0 or int(arr.max()) < 2 ** 15 else np.int32)


def _cached_ok(path: str, height: int, width: int) -> bool:
    """An existing map of the right size and mode (header only, no decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.format == "PNG" and img.mode in _PNG_MODES \
                and img.size == (width, height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def _compute_one(job: tuple) -> tuple:
    """Worker: image -> SLIC -> PNG. Returns ``("ok", out_path, num_segments)`` or
    ``("error", path, problem)`` (DataError is not picklable as such: rebuilt by the
    parent)."""
    image_path, out_path, height, width, n_segments, compactness, sigma, where = job
    try:
        image = load_image(image_path)
        if image.shape[:2] != (height, width):
            raise DataError(image_path, f"{where}: image is {image.shape[0]}x{image.shape[1]} "
                                        f"(HxW) but the info says {height}x{width}")
        labels = compute_slic(image, n_segments, compactness, sigma)
        if labels.shape != (height, width):  # SLIC keeps the size; guard the contract
            raise DataError(image_path, f"{where}: superpixel map is {labels.shape}, image "
                                        f"{height}x{width}")
        write_superpixels(out_path, labels)
    except DataError as exc:
        return ("error", exc.path, exc.problem)
    return ("ok", out_path, int(labels.max()) + 1)


def create_superpixels(info_index_path: str | os.PathLike, data_root: str | os.PathLike,
                       out_dir: str | os.PathLike | None = None,
                       n_segments: int = DEFAULT_N_SEGMENTS,
                       compactness: float = DEFAULT_COMPACTNESS, sigma: float = DEFAULT_SIGMA,
                       method: str = "slic", workers: int = 1,
                       overwrite: bool = False) -> dict[str, Any]:
    """Compute the superpixels of every camera image of an info index and record them in it.

    Maps go to ``superpixel_path(out_dir, tag, token, channel)`` with ``out_dir`` defaulting
    to ``<index dir>/superpixels`` (module doc). A map already there, with the image's size,
    is kept unless ``overwrite``. The index is then rewritten atomically (only when it
    changes) with ``cams[ch]["superpixel_path"]`` relative to the index's folder and
    ``metadata["superpixels"] = {"method", "n_segments", "compactness", "sigma", "tag"}``.

    Args:
        info_index_path: an index written by ``tools/create_data.py``.
        data_root: the root its image paths are relative to.
        workers: processes (``multiprocessing.Pool``) when > 1.

    Returns:
        ``{"index", "dir", "computed", "skipped", "num_segments"}`` (``num_segments``: the
        segment count of every map computed in this call).

    Raises :class:`DataError` naming the file for a missing or unreadable image, or an
    image whose size differs from the index's ``height`` x ``width``.
    """
    index_path = os.path.abspath(os.fspath(info_index_path))
    data_root = os.path.abspath(os.fspath(data_root))
    index_dir = os.path.dirname(index_path)
    out_dir = os.path.abspath(os.fspath(out_dir) if out_dir is not None
                              else os.path.join(index_dir, SUPERPIXEL_DIRNAME))
    if not is_inside(out_dir, index_dir):
        # the index records the maps relative to its folder, and datasets confine them there
        raise ValueError(f"create_superpixels: out_dir {out_dir} must lie inside the info "
                         f"index's folder {index_dir}")
    tag = method_tag(method, n_segments, compactness, sigma)
    infos, metadata = read_info_index(index_path)

    jobs, skipped = [], 0
    for info in infos:
        token = str(info["token"])
        for channel, cam in (info.get("cams") or {}).items():
            out_path = superpixel_path(out_dir, tag, token, channel)
            height, width = int(cam["height"]), int(cam["width"])
            if not overwrite and os.path.isfile(out_path):
                if _cached_ok(out_path, height, width):
                    skipped += 1
                    continue
                logger.warning("%s: cached superpixel map is unreadable or not %dx%d (HxW); "
                               "recomputing", out_path, height, width)
            image_path = confined_path(data_root, cam["path"], index_path,
                                       f"sample {token} camera {channel} path")
            jobs.append((image_path, out_path, height, width, int(n_segments),
                         float(compactness), float(sigma), f"sample {token} camera {channel}"))

    counts: list[int] = []
    start = time.perf_counter()
    if jobs:
        logger.info("%s: computing %s superpixels of %d images (%d cached) with %d worker(s)",
                    index_path, tag, len(jobs), skipped, max(1, workers))
        if workers > 1 and len(jobs) > 1:
            import multiprocessing

            with multiprocessing.Pool(min(int(workers), len(jobs))) as pool:
                results = pool.imap_unordered(_compute_one, jobs, chunksize=1)
                counts = _gather(results, len(jobs), start)
        else:
            counts = _gather(map(_compute_one, jobs), len(jobs), start)

    new_infos = []
    for info in infos:
        token = str(info["token"])
        cams = {}
        for channel, cam in (info.get("cams") or {}).items():
            rel = os.path.relpath(superpixel_path(out_dir, tag, token, channel), index_dir)
            cams[channel] = {**cam, SUPERPIXEL_KEY: rel.replace(os.sep, "/")}
        new_infos.append({**info, "cams": cams})
    record = {"method": method, "n_segments": int(n_segments),
              "compactness": float(compactness), "sigma": float(sigma), "tag": tag,
              "implementation": "skimage.segmentation.slic",
              "paths_relative_to": "info index folder"}
    # "superpixels": the set every camera's superpixel_path points to (LoadSuperpixels'
    # default); "superpixel_sets": every set in the folder, by tag (LoadSuperpixels(tag=...))
    new_meta = {**metadata, "superpixels": record,
                "superpixel_sets": {**(metadata.get("superpixel_sets") or {}), tag: record}}
    if new_infos != infos or new_meta != metadata:
        write_info_index(index_path, new_infos, new_meta)
    return {"index": index_path, "dir": os.path.join(out_dir, tag), "computed": len(counts),
            "skipped": skipped, "num_segments": counts}


def _gather(results, total: int, start: float) -> list[int]:
    counts = []
    for status, path, value in results:
        if status == "error":
            raise DataError(path, value)
        counts.append(value)
        done = len(counts)
        if done == total or done % 500 == 0:
            elapsed = time.perf_counter() - start
            logger.info("superpixels: %d/%d images (%.2f s per image)", done, total,
                        elapsed / done)
    return counts
