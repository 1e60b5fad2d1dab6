"""Scoring a trained model's robustness (``tools/robustness.py``): its validation score on
the clean data, on each corrupted set, under each adversarial attack, and the robustness
scores.

* Corruptions are read from corrupted copies of the validation data (:mod:`.writer`,
  ``OUT/<corruption>/<severity>/``) that are written first when missing, once for every
  model scored on them: the config's validation dataset and evaluator are pointed at a
  copy's dataroot. Sweeps are corrupted only when the config's test pipeline reads them.
* Attacks (:mod:`.attacks`) run on each validation batch after the data preprocessor; the
  metric is the config's evaluator on the attacked predictions (removed points are not
  scored, added ones carry the ignore label), next to the same scans' clean score and the
  attack success rate.
* Scores: Robo3D's CE / RR per corruption and mCE / mRR (:mod:`.scores`; CE needs a
  baseline model's results), and Dong et al.'s relative corruption error on their
  corruptions, ``RCE_{c,s} = (A_clean - A_{c,s}) / A_clean``, ``RCE_c`` its mean over the
  severities and ``mRCE`` the mean over the object-level corruptions (Dong et al., CVPR
  2023; the definition as their paper states it: their repository publishes the
  corruption functions but no scoring code, so the paper is the only reference).

Accuracies are the config's metric in % (mIoU for segmentation; NDS by default, or mAP, for
detection).
"""
from __future__ import annotations

import copy
import json
import os
import os.path as osp
import time
from typing import Callable

import numpy as np
import torch

from lidarcl.errors import DataError
from lidarcl.robustness.scores import (NUSCENES_C_SEG_BASELINE, ROBO3D_CORRUPTIONS,
                                       corruption_error, resilience_rate)

__all__ = ["DONG_OBJECT_CORRUPTIONS", "BASELINES", "CORRUPTION_GROUPS", "corruption_names",
           "task_of", "limit_scans", "evaluate_config", "write_corrupted_sets",
           "corrupted_config", "run_attack", "robustness_scores", "load_baseline",
           "run_robustness", "write_report"]

DONG_OBJECT_CORRUPTIONS = ("local_density_decrease", "local_cutout", "local_gaussian_noise",
                           "local_shear", "local_scale", "local_rotation")
DONG_ALIGNMENT_CORRUPTIONS = ("spatial_misalignment", "temporal_misalignment")
# named baselines for --baseline (Robo3D's published nuScenes-C table)
BASELINES = {"nuscenes-c-minkunet18": NUSCENES_C_SEG_BASELINE}
SWEEP_LOADERS = ("LoadSweeps",)


CORRUPTION_GROUPS = {
    "robo3d": list(ROBO3D_CORRUPTIONS),
    "dong": list(DONG_OBJECT_CORRUPTIONS) + ["temporal_misalignment"],
}


def corruption_names(requested, task: str, reads_images: bool) -> list[str]:
    """Names from names and groups (``robo3d``, ``dong``, ``all``); the alignment
    corruptions only where they change the model's input (temporal: detectors; spatial,
    with ``all``: models that read images)."""
    names = []
    for item in requested:
        group = (CORRUPTION_GROUPS["robo3d"] + CORRUPTION_GROUPS["dong"] if item == "all"
                 else CORRUPTION_GROUPS.get(item, [item]))
        names += [n for n in group if n not in names]
    if reads_images and "spatial_misalignment" not in names and "all" in requested:
        names.append("spatial_misalignment")
    if task == "segmentation":
        names = [n for n in names if n != "temporal_misalignment"]
    return names


def task_of(cfg) -> str:
    kind = cfg.model.type
    if kind == "Segmentor":
        return "segmentation"
    if kind == "CenterPoint":
        return "detection"
    raise ValueError(f"robustness scoring supports Segmentor and CenterPoint configs, not "
                     f"{kind}")


def _val_dataset_cfg(cfg):
    loader = cfg.get("test_dataloader") or cfg.val_dataloader
    return loader.dataset


def _set_dataroot(cfg, root: str):
    cfg = copy.deepcopy(cfg)
    for key in ("val_dataloader", "test_dataloader"):
        if cfg.get(key):
            cfg[key].dataset.data_root = root
    for key in ("val_evaluator", "test_evaluator"):
        if cfg.get(key) and "data_root" in cfg[key]:
            cfg[key].data_root = root
    return cfg


def limit_scans(cfg, scans: int | None):
    """``cfg`` scoring only the first ``scans`` validation scans (the devkit then scores those
    samples alone); unchanged for ``None``."""
    if not scans:
        return cfg
    cfg = copy.deepcopy(cfg)
    for key in ("val_dataloader", "test_dataloader"):
        if cfg.get(key):
            cfg[key].dataset.indices = int(scans)
    if task_of(cfg) == "detection":
        for key in ("val_evaluator", "test_evaluator"):
            if cfg.get(key):
                cfg[key].only_processed = True
    return cfg


def evaluate_config(cfg, checkpoint: str, device: str = "cpu") -> dict:
    """The config's validation metrics with ``checkpoint``."""
    if task_of(cfg) == "segmentation":
        from lidarcl.evaluation.seg_inference import run_segmentation_test

        return run_segmentation_test(cfg, checkpoint, device=device, log=lambda *_: None)
    from lidarcl.evaluation.det_inference import run_bev_test

    return run_bev_test(cfg, checkpoint, device=device)


def _val_index(cfg) -> str:
    dataset = _val_dataset_cfg(cfg)
    return dataset.ann_file if osp.isabs(dataset.ann_file) else osp.join(dataset.data_root,
                                                                         dataset.ann_file)


def _pipeline_reads_sweeps(cfg) -> bool:
    return any(t.get("type") in SWEEP_LOADERS for t in _val_dataset_cfg(cfg).pipeline)


def write_corrupted_sets(cfg, corruptions, severities, corrupted_root: str, seed: int = 0,
                         log: Callable = print) -> list[dict]:
    """Write the missing corrupted copies of ``cfg``'s validation data in one call (the
    tables and the index are read once); sweeps are corrupted only when the test pipeline
    reads them. Returns :func:`~lidarcl.robustness.writer.create_corrupted`'s report."""
    from lidarcl.datasets.info_format import read_info_index
    from lidarcl.robustness.writer import DATASETS, create_corrupted

    index = _val_index(cfg)
    base = osp.basename(index)
    if "_infos_" not in base:
        raise DataError(index, "expected an info index named <prefix>_infos_<split>.json")
    _, metadata = read_info_index(index)
    dataset = metadata.get("dataset")
    if dataset not in DATASETS:
        raise DataError(index, f"an index of {dataset!r}; corrupted copies are written for "
                               f"{', '.join(DATASETS)}")
    return create_corrupted(_val_dataset_cfg(cfg).data_root, metadata.get("version"), index,
                            corrupted_root, corruptions, severities, seed=seed,
                            prefix=base.split("_infos_")[0], log=log,
                            corrupt_sweeps=_pipeline_reads_sweeps(cfg), dataset=dataset)


def corrupted_config(cfg, set_dir: str):
    """``cfg`` reading the corrupted copy at ``set_dir`` (a dataroot with the same index
    file name)."""
    dataset = _val_dataset_cfg(cfg)
    out = _set_dataroot(cfg, set_dir)
    if osp.isabs(dataset.ann_file):
        for key in ("val_dataloader", "test_dataloader"):
            if out.get(key):
                out[key].dataset.ann_file = osp.basename(dataset.ann_file)
    return out


def _attack_config(cfg, max_samples: int | None):
    """The validation loader with the ground-truth boxes packed (detection) and the first
    ``max_samples`` scans."""
    cfg = copy.deepcopy(cfg)
    for key in ("val_dataloader", "test_dataloader"):
        if not cfg.get(key):
            continue
        dataset = cfg[key].dataset
        if max_samples:
            dataset.indices = int(max_samples)
        if task_of(cfg) == "detection":
            for transform in dataset.pipeline:
                if transform.get("type") == "PackSample":
                    transform["keys"] = list(transform["keys"]) + [
                        k for k in ("gt_boxes", "gt_labels") if k not in transform["keys"]]
    return cfg


def run_attack(cfg, checkpoint: str, attack: str, params: dict, device: str = "cpu",
               max_samples: int | None = None, class_names=None,
               score_threshold: float = 0.3) -> dict:
    """One attack over the validation scans (module doc). Returns ``{"clean": metrics,
    "attacked": metrics, "success": [hits, counted], "losses": [clean, best] means}``."""
    from lidarcl.evaluation.seg_inference import build_for_test
    from lidarcl.registry import METRICS
    from lidarcl.robustness import attacks as A

    functions = dict(zip(A.ATTACKS, (A.pgd_coordinates, A.spoof_cluster, A.saliency_removal)))
    if attack not in functions:
        raise ValueError(f"unknown attack {attack!r}; known: {', '.join(functions)}")
    task = task_of(cfg)
    cfg = _attack_config(cfg, max_samples)
    if task == "detection" and max_samples:
        for key in ("val_evaluator", "test_evaluator"):
            if cfg.get(key):
                cfg[key].only_processed = True
    model, loader, metric = build_for_test(cfg, checkpoint, device)
    clean_metric = METRICS.build(copy.deepcopy(cfg.get("test_evaluator") or cfg.val_evaluator))
    params = dict(params)
    if attack == "remove" and task == "segmentation":
        params.setdefault("class_names", class_names)
    hits = counted = 0
    losses = []
    start = time.perf_counter()
    for batch in loader:
        batch = model.data_preprocessor(batch, False)
        clean = model.predict(batch)
        out = functions[attack](model, batch, **params)
        losses.append((out.losses[0], max(out.losses)))
        attacked = out.batch(batch, int(getattr(model, "ignore_index", 255)))
        with torch.no_grad():
            predictions = model.predict(attacked)
        if task == "segmentation":
            clean_metric.process(None, clean)
            metric.process(None, predictions)
            clean_labels = torch.cat([p.labels for p in clean])
            new_labels = torch.cat([p.labels for p in predictions])
            h, c = A.segmentation_attack_success(clean_labels, new_labels,
                                                 batch["pts_semantic_mask"].cpu().long(),
                                                 out.source_rows.cpu())
        else:
            clean_metric.process(batch, clean)
            metric.process(attacked, predictions)
            h = c = 0
            for boxes, labels, before, after in zip(batch["gt_boxes"], batch["gt_labels"],
                                                    clean, predictions):
                hh, cc = A.detection_attack_success(
                    np.asarray(boxes)[:, :7], np.asarray(labels),
                    (before.boxes[:, :7].numpy(), before.scores.numpy(),
                     before.labels.numpy()),
                    (after.boxes[:, :7].numpy(), after.scores.numpy(), after.labels.numpy()),
                    score_threshold)
                h, c = h + hh, c + cc
        hits, counted = hits + h, counted + c
    loss = np.asarray(losses, dtype=np.float64)
    return {"attack": attack, "params": {k: v for k, v in params.items()
                                         if k != "class_names"},
            "samples": len(loader.dataset),
            "clean": clean_metric.compute_metrics(clean_metric.results),
            "attacked": metric.compute_metrics(metric.results),
            "success": [hits, counted],
            "success_rate": 100.0 * hits / counted if counted else float("nan"),
            "loss_clean": float(loss[:, 0].mean()), "loss_attacked": float(loss[:, 1].mean()),
            "seconds": time.perf_counter() - start}


def load_baseline(spec: str | None) -> dict | None:
    """A baseline's accuracies: a name of :data:`BASELINES`, a results JSON of
    ``tools/robustness.py`` or a ``{"clean": A, "<corruption>": A or [A per level]}`` JSON."""
    if spec is None:
        return None
    if spec in BASELINES:
        return dict(BASELINES[spec])
    from lidarcl.datasets.info_format import read_json_document

    if not osp.isfile(spec):
        raise DataError(spec, f"baseline results not found (or a name: {', '.join(BASELINES)})")
    data = read_json_document(spec, "baseline results JSON")
    if isinstance(data, dict) and "corruptions" in data and "clean" in data:
        out = {"clean": data["clean"]["score"]}
        for name, levels in data["corruptions"].items():
            out[name] = [levels[k]["score"] for k in sorted(levels, key=int)]
        return out
    if not isinstance(data, dict) or "clean" not in data:
        raise DataError(spec, 'expected a robustness results JSON or {"clean": ..., '
                              '"<corruption>": ...}')
    return data


def robustness_scores(clean: float, scores: dict, baseline: dict | None) -> dict:
    """Robo3D's CE (with a baseline) and RR per corruption of :data:`ROBO3D_CORRUPTIONS`
    present, mCE / mRR over them (``robo3d_complete`` when all eight are); Dong et al.'s RCE
    per object-level or alignment corruption present and mRCE over the object-level ones
    (module doc)."""
    robo3d, dong = {}, {}
    for name in ROBO3D_CORRUPTIONS:
        if name not in scores:
            continue
        levels = [scores[name][k] for k in sorted(scores[name], key=int)]
        row = {"RR": resilience_rate(levels, clean) if clean > 0 else float("nan")}
        if baseline is not None:
            if name not in baseline:
                raise ValueError(f"the baseline has no {name!r} accuracy")
            row["CE"] = corruption_error(levels, baseline[name])
        robo3d[name] = row
    summary = {"robo3d": robo3d, "dong": dong}
    if robo3d:
        summary["mRR"] = float(np.mean([r["RR"] for r in robo3d.values()]))
        if baseline is not None:
            summary["mCE"] = float(np.mean([r["CE"] for r in robo3d.values()]))
        summary["robo3d_complete"] = len(robo3d) == len(ROBO3D_CORRUPTIONS)
    for name in DONG_OBJECT_CORRUPTIONS + DONG_ALIGNMENT_CORRUPTIONS:
        if name in scores:
            levels = np.asarray([scores[name][k] for k in sorted(scores[name], key=int)])
            dong[name] = {"RCE": float(100.0 * np.mean((clean - levels) / clean))
                          if clean > 0 else float("nan")}
    objects = [dong[n]["RCE"] for n in DONG_OBJECT_CORRUPTIONS if n in dong]
    if objects:
        summary["mRCE"] = float(np.mean(objects))
        summary["dong_object_complete"] = len(objects) == len(DONG_OBJECT_CORRUPTIONS)
    return summary


def run_robustness(cfg, checkpoint: str, corruptions, severities, corrupted_root: str,
                   attacks=(), attack_params: dict | None = None, baseline: dict | None = None,
                   metric: str | None = None, seed: int = 0, device: str = "cpu",
                   attack_samples: int | None = None, score_threshold: float = 0.3,
                   log: Callable = print) -> dict:
    """Clean, corrupted and attacked scores of one model (module doc)."""
    from lidarcl.robustness.writer import plan_sets

    task = task_of(cfg)
    metric = metric or ("mIoU" if task == "segmentation" else "NDS")
    results = {"config": cfg.filename if hasattr(cfg, "filename") else None,
               "checkpoint": osp.abspath(checkpoint), "task": task, "metric": metric,
               "seed": seed, "corrupted_root": osp.abspath(corrupted_root)}
    sets = plan_sets(corruptions, severities) if corruptions else []
    if task == "segmentation":
        sets = [s for s in sets if s[0] != "temporal_misalignment"]
    if sets:
        from lidarcl.datasets.info_format import read_info_index
        from lidarcl.robustness.writer import supported_corruptions

        infos, metadata = read_info_index(_val_index(cfg))
        if (any(s[0] == "temporal_misalignment" for s in sets)
                and not any(info.get("sweeps") for info in infos)):
            log("temporal_misalignment: left out, the validation index lists no sweeps")
            sets = [s for s in sets if s[0] != "temporal_misalignment"]
        dataset = metadata.get("dataset")
        supported = supported_corruptions(dataset)
        left_out = list(dict.fromkeys(n for n, _ in sets if n not in supported))
        if left_out:
            log(f"{', '.join(left_out)}: left out, the {dataset} layout cannot take them")
            sets = [s for s in sets if s[0] in supported]
    start = time.perf_counter()
    clean = evaluate_config(cfg, checkpoint, device)["metrics"]
    if metric not in clean:
        raise ValueError(f"metric {metric!r} not among the evaluator's {sorted(clean)[:8]}")
    results["clean"] = {"score": clean[metric], "metrics": clean}
    log(f"clean: {metric} {clean[metric]:.2f}")
    results["corruptions"] = {}
    report = write_corrupted_sets(cfg, list(dict.fromkeys(n for n, _ in sets)), severities,
                                  corrupted_root, seed, log) if sets else []
    set_dirs = {(r["name"], r["severity"]): r["dir"] for r in report}
    for name, severity in sets:
        corrupted = corrupted_config(cfg, set_dirs[(name, severity)])
        metrics = evaluate_config(corrupted, checkpoint, device)["metrics"]
        results["corruptions"].setdefault(name, {})[str(severity)] = {
            "score": metrics[metric], "metrics": metrics}
        log(f"{name} {severity}: {metric} {metrics[metric]:.2f}")
    results["attacks"] = {}
    class_names = (cfg.get("val_evaluator") or {}).get("class_names")
    for attack in attacks or ():
        out = run_attack(cfg, checkpoint, attack, (attack_params or {}).get(attack, {}),
                         device, attack_samples, class_names, score_threshold)
        out["score_clean"] = out["clean"][metric]
        out["score"] = out["attacked"][metric]
        results["attacks"][attack] = out
        log(f"attack {attack}: {metric} {out['score_clean']:.2f} -> {out['score']:.2f} on "
            f"{out['samples']} scans, success rate {out['success_rate']:.1f} %")
    scores = {name: {k: v["score"] for k, v in levels.items()}
              for name, levels in results["corruptions"].items()}
    results["summary"] = robustness_scores(results["clean"]["score"], scores, baseline)
    results["baseline"] = baseline
    results["seconds"] = time.perf_counter() - start
    return results


def write_report(results: dict, out_dir: str, name: str = "robustness") -> list[str]:
    """``<name>.json``, ``<name>.md`` (tables) and ``<name>.png`` (score against severity
    per corruption) in ``out_dir``."""
    from lidarcl.utils.fileio import atomic_write

    os.makedirs(out_dir, exist_ok=True)
    paths = [osp.join(out_dir, f"{name}.{ext}") for ext in ("json", "md", "png")]
    with atomic_write(paths[0], "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, default=float)
    with atomic_write(paths[1], "w", encoding="utf-8") as f:
        f.write(markdown_report(results))
    label = osp.splitext(osp.basename(results["checkpoint"]))[0]
    plot_scores({label: results}, paths[2])
    return paths


def markdown_report(results: dict) -> str:
    metric, summary = results["metric"], results["summary"]
    lines = [f"# Robustness of {results['checkpoint']}", "",
             f"Clean {metric}: {results['clean']['score']:.2f}", ""]
    if results["corruptions"]:
        severities = sorted({int(k) for levels in results["corruptions"].values()
                             for k in levels})
        lines += ["| corruption | " + " | ".join(f"severity {i}" for i in severities)
                  + " | mean | CE | RR | RCE |", "|---" * (len(severities) + 5) + "|"]
        for name, levels in results["corruptions"].items():
            values = [levels[str(i)]["score"] if str(i) in levels else None
                      for i in severities]
            known = [v for v in values if v is not None]
            row = summary["robo3d"].get(name, {})
            dong = summary["dong"].get(name, {})
            cells = [f"{v:.2f}" if v is not None else "-" for v in values]
            cells.append(f"{np.mean(known):.2f}")
            cells += [f"{row[k]:.2f}" if k in row else "-" for k in ("CE", "RR")]
            cells.append(f"{dong['RCE']:.2f}" if dong else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        for key in ("mCE", "mRR", "mRCE"):
            if key in summary:
                lines.append(f"- {key}: {summary[key]:.2f}")
        if "robo3d_complete" in summary and not summary["robo3d_complete"]:
            lines.append(f"- mCE / mRR over {len(summary['robo3d'])} of Robo3D's 8 "
                         "corruptions: not comparable with published values")
        lines.append("")
    if results["attacks"]:
        lines += [f"| attack | parameters | scans | clean {metric} | attacked {metric} | "
                  "success rate % | loss clean -> attacked |", "|---" * 7 + "|"]
        for name, a in results["attacks"].items():
            params = ", ".join(f"{k}={v}" for k, v in a["params"].items())
            lines.append(f"| {name} | {params} | {a['samples']} | {a['score_clean']:.2f} | "
                         f"{a['score']:.2f} | {a['success_rate']:.1f} "
                         f"({a['success'][0]}/{a['success'][1]}) | "
                         f"{a['loss_clean']:.3f} -> {a['loss_attacked']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def plot_scores(models: dict, path: str) -> None:
    """Score against severity, one panel per corruption, one line per model (``{label:
    results or [results per seed]}``: the mean with a band of +- one standard deviation),
    each model's clean score dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {label: r if isinstance(r, list) else [r] for label, r in models.items()}
    first = next(iter(runs.values()))[0]
    names = list(first["corruptions"])
    if not names:
        names = ["clean"]
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for i, (label, results) in enumerate(runs.items()):
            colour = f"C{i}"
            clean = np.array([r["clean"]["score"] for r in results])
            ax.axhline(clean.mean(), color=colour, linestyle="--", linewidth=0.8)
            if name == "clean":
                continue
            levels = sorted(results[0]["corruptions"][name], key=int)
            values = np.array([[r["corruptions"][name][k]["score"] for k in levels]
                               for r in results])
            x = [int(k) for k in levels]
            ax.plot(x, values.mean(0), marker="o", color=colour, label=label)
            ax.set_xticks(x)
            if len(results) > 1:
                spread = values.std(0, ddof=1)
                ax.fill_between(x, values.mean(0) - spread, values.mean(0) + spread,
                                color=colour, alpha=0.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("severity", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].set_ylabel(first["metric"], fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
