"""The pretraining study (tools/study.py, lidarcl/evaluation/study.py): mean and spread over
seeds against hand-computed cases, the spread rule, the validation-subset spread against an
exhaustive numpy enumeration, and the tools end to end at toy scale (several seeds, resume,
stage 2, the validation-spread tool against the probe it reuses)."""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lidarcl.evaluation.study import (beyond_spread, format_seed_table, format_table,
                                      subset_spread, summarize_seeds)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


def _row(method, seed, miou, random_miou, backbone="minkunet34", seconds=10.0):
    return {"method": method, "backbone": backbone, "seed": seed, "miou": miou,
            "random_miou": random_miou, "gain": miou - random_miou,
            "pretrain_seconds": seconds}


def test_summary_over_seeds_by_hand():
    rows = {0: [_row("prc", 0, 0.30, 0.10), _row("fac", 0, 0.20, 0.10)],
            1: [_row("prc", 1, 0.34, 0.14), _row("fac", 1, 0.26, 0.14)],
            2: [_row("prc", 2, 0.32, 0.12, seconds=40.0)]}  # fac did not run at seed 2
    summary = {r["method"]: r for r in summarize_seeds(rows)}
    assert list(summary) == ["prc", "fac", "random"]
    prc, fac, random = summary["prc"], summary["fac"], summary["random"]
    assert prc["seeds"] == [0, 1, 2] and fac["seeds"] == [0, 1]
    assert prc["miou"] == pytest.approx((0.32, 0.02))          # sample std of .30 .34 .32
    assert prc["gain"] == pytest.approx((0.20, 0.0), abs=1e-12)  # each seed gains 0.20
    assert prc["pretrain_seconds"] == pytest.approx((20.0, np.std([10, 10, 40], ddof=1)))
    assert fac["miou"] == pytest.approx((0.23, np.std([0.20, 0.26], ddof=1)))
    assert random["miou"] == pytest.approx((0.12, 0.02)) and random["seeds"] == [0, 1, 2]
    # |0.32 - 0.12| > 0.02 + 0.02; |0.32 - 0.23| = 0.09 > 0.02 + 0.0424
    assert beyond_spread(prc, random) and beyond_spread(prc, fac)
    assert not beyond_spread(prc, dict(prc, miou=(0.27, 0.04)))  # 0.05 < 0.02 + 0.04
    single = summarize_seeds({0: rows[0]})[0]
    assert single["miou"] == pytest.approx((0.30, 0.0))
    assert not beyond_spread(single, dict(single, miou=(0.0, 0.0)))  # one seed: no spread


def test_seed_table_marks_only_differences_beyond_the_spread():
    rows = {s: [_row("a", s, m_a, r), _row("b", s, m_b, r), _row("c", s, m_c, r)]
            for s, (m_a, m_b, m_c, r) in enumerate([(0.40, 0.39, 0.20, 0.10),
                                                    (0.42, 0.44, 0.22, 0.12),
                                                    (0.44, 0.40, 0.24, 0.11)])}
    lines = format_seed_table(summarize_seeds(rows)).split("\n")
    assert lines[0].startswith("| method | backbone | seeds | probe mIoU |")
    by_method = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    # a: 42.00 +- 2.00, b: 41.00 +- 2.65 overlap; both clear c (22 +- 2) and random
    assert by_method["a"] == ("| a | minkunet34 | 3 | 42.00 +- 2.00 | +31.00 +- 1.73 | 10 | "
                              "c, random |")
    assert by_method["b"].endswith("| c, random |")
    assert by_method["c"].endswith("| random |")
    assert by_method["random"] == "| random | minkunet34 | 3 | 11.00 +- 1.00 | - | - | - |"


def test_subset_spread_enumerates_every_subset_like_numpy():
    rng = np.random.default_rng(3)
    pool, classes = 6, 3
    per_scene = {name: rng.integers(0, 50, size=(pool, classes, classes + 1))
                 for name in ("x", "y")}

    def miou(cm):  # independent: IoU = TP / (row + column - TP), classes with a union
        tp = np.diag(cm[:, :classes]).astype(float)
        union = cm.sum(1) + cm[:, :classes].sum(0) - tp
        return float(np.mean(tp[union > 0] / union[union > 0]))

    result = subset_spread(per_scene, [2, 3], draws=10_000)
    for entry in result:
        k = entry["scenes"]
        subsets = list(itertools.combinations(range(pool), k))
        scores = {n: np.array([miou(per_scene[n][list(c)].sum(0)) for c in subsets])
                  for n in per_scene}
        factor = np.sqrt((pool - 1) / (pool - k))
        for n in per_scene:
            assert entry["mean"][n] == pytest.approx(scores[n].mean())
            assert entry["std"][n] == pytest.approx(factor * scores[n].std(ddof=1))
        assert entry["pair_std"]["x - y"] == pytest.approx(
            factor * (scores["x"] - scores["y"]).std(ddof=1))
    sampled = subset_spread(per_scene, [3], draws=5)  # fewer draws than the 20 subsets
    assert sampled[0]["std"]["x"] > 0
    with pytest.raises(ValueError, match="subset size 6"):
        subset_spread(per_scene, [6])


def test_study_table_puts_the_earlier_row_beside_each_row():
    row = {"method": "prc", "backbone": "minkunet34", "miou": 0.3389, "random_miou": 0.1636,
           "gain": 0.1753, "pretrain_seconds": 466.4}
    new = dict(row, method="fac")
    old = [dict(row, miou=0.3502, gain=0.1866)]
    lines = format_table([row, new], previous=old).split("\n")
    assert [line.count("|") for line in lines] == [9] * 4
    assert lines[2] == "| prc | minkunet34 | 33.89 | 16.36 | +17.53 | 466 | 35.02 | +18.66 |"
    assert lines[3].endswith("| - | - |")
    assert format_table([row]).split("\n")[2] == ("| prc | minkunet34 | 33.89 | 16.36 | "
                                                  "+17.53 | 466 |")


TOY = ["--scenes", "2", "--val-scenes", "1", "--keyframes", "2", "--iters", "1",
       "--voxel-size", "0.6", "--probe-epochs", "1", "--methods", "pointcontrast"]


def test_study_over_two_seeds_with_stage_two_and_resume(tmp_path, capsys):
    """Each seed regenerates its data and reruns stage 1 and stage 2; the summary is the
    mean and spread of the per-seed rows; --resume keeps finished rows; a finished study is
    not overwritten without it."""
    import study as tool

    args = ["--out", str(tmp_path), *TOY, "--backbones", "voxelbackbone8x",
            "--seeds", "0", "1"]
    assert tool.main(args) == 0
    per_seed = {s: json.loads((tmp_path / f"seed{s}" / "study.json").read_text())
                for s in (0, 1)}
    for seed, rows in per_seed.items():
        assert [(r["method"], r["backbone"], r["seed"]) for r in rows] == [
            ("pointcontrast", "minkunet34", seed), ("pointcontrast", "voxelbackbone8x", seed)]
        info = json.loads((tmp_path / f"seed{seed}" / "data" / "nuscenes_infos_val.json")
                          .read_text())
        assert info["infos"][0]["lidar_path"].split("/")[-1].startswith(f"syn{seed:03d}-")
    for a, b in zip(per_seed[0], per_seed[1]):  # other data, other weights
        assert a["miou"] != b["miou"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["stage2_method"] == "pointcontrast"
    rows = {(r["method"], r["backbone"]): r for r in summary["rows"]}
    first = rows[("pointcontrast", "minkunet34")]
    values = [per_seed[s][0]["miou"] for s in (0, 1)]
    assert first["miou"] == pytest.approx([np.mean(values), np.std(values, ddof=1)])
    assert rows[("random", "voxelbackbone8x")]["seeds"] == [0, 1]
    printed = capsys.readouterr().out
    assert "| pointcontrast | voxelbackbone8x | 2 |" in printed

    assert tool.main(args + ["--resume"]) == 0  # nothing left to run
    printed = capsys.readouterr().out
    # stage 1's two rows per seed, then again with stage 2's one before stage 2
    assert printed.count("already measured (study.json)") == 6 and "generated" not in printed
    assert ", pretraining " not in printed  # no run (its log line ends ", pretraining N s")
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == summary["rows"]

    assert tool.main(args) == 1
    assert f"{tmp_path / 'seed0' / 'study.json'} holds an earlier study" in \
        capsys.readouterr().err
    assert tool.main(args[:-3] + ["--seeds", "0", "--iters", "2", "--resume"]) == 1
    assert "settings.json: the earlier study used" in capsys.readouterr().err


def test_study_stage_two_alone_needs_its_method(capsys):
    import study as tool

    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--out", "unused", "--methods", "--backbones", "ptv3"])
    assert exit_info.value.code == 2
    assert "--stage2-method" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--out", "unused", "--seeds", "1", "1"])
    assert "repeats a seed" in capsys.readouterr().err


def test_val_spread_tool_scores_scenes_like_the_probe(tmp_path, capsys):
    """tools/val_spread.py: the per-scene matrices add up to the probe's own evaluation of
    the whole pool (run_linear_probe with the same backbone, loaders and seed)."""
    import torch

    import val_spread as tool
    from lidarcl.engine import build_pretrain_config
    from lidarcl.evaluation.linear_probe import build_probe_loader, run_linear_probe
    from lidarcl.evaluation.study import STUDY_BACKBONES
    from lidarcl.registry import MODELS
    from lidarcl.utils.setup_env import register_all_modules

    register_all_modules()
    backbone_cfg = STUDY_BACKBONES(0.6)["minkunet34"]
    torch.manual_seed(5)
    other = MODELS.build(dict(backbone_cfg))
    torch.save(other.state_dict(), tmp_path / "other.pth")
    out = tmp_path / "spread"
    assert tool.main(["--out", str(out), "--checkpoint", f"other={tmp_path / 'other.pth'}",
                      "--train-scenes", "1", "--pool", "3", "--keyframes", "2",
                      "--voxel-size", "0.6", "--probe-epochs", "1", "--sizes", "1", "2"]) == 0
    result = json.loads((out / "val_spread.json").read_text())
    assert result["scenes"] == 3 and [e["scenes"] for e in result["spread"]] == [1, 2]
    stacks = {n: np.array(m) for n, m in result["per_scene_confusion"].items()}
    assert {n: m.shape[0] for n, m in stacks.items()} == {"random": 3, "other": 3}

    data_root = str(out / "data")
    cfg = build_pretrain_config(
        str(REPO / "configs/pretrain/pointcontrast_minkunet34_synth.py"), str(tmp_path / "w"),
        False, {"train_dataloader.dataset.data_root": data_root + "/"})
    dataset_cfg = cfg.train_dataloader.dataset.to_dict()
    train, lut, names = build_probe_loader(dataset_cfg, "nuscenes_infos_train.json", data_root)
    val, _, _ = build_probe_loader(dataset_cfg, "nuscenes_infos_val.json", data_root)
    for name in ("random", "other"):
        torch.manual_seed(0)
        backbone = MODELS.build(dict(backbone_cfg))
        if name == "other":
            backbone.load_state_dict(torch.load(tmp_path / "other.pth"))
        reference = run_linear_probe(backbone, train, val, lut, len(names), epochs=1, seed=0)
        assert stacks[name].sum(0).tolist() == reference["confusion_matrix"]
        assert result["full_pool_miou"][name] == pytest.approx(reference["miou"])
    assert "| 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tool.main(["--out", str(out), "--checkpoint", "random=x.pth"])
