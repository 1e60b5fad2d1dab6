"""Set up the registries for a run: import every lidarcl module that registers components.

This lives apart from :mod:`lidarcl.registry` (as in mmdetection3d) so that the registry
module imports nothing of lidarcl: a component module imports the registry to register
itself, and only this function, called by the tools and the engine, imports the
components. Nothing here is imported by ``import lidarcl`` or ``import lidarcl.utils``.
"""
from __future__ import annotations

__all__ = ["register_all_modules"]


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every lidarcl module that registers components.

    Registers the datasets and transforms (``lidarcl.datasets``), the backbones, losses
    and pretrainers (``lidarcl.models``) and the hooks and model wrappers
    (``lidarcl.engine``) and the corruptions (``lidarcl.robustness.corruptions``) in the
    registries of :mod:`lidarcl.registry`.

    Args:
        init_default_scope: also make ``lidarcl`` mmengine's default scope, so that
            configs can name components without a ``lidarcl.`` prefix.
    """
    import lidarcl.datasets  # noqa: F401  (registers datasets and transforms)
    import lidarcl.engine  # noqa: F401  (registers the hooks and model wrappers)
    import lidarcl.models  # noqa: F401  (registers backbones, losses and pretrainers)
    import lidarcl.robustness.corruptions  # noqa: F401  (registers the corruptions)

    if init_default_scope:
        from mmengine.registry import DefaultScope

        from lidarcl.registry import DATASETS

        current = DefaultScope.get_current_instance()
        if current is None or current.scope_name != "lidarcl":
            DefaultScope.get_instance(f"lidarcl-{id(DATASETS)}", scope_name="lidarcl")
