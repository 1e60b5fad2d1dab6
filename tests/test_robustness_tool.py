"""tools/robustness.py (lidarcl.robustness.evaluate): clean, corrupted and attacked scores of
a model, checked against independent runs of the same pieces (a copy written by
tools/create_corrupted.py and scored by the test evaluation, the first scan scored alone)
and the robustness scores against their formulas."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import load_tool

CONFIG = "configs/seg/minkunet18_synth_1pct.py"


@pytest.fixture(scope="module")
def model_run(tiny_dataset, tmp_path_factory):
    from lidarcl.engine import build_pretrain_config
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    tmp = tmp_path_factory.mktemp("robustness_tool")
    options = {"val_dataloader.dataset.data_root": tiny_dataset + "/"}
    cfg = build_pretrain_config(CONFIG, None, False, options)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    checkpoint = tmp / "seg.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, checkpoint)
    tool = load_tool("robustness")
    out = tmp / "report"
    args = [CONFIG, str(checkpoint), "--corruptions", "beam_missing", "local_scale",
            "--severities", "3", "--corrupted-root", str(tmp / "c"), "--out", str(out),
            "--attacks", "pgd", "--steps", "1", "--attack-samples", "1", "--val-scans", "1",
            "--cfg-options", f"val_dataloader.dataset.data_root={tiny_dataset}/"]
    assert tool.main(args) == 0
    results = json.loads((out / "robustness.json").read_text())
    return dict(cfg=cfg, checkpoint=str(checkpoint), tmp=tmp, out=out, results=results,
                args=args, root=tiny_dataset)


def test_corrupted_score_equals_an_independent_copy(model_run):
    """The beam-missing score (of the first validation scan: --val-scans 1) equals the test
    evaluation of a copy written by tools/create_corrupted.py into another folder."""
    from lidarcl.robustness.evaluate import _set_dataroot, evaluate_config, limit_scans

    create = load_tool("create_corrupted")
    other = model_run["tmp"] / "other"
    assert create.main(["--root", model_run["root"], "--version", "v1.0-synthetic",
                        "--corruptions", "beam_missing", "--severities", "3",
                        "--link-sweeps", "--out", str(other)]) == 0
    cfg = limit_scans(_set_dataroot(model_run["cfg"], str(other / "beam_missing" / "3")), 1)
    expected = evaluate_config(cfg, model_run["checkpoint"])["metrics"]["mIoU"]
    results = model_run["results"]
    assert results["corruptions"]["beam_missing"]["3"]["score"] == pytest.approx(expected,
                                                                                 abs=1e-9)
    assert set(results["corruptions"]) == {"beam_missing", "local_scale"}
    assert set(results["corruptions"]["local_scale"]) == {"3"}


def test_scores_follow_their_formulas(model_run, tmp_path):
    """RR, RCE by hand; a model scored against its own results as baseline has CE 100."""
    from lidarcl.robustness.evaluate import load_baseline, robustness_scores

    results = model_run["results"]
    clean = results["clean"]["score"]
    beam = [results["corruptions"]["beam_missing"]["3"]["score"]]
    scale = [results["corruptions"]["local_scale"]["3"]["score"]]
    summary = results["summary"]
    assert summary["robo3d"]["beam_missing"]["RR"] == pytest.approx(100 * np.mean(beam) / clean)
    assert summary["mRR"] == pytest.approx(summary["robo3d"]["beam_missing"]["RR"])
    assert summary["dong"]["local_scale"]["RCE"] == pytest.approx(
        100 * np.mean([(clean - a) / clean for a in scale]))
    assert "mCE" not in summary and summary["robo3d_complete"] is False
    baseline = load_baseline(str(model_run["out"] / "robustness.json"))
    again = robustness_scores(clean, {n: {k: v["score"] for k, v in lv.items()}
                                      for n, lv in results["corruptions"].items()}, baseline)
    assert again["robo3d"]["beam_missing"]["CE"] == pytest.approx(100.0)
    # against Robo3D's MinkUNet-18 row: CE = (100 - mean) / (100 - 68.54)
    robo3d = robustness_scores(clean, {"beam_missing": {"1": 40.0, "3": beam[0]}},
                               load_baseline("nuscenes-c-minkunet18"))
    assert robo3d["mCE"] == pytest.approx(100 * (100 - (40 + beam[0]) / 2) / (100 - 68.54))
    markdown = (model_run["out"] / "robustness.md").read_text()
    assert "| beam_missing |" in markdown and "| pgd |" in markdown
    import matplotlib.image

    image = matplotlib.image.imread(model_run["out"] / "robustness.png")
    assert image.shape[0] > 100 and image.shape[1] > 200


def test_attack_scores_the_attacked_scans(model_run):
    """The attack's clean score is the first scan's test score; PGD kept its budget and
    did not lower the loss."""
    from lidarcl.robustness.evaluate import evaluate_config

    attack = model_run["results"]["attacks"]["pgd"]
    cfg = model_run["cfg"].copy()
    cfg.val_dataloader.dataset.indices = 1
    first = evaluate_config(cfg, model_run["checkpoint"])["metrics"]["mIoU"]
    assert attack["samples"] == 1
    assert attack["score_clean"] == pytest.approx(first, abs=1e-9)
    assert attack["loss_attacked"] >= attack["loss_clean"]
    assert attack["params"]["epsilon"] == 0.05
    hits, counted = attack["success"]
    assert 0 <= hits <= counted and counted > 0


def test_tool_errors(model_run, capsys):
    tool = load_tool("robustness")
    with pytest.raises(SystemExit) as err:
        tool.main([CONFIG, model_run["checkpoint"], "--baseline", "/nonexistent/base.json"])
    assert err.value.code == 2 and "/nonexistent/base.json" in capsys.readouterr().err
    assert tool.corruption_names(["all"], "segmentation", False)[:2] == ["fog", "wet_ground"]
    assert "temporal_misalignment" not in tool.corruption_names(["dong"], "segmentation",
                                                                False)
    assert "temporal_misalignment" in tool.corruption_names(["dong"], "detection", False)


def test_detection(tiny_dataset, tmp_path):
    """A CenterPoint config end to end on the first validation scan: the devkit scores the
    clean, corrupted (an object-level and the temporal corruption) and attacked
    predictions of that scan alone."""
    from lidarcl.engine import build_pretrain_config
    from lidarcl.errors import DataError
    from lidarcl.registry import MODELS

    config = "configs/det/centerpoint_voxelbackbone8x_synth.py"
    options = [f"val_dataloader.dataset.data_root={tiny_dataset}/",
               f"val_evaluator.data_root={tiny_dataset}/"]
    cfg = build_pretrain_config(config, None, False, dict(o.split("=") for o in options))
    torch.manual_seed(0)
    checkpoint = tmp_path / "det.pth"
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {}}, checkpoint)
    tool = load_tool("robustness")
    assert tool.main([config, str(checkpoint), "--corruptions", "local_rotation",
                      "temporal_misalignment", "--severities", "5", "--attacks", "pgd",
                      "--steps", "1", "--attack-samples", "1", "--val-scans", "1",
                      "--corrupted-root",
                      str(tmp_path / "c"), "--out", str(tmp_path / "out"), "--cfg-options",
                      *options]) == 0
    results = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert results["metric"] == "NDS" and "mAP" in results["clean"]["metrics"]
    assert set(results["corruptions"]) == {"local_rotation", "temporal_misalignment"}
    assert set(results["summary"]["dong"]) == {"local_rotation", "temporal_misalignment"}
    assert results["attacks"]["pgd"]["samples"] == 1
    # the set's sweeps stayed links: the keyframe config reads no sweep
    manifest = json.loads((tmp_path / "c" / "local_rotation" / "5" /
                           "corruption.json").read_text())
    assert manifest["sweeps"] == "unchanged (linked)"
    from lidarcl.evaluation.nuscenes_det import evaluate_nuscenes_det, write_nuscenes_results

    path = tmp_path / "one.json"
    write_nuscenes_results(str(path), {"not-a-sample": []})
    with pytest.raises(DataError, match="not in eval set"):
        evaluate_nuscenes_det(str(path), tiny_dataset, "v1.0-synthetic", "val",
                              sample_tokens=["not-a-sample"])
