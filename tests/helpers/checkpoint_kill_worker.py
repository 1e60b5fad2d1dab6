"""Worker for tests/test_checkpoints.py's kill test: a tiny pretraining (checkpoint every
iteration) that stops in the middle of writing one file of the checkpoint save at iteration
STEP and waits there to be killed (SIGKILL, so nothing gets to clean up).

TARGET is ``checkpoint`` (``iter_STEP.pth``) or ``last_checkpoint``. Whatever way the file
is written (into the final name, or a temporary file renamed later), the first file opened
for writing whose real path's base name contains the target's name gets half of its first
``write``, flushed and fsynced; then ``<WORK_DIR>/blocked`` appears and the worker sleeps.

    python tests/helpers/checkpoint_kill_worker.py CONFIG WORK_DIR DATA_ROOT STEP TARGET
"""
import builtins
import io
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from mmengine.hooks import Hook  # noqa: E402

from lidarcl.engine import build_pretrain_config, run_pretraining  # noqa: E402
from lidarcl.registry import HOOKS  # noqa: E402


class HalfWriter:
    """A file whose first ``write`` writes half, flushes it to disk and blocks forever."""

    def __init__(self, handle, marker):
        self._handle, self._marker = handle, marker

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)

    def write(self, data):
        self._handle.write(data[:max(1, len(data) // 2)])
        self._handle.flush()
        os.fsync(self._handle.fileno())
        os.close(os.open(self._marker, os.O_CREAT | os.O_WRONLY))
        while True:
            time.sleep(1)


def block_writes_to(name: str, marker: str) -> None:
    real_open = io.open

    def blocking_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+"):
            path = os.readlink(f"/proc/self/fd/{handle.fileno()}")
            if name in os.path.basename(path):
                return HalfWriter(handle, marker)
        return handle

    builtins.open = io.open = blocking_open  # os.fdopen calls io.open


@HOOKS.register_module()
class BlockSaveHook(Hook):
    """Arms :func:`block_writes_to` just before the checkpoint of iteration ``step``."""

    def __init__(self, step, target, marker):
        self.step, self.target, self.marker = step, target, marker

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.iter + 1 == self.step:
            name = f"iter_{self.step}.pth" if self.target == "checkpoint" else self.target
            block_writes_to(name, self.marker)


def main():
    config, work_dir, data_root, step, target = sys.argv[1:6]
    options = {"train_dataloader.dataset.data_root": data_root.rstrip("/") + "/",
               "train_dataloader.num_workers": 0,
               "train_dataloader.persistent_workers": False,
               "train_dataloader.batch_size": 1,
               "model.loss.max_pairs": 256,
               "train_cfg.max_iters": int(step) + 1,
               "default_hooks.checkpoint.interval": 1}
    cfg = build_pretrain_config(config, work_dir, False, options)
    cfg.model.backbone.voxel_size = [0.3, 0.3, 0.2]  # a coarse grid: fast on CPU
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(
        type="BlockSaveHook", step=int(step), target=target,
        marker=os.path.join(work_dir, "blocked"))]
    run_pretraining(cfg)
    sys.exit("the run finished: it was never blocked")


if __name__ == "__main__":
    main()
