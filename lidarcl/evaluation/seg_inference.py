"""Segmentation inference over a config's validation split (``tools/test.py``): metrics, or
predictions in the dataset's official submission format, with optional test-time
augmentation and temporal voting.

Scans are predicted in the loader's order and kept per scene until the scene ends (the
index lists a scene's keyframes together, as ``create_data`` writes them); temporal voting
(:mod:`lidarcl.evaluation.temporal_voting`) then lets each scan's ``window`` neighbours on
each side vote with it. Metrics: the config's ``val_evaluator`` (``SegMetric``) over every
point the pipeline delivers. ``format_only``: every point of every scan's file gets a
class: a point the model could not predict (none inside a MinkUNet or PTv3 grid, which has
no bound) takes the class of the nearest predicted point, a row ``LoadPoints`` dropped
(NaN/inf coordinates) the scan's most frequent class.
"""
from __future__ import annotations

import copy
import os
import time
import warnings

import numpy as np
import torch

from lidarcl.errors import DataError

__all__ = ["load_model_checkpoint", "build_for_test", "run_segmentation_test",
           "fill_unpredicted"]


def load_model_checkpoint(model: torch.nn.Module, path: str) -> dict:
    """Load a training checkpoint (mmengine's ``{"state_dict", "meta", ...}``) strictly;
    DataError naming the file and listing the keys that do not fit."""
    from lidarcl.engine.checkpoint import backbone_key_report, read_state_dict, report_text

    if not os.path.isfile(path):
        raise DataError(path, "checkpoint not found")
    state, meta = read_state_dict(path)
    report = backbone_key_report(model, state)
    if report["missing"] or report["unexpected"] or report["shape_mismatch"]:
        raise DataError(path, f"the checkpoint does not fit the config's model:\n"
                              f"{report_text(report)}")
    model.load_state_dict(state)
    return meta


def fill_unpredicted(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` with every ``-1`` replaced by the label of the nearest labelled point."""
    missing = labels < 0
    if not missing.any():
        return labels
    if missing.all():
        raise ValueError("no point of the scan has a prediction")
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(points[~missing, :3]).query(points[missing, :3], k=1)
    out = labels.copy()
    out[missing] = labels[~missing][nearest]
    return out


def _full_scan_labels(labels: np.ndarray, points: np.ndarray, meta: dict) -> np.ndarray:
    """Labels of every row of the scan's file: unpredicted points take their nearest
    predicted point's; rows LoadPoints dropped (NaN/inf coordinates, no position) the
    scan's most frequent label."""
    labels = fill_unpredicted(points, labels)
    valid = meta.get("valid_point_mask")
    if valid is None or bool(np.all(valid)):
        return labels
    valid = np.asarray(valid, dtype=bool)
    full = np.full(len(valid), np.bincount(labels).argmax(), dtype=np.int64)
    full[valid] = labels
    return full


class _SceneBuffer:
    """The scans of the current scene, until it ends."""

    def __init__(self):
        self.scene = None
        self.scans: list[dict] = []
        self.seen: set = set()

    def add(self, scan: dict) -> list[dict]:
        done = []
        scene = scan["meta"].get("scene_token") or ""
        if self.scans and scene != self.scene:
            done = self.flush()
        if scene in self.seen and scene != self.scene:
            warnings.warn(f"scene {scene} comes back after other scenes in the index: "
                          "temporal voting cannot join its parts")
        self.scene = scene
        self.seen.add(scene)
        self.scans.append(scan)
        return done

    def flush(self) -> list[dict]:
        done, self.scans = self.scans, []
        return done


def _vote_scene(scans: list[dict], window: int, radius: float, weight: float) -> None:
    from lidarcl.evaluation.temporal_voting import vote

    order = sorted(range(len(scans)), key=lambda i: scans[i]["meta"].get("timestamp", 0))
    voted = []
    for rank, i in enumerate(order):
        near = [order[r] for r in range(max(0, rank - window), min(len(order), rank + window + 1))
                if r != rank]
        scan = scans[i]
        scores, labels = vote(scan["points"], scan["scores"], scan["pose"],
                              [(scans[j]["points"], scans[j]["scores"], scans[j]["pose"])
                               for j in near], radius=radius, weight=weight)
        labels = np.where(scores.sum(1) > 0, labels, -1)
        voted.append((i, labels))
    for i, labels in voted:  # after all votes: a scan votes with its own, unvoted scores
        scans[i]["labels"] = labels


def _lidar_pose(meta: dict) -> np.ndarray:
    return np.asarray(meta["ego2global"], dtype=np.float64) @ np.asarray(
        meta["lidar2ego"], dtype=np.float64)


def build_for_test(cfg, checkpoint: str, device: str = "cpu", with_metric: bool = True):
    """``(model, loader, metric)`` of ``tools/test.py``: the config's model with
    ``checkpoint`` loaded strictly (no pretrained-backbone loading), in eval mode on
    ``device``; the test (else validation) loader; the test (else validation) evaluator's
    metric, or ``None``."""
    from mmengine.runner import Runner

    from lidarcl.registry import METRICS, MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop("backbone_checkpoint", None)
    model = MODELS.build(model_cfg)
    load_model_checkpoint(model, checkpoint)
    model.to(device).eval()
    loader = Runner.build_dataloader(copy.deepcopy(cfg.get("test_dataloader")
                                                   or cfg.val_dataloader))
    metric = METRICS.build(copy.deepcopy(cfg.get("test_evaluator") or cfg.val_evaluator)) \
        if with_metric else None
    return model, loader, metric


def run_segmentation_test(cfg, checkpoint: str, tta: bool | dict = False,
                          voting: dict | None = None, format_only: bool = False,
                          out_dir: str | None = None, eval_set: str = "val",
                          device: str = "cpu", log=print) -> dict:
    """Predict the config's validation split with ``checkpoint`` (module doc). Returns
    ``{"metrics": {...} (unless format_only), "scans", "seconds_per_scan", "tta",
    "voting", "written" (format_only)}``."""
    from lidarcl.models.segmentors import DEFAULT_TTA

    model, loader, metric = build_for_test(cfg, checkpoint, device, with_metric=not format_only)
    model.tta = (dict(DEFAULT_TTA) if tta is True else dict(tta)) if tta else None
    dataset = loader.dataset
    kind = type(dataset).__name__
    if format_only and not out_dir:
        raise ValueError("format_only needs an output folder")
    voting = dict(voting) if voting else None
    buffer, written, scans, start = _SceneBuffer(), [], 0, time.perf_counter()

    def finish(done: list[dict]) -> None:
        nonlocal scans
        if not done:
            return
        if voting:
            _vote_scene(done, voting["window"], voting["radius"], voting["weight"])
        for scan in done:
            if metric is not None:
                from lidarcl.models.segmentors import SegPrediction

                metric.process(None, [SegPrediction(
                    scores=torch.empty(0), labels=torch.from_numpy(scan["labels"]),
                    target=scan["target"], meta=scan["meta"])])
            if format_only:
                labels = _full_scan_labels(scan["labels"], scan["points"], scan["meta"])
                written.append((scan["meta"], labels))
        scans += len(done)

    for batch in loader:
        batch = model.data_preprocessor(batch, False)
        predictions = model.predict(batch)
        start_row = 0
        for prediction, end in zip(predictions, batch["offsets"].tolist()):
            points = batch["points"][start_row:end, :3].cpu().numpy().astype(np.float64)
            start_row = end
            scan = {"meta": prediction.meta, "points": points,
                    "scores": prediction.scores.numpy(), "labels": prediction.labels.numpy(),
                    "target": prediction.target,
                    "pose": _lidar_pose(prediction.meta) if voting else None}
            finish(buffer.add(scan) if voting else [scan])
    finish(buffer.flush())
    seconds = time.perf_counter() - start
    result = {"scans": scans, "seconds_per_scan": seconds / max(scans, 1),
              "tta": model.tta, "voting": voting}
    if metric is not None:
        result["metrics"] = metric.compute_metrics(metric.results)
    if format_only:
        result["written"] = _write_submission(kind, out_dir, eval_set, written)
    return result


def _write_submission(kind: str, out_dir: str, eval_set: str, written: list) -> int:
    if kind == "SemanticKITTIDataset":
        from lidarcl.evaluation.semantickitti_eval import write_semantickitti_predictions

        return write_semantickitti_predictions(
            out_dir, [(meta["token"], labels) for meta, labels in written])
    from lidarcl.evaluation.nuscenes_lidarseg import write_lidarseg_submission

    missing = [meta.get("token") for meta, _ in written if not meta.get("lidar_token")]
    if missing:
        raise ValueError(f"scans {missing[:3]} have no lidar_token in their meta: the test "
                         "pipeline's PackSample must keep it (configs/_base_/datasets/"
                         "nuscenes_seg.py)")
    return write_lidarseg_submission(
        out_dir, eval_set, [(meta["lidar_token"], labels) for meta, labels in written])
