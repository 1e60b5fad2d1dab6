"""Inference over a config's validation split for the BEV models (``tools/test.py``):
CenterPoint (metrics, or ``--format-only`` predictions in the official format: nuScenes'
results JSON, KITTI's label files) and the BEV map segmentor (metrics)."""
from __future__ import annotations

import copy
import os
import os.path as osp
import time

import torch

__all__ = ["run_bev_test", "BEV_MODELS"]

BEV_MODELS = ("CenterPoint", "BEVMapSegmentor")


def run_bev_test(cfg, checkpoint: str, format_only: bool = False, out_dir: str | None = None,
                 device: str = "cpu", log=print) -> dict:
    """Predict the config's validation split with ``checkpoint``. Returns ``{"metrics"
    (unless format_only), "samples", "seconds_per_sample", "written" (format_only: the
    files)}``."""
    from mmengine.runner import Runner

    from lidarcl.evaluation.seg_inference import load_model_checkpoint
    from lidarcl.registry import METRICS, MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop("backbone_checkpoint", None)
    model = MODELS.build(model_cfg)
    load_model_checkpoint(model, checkpoint)
    model.to(device).eval()
    is_detector = cfg.model.type == "CenterPoint"
    if format_only and not is_detector:
        raise ValueError("--format-only writes detection results; map segmentation has no "
                         "official submission format")
    if format_only and not out_dir:
        raise ValueError("format_only needs an output folder")
    loader = Runner.build_dataloader(copy.deepcopy(cfg.get("test_dataloader")
                                                   or cfg.val_dataloader))
    kind = type(loader.dataset).__name__
    metric = None if format_only else METRICS.build(
        copy.deepcopy(cfg.get("test_evaluator") or cfg.val_evaluator))
    records: dict = {}
    written: list[str] = []
    samples, seconds = 0, 0.0
    for batch in loader:
        start = time.perf_counter()
        with torch.no_grad():
            batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                     for k, v in batch.items()}
            predictions = model(mode="predict", **batch)
        seconds += time.perf_counter() - start
        samples += len(predictions)
        if metric is not None:
            metric.process(batch, predictions)
            continue
        if kind == "KittiDataset":
            from lidarcl.evaluation.det_metric import write_kitti_prediction

            for p in predictions:
                written.append(write_kitti_prediction(osp.join(out_dir, "data"), p,
                                                      model.class_names,
                                                      loader.dataset.data_root))
        else:
            from lidarcl.evaluation.det_metric import nuscenes_records

            for p in predictions:
                token, recs = nuscenes_records(p, model.class_names)
                records[token] = recs
    out = {"samples": samples, "seconds_per_sample": seconds / max(samples, 1)}
    if metric is not None:
        out["metrics"] = metric.compute_metrics(metric.results)
    elif records:
        from lidarcl.evaluation.nuscenes_det import write_nuscenes_results

        os.makedirs(out_dir, exist_ok=True)
        path = osp.join(out_dir, "results_nusc.json")
        write_nuscenes_results(path, records)
        written.append(path)
    if format_only:
        out["written"] = written
    return out
