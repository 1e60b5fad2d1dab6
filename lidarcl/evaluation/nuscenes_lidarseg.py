"""nuScenes-lidarseg results: the devkit's submission layout and its evaluation.

Layout (nuscenes-devkit ``eval/lidarseg``, checked by its ``validate_submission``)::

    <results>/lidarseg/<eval_set>/<lidar sample_data token>_lidarseg.bin   uint8, one value
                                     per point of the keyframe's file, in its order, 1..16
    <results>/<eval_set>/submission.json   {"meta": {"use_camera", "use_lidar",
                                     "use_radar", "use_map", "use_external"}} (booleans)

Values are the challenge classes numbered as the devkit's ``LidarsegClassMapper`` does
(1 barrier ... 16 vegetation; 0 is the ignored class), i.e. lidarcl's training label + 1.
Every point needs a class: the devkit zeroes the ignored class's row and column of its
confusion matrix, so a point written as 0 would silently leave the evaluation instead of
counting as an error.

:func:`evaluate_lidarseg` is the devkit's ``LidarSegEval``: mIoU over the 16 classes of one
global confusion matrix (classes with an empty union are NaN and left out of the mean),
plus frequency-weighted IoU. The devkit takes an eval set's samples from its official scene
split; for other versions (the generated data) the samples of the scenes that the version's
``splits.json`` lists for the eval set are given to it instead, and everything else is the
devkit's own code.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Iterable

import numpy as np

from lidarcl.errors import DataError, DataFileNotFound
from lidarcl.evaluation.segmentation import check_class_labels
from lidarcl.utils.fileio import atomic_write

__all__ = ["SUBMISSION_META", "write_lidarseg_submission", "lidarseg_prediction_path",
           "evaluate_lidarseg"]

NUM_LIDARSEG_CLASSES = 16
SUBMISSION_META = {"use_camera": False, "use_lidar": True, "use_radar": False,
                   "use_map": False, "use_external": False}


def lidarseg_prediction_path(results_dir: str, eval_set: str, lidar_token: str) -> str:
    return os.path.join(results_dir, "lidarseg", eval_set, f"{lidar_token}_lidarseg.bin")


def write_lidarseg_submission(results_dir: str, eval_set: str,
                              predictions: Iterable[tuple[str, np.ndarray]],
                              meta: dict | None = None) -> int:
    """Write ``(lidar sample_data token, training labels 0..15 per point)`` pairs in the
    devkit's layout (module doc; values written as label + 1) and ``submission.json``;
    returns the number of files. A label outside 0..15 is a ValueError naming the token."""
    os.makedirs(os.path.join(results_dir, "lidarseg", eval_set), exist_ok=True)
    os.makedirs(os.path.join(results_dir, eval_set), exist_ok=True)
    count = 0
    for token, labels in predictions:
        labels = check_class_labels(labels, NUM_LIDARSEG_CLASSES, f"prediction of {token}")
        with atomic_write(lidarseg_prediction_path(results_dir, eval_set, token)) as f:
            f.write((labels + 1).astype(np.uint8).tobytes())
        count += 1
    with atomic_write(os.path.join(results_dir, eval_set, "submission.json"), "w") as f:
        json.dump({"meta": {**SUBMISSION_META, **(meta or {})}}, f, indent=1)
    return count


def _custom_eval_samples(nusc, dataroot: str, version: str, eval_set: str) -> list[str]:
    path = os.path.join(dataroot, version, "splits.json")
    if not os.path.isfile(path):
        raise DataFileNotFound(path, f"scene split of {version} (not an official version: "
                                     "the devkit's split table does not know its scenes)")
    with open(path, encoding="utf-8") as f:
        splits = json.load(f)
    if eval_set not in splits:
        raise DataError(path, f"no split {eval_set!r} (has {sorted(splits)})")
    scenes = {s["name"]: s for s in nusc.scene}
    tokens = []
    for name in splits[eval_set]:
        token = scenes[name]["first_sample_token"]
        while token:
            tokens.append(token)
            token = nusc.get("sample", token)["next"]
    return tokens


@contextlib.contextmanager
def _eval_samples(module, tokens: list[str] | None):
    """Give the devkit's evaluator ``tokens`` instead of its official split lookup."""
    if tokens is None:
        yield
        return
    original = module.get_samples_in_eval_set
    module.get_samples_in_eval_set = lambda nusc, eval_set: list(tokens)
    try:
        yield
    finally:
        module.get_samples_in_eval_set = original


def evaluate_lidarseg(results_dir: str, dataroot: str, version: str, eval_set: str,
                      nusc=None) -> dict:
    """The devkit's ``LidarSegEval`` on a results folder (module doc). Returns
    ``{"miou", "freq_weighted_iou", "iou_per_class": {name: iou}, "samples"}``. A missing
    prediction file or one of the wrong length is a DataError naming it (checked before
    the devkit runs, which would only assert)."""
    from nuscenes.eval.lidarseg import evaluate as devkit_eval
    from nuscenes.nuscenes import NuScenes

    from lidarcl.datasets.nuscenes_converter import OFFICIAL_SPLITS

    nusc = nusc or NuScenes(version=version, dataroot=dataroot, verbose=False)
    custom = (None if version in OFFICIAL_SPLITS
              else _custom_eval_samples(nusc, dataroot, version, eval_set))
    with _eval_samples(devkit_eval, custom):
        evaluator = devkit_eval.LidarSegEval(nusc, results_dir, eval_set, verbose=False)
    for sample_token in evaluator.sample_tokens:
        sd_token = nusc.get("sample", sample_token)["data"]["LIDAR_TOP"]
        pred = lidarseg_prediction_path(results_dir, eval_set, sd_token)
        if not os.path.isfile(pred):
            raise DataFileNotFound(pred, f"prediction of sample {sample_token}")
        truth = os.path.join(nusc.dataroot, nusc.get("lidarseg", sd_token)["filename"])
        if os.path.getsize(pred) != os.path.getsize(truth):
            raise DataError(pred, f"{os.path.getsize(pred)} predictions for "
                                  f"{os.path.getsize(truth)} points of {truth}")
    results = evaluator.evaluate()
    return {"miou": float(results["miou"]),
            "freq_weighted_iou": float(results["freq_weighted_iou"]),
            "iou_per_class": {k: float(v) for k, v in results["iou_per_class"].items()},
            "samples": len(evaluator.sample_tokens)}
