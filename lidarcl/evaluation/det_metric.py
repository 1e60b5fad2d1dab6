"""3D detection: predictions in the official formats and the mmengine metrics of the
validation loop.

* nuScenes (and the generated data, which has nuScenes' layout): predictions become the
  devkit's result records (:func:`lidarcl.evaluation.nuscenes_det.boxes_to_nuscenes_results`)
  and are scored by the devkit's detection evaluation
  (:func:`lidarcl.evaluation.nuscenes_det.evaluate_nuscenes_det`); :class:`NuScenesDetMetric`
  reports ``mAP``, ``NDS`` (percent), the five mean TP errors and ``AP.<class>``.
* KITTI: predictions become label-format result files (:func:`kitti_result_lines`: camera
  frame, ``h w l``, bottom centre, ``rotation_y``, ``alpha``, the 2D box of the projected
  corners clipped to the image, as OpenPCDet writes them) scored by the official evaluator's
  algorithm (:mod:`lidarcl.evaluation.kitti_det_eval`); :class:`KittiDetMetric` reports
  ``<Class>_3d/moderate_R40``-style keys and ``mAP_3d_moderate_R40`` (mean over the classes).
"""
from __future__ import annotations

import os
import os.path as osp
import tempfile
from typing import Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from lidarcl.registry import METRICS

__all__ = ["NuScenesDetMetric", "KittiDetMetric", "nuscenes_records", "kitti_result_lines",
           "KITTI_CLASS_NAMES"]

# lidarcl's KITTI class names (the converter's) -> the label files' type names
KITTI_CLASS_NAMES = {"Car": "Car", "Pedestrian": "Pedestrian", "Cyclist": "Cyclist",
                     "car": "Car", "pedestrian": "Pedestrian", "cyclist": "Cyclist"}


def _split_prediction(prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    boxes = prediction.boxes.numpy().astype(np.float64)
    velocity = boxes[:, 7:9] if boxes.shape[1] >= 9 else None
    return boxes[:, :7], prediction.scores.numpy(), prediction.labels.numpy(), velocity


def nuscenes_records(prediction, class_names: Sequence[str]) -> tuple[str, list[dict]]:
    """``(sample token, result records)`` of one :class:`DetPrediction` whose meta holds
    ``token``, ``lidar2ego`` and ``ego2global`` (the test pipeline's meta keys)."""
    from lidarcl.evaluation.nuscenes_det import boxes_to_nuscenes_results

    meta = prediction.meta
    missing = [k for k in ("token", "lidar2ego", "ego2global") if k not in meta]
    if missing:
        raise ValueError(f"a prediction's meta lacks {missing}: PackSample's meta_keys must "
                         "keep them for nuScenes results")
    boxes, scores, labels, velocity = _split_prediction(prediction)
    names = [class_names[int(i)] for i in labels]
    return meta["token"], boxes_to_nuscenes_results(meta["token"], boxes, scores, names,
                                                    meta["lidar2ego"], meta["ego2global"],
                                                    velocities=velocity)


@METRICS.register_module()
class NuScenesDetMetric(BaseMetric):
    """The devkit's detection metrics (``detection_cvpr_2019``) of the validation
    predictions (module doc). ``data_root``/``version``/``eval_set``: the tables and the
    split the predictions belong to; every sample of the split must be predicted.
    ``max_range``: cap every class range of the config at this many metres
    (:func:`~lidarcl.evaluation.nuscenes_det.cropped_detection_config`), for a model whose
    point range is smaller than the devkit's 50 m; None keeps the official ranges.
    ``only_processed``: score the samples processed, not the whole split (an attack on the
    first scans)."""

    default_prefix = ""

    def __init__(self, data_root: str, version: str, class_names: Sequence[str],
                 eval_set: str = "val", max_range: float | None = None,
                 collect_device: str = "cpu", prefix: str | None = None,
                 only_processed: bool = False):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.data_root, self.version, self.eval_set = data_root, version, eval_set
        self.only_processed = only_processed
        self.max_range = max_range
        self.class_names = list(class_names)

    def process(self, data_batch, data_samples: Sequence) -> None:
        for prediction in data_samples:
            self.results.append(nuscenes_records(prediction, self.class_names))

    def compute_metrics(self, results: list) -> dict:
        from lidarcl.evaluation.nuscenes_det import (cropped_detection_config,
                                                     evaluate_nuscenes_det,
                                                     write_nuscenes_results)

        config = None if self.max_range is None else cropped_detection_config(self.max_range)
        with tempfile.TemporaryDirectory() as tmp:
            path = osp.join(tmp, "results_nusc.json")
            write_nuscenes_results(path, dict(results))
            summary = evaluate_nuscenes_det(
                path, self.data_root, self.version, self.eval_set, config=config,
                sample_tokens=[token for token, _ in results] if self.only_processed else None)
        return summary_metrics(summary)


TP_ERROR_NAMES = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE",
                  "vel_err": "mAVE", "attr_err": "mAAE"}


def summary_metrics(summary: dict) -> dict:
    """Flat metrics (percent for mAP, NDS and APs) of the devkit's metrics summary."""
    out = {"mAP": 100 * float(summary["mean_ap"]), "NDS": 100 * float(summary["nd_score"])}
    for name, value in summary["tp_errors"].items():
        out[TP_ERROR_NAMES.get(name, name)] = float(value)
    for name, value in summary["mean_dist_aps"].items():
        out[f"AP.{name}"] = 100 * float(value)
    return out


# ------------------------------------------------------------------------ KITTI
def kitti_result_lines(boxes: np.ndarray, scores: np.ndarray, names: Sequence[str], calib,
                       image_hw: tuple[int, int]) -> list[str]:
    """KITTI label-format lines of LiDAR-frame boxes ``(K, 7)`` (module doc). A box whose
    projected corners are all behind the camera or outside the image keeps a 2D box
    clipped to the image (as OpenPCDet, which writes every box)."""
    from lidarcl.datasets.kitti_converter import lidar_boxes_to_camera
    from lidarcl.structures.boxes import box_corners

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    if not len(boxes):
        return []
    location, dims_hwl, ry = lidar_boxes_to_camera(boxes, calib)
    corners = box_corners(boxes).reshape(-1, 3)
    homo = np.concatenate([corners, np.ones((len(corners), 1))], 1) @ calib.lidar2img.T
    depth = np.maximum(homo[:, 2], 1e-6)
    uv = (homo[:, :2] / depth[:, None]).reshape(-1, 8, 2)
    height, width = image_hw
    x1 = np.clip(uv[..., 0].min(1), 0, width - 1)
    y1 = np.clip(uv[..., 1].min(1), 0, height - 1)
    x2 = np.clip(uv[..., 0].max(1), 0, width - 1)
    y2 = np.clip(uv[..., 1].max(1), 0, height - 1)
    alpha = -np.arctan2(-boxes[:, 1], boxes[:, 0]) + ry
    lines = []
    for k in range(len(boxes)):
        h, w, l = dims_hwl[k]
        x, y, z = location[k]
        lines.append(f"{names[k]} -1 -1 {alpha[k]:.4f} {x1[k]:.4f} {y1[k]:.4f} {x2[k]:.4f} "
                     f"{y2[k]:.4f} {h:.4f} {w:.4f} {l:.4f} {x:.4f} {y:.4f} {z:.4f} "
                     f"{ry[k]:.4f} {scores[k]:.8f}")
    return lines


def write_kitti_prediction(out_dir: str, prediction, class_names: Sequence[str],
                           kitti_root: str) -> str:
    """Write ``<out_dir>/<frame id>.txt`` for one prediction of a KITTI training frame
    (calibration and image size read from ``kitti_root/training``); returns the path."""
    from lidarcl.datasets.kitti_converter import parse_calib, png_size
    from lidarcl.utils.fileio import atomic_write

    frame = prediction.meta["token"]
    calib = parse_calib(osp.join(kitti_root, "training", "calib", f"{frame}.txt"))
    image_hw = png_size(osp.join(kitti_root, "training", "image_2", f"{frame}.png"))
    boxes, scores, labels, _ = _split_prediction(prediction)
    names = [KITTI_CLASS_NAMES.get(class_names[int(i)], class_names[int(i)]) for i in labels]
    path = osp.join(out_dir, f"{frame}.txt")
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(path, "w") as f:
        f.writelines(line + "\n" for line in kitti_result_lines(boxes, scores, names, calib,
                                                                image_hw))
    return path


@METRICS.register_module()
class KittiDetMetric(BaseMetric):
    """KITTI 2D / BEV / 3D / AOS AP (R40 and R11) of the validation predictions, scored by
    the official evaluator's algorithm against ``<data_root>/training/label_2``."""

    default_prefix = ""

    def __init__(self, data_root: str, class_names: Sequence[str],
                 collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.data_root = data_root
        self.class_names = list(class_names)

    def process(self, data_batch, data_samples: Sequence) -> None:
        for prediction in data_samples:
            self.results.append(prediction)

    def compute_metrics(self, results: list) -> dict:
        from lidarcl.evaluation.kitti_det_eval import evaluate_kitti_det

        with tempfile.TemporaryDirectory() as tmp:
            frames = []
            for prediction in results:
                write_kitti_prediction(tmp, prediction, self.class_names, self.data_root)
                frames.append(prediction.meta["token"])
            split = osp.join(tmp, "split.txt")
            with open(split, "w") as f:
                f.write("\n".join(frames) + "\n")
            classes = sorted({KITTI_CLASS_NAMES.get(c, c) for c in self.class_names})
            result = evaluate_kitti_det(tmp, self.data_root, split, classes)
        metrics = dict(result["metrics"])
        key = "_3d/moderate_R40"
        metrics["mAP_3d_moderate_R40"] = float(np.mean([metrics[f"{c}{key}"]
                                                        for c in result["classes"]]))
        return metrics
