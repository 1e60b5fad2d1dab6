"""Compact terminal output of the tools (issue 12): a progress line with an ETA, warnings
and the result on the terminal, mmengine's whole stream in the work dir's log file, and
``--verbose`` for mmengine's stream on the terminal. ``TerminalProgressHook`` is also
driven in-process, on a fake TTY, to check the in-place updates and the ETA."""
from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/pretrain/pointcontrast_minkunet34_synth.py"
MAX_COMPACT_LINES = 10   # warning + start line + 2 progress lines + result, with headroom


def _pretrain(data_root: str, work_dir: Path, iters: int, *flags: str):
    options = {"train_dataloader.dataset.data_root": data_root + "/",
               "train_dataloader.num_workers": 0,
               "train_dataloader.persistent_workers": False,
               "train_dataloader.batch_size": 1,
               "model.backbone.voxel_size": 0.6,
               "model.loss.max_pairs": 256,
               "train_cfg.max_iters": iters,
               "default_hooks.logger.interval": 1,
               "default_hooks.checkpoint.interval": iters}
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "tools/pretrain.py"), str(CONFIG),
                           "--work-dir", str(work_dir), *flags, "--cfg-options",
                           *[f"{k}={v}" for k, v in options.items()]],
                          capture_output=True, text=True, cwd=work_dir.parent, env=env,
                          timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


@pytest.fixture(scope="module")
def compact(tiny_dataset, tmp_path_factory):
    """tools/pretrain.py --resume, 2 iterations, not on a TTY, in a work dir holding only
    the temporary file of a killed save: resume removes it with a warning and trains from
    scratch."""
    work = tmp_path_factory.mktemp("terminal") / "work"
    work.mkdir()
    (work / ".iter_2.pth.k1ll3d.part").write_bytes(b"half a checkpoint")
    proc = _pretrain(tiny_dataset, work, 2, "--resume")
    return SimpleNamespace(work=work, out=proc.stdout + proc.stderr, stdout=proc.stdout,
                           stderr=proc.stderr)


def test_terminal_shows_progress_warnings_and_the_result_only(compact):
    lines = compact.out.strip().splitlines()
    assert len(lines) <= MAX_COMPACT_LINES, compact.out
    assert "System environment" not in compact.out and "Config:" not in compact.out
    assert "Hooks will be executed" not in compact.out and "Iter(train)" not in compact.out
    # the warning of the removed partial write still reaches the terminal
    assert any("WARNING" in line and ".iter_2.pth.k1ll3d.part" in line
               and "partial write of a killed run, removed" in line for line in lines)
    # not a TTY: a line per iteration here (about ten per run), each with an ETA
    progress = [line for line in lines if re.search(r"iter +\d+/2 ", line)]
    assert [re.search(r"iter +(\d+)/2", p).group(1) for p in progress] == ["1", "2"]
    for line in progress:
        assert re.search(r"loss \d+\.\d{4} .*\d+\.\d\d s/iter .*ETA \d+:\d\d$", line), line
    assert progress[-1].endswith("ETA 0:00") and "\r" not in compact.out
    final = compact.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"pretrained PointContrast to iteration 2 in \d+:\d\d -> "
                        + re.escape(str(compact.work / "backbone.pth")), final), final
    assert (compact.work / "backbone.pth").is_file()


def test_log_file_keeps_mmengines_whole_stream(compact):
    start = next(line for line in compact.stdout.splitlines() if line.startswith("pretraining"))
    assert start.startswith("pretraining PointContrast x MinkUNet34 for 2 iterations in ")
    log = Path(start.split("; full log: ")[1])
    assert log.parent.parent == compact.work and log.name == f"{log.parent.name}.log"
    text = log.read_text()
    for needle in ("System environment:", "Runtime environment:", "Config:",
                   "Hooks will be executed in the following order",
                   "TerminalProgressHook", "partial write of a killed run, removed",
                   f"backbone exported to {compact.work / 'backbone.pth'}"):
        assert needle in text, needle
    iters = re.findall(r"Iter\(train\) \[(\d)/2\].*  loss: \d+\.\d+", text)
    assert iters == ["1", "2"]


def test_verbose_gives_mmengines_stream(tiny_dataset, tmp_path):
    work = tmp_path / "work"
    proc = _pretrain(tiny_dataset, work, 1, "--verbose")
    out = proc.stdout + proc.stderr
    for needle in ("System environment:", "Config:", "Hooks will be executed",
                   "Iter(train) [1/1]", "backbone exported to"):
        assert needle in out, needle
    assert "TerminalProgressHook" not in out and "ETA " not in out
    assert not re.search(r"^pretrain(ing|ed) PointContrast", out, re.M)
    assert (work / "backbone.pth").is_file()


# ------------------------------------------------------------------ hook, in-process

class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _fake_runner(max_iters: int):
    logger = logging.getLogger("lidarcl-test-progress")
    return SimpleNamespace(iter=0, max_iters=max_iters, work_dir="/w", logger=logger,
                           cfg={"model": {"type": "M", "backbone": {"type": "B"}}},
                           model=None)


def _drive(hook, runner, clock, seconds, losses):
    hook.before_train(runner)
    for it, (spent, loss) in enumerate(zip(seconds, losses)):
        runner.iter = it
        clock.now += spent
        hook.after_train_iter(runner, it, None, {"loss": loss})
    runner.iter = len(seconds)
    hook.after_train(runner)


def test_progress_hook_rewrites_one_line_on_a_tty_with_an_eta(monkeypatch):
    from lidarcl.engine import progress
    from lidarcl.registry import HOOKS

    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    stream = io.StringIO()
    hook = HOOKS.build(dict(type="TerminalProgressHook", tty=True, stream=stream))
    runner = _fake_runner(5)
    # the first iteration (warm-up) is left out of the ETA once others are measured
    _drive(hook, runner, clock, [10.0, 2.0, 4.0, 2.0, 2.0], [5.0, 4.5, 4.0, 3.5, 3.0])
    text = stream.getvalue()
    head, rest = text.split("\n", 1)
    assert head == "pretraining M x B for 5 iterations in /w"
    assert rest.endswith("\n") and rest.count("\n") == 1  # one line, rewritten in place
    updates = rest[:-1].split("\r")[1:]
    assert len(updates) == 5
    assert updates[0].startswith("  iter 1/5  loss 5.0000  10.00 s/iter  ETA 0:40")
    assert updates[1].startswith("  iter 2/5  loss 4.5000  2.00 s/iter  ETA 0:06")
    assert updates[2].startswith("  iter 3/5  loss 4.0000  3.00 s/iter  ETA 0:06")
    assert updates[4] == "  iter 5/5  loss 3.0000  2.50 s/iter  ETA 0:00"
    assert updates[1].endswith("ETA 0:06 ")  # a space over the end of the longer line 1


def test_progress_hook_prints_every_interval_when_not_a_tty(monkeypatch):
    from lidarcl.engine import progress

    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    stream = io.StringIO()
    hook = progress.TerminalProgressHook(tty=False, stream=stream)  # interval: about ten lines
    _drive(hook, _fake_runner(95), clock, [1.0] * 95, [1.0] * 95)
    lines = stream.getvalue().splitlines()[1:]
    assert [int(re.search(r"iter +(\d+)/95", x).group(1)) for x in lines] == \
        [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    stream = io.StringIO()
    hook = progress.TerminalProgressHook(interval=2, tty=False, stream=stream)
    _drive(hook, _fake_runner(5), clock, [1.0] * 5, [1.0] * 5)
    assert len(stream.getvalue().splitlines()) == 1 + 4  # iterations 1, 2, 4 and the last


def test_compact_runner_logger_keeps_warnings_on_the_terminal_only(monkeypatch, tmp_path):
    """The terminal handler of the compact runner's logger passes warnings (after ending an
    in-place progress line) and drops mmengine's own deprecation notices; INFO records go
    to the file only."""
    from mmengine.logging import MMLogger

    from lidarcl.engine import progress

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    runner = progress.CompactTerminalRunner.__new__(progress.CompactTerminalRunner)
    runner._experiment_name = f"terminal-test-{id(runner)}"
    logger = runner.build_logger(log_level="INFO", log_file=str(tmp_path / "t0.log"))
    assert isinstance(logger, MMLogger)
    progress._LINE.update(stream, "  iter 1/9")
    logger.info("environment dump")
    logger.warning('"FileClient" will be deprecated in future. Please use io functions')
    logger.warning("a checkpoint was skipped")
    for handler in logger.handlers:
        handler.flush()
    out = stream.getvalue()
    assert out.startswith("\r  iter 1/9\n") and out.count("\n") == 2
    assert "a checkpoint was skipped" in out and "environment dump" not in out
    log = (tmp_path / "t0.log").read_text()
    assert "environment dump" in log and "FileClient" in log and "skipped" in log
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    MMLogger._instance_dict.pop(runner._experiment_name, None)  # not the current logger
