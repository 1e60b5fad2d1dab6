"""Semantic superpixels from a frozen image teacher: segment ids that mean the same thing in
every camera and every frame, for SuperFlow's view consistency alignment (Xu et al., ECCV
2024; the paper takes class ids from a vision foundation model, OpenSeeD with 17 classes in
the released code). A user with such maps brings them in the same layout (below); without
one, lidarcl derives them from the teacher the camera-LiDAR methods distil:

1. **codebook, once per dataset**: the frozen encoder's feature map of ``fit_images``
   camera images of the index (evenly spaced over the index, every camera), bilinearly
   upsampled to the label grid (the image shrunk by ``label_stride``) and L2-normalised;
   ``fit_pixels`` of those pixel features drawn at random (seeded) are clustered by
   spherical k-means (k-means++ seeding, cosine similarity, ``iterations`` Lloyd steps)
   into ``clusters`` codewords;
2. **labels**: every pixel of the label grid takes its most similar codeword;
3. **cleaning**: every 4-connected segment smaller than ``min_area`` pixels of the label
   grid takes the label most frequent on its outer border (repeated until none is left or
   nothing changes), so segments are spatially coherent; the map is then enlarged to the
   image's size (nearest);
4. **cache**: ``<index dir>/superpixels/<tag>/<token>_<CHANNEL>.png``, the SLIC maps' layout
   (:mod:`lidarcl.datasets.superpixels`), with the codebook in
   ``<index dir>/superpixels/<tag>/codebook.pt`` so that the train and val indexes of one
   folder share it; ``metadata["superpixel_sets"][tag]`` records the method, the teacher
   (encoder config, checkpoint, weights digest) and every parameter. The default tag is
   ``kmeans<clusters>``; a cache or codebook made with another teacher or other parameters
   is refused unless ``overwrite``.

Maps from another model (OpenSeeD, SEEM, a segmentation network) use the same layout: write
one PNG per image, ids ``0 .. S-1`` meaning one class everywhere
(:func:`~lidarcl.datasets.superpixels.write_superpixels`), to
``<index dir>/superpixels/<tag>/<token>_<CHANNEL>.png`` and record them with
:func:`register_superpixel_set` (``tools/superpixels.py register``), which checks that every
image has its map at its size. ``LoadSuperpixels(tag=...)`` then loads that set.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lidarcl.datasets.info_format import read_info_index, write_info_index
from lidarcl.datasets.io import load_image
from lidarcl.datasets.superpixels import (SUPERPIXEL_DIRNAME, load_superpixels,
                                          superpixel_path, write_superpixels)
from lidarcl.engine.checkpoint import atomic_torch_save, weights_digest
from lidarcl.errors import DataError
from lidarcl.utils.paths import confined_path

logger = logging.getLogger(__name__)

__all__ = ["spherical_kmeans", "assign_codewords", "clean_labels",
           "create_semantic_superpixels", "register_superpixel_set", "SET_KEY"]

SET_KEY = "superpixel_sets"  # metadata key: {tag: parameters}


def _plus_plus(features: torch.Tensor, clusters: int, generator: torch.Generator
               ) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with the cosine distance 1 - x.c."""
    first = int(torch.randint(len(features), (1,), generator=generator))
    centres = [features[first]]
    distance = (1.0 - features @ features[first]).clamp(min=0)
    for _ in range(1, clusters):
        total = float(distance.sum())
        if total <= 0:  # fewer distinct points than clusters: repeat one
            pick = int(torch.randint(len(features), (1,), generator=generator))
        else:
            pick = int(torch.multinomial(distance / total, 1, generator=generator))
        centres.append(features[pick])
        distance = torch.minimum(distance, (1.0 - features @ features[pick]).clamp(min=0))
    return torch.stack(centres)


def spherical_kmeans(features: torch.Tensor, clusters: int, iterations: int = 30,
                     seed: int = 0) -> torch.Tensor:
    """Unit codewords ``(clusters, D)`` of unit ``features`` ``(N, D)``: k-means++ seeding,
    then Lloyd steps with cosine similarity (each codeword the normalised mean of its
    members; an empty one keeps its place)."""
    if features.ndim != 2 or len(features) < clusters or clusters < 1:
        raise ValueError(f"k-means needs (N, D) features with N >= clusters >= 1, got "
                         f"{tuple(features.shape)} for {clusters} clusters")
    features = F.normalize(features.double(), dim=1)
    generator = torch.Generator().manual_seed(int(seed))
    centres = _plus_plus(features, clusters, generator)
    for _ in range(int(iterations)):
        label = (features @ centres.t()).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, label, features)
        filled = torch.bincount(label, minlength=clusters) > 0
        moved = torch.where(filled[:, None], F.normalize(sums, dim=1), centres)
        if torch.equal(moved, centres):
            break
        centres = moved
    return centres.float()


def assign_codewords(features: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Label ``(h, w)`` of a feature map ``(D, h, w)``: the most cosine-similar codeword."""
    unit = F.normalize(features.float(), dim=0)
    return torch.einsum("dhw,kd->khw", unit, codebook.float()).argmax(0)


def clean_labels(labels: np.ndarray, min_area: int, max_rounds: int = 10) -> np.ndarray:
    """Merge every 4-connected segment smaller than ``min_area`` into the label most
    frequent on its outer border (module doc, step 3)."""
    from scipy import ndimage

    labels = np.array(labels, dtype=np.int64, copy=True)
    if min_area <= 1:
        return labels
    cross = ndimage.generate_binary_structure(2, 1)
    height, width = labels.shape
    for _ in range(max_rounds):
        changed = False
        for value in np.unique(labels):
            segments, count = ndimage.label(labels == value, structure=cross)
            if count == 0:
                continue
            sizes = np.bincount(segments.ravel(), minlength=count + 1)
            boxes = ndimage.find_objects(segments)
            for segment in np.flatnonzero(sizes[1:] < min_area) + 1:
                rows, cols = boxes[segment - 1]  # its bounding box, one pixel wider
                window = (slice(max(rows.start - 1, 0), min(rows.stop + 1, height)),
                          slice(max(cols.start - 1, 0), min(cols.stop + 1, width)))
                mask = segments[window] == segment
                border = ndimage.binary_dilation(mask, structure=cross) & ~mask
                if not border.any():
                    continue
                neighbours = labels[window][border]
                neighbours = neighbours[neighbours != value]
                if len(neighbours) == 0:
                    continue
                labels[window][mask] = np.bincount(neighbours).argmax()
                changed = True
        if not changed:
            break
    return labels


def _teacher_identity(teacher) -> dict:
    return {"encoder": dict(teacher.encoder_cfg),
            "weights_sha256": weights_digest(teacher.encoder.state_dict())}


def _patch_multiple(teacher) -> int:
    """The side multiple the teacher's encoder needs: its patch for a ViT, else 1."""
    from lidarcl.models.image.vit import VisionTransformer

    encoder = getattr(teacher, "encoder", None)
    return int(encoder.stride) if isinstance(encoder, VisionTransformer) else 1


@torch.no_grad()
def _feature_grid(teacher, image: np.ndarray, label_stride: int, work_side: int | None
                  ) -> torch.Tensor:
    """Unit teacher features ``(D, H / label_stride, W / label_stride)`` of one image."""
    tensor = torch.tensor(np.asarray(image)).permute(2, 0, 1).float()[None] / 255.0
    height, width = tensor.shape[-2:]
    size = (height, width)
    if work_side is not None and max(height, width) > work_side:
        factor = work_side / max(height, width)
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
    patch = _patch_multiple(teacher)  # a ViT sees whole patches: sides rounded to them
    size = tuple(max(patch, round(side / patch) * patch) for side in size)
    if size != (height, width):
        tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False,
                               antialias=True)
    grid = (max(1, height // label_stride), max(1, width // label_stride))
    features = teacher.encode(tensor)
    features = F.interpolate(features, size=grid, mode="bilinear", align_corners=False)
    return F.normalize(features[0], dim=0)


def _jobs(index_path: str, infos: list, data_root: str, out_dir: str, tag: str) -> list:
    jobs = []
    for info in infos:
        token = str(info["token"])
        for channel, cam in sorted((info.get("cams") or {}).items()):
            image = confined_path(data_root, cam["path"], index_path,
                                  f"sample {token} camera {channel} path")
            jobs.append((token, channel, image, superpixel_path(out_dir, tag, token, channel),
                         int(cam["height"]), int(cam["width"])))
    return jobs


def create_semantic_superpixels(info_index_path, data_root, teacher, clusters: int = 17,
                                tag: str | None = None, label_stride: int = 4,
                                work_side: int | None = 448, min_area: int = 64,
                                fit_images: int = 200, fit_pixels: int = 200_000,
                                iterations: int = 30, seed: int = 0,
                                overwrite: bool = False, refit: bool | None = None
                                ) -> dict[str, Any]:
    """Semantic superpixels of every camera image of an index (module doc); returns
    ``{"index", "dir", "tag", "codebook", "computed", "skipped", "fitted"}``.

    ``teacher``: an :class:`~lidarcl.models.image.ImageTeacher` (its frozen encoder is
    used, not its head). ``work_side``: the longer image side the encoder sees (images are
    shrunk to it first; ``None`` keeps them; a ViT's sides are then rounded to whole
    patches). ``min_area`` is in pixels of the label grid.
    ``overwrite`` recomputes the maps (and replaces a set recorded with other parameters);
    ``refit`` (default: ``overwrite``) fits the codebook again even when the folder has one
    (``tools/superpixels.py`` refits for its first index only, so the splits share it).
    """
    refit = overwrite if refit is None else refit
    index_path = os.path.abspath(os.fspath(info_index_path))
    data_root = os.path.abspath(os.fspath(data_root))
    index_dir = os.path.dirname(index_path)
    out_dir = os.path.join(index_dir, SUPERPIXEL_DIRNAME)
    tag = tag or f"kmeans{int(clusters)}"
    if int(clusters) < 2 or int(clusters) > 65536:
        raise ValueError(f"clusters must be in [2, 65536], got {clusters}")
    params = {"method": "teacher_kmeans", "clusters": int(clusters),
              "label_stride": int(label_stride), "work_side": work_side,
              "min_area": int(min_area), "fit_images": int(fit_images),
              "fit_pixels": int(fit_pixels), "iterations": int(iterations), "seed": int(seed),
              "teacher": _teacher_identity(teacher)}
    params = json.loads(json.dumps(params))  # as the index stores it (tuples as lists)
    infos, metadata = read_info_index(index_path)
    jobs = _jobs(index_path, infos, data_root, out_dir, tag)
    if not jobs:
        raise DataError(index_path, "no camera images to segment")
    recorded = (metadata.get(SET_KEY) or {}).get(tag)
    if recorded is not None and not overwrite:
        same = {k: v for k, v in recorded.items() if k in params} == params
        if not same:
            raise DataError(index_path, f"superpixel set {tag!r} was made with other "
                                        "parameters or another teacher; pass overwrite=True "
                                        "(--overwrite-superpixels) or another tag")
    teacher.eval()
    codebook_path = os.path.join(out_dir, tag, "codebook.pt")
    codebook, fitted = None, False
    if os.path.isfile(codebook_path) and not refit:
        stored = torch.load(codebook_path, weights_only=True)
        if stored.get("params") != params:
            raise DataError(codebook_path, f"the codebook of {tag!r} was fitted with other "
                                           "parameters or another teacher; refit it "
                                           "(--overwrite-superpixels) or use another tag")
        codebook = stored["codebook"]
    start = time.perf_counter()
    if codebook is None:
        picks = np.unique(np.linspace(0, len(jobs) - 1, min(int(fit_images), len(jobs)))
                          .round().astype(int))
        per_image = max(1, int(fit_pixels) // len(picks))
        generator = torch.Generator().manual_seed(int(seed))
        samples = []
        for i in picks:
            grid = _feature_grid(teacher, load_image(jobs[i][2]), label_stride, work_side)
            flat = grid.flatten(1).t()
            chosen = torch.randperm(len(flat), generator=generator)[:per_image]
            samples.append(flat[chosen])
        codebook = spherical_kmeans(torch.cat(samples), int(clusters), iterations, seed)
        atomic_torch_save({"codebook": codebook, "params": params}, codebook_path)
        fitted = True
        logger.info("%s: %d-word codebook fitted on %d images in %.1f s", codebook_path,
                    clusters, len(picks), time.perf_counter() - start)
    codebook_sha = weights_digest({"codebook": codebook})
    # cached maps count only when this index recorded them with this very codebook
    reuse = not overwrite and recorded is not None \
        and recorded.get("codebook_sha256") == codebook_sha
    computed = skipped = 0
    for token, channel, image_path, out_path, height, width in jobs:
        if reuse and os.path.isfile(out_path):
            try:
                load_superpixels(out_path, expected_shape=(height, width))
                skipped += 1
                continue
            except DataError:
                logger.warning("%s: cached map unreadable or of another size; recomputing",
                               out_path)
        image = load_image(image_path)
        if image.shape[:2] != (height, width):
            raise DataError(image_path, f"sample {token} camera {channel}: image is "
                                        f"{image.shape[0]}x{image.shape[1]} (HxW) but the "
                                        f"info says {height}x{width}")
        labels = assign_codewords(_feature_grid(teacher, image, label_stride, work_side),
                                  codebook).numpy()
        labels = clean_labels(labels, int(min_area))
        rows = np.minimum((np.arange(height) * labels.shape[0]) // height, labels.shape[0] - 1)
        cols = np.minimum((np.arange(width) * labels.shape[1]) // width, labels.shape[1] - 1)
        write_superpixels(out_path, labels[rows][:, cols])
        computed += 1
    record = {**params, "tag": tag, "num_superpixels": int(clusters),
              "teacher_checkpoint": getattr(teacher, "checkpoint", None),
              "codebook": os.path.relpath(codebook_path, index_dir).replace(os.sep, "/"),
              "codebook_sha256": codebook_sha,
              "paths_relative_to": "info index folder"}
    _record_set(index_path, infos, metadata, tag, record)
    return {"index": index_path, "dir": os.path.join(out_dir, tag), "tag": tag,
            "codebook": codebook_path, "computed": computed, "skipped": skipped,
            "fitted": fitted}


def _record_set(index_path: str, infos: list, metadata: dict, tag: str, record: dict) -> None:
    sets = dict(metadata.get(SET_KEY) or {})
    if sets.get(tag) != record:
        sets[tag] = record
        write_info_index(index_path, infos, {**metadata, SET_KEY: sets})


def register_superpixel_set(info_index_path, tag: str, num_superpixels: int,
                            description: str = "") -> dict[str, Any]:
    """Record user-made maps already in ``<index dir>/superpixels/<tag>/`` (module doc):
    every camera image must have its map, of its size, with ids below
    ``num_superpixels``; raises :class:`DataError` naming the first that does not."""
    index_path = os.path.abspath(os.fspath(info_index_path))
    out_dir = os.path.join(os.path.dirname(index_path), SUPERPIXEL_DIRNAME)
    infos, metadata = read_info_index(index_path)
    checked = 0
    for info in infos:
        for channel, cam in sorted((info.get("cams") or {}).items()):
            path = superpixel_path(out_dir, tag, str(info["token"]), channel)
            labels = load_superpixels(path, expected_shape=(int(cam["height"]),
                                                            int(cam["width"])))
            if labels.size and int(labels.max()) >= int(num_superpixels):
                raise DataError(path, f"id {int(labels.max())} >= num_superpixels "
                                      f"{num_superpixels}")
            checked += 1
    record = {"method": "external", "tag": tag, "num_superpixels": int(num_superpixels),
              "description": description, "paths_relative_to": "info index folder"}
    _record_set(index_path, infos, metadata, tag, record)
    return {"index": index_path, "tag": tag, "maps": checked}
