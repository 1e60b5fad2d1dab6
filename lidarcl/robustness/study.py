"""The robustness study (``tools/robustness_study.py``): trained segmentation models (rows,
one checkpoint per seed) and optionally one detector, each scored by
:func:`~lidarcl.robustness.evaluate.run_robustness` on the same corrupted copies, then
summarised as mean +- sample standard deviation over the seeds, with each row's per-seed
difference to the baseline row (the random initialisation) and Robo3D's CE taken against
the baseline row's run of the same seed.

Runs are kept as ``<out>/runs/<row>_seed<k>.json`` (and ``detector.json``): the same command
resumes. A checkpoint's config is the one its training run dumped beside it
(``<checkpoint dir>/test_config.py``, the scoring config the fine-tuning and BEV studies
keep) unless a config is given.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import time

import numpy as np

from lidarcl.robustness.evaluate import (_val_dataset_cfg, limit_scans, plot_scores,
                                         robustness_scores, run_robustness, write_report)

__all__ = ["config_beside", "run_study", "summarise", "format_study", "plot_study"]


def config_beside(checkpoint: str, config: str | None = None, options: dict | None = None):
    """The config to score ``checkpoint`` with: ``config`` if given, else the
    ``test_config.py`` its study run kept beside it."""
    from lidarcl.engine import build_pretrain_config

    if config is None:
        config = osp.join(osp.dirname(checkpoint), "test_config.py")
        if not osp.isfile(config):
            raise ValueError(f"{checkpoint}: no test_config.py beside it (runs of the studies "
                             "before it was kept); pass the config")
    return build_pretrain_config(config, None, False, options or {})


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def run_study(out: str, rows: dict, seeds, corruptions, severities, corrupted_root: str | None,
              detector: str | None = None, det_corruptions=(), val_scans: int | None = None,
              attacks=(), attack_params: dict | None = None, attack_samples: int | None = None,
              config: str | None = None, det_config: str | None = None,
              config_options: dict | None = None, log=print) -> dict:
    """Score every row and seed and the detector (module doc; ``corrupted_root`` None: each
    model's validation data root with ``-c`` appended); returns ``{"runs": {(row,
    seed): results}, "detector": results or None}``."""
    os.makedirs(osp.join(out, "runs"), exist_ok=True)
    jobs = [(name, seed, template.format(seed=seed), config) for name, template in rows.items()
            for seed in seeds]
    if detector:
        jobs.append(("detector", None, detector, det_config))
    runs, det = {}, None
    for name, seed, checkpoint, cfg_path in jobs:
        label = name if seed is None else f"{name}_seed{seed}"
        path = osp.join(out, "runs", f"{label}.json")
        if osp.isfile(path):
            with open(path, encoding="utf-8") as f:
                results = json.load(f)
            log(f"{label}: kept ({path})")
        else:
            if not osp.isfile(checkpoint):
                raise FileNotFoundError(f"{label}: checkpoint {checkpoint} not found")
            options = config_options if seed is not None else None  # the detector: its own
            cfg = limit_scans(config_beside(checkpoint, cfg_path, options), val_scans)
            root = corrupted_root or str(_val_dataset_cfg(cfg).data_root).rstrip("/") + "-c"
            start = time.perf_counter()
            log(f"== {label}: {checkpoint}")
            results = run_robustness(
                cfg, checkpoint, det_corruptions if seed is None else corruptions, severities,
                root, attacks, attack_params, None, None, 0, "cpu", attack_samples,
                log=lambda text, label=label: log(f"{label}: {text}"))
            results["val_scans"] = val_scans
            write_report(results, osp.join(out, "runs"), label)
            log(f"{label}: {time.perf_counter() - start:.0f} s")
        if seed is None:
            det = results
        else:
            runs[(name, seed)] = results
    return {"runs": runs, "detector": det}


def summarise(study: dict, baseline_row: str) -> dict:
    """Per row: clean score, each corruption's mean over severities, RR and mRR, CE / mCE
    against the baseline row's run of the same seed, the attacks; mean +- std over seeds and
    the per-seed difference to the baseline row."""
    runs = study["runs"]
    rows = sorted({r for r, _ in runs}, key=lambda r: (r != baseline_row, r))
    seeds = sorted({s for _, s in runs})
    out = {"rows": rows, "seeds": seeds, "baseline_row": baseline_row, "table": {}}
    for row in rows:
        per_seed = []
        for seed in seeds:
            results = runs[(row, seed)]
            base = runs.get((baseline_row, seed))
            scores = {n: {k: v["score"] for k, v in lv.items()}
                      for n, lv in results["corruptions"].items()}
            base_scores = None
            if base is not None and row != baseline_row:
                base_scores = {"clean": base["clean"]["score"]}
                for n, lv in base["corruptions"].items():
                    base_scores[n] = [lv[k]["score"] for k in sorted(lv, key=int)]
            summary = robustness_scores(results["clean"]["score"], scores, base_scores)
            entry = {"clean": results["clean"]["score"], **{
                n: float(np.mean(list(lv.values()))) for n, lv in scores.items()}}
            for key in ("mRR", "mCE", "mRCE"):
                if key in summary:
                    entry[key] = summary[key]
            for name, attack in results.get("attacks", {}).items():
                entry[f"{name}: clean"] = attack["score_clean"]
                entry[f"{name}: attacked"] = attack["score"]
                entry[f"{name}: success %"] = attack["success_rate"]
            per_seed.append(entry)
        keys = list(per_seed[0])
        table = {}
        for key in keys:
            values = [e[key] for e in per_seed]
            table[key] = {"mean_std": _mean_std(values), "per_seed": values}
            if row != baseline_row:
                base = [out["table"][baseline_row][key]["per_seed"][i] if key in
                        out["table"][baseline_row] else None for i in range(len(seeds))]
                if None not in base:
                    table[key]["gain"] = _mean_std(np.subtract(values, base))
        out["table"][row] = table
    return out


def _cell(value) -> str:
    mean, std = value
    return f"{mean:.2f} +- {std:.2f}"


def format_study(summary: dict, detector: dict | None = None) -> str:
    """Markdown tables of :func:`summarise` (and the detector's run)."""
    rows, base = summary["rows"], summary["baseline_row"]
    keys = list(summary["table"][rows[0]])
    for row in rows[1:]:
        keys += [k for k in summary["table"][row] if k not in keys]
    head = "| | " + " | ".join(rows) + " | " + " | ".join(
        f"{r} - {base}" for r in rows if r != base) + " |"
    lines = [head, "|---" * (2 * len(rows)) + "|"]
    for key in keys:
        cells = [_cell(summary["table"][r][key]["mean_std"]) if key in summary["table"][r]
                 else "-" for r in rows]
        cells += [_cell(summary["table"][r][key]["gain"]) if "gain" in summary["table"][r].get(
            key, {}) else "-" for r in rows if r != base]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if detector is not None:
        from lidarcl.robustness.evaluate import markdown_report

        text += "\n" + markdown_report(detector).split("\n", 2)[2]
    return text


def plot_study(study: dict, path: str) -> None:
    """Score against severity per corruption, one line per row (mean +- std over seeds)."""
    models = {}
    for (row, seed), results in sorted(study["runs"].items()):
        models.setdefault(row, []).append(results)
    plot_scores(models, path)
