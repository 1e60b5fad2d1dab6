"""Checkpoint hooks: ``WeightsOnlyCheckpointHook`` (mmengine checkpoints that load with
``torch.load(weights_only=True)``) and ``AtomicCheckpointHook`` (a crash never costs the
last good checkpoint; ``last_checkpoint`` names a file of the work dir).

mmengine stores its ``MessageHub`` in every checkpoint: ``HistoryBuffer`` objects holding
numpy arrays and numpy scalars (e.g. the ETA). PyTorch >= 2.6 loads with
``weights_only=True`` by default, which refuses them, so mmengine's own ``--resume`` fails
("Unsupported global: mmengine.logging.history_buffer.HistoryBuffer"), and lidarcl's rule
is never to unpickle arbitrary objects from a checkpoint. Before a checkpoint is saved
``WeightsOnlyCheckpointHook`` rewrites the message hub into plain lists, numbers and
strings; after one is loaded it rebuilds the ``HistoryBuffer`` objects, so the Runner
resumes its logs exactly. It also records ``meta["state_dict_sha256"]``, which
:func:`lidarcl.engine.checkpoint.checkpoint_problem` checks before a resume.

mmengine's ``CheckpointHook`` writes ``last_checkpoint`` with a plain ``open`` (truncated
by a crash) holding an absolute path (a copied work dir resumes from the original's
checkpoint), and with ``max_keep_ckpts`` it deletes the oldest checkpoint *before* writing
the new one (with ``max_keep_ckpts=1`` a crash then leaves none). ``AtomicCheckpointHook``,
which :func:`lidarcl.engine.run_pretraining` puts in place of ``CheckpointHook``, writes the
checkpoint, then ``last_checkpoint`` atomically with the bare file name, and deletes the
outdated checkpoint last.
"""
from __future__ import annotations

import os

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook

from lidarcl.registry import HOOKS
from lidarcl.utils.fileio import atomic_write_bytes

__all__ = ["WeightsOnlyCheckpointHook", "AtomicCheckpointHook", "plain"]

_BUFFER = "__history_buffer__"


def plain(value):
    """numpy scalars / arrays inside dicts, lists and tuples -> Python numbers / lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Keep checkpoints loadable with ``weights_only=True`` (module doc)."""

    priority = "VERY_HIGH"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        hub = checkpoint.get("message_hub")
        if isinstance(hub, dict):
            scalars = {}
            for key, buffer in hub.get("log_scalars", {}).items():
                log, count = buffer.data
                scalars[key] = {_BUFFER: True, "log": np.asarray(log).tolist(),
                                "count": np.asarray(count).tolist(),
                                "max_length": int(buffer.max_length)}
            hub["log_scalars"] = scalars
            hub["runtime_info"] = plain(hub.get("runtime_info", {}))
        checkpoint["meta"] = plain(checkpoint.get("meta", {}))
        schedulers = checkpoint.get("param_schedulers")
        groups = schedulers.values() if isinstance(schedulers, dict) else [schedulers or []]
        for group in groups:
            for state in group:
                # OneCycleLR keeps its annealing function (a bound method, pickled through
                # getattr, which weights_only refuses); the scheduler rebuilds it from
                # anneal_strategy when constructed, so the saved state does not need it
                for key in [k for k, v in state.items() if callable(v)]:
                    del state[key]
        if isinstance(checkpoint.get("state_dict"), dict):
            # resume checks it: torch's reader does not notice a flipped bit in the weights
            from lidarcl.engine.checkpoint import weights_digest

            checkpoint["meta"]["state_dict_sha256"] = weights_digest(checkpoint["state_dict"])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.logging.history_buffer import HistoryBuffer

        hub = checkpoint.get("message_hub")
        if not isinstance(hub, dict):
            return
        for key, value in list(hub.get("log_scalars", {}).items()):
            if isinstance(value, dict) and value.get(_BUFFER):
                hub["log_scalars"][key] = HistoryBuffer(value["log"], value["count"],
                                                        value["max_length"])


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose crash leaves a resumable work dir (module doc)."""

    def _save_checkpoint_with_step(self, runner, step, meta):
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, name)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(self.out_dir, name, self.file_client_args,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta,
                               by_epoch=self.by_epoch, backend_args=self.backend_args,
                               **self.args)
        if not is_main_process():
            return
        # the bare name: resume looks it up in the checkpoint folder (the work dir, or
        # `out_dir/<work dir name>`), never following a path written by another run
        atomic_write_bytes(os.path.join(runner.work_dir, "last_checkpoint"), name.encode())
        if outdated is not None:
            path = self.file_backend.join_path(self.out_dir,
                                               self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed saves folders
                self.file_backend.rmtree(path)
