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

from lidarcl.evaluation.study import (beyond_spread, choose_stage2_method,
                                      format_seed_table, format_table, subset_spread,
                                      summarize_seeds)

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
    assert prc["per_seed_miou"] == {"0": 0.30, "1": 0.34, "2": 0.32}
    assert prc["miou"] == pytest.approx((0.32, 0.02))          # sample std of .30 .34 .32
    assert prc["gain"] == pytest.approx((0.20, 0.0), abs=1e-12)  # each seed gains 0.20
    assert prc["pretrain_seconds"] == pytest.approx((20.0, np.std([10, 10, 40], ddof=1)))
    assert fac["miou"] == pytest.approx((0.23, np.std([0.20, 0.26], ddof=1)))
    assert random["miou"] == pytest.approx((0.12, 0.02)) and random["seeds"] == [0, 1, 2]
    # paired over common seeds: prc - random = .20 .20 .20 (std 0); prc - fac = .10 .08
    assert beyond_spread(prc, random) and beyond_spread(prc, fac)
    # .30 .34 .32 against .35 .29 .33: differences .05 -.05 .01, mean .0033 < std .05
    noisy = dict(prc, per_seed_miou={"0": 0.35, "1": 0.29, "2": 0.33})
    assert not beyond_spread(prc, noisy)
    # one common seed has no spread, whatever the gap
    assert not beyond_spread(fac, dict(random, per_seed_miou={"1": 0.0, "2": 0.0}))
    single = summarize_seeds({0: rows[0]})[0]
    assert single["miou"] == pytest.approx((0.30, 0.0))
    assert not beyond_spread(single, dict(single, per_seed_miou={"0": 0.0}))


def test_seed_table_marks_only_differences_beyond_the_spread():
    """d trails a by 1 point at every seed (separated although their intervals overlap);
    b swings around a (not separated although its mean is 1 point lower)."""
    values = [(0.40, 0.39, 0.20, 0.39, 0.10), (0.42, 0.44, 0.22, 0.41, 0.12),
              (0.44, 0.40, 0.24, 0.43, 0.11)]
    rows = {s: [_row(m, s, v, r) for m, v in zip("abcd", seed_values[:4])]
            for s, seed_values in enumerate(values) for r in [seed_values[4]]}
    lines = format_seed_table(summarize_seeds(rows)).split("\n")
    assert lines[0].startswith("| method | backbone | seeds | probe mIoU |")
    by_method = {line.split(" | ")[0][2:]: line for line in lines[2:]}
    assert by_method["a"] == ("| a | minkunet34 | 3 | 42.00 +- 2.00 | +31.00 +- 1.73 | 10 | "
                              "c, d, random |")
    assert by_method["b"].endswith("| c, random |")   # b - d: 0, .03, -.03
    assert by_method["d"].endswith("| c, random |")
    assert by_method["c"].endswith("| random |")
    assert by_method["random"] == "| random | minkunet34 | 3 | 11.00 +- 1.00 | - | - | - |"


def test_stage_two_takes_the_largest_mean_gain():
    rows = {0: [_row("prc", 0, 0.40, 0.1), _row("fac", 0, 0.30, 0.1)],
            1: [_row("prc", 1, 0.20, 0.1), _row("fac", 1, 0.35, 0.1)],
            2: [_row("prc", 2, 0.30, 0.1), _row("fac", 2, 0.32, 0.1),
                _row("pointcontrast-mv4", 2, 0.90, 0.1)]}
    # seed 0 alone would take prc; the means are prc .30, fac .323; a variant is not taken
    # while one of the four methods ran
    assert choose_stage2_method(rows[0]) == "prc"
    assert choose_stage2_method(summarize_seeds(rows)) == "fac"
    assert choose_stage2_method([_row("cmae-cosine", 0, 0.2, 0.1)]) == "cmae-cosine"
    with pytest.raises(ValueError, match="stage 2 needs a method"):
        choose_stage2_method([_row("prc", 0, 0.2, 0.1, backbone="ptv3")])


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
        assert entry["subsets"] == len(subsets) and entry["exhaustive"]
        scores = {n: np.array([miou(per_scene[n][list(c)].sum(0)) for c in subsets])
                  for n in per_scene}
        factor = np.sqrt(pool / (pool - k))   # to an unbounded pool; variance over all
        for n in per_scene:                   # subsets (ddof 0)
            assert entry["mean"][n] == pytest.approx(scores[n].mean())
            assert entry["std"][n] == pytest.approx(factor * scores[n].std())
        assert entry["pair_std"]["x - y"] == pytest.approx(
            factor * (scores["x"] - scores["y"]).std())


def test_subset_spread_of_a_mean_matches_the_unbounded_pool():
    """Per-scene matrices whose mIoU is linear in the scenes (one class, each scene all
    correct or all wrong): the subset mIoU is the mean of per-scene 0/1 values, for which
    the scaled spread is exactly s / sqrt(k) (s: the pool's sample std)."""
    correct = np.array([[[10, 0]]]), np.array([[[0, 10]]])  # (K=1, K+1): hit / missed
    hits = [1, 0, 0, 1, 1, 0, 1, 1]
    stack = np.concatenate([correct[0] if h else correct[1] for h in hits])
    # mIoU of a subset = TP / (TP + FN) = share of hit scenes: a mean of per-scene values
    entry = subset_spread({"x": stack}, [3], draws=10_000)[0]
    assert entry["exhaustive"] and entry["subsets"] == 56
    assert entry["std"]["x"] == pytest.approx(np.std(hits, ddof=1) / np.sqrt(3))


def test_subset_spread_samples_the_same_subsets_for_every_backbone():
    rng = np.random.default_rng(4)
    stack = rng.integers(0, 50, size=(12, 3, 4))
    entry = subset_spread({"x": stack, "x again": stack.copy()}, [5], draws=50)[0]
    assert entry["subsets"] == 50 and not entry["exhaustive"]
    assert entry["std"]["x"] > 0 and entry["pair_std"]["x - x again"] == 0.0
    with pytest.raises(ValueError, match="subset size 12"):
        subset_spread({"x": stack}, [12])
    with pytest.raises(ValueError, match="draws must be at least 2"):
        subset_spread({"x": stack}, [2], draws=1)


def test_run_study_keeps_earlier_rows_it_has_not_reached(tmp_path):
    """A resumed stage 1 rewrites study.json with its rows first and keeps the earlier
    run's stage 2 rows after them (nothing is lost when it stops again); rows in ``done``
    are not run (no data is needed here: nothing runs)."""
    from lidarcl.evaluation.study import run_study

    done = [_row("prc", 0, 0.3, 0.1), _row("fac", 0, 0.2, 0.1),
            _row("prc", 0, 0.25, 0.05, backbone="ptv3")]
    lines = []
    rows = run_study(str(REPO), str(tmp_path), str(tmp_path / "no data"), iters=1,
                     voxel_size=0.6, methods=["fac", "prc"], backbones=[], done=done,
                     log=lines.append)
    assert rows == [done[1], done[0]]
    assert json.loads((tmp_path / "study.json").read_text()) == [done[1], done[0], done[2]]
    assert all("already measured" in line for line in lines) and len(lines) == 2
    with pytest.raises(ValueError, match="lists a name twice"):
        run_study(str(REPO), str(tmp_path), "unused", 1, 0.6, methods=["prc", "prc"],
                  backbones=[])
    with pytest.raises(ValueError, match="unknown study backbones"):
        run_study(str(REPO), str(tmp_path), "unused", 1, 0.6, methods=[],
                  backbones=["minkunet18"], stage2_method="prc")


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
    # every row records where it ran; one machine, one environment
    assert summary["environments"] == [per_seed[0][0]["environment"]]
    assert {"torch", "spconv", "numpy", "cpu", "cpu_capability", "threads"} <= \
        set(summary["environments"][0])
    printed = capsys.readouterr().out
    assert "| pointcontrast | voxelbackbone8x | 2 |" in printed

    assert tool.main(args + ["--resume"]) == 0  # nothing left to run
    printed = capsys.readouterr().out
    # stage 1's row at each seed, then again beside stage 2's row
    assert printed.count("already measured (study.json)") == 6 and "generated" not in printed
    assert ", pretraining " not in printed  # no run (its log line ends ", pretraining N s")
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == summary["rows"]

    # the data of seed 0 is gone (a cleaned work space): it is generated again, the same
    # bytes, and the finished rows are kept
    import shutil

    shutil.rmtree(tmp_path / "seed0" / "data")
    assert tool.main(args + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert "seed 0: generated" in printed and "seed 0: 2 finished row(s) kept" in printed
    assert ", pretraining " not in printed
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == summary["rows"]

    # interrupted after seed 1's stage 1 row: only its stage 2 row runs again, the same
    seed1 = tmp_path / "seed1" / "study.json"
    seed1.write_text(json.dumps(per_seed[1][:1]))
    assert tool.main(args + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(", pretraining ") == 1
    assert "pointcontrast x voxelbackbone8x: probe mIoU" in printed
    def results(rows):  # all but the time
        return [{k: v for k, v in r.items() if k != "pretrain_seconds"} for r in rows]

    assert results(json.loads(seed1.read_text())) == results(per_seed[1])  # same bits

    assert tool.main(args) == 1  # without --resume: nothing is overwritten
    assert f"{tmp_path / 'summary.json'} holds an earlier study" in capsys.readouterr().err
    (tmp_path / "summary.json").unlink()  # each seed's study.json still holds its rows
    assert tool.main(args) == 1
    assert f"{tmp_path / 'seed0' / 'study.json'} holds an earlier study" in \
        capsys.readouterr().err
    assert tool.main(args[:-3] + ["--seeds", "0", "--iters", "2", "--resume"]) == 1
    assert "settings.json: the earlier study used" in capsys.readouterr().err
    (tmp_path / "seed0" / "settings.json").write_text("{not json")
    assert tool.main(args + ["--resume"]) == 1
    assert "settings.json: cannot read it as JSON" in capsys.readouterr().err


def test_study_stage_two_alone_needs_its_method(capsys, tmp_path):
    import study as tool

    out = str(tmp_path / "unused")  # nothing may be written there
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--out", out, "--methods", "--backbones", "ptv3"])
    assert exit_info.value.code == 2
    assert "--stage2-method" in capsys.readouterr().err
    for bad, message in ((["--seeds", "1", "1"], "--seeds repeats a name"),
                         (["--methods", "prc", "prc"], "--methods repeats a name"),
                         (["--backbones", "minkunet18"], "--backbones: unknown"),
                         (["--stage2-method", "lidarmae"],
                          "no study config for method 'lidarmae'"),
                         (["--methods", "slidr-randomteacher-x"],
                          "no study config for method 'slidr-randomteacher-x'")):
        with pytest.raises(SystemExit):  # before any data is generated
            tool.main(["--out", out] + bad)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "unused").exists()


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


def test_camera_rows_point_their_configs_at_the_seeds_camera_data():
    """slidr / superflow / scalr rows (and their -randomteacher forms) pretrain from the
    seed's camera data with the seed's teacher (or the random one) and its superpixels."""
    from lidarcl.engine import build_pretrain_config
    from lidarcl.evaluation.study import (CAMERA_IMAGE_SIZE, _camera_options, camera_method,
                                          study_config)

    assert camera_method("pointcontrast") is None
    assert camera_method("superflow-randomteacher") == ("superflow", True)
    assert study_config(str(REPO), "scalr-randomteacher").endswith("scalr_minkunet34_synth.py")
    camera = {"root": "/c/data", "teacher": "/c/t.pth", "random_teacher": "/c/r.pth",
              "tags": {"trained": "kmeans17", "random": "kmeans17_randomteacher"}}
    for method in ("slidr", "superflow-randomteacher", "scalr"):
        cfg = build_pretrain_config(study_config(str(REPO), method), "/tmp/unused")
        _camera_options(cfg, method, camera)
        dataset = cfg.train_dataloader.dataset
        inner = dataset.dataset if method.startswith("superflow") else dataset
        assert inner.data_root == "/c/data/"
        assert cfg.model.image_teacher.checkpoint == (
            "/c/r.pth" if method.endswith("randomteacher") else "/c/t.pth")
        steps = list(inner.pipeline) + list(dataset.get("frame_pipeline") or [])
        sizes = [s["size"] for s in steps if "Images" in s["type"] and "size" in s]
        assert sizes and all(tuple(size) == CAMERA_IMAGE_SIZE for size in sizes)
        tags = [s.get("tag") for s in steps if s["type"] == "LoadSuperpixels"]
        if method.startswith("superflow"):
            assert set(tags) == {"kmeans17_randomteacher"}
        elif method == "slidr":
            assert tags == [None]  # SLIC, the index's own maps
