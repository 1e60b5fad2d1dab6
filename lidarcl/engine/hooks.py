"""``WeightsOnlyCheckpointHook``: mmengine checkpoints that load with
``torch.load(weights_only=True)``.

mmengine stores its ``MessageHub`` in every checkpoint: ``HistoryBuffer`` objects holding
numpy arrays and numpy scalars (e.g. the ETA). PyTorch >= 2.6 loads with
``weights_only=True`` by default, which refuses them, so mmengine's own ``--resume`` fails
("Unsupported global: mmengine.logging.history_buffer.HistoryBuffer"), and lidarcl's rule
is never to unpickle arbitrary objects from a checkpoint. Before a checkpoint is saved this
hook rewrites the message hub into plain lists, numbers and strings; after one is loaded it
rebuilds the ``HistoryBuffer`` objects, so the Runner resumes its logs exactly.
"""
from __future__ import annotations

import numpy as np
from mmengine.hooks import Hook

from lidarcl.registry import HOOKS

__all__ = ["WeightsOnlyCheckpointHook", "plain"]

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

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.logging.history_buffer import HistoryBuffer

        hub = checkpoint.get("message_hub")
        if not isinstance(hub, dict):
            return
        for key, value in list(hub.get("log_scalars", {}).items()):
            if isinstance(value, dict) and value.get(_BUFFER):
                hub["log_scalars"][key] = HistoryBuffer(value["log"], value["count"],
                                                        value["max_length"])
