"""docs/extending.md works as written: its example method (AlignSpread), backbone
(VoxelMLP) and dataset (ScanSequenceDataset) are copied from the page into a folder
outside the package, each with its config, and pretrained through ``tools/pretrain.py``
(a subprocess, mmengine's ``custom_imports`` with the folder on ``PYTHONPATH``) on
generated data: the run writes ``backbone.pth`` and logs the example's own losses."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "extending.md"
# a fenced python block whose first line names its file: "# align_spread.py"
BLOCK = re.compile(r"```python\n# (?P<name>[\w./-]+\.py)\n(?P<body>.*?)```", re.S)


def doc_files() -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(DOC.read_text())}


def test_the_page_has_the_three_examples():
    names = set(doc_files())
    assert {"align_spread.py", "voxel_mlp.py", "scan_sequences.py",
            "alignspread_minkunet34_synth.py", "pointcontrast_voxelmlp_synth.py",
            "pointcontrast_minkunet34_sequences.py"} <= names


@pytest.fixture(scope="module")
def extension(tmp_path_factory) -> Path:
    """The page's files (modules and configs) in a folder outside the package, with the
    page's ``/path/to/lidarcl`` replaced by this checkout."""
    folder = tmp_path_factory.mktemp("my_extension")
    for name, body in doc_files().items():
        (folder / name).write_text(body.replace("/path/to/lidarcl", str(REPO)))
    assert not (folder / "lidarcl").exists()
    return folder


def pretrain(extension: Path, config: str, work_dir: Path, options: dict):
    """``tools/pretrain.py`` on the extension's config, in a subprocess started outside
    the repository; returns ``(process, everything it logged)``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(extension), str(REPO)]),
               OMP_NUM_THREADS="1")
    args = [f"{k}={v}" for k, v in options.items()]
    proc = subprocess.run([sys.executable, str(REPO / "tools/pretrain.py"),
                           str(extension / config), "--work-dir", str(work_dir),
                           "--cfg-options", *args],
                          cwd=extension, env=env, capture_output=True, text=True, timeout=900)
    logs = proc.stdout + proc.stderr
    logs += "".join(p.read_text(errors="replace") for p in work_dir.rglob("*.log"))
    return proc, logs


def small(data_root: str, iters: int, **extra) -> dict:
    options = {"train_dataloader.dataset.data_root": data_root + "/",
               "train_dataloader.num_workers": 0,
               "train_dataloader.persistent_workers": False,
               "train_dataloader.batch_size": 1,
               "train_cfg.max_iters": iters,
               "default_hooks.logger.interval": 1,
               "default_hooks.checkpoint.interval": 10}
    options.update(extra)
    return options


def exported(work_dir: Path) -> dict:
    path = work_dir / "backbone.pth"
    assert path.is_file()
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert data["state_dict"]
    return data


def test_example_method_pretrains_through_the_tool(extension, tiny_dataset, tmp_path):
    """AlignSpread (a Pretrainer subclass outside the package) x MinkUNet34, two iterations
    on the generated data: its two losses are logged at both iterations."""
    work = tmp_path / "work"
    proc, logs = pretrain(extension, "alignspread_minkunet34_synth.py", work,
                          small(tiny_dataset, 2, **{"model.backbone.voxel_size": 0.6}))
    assert proc.returncode == 0, logs[-3000:]
    exported(work)
    for it in (1, 2):
        line = next((line for line in logs.splitlines() if f"Iter(train) [{it}/2]" in line),
                    None)
        assert line is not None, logs[-3000:]
        assert "loss_align:" in line and "loss_spread:" in line, line
        assert "loss_point" not in line  # not PointContrast's loss


def test_example_backbone_pretrains_through_the_tool(extension, tiny_dataset, tmp_path):
    """PointContrast with the VoxelMLP backbone; backbone.pth holds VoxelMLP's weights."""
    work = tmp_path / "work"
    proc, logs = pretrain(extension, "pointcontrast_voxelmlp_synth.py", work,
                          small(tiny_dataset, 2, **{"model.loss.max_pairs": 256}))
    assert proc.returncode == 0, logs[-3000:]
    data = exported(work)
    assert data["meta"]["backbone"]["type"] == "VoxelMLP"
    assert {k.split(".")[0] for k in data["state_dict"]} == {"mlp"}
    assert "Iter(train) [2/2]" in logs and "loss_point:" in logs


def test_example_dataset_converts_and_pretrains_through_the_tool(extension, tiny_dataset,
                                                                 tmp_path):
    """Three scans of the generated data written as a pose sequence, converted by the
    page's script, and pretrained on through ScanSequenceDataset for one iteration."""
    root = tmp_path / "sequences_root"
    velodyne = root / "sequences" / "00" / "velodyne"
    velodyne.mkdir(parents=True)
    scans = sorted(Path(tiny_dataset, "samples", "LIDAR_TOP").glob("*.bin"))[:3]
    assert len(scans) == 3
    poses = []
    for k, scan in enumerate(scans):
        points = np.fromfile(scan, np.float32).reshape(-1, 5)[:, :4]
        points.tofile(velodyne / f"{k:06d}.bin")
        pose = np.eye(4)[:3]
        pose[0, 3] = 0.5 * k  # driving along +x
        poses.append(pose.reshape(-1))
    np.savetxt(root / "sequences" / "00" / "poses.txt", np.array(poses))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(extension / "scan_sequences.py"), str(root),
                           str(root)], cwd=extension, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    from lidarcl.datasets.info_format import read_info_index

    infos, meta = read_info_index(root / "sequence_infos_train.json", dataset="sequence")
    assert [i["token"] for i in infos] == ["00_000000", "00_000001", "00_000002"]
    assert [len(i["sweeps"]) for i in infos] == [0, 1, 2]
    newest = np.array(infos[2]["sweeps"][0]["sweep2lidar"])
    np.testing.assert_allclose(newest[:3, 3], [-0.5, 0.0, 0.0])  # scan 1 seen from scan 2

    work = tmp_path / "work"
    proc, logs = pretrain(extension, "pointcontrast_minkunet34_sequences.py", work,
                          small(str(root), 1, **{"model.backbone.voxel_size": 0.6,
                                                 "model.loss.max_pairs": 256}))
    assert proc.returncode == 0, logs[-3000:]
    exported(work)
    assert "Iter(train) [1/1]" in logs and "loss_point:" in logs
