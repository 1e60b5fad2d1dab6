"""Label-fraction splits: which training samples keep their labels when a model is fine-tuned
on 1, 5, 10, 25 or 100 % of them (SLidR, Seal, SuperFlow, LiMA report these fractions).

A split is drawn once, by ``tools/make_splits.py``, and stored beside the info index as
``<index dir>/splits/<index stem>_<P>pct_seed<S>.json``; a fine-tuning config names the file
(``train_dataloader.dataset.split_file``), so every method is fine-tuned on the same scans.

Units: ``"scene"`` (nuScenes; SLidR and SuperFlow select whole scenes: a 1 % split of
nuScenes' 700 training scenes is 7 scenes) or ``"frame"`` (SemanticKITTI: single scans).
The units are sorted, permuted once with ``numpy.random.default_rng(seed)``, and a fraction
``P`` keeps the first ``max(1, floor(P / 100 * U + 1/2))`` of ``U`` units (half rounded up),
so the splits of one seed are nested (1 % is inside 5 %, ..., inside 100 %). The count is of
units, not of samples: scenes of unequal length give a sample share near, not at, ``P``;
the file records both.

File layout (strict JSON, written atomically)::

    {"metadata": {"format": "lidarcl-split", "format_version": 1,
                  "index": "<index file name>", "dataset": "nuscenes" | ...,
                  "level": "scene" | "frame", "percent": P, "seed": S,
                  "units_total": U, "units_selected": k,
                  "samples_total": N, "samples_selected": n},
     "units": [<scene tokens or frame tokens, in draw order>],
     "tokens": [<sample tokens of the selected units, in index order>]}
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, Sequence

import numpy as np

from lidarcl.errors import DataError
from lidarcl.utils.fileio import atomic_write

__all__ = ["SPLIT_FORMAT", "LABEL_FRACTIONS", "LEVELS", "split_path", "units_kept",
           "draw_split", "make_label_splits", "read_split"]

SPLIT_FORMAT = "lidarcl-split"
SPLIT_FORMAT_VERSION = 1
LABEL_FRACTIONS = (1, 5, 10, 25, 100)
LEVELS = ("scene", "frame")
SPLIT_DIRNAME = "splits"


def _percent_text(percent: float) -> str:
    return f"{percent:g}"


def split_path(index_path: str | os.PathLike, percent: float, seed: int) -> str:
    """``<index dir>/splits/<index stem>_<P>pct_seed<S>.json``."""
    index_path = os.fspath(index_path)
    stem = os.path.splitext(os.path.basename(index_path))[0]
    return os.path.join(os.path.dirname(os.path.abspath(index_path)), SPLIT_DIRNAME,
                        f"{stem}_{_percent_text(percent)}pct_seed{seed}.json")


def units_kept(total: int, percent: float) -> int:
    """``max(1, floor(percent / 100 * total + 1/2))`` units of ``total`` (none of none)."""
    if not 0 < percent <= 100:
        raise ValueError(f"a label fraction is a percentage in (0, 100], got {percent}")
    if total <= 0:
        return 0
    return min(total, max(1, math.floor(percent / 100 * total + 0.5)))


def _sample_units(infos: Sequence[dict], level: str, where: str) -> list[str]:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if level == "frame":
        return [str(info["token"]) for info in infos]
    missing = [str(info["token"]) for info in infos if not info.get("scene_token")]
    if missing:
        raise DataError(where, f"{len(missing)} samples have no scene_token (first: "
                               f"{missing[0]}); a scene-level split needs them, or use "
                               "level='frame'")
    return [str(info["scene_token"]) for info in infos]


def draw_split(infos: Sequence[dict], percent: float, seed: int, level: str,
               where: str = "<infos>") -> tuple[list[str], list[str]]:
    """``(units, tokens)`` of the ``percent`` split (module doc): the units kept, in draw
    order, and the sample tokens of those units, in index order."""
    sample_units = _sample_units(infos, level, where)
    units = sorted(set(sample_units))
    order = np.random.default_rng(seed).permutation(len(units))
    kept = [units[i] for i in order[:units_kept(len(units), percent)]]
    kept_set = set(kept)
    tokens = [str(info["token"]) for info, unit in zip(infos, sample_units)
              if unit in kept_set]
    return kept, tokens


def make_label_splits(index_path: str | os.PathLike, percents: Iterable[float] = LABEL_FRACTIONS,
                      seed: int = 0, level: str | None = None,
                      overwrite: bool = False) -> dict[float, str]:
    """Write the split file of every percentage for the index at ``index_path``; returns
    ``{percent: path}``. ``level`` defaults to ``"scene"`` when every sample has a scene
    token, else ``"frame"``. An existing file is kept if it holds the same split (same
    units), and is an error otherwise unless ``overwrite``: a split that changed under a
    finished fine-tuning would make its numbers incomparable."""
    from lidarcl.datasets.info_format import read_info_index

    index_path = os.fspath(index_path)
    infos, meta = read_info_index(index_path)
    if level is None:
        level = "scene" if all(info.get("scene_token") for info in infos) else "frame"
    written = {}
    for percent in percents:
        units, tokens = draw_split(infos, percent, seed, level, index_path)
        path = split_path(index_path, percent, seed)
        content = {
            "metadata": {"format": SPLIT_FORMAT, "format_version": SPLIT_FORMAT_VERSION,
                         "index": os.path.basename(index_path),
                         "dataset": meta.get("dataset"), "level": level,
                         "percent": percent, "seed": seed,
                         "units_total": len(set(_sample_units(infos, level, index_path))),
                         "units_selected": len(units), "samples_total": len(infos),
                         "samples_selected": len(tokens)},
            "units": units, "tokens": tokens}
        if os.path.exists(path) and not overwrite:
            old = read_split(path)
            if old["units"] != units or old["tokens"] != tokens:
                raise DataError(path, f"a different {percent}% split (seed {seed}, level "
                                      f"{old['metadata'].get('level')!r}) is already there; "
                                      "delete it or pass overwrite=True (--overwrite)")
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_write(path, "w") as f:
                json.dump(content, f, indent=1)
        written[percent] = path
    return written


def read_split(path: str | os.PathLike) -> dict:
    """Read and check a split file (module doc); DataError naming the file otherwise."""
    from lidarcl.datasets.info_format import read_json_document

    path = os.fspath(path)
    data = read_json_document(path, "label split file (tools/make_splits.py writes them)")
    meta = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != SPLIT_FORMAT:
        raise DataError(path, f"not a lidarcl split file (metadata.format is not "
                              f"{SPLIT_FORMAT!r}); write one with tools/make_splits.py")
    if meta.get("format_version") != SPLIT_FORMAT_VERSION:
        raise DataError(path, f"split format version {meta.get('format_version')!r}, this "
                              f"lidarcl reads version {SPLIT_FORMAT_VERSION}")
    tokens = data.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise DataError(path, "'tokens' must be a list of sample tokens")
    if not isinstance(data.get("units"), list):
        raise DataError(path, "'units' must be a list")
    return data
