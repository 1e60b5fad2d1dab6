"""Worker for tests/test_pretrain.py's two-process run (``torchrun --nproc-per-node 2``):
pretrains through ``run_pretraining`` with ``--launcher pytorch`` on CPU processes, then
writes, per rank, the per-tensor float64 sums of the trained parameters, the same sums at
initialisation, and the sample tokens the rank trained on (``<work_dir>/rank<r>.json``).

    python -m torch.distributed.run --nproc-per-node 2 tests/helpers/ddp_worker.py \
        CONFIG WORK_DIR DATA_ROOT ITERS
"""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from mmengine.hooks import Hook  # noqa: E402

from lidarcl.engine import build_pretrain_config, run_pretraining  # noqa: E402
from lidarcl.registry import HOOKS  # noqa: E402


def _sums(model):
    module = getattr(model, "module", model)
    return [float(p.detach().double().sum()) for p in module.parameters()]


@HOOKS.register_module()
class RankRecordHook(Hook):
    """Parameter sums before training and the tokens of every batch, per rank."""

    def before_train(self, runner):
        self.initial = _sums(runner.model)
        self.tokens = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.tokens += [m.get("token") for m in data_batch.get("meta", [])]


def main():
    config, work_dir, data_root, iters = sys.argv[1:5]
    options = {"train_dataloader.dataset.data_root": data_root.rstrip("/") + "/",
               "train_dataloader.num_workers": 0,
               "train_dataloader.persistent_workers": False,
               "train_dataloader.batch_size": 1,
               "model.backbone.voxel_size": 0.6,
               "model.loss.max_pairs": 256,
               "train_cfg.max_iters": int(iters),
               "default_hooks.checkpoint.interval": int(iters),
               "default_hooks.logger.interval": 1}
    cfg = build_pretrain_config(config, work_dir, False, options, launcher="pytorch")
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type="RankRecordHook")]
    runner = run_pretraining(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, RankRecordHook))
    rank = int(os.environ["RANK"])
    with open(os.path.join(work_dir, f"rank{rank}.json"), "w") as handle:
        json.dump({"world_size": int(os.environ["WORLD_SIZE"]), "initial": hook.initial,
                   "final": _sums(runner.model), "tokens": hook.tokens,
                   "wrapper": type(runner.model).__name__}, handle)


if __name__ == "__main__":
    main()
