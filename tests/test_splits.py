"""Label-fraction splits (lidarcl/datasets/splits.py, tools/make_splits.py): deterministic,
exact counts, nested fractions, no validation scene inside, and the dataset keeps exactly the
listed samples."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lidarcl.datasets.info_format import write_info_index
from lidarcl.datasets.splits import (draw_split, make_label_splits, read_split, split_path,
                                     units_kept)
from lidarcl.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDENTITY = np.eye(4).tolist()


def info(token, scene):
    return {"token": token, "lidar_path": f"samples/{token}.bin", "num_point_features": 5,
            "lidar2ego": IDENTITY, "ego2global": IDENTITY, "sweeps": [], "cams": {},
            "gt_boxes": [], "gt_names": [], "scene_token": scene}


def write_index(path, scenes):
    """``scenes``: {scene token: number of samples}; tokens are '<scene>-<k>'."""
    infos = [info(f"{scene}-{k}", scene) for scene, n in scenes.items() for k in range(n)]
    write_info_index(path, infos, {"dataset": "nuscenes", "version": "v1.0-test"})
    return infos


@pytest.fixture()
def indexes(tmp_path):
    rng = np.random.default_rng(7)
    train = {f"train{i:03d}": int(rng.integers(2, 6)) for i in range(200)}
    val = {f"val{i:03d}": 3 for i in range(20)}
    train_infos = write_index(tmp_path / "infos_train.json", train)
    write_index(tmp_path / "infos_val.json", val)
    return tmp_path, train, val, train_infos


def test_unit_counts_are_the_rounded_fraction():
    # hand-computed: floor(p / 100 * U + 1/2), at least one unit
    assert [units_kept(700, p) for p in (1, 5, 10, 25, 100)] == [7, 35, 70, 175, 700]
    assert [units_kept(19130, p) for p in (1, 5, 10, 25, 100)] == [191, 957, 1913, 4783,
                                                                    19130]
    assert units_kept(50, 1) == 1 and units_kept(150, 1) == 2 and units_kept(0, 10) == 0
    with pytest.raises(ValueError, match="percentage"):
        units_kept(10, 0)


def test_splits_are_deterministic_exact_nested_and_disjoint_from_val(indexes):
    root, train, val, train_infos = indexes
    first = make_label_splits(root / "infos_train.json", seed=3)
    contents = {p: json.loads(open(path).read()) for p, path in first.items()}
    again = make_label_splits(root / "infos_train.json", seed=3)  # same split: kept
    assert again == first
    assert {p: json.loads(open(path).read()) for p, path in again.items()} == contents
    units_before = set()
    for percent in (1, 5, 10, 25, 100):
        split = contents[percent]
        meta = split["metadata"]
        assert first[percent] == split_path(root / "infos_train.json", percent, 3)
        assert meta["level"] == "scene" and meta["units_total"] == 200
        assert len(split["units"]) == meta["units_selected"] == units_kept(200, percent)
        assert len(set(split["units"])) == len(split["units"])
        # exactly the samples of the selected scenes, counted independently
        expected = sorted(f"{s}-{k}" for s in split["units"] for k in range(train[s]))
        assert sorted(split["tokens"]) == expected
        assert meta["samples_selected"] == len(expected)
        assert not set(split["units"]) & set(val)
        assert units_before <= set(split["units"])  # nested
        units_before = set(split["units"])
    assert units_before == set(train)
    other_seed = draw_split(train_infos, 10, 4, "scene")[0]
    assert set(other_seed) != set(contents[10]["units"])


def test_frame_level_and_changed_split_refused(indexes):
    root, train, _, train_infos = indexes
    units, tokens = draw_split(train_infos, 5, 0, "frame")
    assert len(units) == units_kept(len(train_infos), 5) == 35  # 5 % of 709 scans
    assert sorted(units) == sorted(tokens)
    make_label_splits(root / "infos_train.json", percents=[10], seed=0)
    path = split_path(root / "infos_train.json", 10, 0)
    with pytest.raises(DataError, match="different 10"):
        make_label_splits(root / "infos_train.json", percents=[10], seed=0, level="frame")
    make_label_splits(root / "infos_train.json", percents=[10], seed=0, level="frame",
                      overwrite=True)
    assert read_split(path)["metadata"]["level"] == "frame"


def test_scene_level_needs_scene_tokens(tmp_path):
    infos = [info("a", "s"), info("b", "")]
    write_info_index(tmp_path / "i.json", infos, {"dataset": "nuscenes"})
    with pytest.raises(DataError, match="no scene_token"):
        make_label_splits(tmp_path / "i.json", level="scene")
    assert read_split(make_label_splits(tmp_path / "i.json", [100])[100])["metadata"][
        "level"] == "frame"


def test_dataset_keeps_the_split_samples_and_rejects_a_foreign_split(tiny_dataset, tmp_path):
    from lidarcl.datasets.nuscenes_dataset import NuScenesDataset

    index = os.path.join(tiny_dataset, "nuscenes_infos_train.json")
    full = NuScenesDataset(index, data_root=tiny_dataset)
    path = make_label_splits(index, percents=[50], seed=0, level="frame")[50]
    split = read_split(path)
    part = NuScenesDataset(index, data_root=tiny_dataset, split_file=path)
    kept = [part.get_data_info(i)["token"] for i in range(len(part))]
    assert kept == [full.get_data_info(i)["token"] for i in range(len(full))
                    if full.get_data_info(i)["token"] in set(split["tokens"])]
    assert 0 < len(part) < len(full)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({**split, "tokens": split["tokens"] + ["not-a-token"]}))
    with pytest.raises(DataError, match="foreign.json.*not in the index"):
        len(NuScenesDataset(index, data_root=tiny_dataset, split_file=str(foreign)))
    with pytest.raises(DataError, match="split file"):
        read_split(tmp_path / "absent.json")


def test_make_splits_tool(indexes):
    root = indexes[0]
    run = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_splits.py"),
                          str(root / "infos_train.json"), "--percents", "1", "10"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "1%: 2/200 scenes" in run.stdout and "10%: 20/200 scenes" in run.stdout
    bad = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_splits.py"),
                          str(root / "absent.json")], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "absent.json" in bad.stderr
