"""Checkpoints and resume (lidarcl.engine.checkpoint, hooks, pretrain): files a kill cannot
tear (a real SIGKILL in the middle of the Runner's save), resume past a truncated
checkpoint, a copied work dir resuming from its own files, files with the umask's mode, and
--cfg-options refusing keys the config does not have unless --allow-new-keys.

The Runner tests train PointContrast on VoxelBackBone8x (0.7 M parameters, 3 MB
checkpoints) on a coarse grid, one checkpoint per iteration."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook

from lidarcl.engine import build_pretrain_config, run_pretraining
from lidarcl.engine.checkpoint import (AtomicLocalBackend, checkpoint_problem,
                                       export_backbone, find_resume_checkpoint,
                                       install_atomic_checkpoints)
from lidarcl.errors import DataError
from lidarcl.registry import HOOKS
from lidarcl.utils.setup_env import register_all_modules

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/pretrain/pointcontrast_voxelbackbone8x_synth.py"
MINK = REPO / "configs/pretrain/pointcontrast_minkunet34_synth.py"
WORKER = REPO / "tests/helpers/checkpoint_kill_worker.py"


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_all_modules()


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


_ITERS: list = []


@HOOKS.register_module(force=True)
class CheckpointTestIterHook(Hook):
    """Test hook: the (0-based) iterations trained."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        _ITERS.append(runner.iter)


def run(data_root, work_dir, iters, resume=False, out_dir=None):
    """Pretrain up to ``iters`` iterations, a checkpoint after each (into ``out_dir``/<work
    dir name> when given); the iterations run."""
    options = {"train_dataloader.dataset.data_root": data_root + "/",
               "train_dataloader.num_workers": 0,
               "train_dataloader.persistent_workers": False,
               "train_dataloader.batch_size": 1,
               "model.loss.max_pairs": 256,
               "train_cfg.max_iters": iters,
               "default_hooks.logger.interval": 1,
               "default_hooks.checkpoint.interval": 1}
    cfg = build_pretrain_config(str(CONFIG), str(work_dir), resume, options)
    cfg.model.backbone.voxel_size = [0.3, 0.3, 0.2]  # a coarse grid: fast on CPU
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type="CheckpointTestIterHook")]
    if out_dir is not None:
        cfg.default_hooks.checkpoint.out_dir = str(out_dir)
    _ITERS.clear()
    run_pretraining(cfg)
    return list(_ITERS)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def tiny_checkpoint(path: Path, step: int) -> None:
    torch.save({"state_dict": {"w": torch.full((2,), float(step))}, "meta": {"iter": step}},
               path)


# ----------------------------------------------------------------------- atomic writes

def test_plain_local_paths_get_the_atomic_backend(tmp_path):
    """mmengine picks a backend by the path's prefix ('' for a plain path), so the atomic
    backend must replace that prefix's class, and the cached plain instances."""
    from mmengine.fileio import LocalBackend, get_file_backend, get_text, put
    from mmengine.fileio import io as file_io

    get_file_backend(str(tmp_path), enable_singleton=True)
    install_atomic_checkpoints()
    assert type(get_file_backend(str(tmp_path / "iter_1.pth"))) is AtomicLocalBackend
    assert type(get_file_backend(tmp_path, enable_singleton=True)) is AtomicLocalBackend
    assert not any(type(b) is LocalBackend for b in file_io.backend_instances.values())
    put(b"iter_1.pth", str(tmp_path / "last_checkpoint"))
    assert get_text(str(tmp_path / "last_checkpoint")) == "iter_1.pth"


@pytest.mark.parametrize("target", ["checkpoint", "last_checkpoint"])
def test_a_kill_in_the_middle_of_a_save_leaves_the_previous_checkpoint(target, tiny_dataset,
                                                                       tmp_path):
    """A real pretraining is SIGKILLed while half of iter_2.pth (or of last_checkpoint) is
    on disk: no file under its final name is partial, and --resume continues from the
    complete iter_1.pth."""
    work = tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "worker.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(WORKER), str(CONFIG), str(work),
                                 tiny_dataset, "2", target],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not (work / "blocked").exists():
            tail = (tmp_path / "worker.log").read_text()[-3000:]
            assert proc.poll() is None, f"the worker ended ({proc.returncode}): {tail}"
            assert time.monotonic() < deadline, f"the worker never blocked: {tail}"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    if target == "checkpoint":
        assert not (work / "iter_2.pth").exists()
    else:
        assert checkpoint_problem(work / "iter_2.pth") is None
    assert os.path.basename((work / "last_checkpoint").read_text().strip()) == "iter_1.pth"
    for path in work.glob("*.pth"):
        assert checkpoint_problem(path) is None, path
    if target == "checkpoint":  # the killed write's temporary file, removed on resume
        assert list(work.glob(".iter_2.pth.*.part"))
    assert run(tiny_dataset, work, 3, resume=True) == [1, 2]
    assert not list(work.glob(".*.part"))
    assert (work / "last_checkpoint").read_text() == "iter_3.pth"


@pytest.mark.parametrize("mask", [0o022, 0o002], ids=["umask022", "umask002"])
def test_backbones_and_checkpoints_get_the_umask_mode(mask, tmp_path, umask):
    """Not mkstemp's 0600: others can read what the user's umask lets them read."""
    from mmengine.runner.checkpoint import save_checkpoint

    umask(mask)
    install_atomic_checkpoints()
    model = torch.nn.Module()
    model.backbone = torch.nn.Linear(3, 2)
    export_backbone(model, tmp_path / "backbone.pth")
    save_checkpoint({"state_dict": {}}, str(tmp_path / "iter_1.pth"))
    for name in ("backbone.pth", "iter_1.pth"):
        assert mode(tmp_path / name) == 0o666 & ~mask, name


# ---------------------------------------------------------------------------- resuming

def test_resume_falls_back_past_a_truncated_checkpoint(tiny_dataset, tmp_path):
    work = tmp_path / "work"
    assert run(tiny_dataset, work, 2) == [0, 1]
    assert (work / "last_checkpoint").read_text() == "iter_2.pth"  # a name, not a path
    truncate(work / "iter_2.pth")
    assert run(tiny_dataset, work, 3, resume=True) == [1, 2]
    log = "".join(p.read_text() for p in work.glob("*/*.log"))
    assert re.search(rf"WARNING - {re.escape(str(work))}/iter_2\.pth: does not load "
                     rf"\(.*\); resuming from {re.escape(str(work))}/iter_1\.pth", log)
    assert (work / "last_checkpoint").read_text() == "iter_3.pth"
    assert sorted(p.name for p in work.glob("*.pth")) == ["backbone.pth", "iter_2.pth",
                                                           "iter_3.pth"]
    # no checkpoint loads: an error naming each, rather than training over them
    truncate(work / "iter_2.pth")
    truncate(work / "iter_3.pth")
    with pytest.raises(DataError, match=r"no checkpoint loads: .*iter_3\.pth: does not load"
                                        r".*iter_2\.pth: does not load"):
        run(tiny_dataset, work, 4, resume=True)


def test_a_copied_work_dir_resumes_from_its_own_checkpoints(tiny_dataset, tmp_path, umask):
    umask(0o027)
    original, copy = tmp_path / "original", tmp_path / "copy"
    assert run(tiny_dataset, original, 2) == [0, 1]
    shutil.copytree(original, copy)
    for path in original.glob("iter_*.pth"):
        truncate(path)  # the original is damaged: the copy must not need it
    assert run(tiny_dataset, copy, 3, resume=True) == [2]
    for name in ("iter_3.pth", "last_checkpoint", "backbone.pth"):
        assert mode(copy / name) == 0o640, name
    # an entry as mmengine writes it (an absolute path, here into the damaged original)
    # names a file of the copy: the original is never opened
    (copy / "last_checkpoint").write_text(str(original / "iter_2.pth"))
    assert run(tiny_dataset, copy, 4, resume=True) == [2, 3]


def test_resume_with_checkpoints_in_the_hooks_out_dir(tiny_dataset, tmp_path):
    """With the hook's out_dir the checkpoints live in <out_dir>/<work dir name>;
    last_checkpoint (in the work dir) names one of them, and resume finds it there."""
    work, out = tmp_path / "work", tmp_path / "store"
    assert run(tiny_dataset, work, 2, out_dir=out) == [0, 1]
    assert (out / "work" / "iter_2.pth").is_file() and not (work / "iter_2.pth").exists()
    assert (work / "last_checkpoint").read_text() == "iter_2.pth"
    truncate(out / "work" / "iter_2.pth")
    assert run(tiny_dataset, work, 3, resume=True, out_dir=out) == [1, 2]


def test_find_resume_checkpoint_order_and_containment(tmp_path):
    """last_checkpoint's name first, then iter_N newest first (numerically); entries are
    looked up by name in the work dir only; nothing to resume from -> (None, [])."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    assert find_resume_checkpoint(work) == (None, [])
    assert find_resume_checkpoint(tmp_path / "missing") == (None, [])
    for step in (1, 2, 10):
        tiny_checkpoint(work / f"iter_{step}.pth", step)
    tiny_checkpoint(outside / "iter_5.pth", 5)
    assert find_resume_checkpoint(work) == (str(work / "iter_10.pth"), [])
    (work / "last_checkpoint").write_text(str(outside / "iter_2.pth") + "\n")
    assert find_resume_checkpoint(work) == (str(work / "iter_2.pth"), [])
    (work / "last_checkpoint").write_text("../outside/iter_5.pth")
    path, skipped = find_resume_checkpoint(work)
    assert path == str(work / "iter_10.pth")
    assert skipped == [f"{work}/iter_5.pth: not found; resuming from {path} instead"]
    truncate(work / "iter_10.pth")
    (work / "iter_2.pth").write_bytes(b"not a checkpoint")
    torch.save({"weights": 1}, work / "iter_3.pth")
    path, skipped = find_resume_checkpoint(work)
    assert path == str(work / "iter_1.pth")
    assert [s.split(":")[0] for s in skipped] == [
        f"{work}/iter_5.pth", f"{work}/iter_10.pth", f"{work}/iter_3.pth",
        f"{work}/iter_2.pth"]
    assert "no state_dict" in skipped[2]


# -------------------------------------------------------------------------- cfg-options

@pytest.mark.parametrize("key, match", [
    ("max_iters", "train_cfg.max_iters"),           # a variable of the config file
    ("foo.bar", None),
    ("train_cfg.foo", None),                        # a new leaf under a known dict
    ("train_cfg.max_iter", "train_cfg.max_iters"),
    ("model.backbone.voxelsize", "model.backbone.voxel_size"),
    ("train_dataloader.dataset.pipeline.9.x", None),  # past the end of the list
    ("train_cfg.max_iters.x", None),                # inside a number
])
def test_cfg_options_refuse_keys_the_config_does_not_have(key, match):
    with pytest.raises(ValueError) as info:
        build_pretrain_config(str(MINK), "w", False, {"train_cfg.max_iters": 2, key: 1})
    message = str(info.value)
    assert "\n" not in message and str(MINK) in message and repr(key) in message
    assert "'train_cfg.max_iters' " not in message  # the known key is not listed
    assert (f"did you mean {match!r}?" in message) if match else "did you mean" not in message
    assert "--allow-new-keys" in message


def test_allow_new_keys_adds_them():
    options = {"max_iters": 5, "foo.bar": 1, "train_cfg.foo": 2}
    cfg = build_pretrain_config(str(MINK), "w", False, options, allow_new_keys=True)
    assert cfg.max_iters == 5 and cfg.foo.bar == 1 and cfg.train_cfg.foo == 2
    with pytest.raises(ValueError, match=r"minkunet34_synth\.py: --cfg-options: .*max_iters"):
        build_pretrain_config(str(MINK), "w", False, {"train_cfg.max_iters.x": 1},
                              allow_new_keys=True)  # mmengine's own refusal, named


def test_cfg_options_accept_known_keys_list_indices_and_runner_arguments():
    options = {"train_cfg.max_iters": 5, "train_dataloader.dataset.pipeline.2.num_views": 3,
               "model.loss": dict(type="InfoNCELoss", temperature=0.1),
               "param_scheduler.1.end": 5, "find_unused_parameters": True}
    cfg = build_pretrain_config(str(MINK), "w", False, options)
    assert cfg.train_cfg.max_iters == 5 and cfg.param_scheduler[1].end == 5
    assert cfg.train_dataloader.dataset.pipeline[2].num_views == 3
    assert cfg.model.loss.temperature == 0.1 and cfg.find_unused_parameters is True


def test_pretrain_tool_refuses_unknown_keys_unless_allowed(tmp_path, monkeypatch, capsys):
    import lidarcl.engine

    spec = importlib.util.spec_from_file_location("pretrain_tool", REPO / "tools/pretrain.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    ran = []
    monkeypatch.setattr(lidarcl.engine, "run_pretraining", ran.append)
    args = [str(MINK), "--work-dir", str(tmp_path), "--cfg-options", "max_iters=5",
            "foo.bar=1"]
    with pytest.raises(SystemExit) as info:
        tool.main(args)
    assert info.value.code == 2 and not ran
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'max_iters'" in err and "did you mean 'train_cfg.max_iters'?" in err
    assert "'foo.bar'" in err and "--allow-new-keys" in err
    assert tool.main(args + ["--allow-new-keys"]) == 0
    assert ran[0].foo.bar == 1 and ran[0].max_iters == 5
