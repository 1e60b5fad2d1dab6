"""``MomentumUpdateHook``: one EMA step of the model's momentum (key) encoders after every
training iteration (:mod:`lidarcl.models.momentum`), with the model's cosine schedule over
the run's ``max_iters``. The momentum used is logged as ``momentum``.

A pretrainer with key copies refuses to train under a Runner without this hook
(:meth:`lidarcl.models.pretrainers.base.Pretrainer.train_step`): its key encoder would stay
at initialisation and the run would look healthy.
"""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from lidarcl.registry import HOOKS

__all__ = ["MomentumUpdateHook"]


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class MomentumUpdateHook(Hook):
    """Step the key encoders after each optimiser step (module doc)."""

    priority = "NORMAL"

    def before_train(self, runner) -> None:
        model = _unwrap(runner.model)
        if getattr(model, "momentum_pairs", ()):
            model.momentum_hooked = True

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = _unwrap(runner.model)
        if not getattr(model, "momentum_pairs", ()):
            return
        momentum = model.momentum_update(runner.iter, runner.max_iters)
        runner.message_hub.update_scalar("train/momentum", momentum)
