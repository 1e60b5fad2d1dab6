"""Inference over a config's validation split for the BEV models (``tools/test.py``):
CenterPoint (metrics, or ``--format-only`` predictions in the official format: nuScenes'
results JSON, KITTI's label files) and the BEV map segmentor (metrics)."""
from __future__ import annotations

import os
import os.path as osp
import time

__all__ = ["run_bev_test", "BEV_MODELS"]

BEV_MODELS = ("CenterPoint", "BEVMapSegmentor")


def run_bev_test(cfg, checkpoint: str, format_only: bool = False, out_dir: str | None = None,
                 device: str = "cpu") -> dict:
    """Predict the config's validation split with ``checkpoint``. Returns ``{"metrics"
    (unless format_only), "samples", "seconds_per_sample", "written" (format_only: the
    files)}``."""
    from lidarcl.evaluation.seg_inference import build_for_test

    if format_only and cfg.model.type != "CenterPoint":
        raise ValueError("--format-only writes detection results; map segmentation has no "
                         "official submission format")
    if format_only and not out_dir:
        raise ValueError("format_only needs an output folder")
    model, loader, metric = build_for_test(cfg, checkpoint, device, with_metric=not format_only)
    kind = type(loader.dataset).__name__
    records: dict = {}
    written: list[str] = []
    samples, seconds = 0, 0.0
    for batch in loader:
        start = time.perf_counter()
        batch = model.data_preprocessor(batch, False)
        predictions = model.predict(batch)
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
